"""The dependency check of a sync, after planning: per channel, the kept records that
depend on a package the filters dropped entirely (for a sharded upstream, names whose
shards were not read count as dropped), set on each platform's report as a warning. The
comparisons are closure.py's pure functions; this module walks the platforms' `Work`.

A big platform keeps hundreds of thousands of records, so the walk is done with C-level
passes (`map`, `compress`, set operations) rather than a Python loop per record. A chunk
of kept records is first scanned as bytes for the missing names (depends_scan.py), and
only the records that may name one have their `depends` decoded, as `list[list[str]]`;
candidates holding a `depends` of another shape go through `closure.unsatisfied` record
by record, which skips what it cannot read.
"""

from __future__ import annotations

from functools import cache
from itertools import compress
from operator import attrgetter, not_

from .work import records_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from .work import Work

DEPENDS_CHUNK = 20_000  # records whose depends are decoded at once
_kept, _name, _depends = attrgetter("kept"), attrgetter("name"), attrgetter("depends")


def check_dependencies(work: list[Work]) -> None:
    """Per channel: kept records depending on a package the filters dropped entirely
    (for a sharded upstream, the names whose shards were not read are dropped too)."""
    by_channel: dict[str, dict[str, Work]] = {}
    for w in work:
        if w.usable:
            by_channel.setdefault(w.source.path, {})[w.platform] = w
    for platforms in by_channel.values():
        if any(w.quiet for w in platforms.values()):
            continue  # (all of them are): the last run's findings are reported again
        kept: dict[str, set[str]] = {}
        dropped: dict[str, set[str]] = {}
        unread = {p: w.fetched.sharded.unfetched for p, w in platforms.items()
                  if w.fetched is not None and w.fetched.sharded is not None}
        selected: dict[str, tuple[list[str], list[Any]]] = {}  # kept file names, records
        kept_flags = {p: list(map(_kept, w.decisions.values())) for p, w in platforms.items()}
        if all(map(all, kept_flags.values())) and not any(unread.values()):
            continue  # nothing filtered out: nothing can be missing because of it
        for platform, w in platforms.items():
            records = w.upstream.records if w.upstream else {}
            flags = kept_flags[platform]
            views = records_of(records, w.decisions)
            names = list(map(_name, views))
            selected[platform] = (list(compress(w.decisions, flags)),
                                  list(compress(views, flags)))
            # Names lowered once each (a name has many records).
            kept[platform] = set(map(str.lower, set(compress(names, flags))))
            dropped[platform] = set(map(str.lower, set(compress(names, map(not_, flags)))))
            dropped[platform].update(unread.get(platform, ()))
        from .closure import missing_names  # (not imported by a run with nothing to check)
        from .depends_scan import candidates, name_pattern

        for platform, missing in missing_names(kept, dropped).items():
            w, (chosen, views), found = platforms[platform], selected[platform], {}
            seen: set[str] = set()  # the depends entries looked at, in any chunk
            bad: dict[str, str] = {}  # those naming a missing package -> that name
            pattern = name_pattern(missing)
            for start in range(0, len(chosen), DEPENDS_CHUNK):  # a chunk's strings at a time
                end = start + DEPENDS_CHUNK
                fns, raws = chosen[start:end], list(map(_depends, views[start:end]))
                if pattern is not None:  # only the records that may name a missing one
                    at = candidates(raws, pattern)
                    if len(at) < len(raws):
                        fns = list(map(fns.__getitem__, at))
                        raws = list(map(raws.__getitem__, at))
                if fns:
                    found.update(_unsatisfied_chunk(w, fns, raws, missing, seen, bad))
            w.report.unsatisfied = found


@cache
def _lists_decoder():
    """The decoder of a chunk's depends (msgspec is imported by a run that checks)."""
    import msgspec

    return msgspec.json.Decoder(list[list[str]])


def _unsatisfied_chunk(w: Work, chunk: list[str], raws: list[Any], missing: set[str],
                       seen: set[str], bad: dict[str, str]) -> dict[str, list[str]]:
    """`closure.unsatisfied` for the records `chunk` of `w` (`raws`, their raw `depends`),
    the same findings in the same order: file name -> the sorted names in `missing` that
    record depends on. `seen` and `bad` carry what earlier chunks found about entries."""
    import msgspec

    from .closure import dependency_name, unsatisfied
    from .repodata import depends_of

    try:  # joining the raw slices and decoding them in one call stays in C
        lists = _lists_decoder().decode(b"[" + b",".join(raws) + b"]")
    except (msgspec.DecodeError, msgspec.ValidationError):  # not all lists of strings
        return unsatisfied(depends_of(w.upstream, chunk), missing)
    new = set().union(*lists) - seen
    seen |= new
    for entry in new:
        if (name := dependency_name(entry)) in missing:
            bad[entry] = name
    if not bad:
        return {}
    clear = list(map(bad.keys().isdisjoint, lists))
    return {fn: sorted({bad[e] for e in d if e in bad})
            for fn, d in zip(compress(chunk, map(not_, clear)),
                             compress(lists, map(not_, clear)), strict=True)}
