"""`current_repodata.json`: the newest version of every package plus what those need.

The subset conda-index publishes (conda reads it first and falls back to the full
repodata.json when a solve needs more):

1. Records are seen as conda sees them: a `.tar.bz2` with a `.conda` twin is left out.
2. Per name, every record of the newest version (records sort by version, then build
   number, then timestamp).
3. One pass over the dependencies of those records: a dependency that nothing kept
   satisfies brings in every record of the newest version that satisfies it.
4. A name whose kept records carry `features`/`track_features` also keeps its newest
   record without features, so solvers can still avoid the feature.

Kept `.conda` records carry `legacy_bz2_md5`, the md5 of their `.tar.bz2` twin (null when
there is none). Version order and match specs are rattler's, i.e. conda's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _tar_name(fn: str) -> str:
    return fn[: -len(".conda")] + ".tar.bz2"


def _conda_name(fn: str) -> str:
    return fn[: -len(".tar.bz2")] + ".conda"


def build_current_repodata(doc: dict[str, Any]) -> dict[str, Any]:
    """The current_repodata document for repodata document `doc` (not modified)."""
    from rattler import MatchSpec, PackageRecord, Version

    try:  # py-rattler >= 0.28 wants build strings wrapped; older releases take str
        from rattler import BuildString
    except ImportError:  # pragma: no cover - depends on the installed py-rattler
        BuildString = str

    packages, conda = doc.get("packages", {}), doc.get("packages.conda", {})
    view = dict(conda)
    view.update((fn, r) for fn, r in packages.items() if _conda_name(fn) not in conda)

    versions: dict[str, Any] = {}

    def version(fn: str) -> Any:
        text = str(view[fn].get("version", ""))
        if text not in versions:
            try:
                versions[text] = Version(text)
            except Exception:  # noqa: BLE001 - rattler raises several types; unparsable
                # versions sort below every real one
                versions[text] = None
        return versions[text]

    def sort_key(fn: str) -> tuple:
        record, parsed = view[fn], version(fn)
        return (parsed is not None, _Ordered(parsed), record.get("build_number", 0) or 0,
                record.get("timestamp", 0) or 0, str(record.get("build", "")))

    groups: dict[str, list[str]] = {}
    for fn, record in view.items():
        groups.setdefault(str(record.get("name", "")), []).append(fn)
    for fns in groups.values():
        fns.sort(key=sort_key, reverse=True)

    prec_cache: dict[str, Any] = {}

    def as_prec(fn: str) -> Any:
        if fn not in prec_cache:
            record = view[fn]
            try:
                prec_cache[fn] = PackageRecord(
                    name=record["name"], version=record["version"],
                    build=BuildString(str(record.get("build", ""))),
                    build_number=record.get("build_number", 0),
                    subdir=record.get("subdir", doc.get("info", {}).get("subdir", "noarch")),
                    depends=list(record.get("depends", [])))
            except Exception:  # noqa: BLE001 - a record rattler refuses matches nothing
                prec_cache[fn] = None
        return prec_cache[fn]

    def matcher(spec_text: str) -> tuple[str, Callable[[str], bool]] | None:
        try:
            spec = MatchSpec(spec_text)
            name = spec.name.normalized
        except Exception:  # noqa: BLE001 - a dependency rattler cannot parse matches nothing
            return None

        def matches(fn: str) -> bool:
            prec = as_prec(fn)
            return prec is not None and spec.matches(prec)

        return name, matches

    def same_version(name: str, fn: str) -> set[str]:
        """Every record of `name` that `name=<version of fn>` matches, as conda selects."""
        found = matcher(f"{name}={view[fn]['version']}")
        if found is None:
            return {f for f in groups.get(name, []) if version(f) == version(fn)}
        return {f for f in groups.get(name, []) if found[1](f)} | {fn}

    kept: dict[str, set[str]] = {name: same_version(name, fns[0])
                                 for name, fns in groups.items()}

    expanded = {name: set(fns) for name, fns in kept.items()}
    seen: set[str] = set()
    for fns in kept.values():
        for fn in sorted(fns):
            for dep in view[fn].get("depends", []) or []:
                if dep in seen:
                    continue
                seen.add(dep)
                found = matcher(dep)
                if found is None:
                    continue
                name, matches = found
                if any(matches(f) for f in kept.get(name, ())):
                    continue
                candidates = [f for f in groups.get(name, []) if matches(f)]
                if candidates:
                    expanded.setdefault(name, set()).update(same_version(name, candidates[0]))

    for name, fns in expanded.items():
        if not any(_has_features(view[f]) for f in fns):
            continue
        newest = max((f for f in fns), key=sort_key)
        for fn in groups.get(name, []):
            if not _has_features(view[fn]) and _version_le(version(fn), version(newest)):
                fns.add(fn)
                break

    keep = set().union(*expanded.values()) if expanded else set()
    current = {k: v for k, v in doc.items() if k not in ("packages", "packages.conda")}
    current["packages"] = {fn: packages[fn] for fn in keep if fn in packages}
    current["packages.conda"] = {
        fn: {**conda[fn], "legacy_bz2_md5": packages.get(_tar_name(fn), {}).get("md5")}
        for fn in keep if fn in conda}
    return current


def _has_features(record: dict[str, Any]) -> bool:
    return bool(record.get("track_features") or record.get("features"))


def _version_le(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None
    return a <= b


class _Ordered:
    """Wraps a rattler Version (or None) so that tuples holding it sort."""

    __slots__ = ("value",)
    __hash__ = None  # ordered, never used as a key

    def __init__(self, value: Any):
        self.value = value

    def __lt__(self, other: _Ordered) -> bool:
        if self.value is None or other.value is None:
            return self.value is None and other.value is not None
        return self.value < other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ordered) and (
            self.value == other.value if self.value is not None and other.value is not None
            else self.value is other.value)
