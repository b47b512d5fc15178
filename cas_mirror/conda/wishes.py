"""What the configuration asks for beyond the filter pipeline, applied to each channel's
decisions between filtering and planning (gather.py): the files lockfiles name
(`lockfiles`, `--from-lock`), the solutions of `environments` (`closure: solve`, and
environment.yml files) and the dependency closure (`include_dependencies`: depends.py).

Order per channel: lockfile files and solutions are kept first (each says why: "named by
pixi.lock:12", "solution of environment analysis"); then the closure follows the kept
records. For a sharded upstream the names a round asks for are only known once the shards
of the previous round are read, so each round hands the names no record provides yet to
`read_more` (which reads those shards and filters the platform again) and the round is
redone until nothing new is read.

A lockfile file that upstream does not have, or has with another hash, is a
`LockfileError` naming the lockfile and line: nothing is downloaded or published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..lockfiles import LockfileError, read_lockfiles
from .closure import NOARCH, dependency_name
from .depends import blocked_by, close, depends_list, roots
from .fetch import ChannelSource
from .filter import Decision, FilterSpec
from .repodata import restricted_document
from .solve import Environment, environments_of, solve_environment

LOCKFILE, SOLVE = "lockfile", "solve"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockedFile:
    name: str
    sha256: str | None
    md5: str | None
    where: str  # "FILE:LINE"
    hash_where: str  # the line of its hash


@dataclass
class Wishes:
    spec: FilterSpec
    everything: bool = False  # include_dependencies: true at the top level
    follows: bool = False  # any closure at all (top level or a whitelist mapping)
    environments: list[Environment] = field(default_factory=list)
    # (channel folder, subdir) -> file name -> what the lockfile says
    locked: dict[tuple[str, str], dict[str, LockedFile]] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Config, spec: FilterSpec, sources: list[ChannelSource]) -> Wishes:
        wishes = cls(spec, everything=bool(config.include_dependencies))
        wishes.follows = wishes.everything or any(e.include_dependencies
                                                  for e in spec.whitelist)
        if config.closure == "solve":
            wishes.environments = environments_of(config.environments)
        if config.lockfiles:
            contents = read_lockfiles(config.lockfiles)
            wishes.environments += [Environment(e.name, e.platforms or _platforms(config),
                                                e.specs, e.where)
                                    for e in contents.environments]
            for pin in contents.conda:
                source, subdir, fn = _locate(pin.url, pin.channel, pin.subdir, pin.filename,
                                             sources, pin.where)
                if config.platforms is not None and subdir not in config.platforms:
                    raise LockfileError(f"{pin.where}: {fn} is for platform {subdir}, "
                                        f"which is not in {config.where('platforms')}")
                wishes.locked.setdefault((source.path, subdir), {})[fn] = LockedFile(
                    pin.name, pin.sha256, pin.md5, pin.where, pin.hash_where or pin.where)
        return wishes

    def names(self, source: ChannelSource, platform: str) -> frozenset[str]:
        """The names a sharded upstream must read whatever the filters say."""
        locked = self.locked.get((source.path, platform), {})
        names = {f.name.lower() for f in locked.values()}
        for env in self.environments:
            if not env.platforms or platform in env.platforms or platform == NOARCH:
                names.update(n for s in env.specs if (n := dependency_name(s)))
        return frozenset(names)


def _platforms(config: Config) -> tuple[str, ...]:
    return tuple(p for p in (config.platforms or ()) if p != NOARCH)


def _locate(url: str | None, channel: str | None, subdir: str | None, fn: str | None,
            sources: list[ChannelSource], where: str) -> tuple[ChannelSource, str, str]:
    """The configured channel, subdir and file name a lockfile entry means."""
    if url:
        for source in sources:
            if url.startswith(source.url + "/"):
                rest = url[len(source.url) + 1:].split("/")
                if len(rest) == 2:
                    return source, rest[0], rest[1]
        if channel is None:
            channel, _, tail = url.rpartition("/")[0].rpartition("/")
            subdir, fn = tail, url.rpartition("/")[2]
    for source in sources:
        if channel is not None and subdir and fn and \
                channel.rstrip("/") in (source.name, source.path, source.url):
            return source, subdir, fn
    named = ", ".join(s.name for s in sources)
    raise LockfileError(f"{where}: {url or f'{channel}/{subdir}/{fn}'} is not in a configured "
                        f"channel (channels: {named})")


def complete(work: list, wishes: Wishes, read_more: Callable[[Any, set[str]], bool]) -> None:
    """Apply the wishes to every channel of `work` (gather.Work), in place."""
    by_channel: dict[str, dict[str, Any]] = {}
    for w in work:
        if w.report.error is None:
            by_channel.setdefault(w.source.path, {})[w.platform] = w
    problems: list[str] = []
    for path, platforms in by_channel.items():
        if wishes.environments:
            _read_for_solving(platforms, wishes, read_more)
        _asked(path, platforms, wishes, problems)
        if not wishes.follows:
            continue
        while True:
            usable = {p: w for p, w in platforms.items() if w.upstream is not None}
            result = close({p: (w.upstream.records, w.decisions) for p, w in usable.items()},
                           wishes.spec,
                           {p: roots(w.upstream.records, w.decisions, wishes.spec,
                                     wishes.everything) for p, w in usable.items()})
            read = [read_more(platforms[p], names) for p, names in sorted(result.wanted.items())
                    if p in platforms]
            if not any(read):
                break
            _asked(path, platforms, wishes, [])
        for platform, pulled in result.pulled.items():
            platforms[platform].decisions = result.decisions[platform]
            log.info("%s/%s: the closure adds %d records", path, platform, len(pulled))
        for b in result.blocked:
            platforms[b.platform].report.blocked.append(b)
    if problems:
        raise LockfileError("\n".join(problems))


def _asked(path: str, platforms: dict[str, Any], wishes: Wishes, problems: list[str]) -> int:
    """Keep the lockfile files and the environments' solutions; returns how many."""
    count = 0
    for platform, w in platforms.items():
        locked = wishes.locked.get((path, platform), {})
        records = w.upstream.records if w.upstream else {}
        for fn, pin in sorted(locked.items()):
            record = records.get(fn)
            if record is None:
                problems.append(f"{pin.where}: {fn} is not in upstream {path}/{platform}")
                continue
            for algo, want in (("sha256", pin.sha256), ("md5", pin.md5)):
                have = record.get(algo)
                if want and have and want.lower() != str(have).lower():
                    problems.append(f"{pin.hash_where}: {algo} of {fn} is {want}, upstream "
                                    f"{path}/{platform} has {have}")
                    break
            else:
                w.decisions[fn] = Decision(True, LOCKFILE, f"named by {pin.where}")
                count += 1
    for env in wishes.environments:
        count += _solve(env, path, platforms, wishes.spec)
    return count


def _allowed_document(w, spec: FilterSpec) -> bytes:
    records = w.upstream.records
    allowed = {fn for fn, d in w.decisions.items()
               if d.kept or blocked_by(records[fn], d, spec) is None}
    return restricted_document(w.upstream, allowed)


def _solve(env: Environment, path: str, platforms: dict[str, Any], spec: FilterSpec) -> int:
    targets = [p for p in (env.platforms or sorted(platforms)) if p != NOARCH]
    documents = {p: _allowed_document(w, spec) for p, w in platforms.items()
                 if w.upstream is not None}
    url = next(iter(platforms.values())).source.url
    count = 0
    for platform in targets:
        if platform not in platforms:
            continue
        solution, why = solve_environment(env, platform, [(url, documents)])
        w = platforms[platform]
        if why is not None:
            from .depends import Blocked

            place = f" ({env.where})" if env.where else ""
            w.report.blocked.append(Blocked(platform, f"environment {env.name}{place}",
                                            ", ".join(env.specs), why))
            continue
        for _url, subdir, fn in solution:
            target = platforms.get(subdir)
            if target is not None and fn in target.decisions:
                target.decisions[fn] = Decision(True, SOLVE,
                                                f"solution of environment {env.name}")
                count += 1
    return count


def _read_for_solving(platforms: dict[str, Any], wishes: Wishes,
                      read_more: Callable[[Any, set[str]], bool]) -> None:
    """For a sharded upstream: read the shards of every name the environments could
    need (the names their specs reach through `depends`, whatever the version)."""
    seen: set[str] = set()
    todo = {n for env in wishes.environments for s in env.specs if (n := dependency_name(s))}
    while todo:
        seen |= todo
        for w in platforms.values():
            read_more(w, todo)
        found = set()
        for w in platforms.values():
            if w.upstream is None:
                continue
            for record in w.upstream.records.values():
                if str(record.name).lower() in seen:
                    found.update(n for d in depends_list(record) if (n := dependency_name(d)))
        todo = found - seen

