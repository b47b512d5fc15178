"""cas-index on a channel kept in a `Storage` (``cas-index s3://bucket/channel``).

cas_index indexes folders and knows nothing of object storage; this module gives it one.
A local staging copy of the channel, under a state folder, holds the packages (each new or
replaced package is downloaded once: the object's ETag is remembered) and the outputs of
the previous run; `cas_index.channel.index_channel` runs on it unchanged, with its cache,
its "nothing changed" check and its lock (runs on one machine wait for each other). Then
the outputs whose bytes changed are published, in the order clients need:

1. shards (content-addressed: a new name each time), then the other platform outputs,
   then the shard index, then repodata.json.zst / .bz2, repodata.json last;
2. the channel's channeldata.json and index.html after every platform;
3. only then, stale outputs the index no longer has are deleted.

A run for some platforms (``s3://bucket/channel/linux-64``, ``--subdir``) stages, indexes,
publishes and deletes only theirs, so machines can index different platforms of one
channel; channeldata.json and index.html are written by runs of the whole channel.

Every output is written with a conditional PUT against what the run listed at its start
(If-Match its ETag, or If-None-Match for a new key), so a second indexer that published
in between (on another machine) is detected: this run stops with `Conflict` (exit 3) and
the next run starts from the newer state. Packages are never written: they are the input.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cas_index.channel import index_channel
from cas_index.layout import (
    CHANNEL_OUTPUTS,
    KNOWN_SUBDIRS,
    PATCH_FILE,
    REPODATA,
    SHARDS_DIR,
    SUBDIR_OUTPUTS,
    is_package_name,
    publishing_rank,
)
from cas_index.model import ChannelReport, Options

from .digests import file_digest
from .paths import bucket_work_dir
from .storage import NEW, Conflict, ObjectInfo, Storage

log = logging.getLogger(__name__)

STATE_FILE = "stored-index.json"
STATE_VERSION = 1


@dataclass
class StoredIndexResult:
    """What a run did to the store: the index report, and keys downloaded, published and
    deleted."""

    report: ChannelReport
    downloaded: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def index_stored_channel(storage: Storage, channel_name: str, state_dir: Path,
                         subdirs: list[str] | None, options: Options) -> StoredIndexResult:
    """Index the channel at the root of `storage` through the staging copy in `state_dir`."""
    work = state_dir / channel_name
    work.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / STATE_FILE
    state = _load_state(state_path)
    listed = {info.key: info for info in storage.list("")}
    scope = _scope(subdirs, listed)
    downloaded = _stage_inputs(storage, listed, work, state, scope)
    _save_state(state_path, state)
    report = index_channel(work, sorted(scope) if scope is not None else None, options)
    result = StoredIndexResult(report, downloaded)
    try:
        result.published = _publish_outputs(storage, listed, work, state, scope)
    finally:
        _save_state(state_path, state)
    result.deleted = _delete_stale(storage, listed, work, state, scope)
    _save_state(state_path, state)
    return result


# ---------------------------------------------------------------------- inputs


def _scope(subdirs: list[str] | None, listed: dict[str, ObjectInfo]) -> set[str] | None:
    """The platforms this run owns: None for the whole channel; else the ones asked for,
    plus noarch while the store has no noarch/repodata.json (clients need one). Another
    machine may be indexing the other platforms: their objects, and the channel's own
    files (which a run of the whole channel writes), are left alone."""
    if subdirs is None:
        return None
    wanted = set(subdirs)
    if f"noarch/{REPODATA}" not in listed:
        wanted.add("noarch")
    return wanted


def _in_scope(key: str, scope: set[str] | None) -> bool:
    if scope is None:
        return True
    subdir, slash, _ = key.partition("/")
    return bool(slash) and subdir in scope


def _is_input(key: str) -> bool:
    """A package, or patch instructions someone put in a platform folder."""
    subdir, _, name = key.partition("/")
    return subdir in KNOWN_SUBDIRS and "/" not in name and (
        is_package_name(name) or name == PATCH_FILE)


def _stage_inputs(storage: Storage, listed: dict[str, ObjectInfo], work: Path,
                  state: dict, scope: set[str] | None) -> list[str]:
    """Make the staging copy's packages those of the store: download new and replaced
    ones, delete the ones gone. Returns the keys downloaded."""
    inputs = state["inputs"]
    downloaded = []
    for key, info in sorted(listed.items()):
        if not _is_input(key) or not _in_scope(key, scope):
            continue
        if key.endswith(PATCH_FILE) and state["outputs"].get(key, {}).get("etag") == info.etag:
            continue  # our own published copy of patch instructions
        target = work / key
        if inputs.get(key) == info.etag and target.is_file():
            continue
        log.info("downloading %s", storage.describe(key))
        got = storage.download(key, target)
        if got is None:  # deleted since the listing: treat as gone
            continue
        # A fixed mtime per object version keeps cas-index's cache valid across runs.
        os.utime(target, ns=(int(got.modified * 1e9),) * 2)
        inputs[key] = got.etag
        downloaded.append(key)
    for key in sorted(set(inputs) - set(listed)):
        if not _in_scope(key, scope):
            continue
        (work / key).unlink(missing_ok=True)
        del inputs[key]
    # Local packages the store never had (a previous, killed staging) are not indexed.
    for subdir in KNOWN_SUBDIRS if scope is None else scope:
        folder = work / subdir
        if folder.is_dir():
            for entry in os.scandir(folder):
                key = f"{subdir}/{entry.name}"
                if is_package_name(entry.name) and key not in inputs:
                    os.unlink(entry.path)
    return downloaded


# ---------------------------------------------------------------------- outputs


def _local_outputs(work: Path) -> list[str]:
    """The output keys of the staging copy, in publishing order (`publishing_rank` within
    the platforms, the channel's outputs after every platform)."""
    names: list[tuple[str, str]] = []  # (subdir, name in it)
    for subdir in sorted(KNOWN_SUBDIRS):
        folder = work / subdir
        if not folder.is_dir():
            continue
        for name in SUBDIR_OUTPUTS:
            path = folder / name
            if name == SHARDS_DIR:
                if path.is_dir():
                    names += [(subdir, f"{SHARDS_DIR}/{n}") for n in os.listdir(path)
                              if not n.startswith(".")]
            elif path.is_file():
                names.append((subdir, name))
    names.sort(key=lambda item: (publishing_rank(item[1]), item))
    channel = [name for name in CHANNEL_OUTPUTS if (work / name).is_file()]
    return [f"{subdir}/{name}" for subdir, name in names] + channel


def _publish_outputs(storage: Storage, listed: dict[str, ObjectInfo], work: Path,
                     state: dict, scope: set[str] | None) -> list[str]:
    outputs = state["outputs"]
    published = []
    for key in _local_outputs(work):
        if not _in_scope(key, scope):
            continue  # another platform's (maybe older) copy, or the channel's files
        path = work / key
        sha256 = file_digest(path)
        remote = listed.get(key)
        known = outputs.get(key)
        if known and remote and known["etag"] == remote.etag and known["sha256"] == sha256:
            continue  # the store holds exactly what we published
        shard = f"/{SHARDS_DIR}/" in key
        if shard and remote is not None:
            continue  # named by the hash of its bytes: the same name holds the same bytes
        expect = remote.etag if remote is not None else NEW
        log.info("publishing %s", storage.describe(key))
        try:
            info = storage.put_bytes(key, path.read_bytes(), expect=expect)
        except Conflict:
            if not shard:
                raise
            continue  # another indexer published the same shard first
        outputs[key] = {"etag": info.etag, "sha256": sha256}
        published.append(key)
    return published


def _delete_stale(storage: Storage, listed: dict[str, ObjectInfo], work: Path,
                  state: dict, scope: set[str] | None) -> list[str]:
    """Outputs in the store that the staging copy no longer has (dropped shards past their
    grace period, current_repodata.json turned off, ...), after the metadata is out."""
    present = set(_local_outputs(work))
    outputs = state["outputs"]
    deleted = []
    for key in sorted(listed):
        if key in present or _is_input(key) or not _is_output(key) or not _in_scope(key, scope):
            continue
        log.info("deleting %s", storage.describe(key))
        storage.delete(key)
        outputs.pop(key, None)
        deleted.append(key)
    return deleted


def _is_output(key: str) -> bool:
    if key in CHANNEL_OUTPUTS:
        return True
    subdir, _, rest = key.partition("/")
    if subdir not in KNOWN_SUBDIRS:
        return False
    return rest in SUBDIR_OUTPUTS or (rest.startswith(f"{SHARDS_DIR}/") and rest.count("/") == 1)


# ---------------------------------------------------------------------- state




def _load_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        state = {}
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        state = {"version": STATE_VERSION}
    state.setdefault("inputs", {})
    state.setdefault("outputs", {})
    return state


def _save_state(path: Path, state: dict) -> None:
    from .storage.base import write_file_atomically

    write_file_atomically(path, [json.dumps(state, sort_keys=True).encode()])


def default_state_dir(location: str) -> Path:
    """Where the staging copy of a stored channel lives by default:
    $XDG_CACHE_HOME/cas-mirror/stored-index/<bucket>/<prefix> (~/.cache when unset)."""
    return bucket_work_dir(location, "stored-index", kept=False)


def channel_key_parts(prefix: str) -> tuple[str, str | None]:
    """(channel prefix, platform) of `bucket/prefix` or `bucket/prefix/linux-64`."""
    head, _, last = prefix.rpartition("/")
    if last in KNOWN_SUBDIRS:
        return head, last
    return prefix, None


# ---------------------------------------------------------------------- command line


def run_index_command(paths: tuple[str, ...], subdirs: tuple[str, ...], options: Options,
                      quiet: bool, as_json: bool) -> int:
    """`cas-index s3://bucket/channel[/platform] ...`: index each stored channel; the
    endpoint and credentials come from the cas-mirror configuration (README, "Object
    storage"). Errors are one line and the documented exit status."""
    import click

    from cas_index.cli import PROG, json_summary, render_report

    from . import config as cfg
    from .errors import CasError
    from .storage import S3Settings, is_bucket_url, open_storage, parse_bucket_url

    reports = []
    try:
        settings = S3Settings.from_config(cfg.load_config(None))
        for location in paths:
            if not is_bucket_url(location):
                raise CasError(f"{location}: give either folders or s3:// locations, not both")
            url = parse_bucket_url(location, location)
            prefix, platform = channel_key_parts(url.prefix)
            if not prefix:
                raise CasError(f"{location}: name the channel inside the bucket "
                               "(s3://bucket/channel)")
            channel_url = f"s3://{url.bucket}/{prefix}"
            storage = open_storage(channel_url, settings, location)
            wanted = sorted({*subdirs, platform} - {None}) or None
            result = index_stored_channel(storage, prefix.rsplit("/", 1)[-1],
                                          default_state_dir(channel_url), wanted, options)
            report = result.report
            reports.append(report)
            for warning in report.all_warnings:
                click.echo(f"{PROG}: warning: {warning}", err=True)
            for skipped in report.all_skipped:
                click.echo(f"{PROG}: skipped {channel_url}/{skipped.file}: {skipped.reason}",
                           err=True)
            if not quiet and not as_json:
                click.echo(render_report(report))
                click.echo(f"{channel_url}: {len(result.downloaded)} downloaded, "
                           f"{len(result.published)} published, {len(result.deleted)} deleted")
    except CasError as exc:
        click.echo(f"{PROG}: error: {exc}", err=True)
        return exc.exit_code
    if as_json:
        click.echo(json.dumps(json_summary(reports), indent=2))
    return max((r.exit_code for r in reports), default=0)
