"""`closure: solve`: the configured `environments` (and environment.yml files), each
solved with rattler's solver against the upstream records the filters allow, and the union
of the solutions added to the mirror (the smallest mirror that installs them, newest
builds: rattler's "highest" strategy).

The solver sees every record of the channel's platform and noarch except those blocked by
`license_blacklist` or a blacklist entry other than the bare `*` (the same rule as the
dependency closure: depends.py). Virtual packages are those a client of that platform
reports, at versions high enough for any build (VIRTUAL below), so a solution does not
depend on the machine running cas-sync. A spec list that cannot be solved is reported
with the solver's explanation, naming the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.checks import BadValue, describe
from ..config.keys import KNOWN_PLATFORMS
from .closure import NOARCH

log = logging.getLogger(__name__)

# What a client of each platform family reports (versions: any build's lower bound).
VIRTUAL = {
    "linux": [("__unix", "0", "0"), ("__linux", "6.99", "0"), ("__glibc", "2.99", "0")],
    "osx": [("__unix", "0", "0"), ("__osx", "99", "0")],
    "win": [("__win", "0", "0")],
}
ENVIRONMENT_KEYS = ("name", "platforms", "specs")


@dataclass(frozen=True)
class Environment:
    name: str
    platforms: tuple[str, ...]
    specs: tuple[str, ...]
    where: str = ""  # the file naming it, for messages ("" for the config key)


def check_environments(value: Any) -> list[dict]:
    """The `environments` key: a list of {name, platforms, specs} mappings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadValue(f"expected a list of {{name, platforms, specs}} mappings, got "
                       f"{describe(value)}")
    from rattler import MatchSpec

    seen = set()
    out = []
    for index, item in enumerate(value, 1):
        if not isinstance(item, dict) or set(item) - set(ENVIRONMENT_KEYS) \
                or not {"name", "specs"} <= set(item):
            raise BadValue(f"item {index}: expected a mapping with name, specs and "
                           f"optionally platforms, got {describe(item)}")
        name = item["name"]
        if not isinstance(name, str) or not name.strip() or name in seen:
            raise BadValue(f"item {index}: name must be a unique non-empty string, got "
                           f"{describe(name)}")
        seen.add(name)
        platforms = item.get("platforms") or []
        specs = item["specs"]
        for what, values in (("platforms", platforms), ("specs", specs)):
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise BadValue(f"item {index} ({name}): {what} must be a list of strings")
        for platform in platforms:
            if platform not in KNOWN_PLATFORMS:
                raise BadValue(f"item {index} ({name}): unknown platform {platform!r}")
        for spec in specs:
            try:
                MatchSpec(spec)
            except Exception as exc:  # noqa: BLE001 - rattler raises its own error types
                raise BadValue(f"item {index} ({name}): {spec!r} is not a MatchSpec "
                               f"({exc})") from None
        out.append({"name": name, "platforms": list(platforms), "specs": list(specs)})
    return out


def environments_of(values: list[dict]) -> list[Environment]:
    return [Environment(e["name"], tuple(e["platforms"]), tuple(e["specs"])) for e in values]


def virtual_packages(platform: str) -> list:
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    return [GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
            for n, v, b in VIRTUAL.get(platform.split("-")[0], [])]


def solve_environment(env: Environment, platform: str,
                      documents: Sequence[tuple[str, Mapping[str, bytes]]]
                      ) -> tuple[list[tuple[str, str, str]], str | None]:
    """Solve `env` for `platform`: `documents` is, per channel in priority order,
    (channel URL, subdir -> repodata JSON bytes of the allowed records). Returns
    ([(channel URL, subdir, file name)], None), or ([], why) when it cannot be solved."""
    import asyncio  # (here: importing asyncio costs every sync ~20 ms of start-up)
    import tempfile

    from rattler import Channel, SparseRepoData, solve_with_sparse_repodata

    with tempfile.TemporaryDirectory(prefix="cas-solve-") as scratch:
        sparse = []
        by_url: dict[str, str] = {}
        for number, (url, subdirs) in enumerate(documents):
            for subdir in (platform, NOARCH):
                if subdir not in subdirs:
                    continue
                path = Path(scratch) / f"{number}-{subdir}.json"
                path.write_bytes(subdirs[subdir])
                sparse.append(SparseRepoData(Channel(url), subdir, path))
            by_url[url.rstrip("/")] = url
        try:
            records = asyncio.run(solve_with_sparse_repodata(
                list(env.specs), sparse, virtual_packages=virtual_packages(platform)))
        except Exception as exc:  # noqa: BLE001 - rattler's SolverError: the message is the explanation
            return [], " ".join(str(exc).split())
        del sparse
    out = []
    for record in records:
        url = by_url.get(str(record.channel).rstrip("/"), str(record.channel))
        out.append((url, record.subdir, record.file_name))
    log.info("environment %s (%s): %d packages", env.name, platform, len(out))
    return out, None
