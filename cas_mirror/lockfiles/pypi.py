"""The PyPI lockfile formats: pylock.toml (PEP 751), uv.lock and hash-pinned
requirements.txt (`name==version --hash=sha256:...`, pip's --require-hashes form).
Each file pin names its file (pylock.toml, uv.lock) or only the version and the hashes
allowed (requirements.txt: any file of that version with one of those hashes)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from . import LockfileError, PypiPin, line_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the backport of the same parser
    import tomli as tomllib

_CONTINUED = re.compile(r"\\\s*$")


def is_pypi_lockfile(path: str, text: str) -> bool:
    name = Path(path).name.lower()
    if any(line.strip() == "@EXPLICIT" for line in text.splitlines()):
        return False  # a conda explicit file (conda list --explicit > env.txt)
    return (name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml"))
            or name == "uv.lock" or name.endswith(".txt")
            or (name.endswith(".in") and "--hash" in text))


def read_pypi_lockfile(path: str, text: str) -> list[PypiPin]:
    name = Path(path).name.lower()
    if name.endswith(".toml") or name == "uv.lock":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LockfileError(f"lockfile {path}: malformed TOML ({exc})") from None
        return _uv_lock(path, text, doc) if name == "uv.lock" else _pylock(path, text, doc)
    return _requirements(path, text)


def _filename(url: str) -> str:
    return unquote(urlsplit(url).path.rpartition("/")[2])


def _pylock(path: str, text: str, doc: dict[str, Any]) -> list[PypiPin]:
    if "lock-version" not in doc:
        raise LockfileError(f"lockfile {path}: no lock-version; not a pylock.toml (PEP 751)")
    out = []
    for package in doc.get("packages") or []:
        name, version = str(package.get("name", "")), package.get("version")
        files = _files(package)
        for item in files:
            url = item.get("url")
            filename = item.get("name") or (_filename(url) if url else None)
            if not filename:
                raise LockfileError(f"{path}:{line_of(text, name)}: a file of {name} has "
                                    "neither name nor url")
            sha256 = (item.get("hashes") or {}).get("sha256")
            out.append(PypiPin(name, str(version) if version else None,
                               f"{path}:{line_of(text, filename)}", filename=filename,
                               sha256=frozenset({sha256} if sha256 else ()), url=url))
    return out


def _files(package: dict[str, Any]) -> list[dict[str, Any]]:
    """A locked package's files: its wheels, then its sdist (pylock.toml and uv.lock
    spell them the same way)."""
    files = list(package.get("wheels") or [])
    if isinstance(package.get("sdist"), dict):
        files.append(package["sdist"])
    return files


def _uv_lock(path: str, text: str, doc: dict[str, Any]) -> list[PypiPin]:
    out = []
    for package in doc.get("package") or []:
        source = package.get("source") or {}
        if "registry" not in source:
            continue  # the project itself, a path or git dependency: not on an index
        name, version = str(package.get("name", "")), package.get("version")
        files = _files(package)
        for item in files:
            url = item.get("url")
            if not url:
                continue
            algo, _, digest = str(item.get("hash", "")).partition(":")
            out.append(PypiPin(name, str(version) if version else None,
                               f"{path}:{line_of(text, url)}", filename=_filename(url),
                               sha256=frozenset({digest} if algo == "sha256" else ()),
                               url=url))
    return out


def _requirements(path: str, text: str) -> list[PypiPin]:
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start = number + 1
        logical = lines[number]
        while _CONTINUED.search(logical) and number + 1 < len(lines):
            number += 1
            logical = _CONTINUED.sub(" ", logical) + lines[number]
        number += 1
        logical = logical.split(" #", 1)[0].strip()
        if not logical or logical.startswith("#") or logical.startswith("-"):
            continue
        words = logical.split()
        hashes = [w.split("=", 1)[1] for w in words if w.startswith("--hash=")]
        spec = " ".join(w for w in words if not w.startswith("--"))
        where = f"{path}:{start}"
        try:
            requirement = Requirement(spec)
        except InvalidRequirement as exc:
            raise LockfileError(f"{where}: not a requirement ({exc})") from None
        pinned = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(pinned) != 1 or not hashes:
            raise LockfileError(f"{where}: {requirement.name} is not pinned with hashes "
                                "(expected name==version --hash=sha256:...)")
        sha256 = set()
        for value in hashes:
            algo, _, digest = value.partition(":")
            if algo != "sha256" or len(digest) != 64:
                raise LockfileError(f"{where}: --hash={value} is not a sha256 hash")
            sha256.add(digest.lower())
        out.append(PypiPin(requirement.name, pinned[0], where, sha256=frozenset(sha256)))
    return out
