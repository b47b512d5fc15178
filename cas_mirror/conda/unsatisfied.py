"""The dependency check of a sync, after planning: per channel, the kept records that
depend on a package the filters dropped entirely (for a sharded upstream, names whose
shards were not read count as dropped), set on each platform's report as a warning. The
comparisons are closure.py's pure functions; this module walks the platforms' `Work`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .work import Work

DEPENDS_CHUNK = 20_000  # records whose depends are decoded at once


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
        if all(d.kept for w in platforms.values() for d in w.decisions.values()) and \
                not any(unread.values()):
            continue  # nothing filtered out: nothing can be missing because of it
        from .closure import missing_names, unsatisfied
        from .repodata import depends_of

        selected: dict[str, list[str]] = {}
        for platform, w in platforms.items():
            records = w.upstream.records if w.upstream else {}
            chosen, kept_names, dropped_names = [], set(), set()
            for fn, d in w.decisions.items():  # one pass; names lowered once each
                if d.kept:
                    chosen.append(fn)
                    kept_names.add(records[fn].name)
                else:
                    dropped_names.add(records[fn].name)
            selected[platform] = chosen
            kept[platform] = {name.lower() for name in kept_names}
            dropped[platform] = {name.lower() for name in dropped_names}
            dropped[platform].update(unread.get(platform, ()))
        for platform, missing in missing_names(kept, dropped).items():
            w, chosen, found = platforms[platform], selected[platform], {}
            for start in range(0, len(chosen), DEPENDS_CHUNK):  # a chunk's strings at a time
                found.update(unsatisfied(
                    depends_of(w.upstream, chosen[start:start + DEPENDS_CHUNK]), missing))
            w.report.unsatisfied = found
