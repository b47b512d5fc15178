"""The manifest of a bundle (`manifest.json`) and the checks that refuse a bad one.

A bundle is a folder `cas-bundle-<state>/` holding `manifest.json`, the volumes
`bundle.tar.001`, `bundle.tar.002`, ... (one tar stream cut into pieces: `cat` them to get
the tar) and, when signed, `manifest.json.sig`. The manifest says:

- `state`: the id of the mirror state the bundle brings an offline mirror to, and `base`:
  the state it starts from (null: an empty mirror); `chain` lists every earlier state,
  oldest first, so an import that is missing bundles can say which;
- `members`: in tar order, each file's path (relative to mirror_dir), size, sha256,
  mtime_ns and kind (`file`: packages, PyPI release files, shards; `metadata`: what is
  published after them);
- `deletions`: paths to remove once the metadata is published;
- `volumes`: each volume's name, size and sha256.

Everything in a manifest is checked before it is used: paths must stay inside the mirror
and outside hidden (state) folders, sizes and digests must be well-formed.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..errors import EXIT_REFUSED, CasError

FORMAT = "cas-mirror-bundle"
VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = MANIFEST + ".sig"
BUNDLE_PREFIX = "cas-bundle-"
VOLUME_PREFIX = "bundle.tar."

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_STATE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


class BundleRefused(CasError):
    """The bundle cannot be imported: it is damaged, unsigned or badly signed, or it does
    not continue the offline mirror's state. Nothing was published."""

    exit_code = EXIT_REFUSED


@dataclass
class Member:
    path: str
    size: int
    sha256: str
    mtime_ns: int
    kind: str  # "file" or "metadata"


@dataclass
class Volume:
    name: str
    size: int
    sha256: str


@dataclass
class Manifest:
    state: str
    base: str | None
    chain: list[str]
    created: str
    members: list[Member] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)

    def to_json(self) -> bytes:
        data = {"format": FORMAT, "version": VERSION, "state": self.state, "base": self.base,
                "chain": self.chain, "created": self.created, "members": self.members,
                "deletions": self.deletions, "volumes": self.volumes}
        return msgspec.json.format(msgspec.json.encode(data), indent=1) + b"\n"

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)


def new_state_id() -> str:
    """A state id: when (UTC) and 32 random bits, so ids sort by time and never collide."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def is_state_id(text: str) -> bool:
    return bool(_STATE.match(text))


def bundle_dirname(state: str) -> str:
    return BUNDLE_PREFIX + state


def volume_name(index: int) -> str:
    return f"{VOLUME_PREFIX}{index + 1:03d}"


def check_relpath(path: Any) -> str:
    """`path` if it is a plain relative path inside the mirror and outside hidden
    folders; raises ValueError saying what is wrong with it."""
    if not isinstance(path, str) or not path:
        raise ValueError("not a path")
    if path.startswith("/") or _CONTROL.search(path):
        raise ValueError("absolute, or holds a backslash or a control character")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError("empty, '.' or '..' component")
        if part.startswith("."):
            raise ValueError("hidden component (state folders are never carried)")
    return path


def load_manifest(folder: Path) -> Manifest:
    """The manifest of the bundle in `folder`, checked; refused when malformed."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BundleRefused(f"{path}: no manifest (is {folder} a bundle written by "
                            "cas-sync export, copied whole?)") from None
    except ValueError as exc:
        raise BundleRefused(f"{path}: not valid JSON ({exc})") from None
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleRefused(f"{path}: not a cas-mirror bundle manifest: {exc}") from None


def _parse(data: Any) -> Manifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"'format' is not {FORMAT!r}")
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r} (this cas-sync reads {VERSION})")
    state, base, chain = data["state"], data["base"], data["chain"]
    if not isinstance(state, str) or not is_state_id(state):
        raise ValueError(f"bad state id {state!r}")
    if not isinstance(chain, list) or not all(isinstance(s, str) and is_state_id(s)
                                              for s in chain):
        raise ValueError("bad 'chain'")
    if (chain[-1] if chain else None) != base:
        raise ValueError("'base' is not the last state of 'chain'")
    manifest = Manifest(state, base, chain, str(data["created"]))
    for index, raw in enumerate(data["members"]):
        try:
            member = Member(check_relpath(raw["path"]), _count(raw["size"]),
                            _digest(raw["sha256"]), _count(raw["mtime_ns"]), _kind(raw["kind"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"member {index + 1}: {exc}") from None
        manifest.members.append(member)
    for index, raw in enumerate(data["deletions"]):
        try:
            manifest.deletions.append(check_relpath(raw))
        except ValueError as exc:
            raise ValueError(f"deletion {index + 1} ({raw!r}): {exc}") from None
    for index, raw in enumerate(data["volumes"]):
        name = raw["name"]
        if name != volume_name(index):
            raise ValueError(f"volume {index + 1} is named {name!r}, not {volume_name(index)!r}")
        manifest.volumes.append(Volume(name, _count(raw["size"]), _digest(raw["sha256"])))
    paths = [m.path for m in manifest.members]
    if len(set(paths)) != len(paths) or set(paths) & set(manifest.deletions):
        raise ValueError("a path is listed twice")
    return manifest


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a count of bytes or ns, got {value!r}")
    return value


def _kind(value: Any) -> str:
    if value not in ("file", "metadata"):
        raise ValueError(f"kind {value!r} is neither 'file' nor 'metadata'")
    return value


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ValueError(f"expected a sha256 in hex, got {value!r}")
    return value
