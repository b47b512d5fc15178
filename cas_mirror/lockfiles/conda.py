"""The conda lockfile formats: pixi.lock (read by py-rattler), conda-lock.yml, explicit
`@EXPLICIT` files (conda list --explicit, conda-lock render) and environment.yml (not a
lock: its specs are solved by the conda sync with rattler). Their PyPI entries become
PyPI pins."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from ..text import safe
from . import CondaPin, EnvironmentFile, LockContents, LockfileError, PypiPin, line_of

_HEX = re.compile(r"^[0-9a-fA-F]+$")


def read_conda_lockfile(path: str, text: str, out: LockContents) -> None:
    name = Path(path).name.lower()
    if name.endswith("pixi.lock"):
        _pixi(path, text, out)
    elif any(line.strip() == "@EXPLICIT" for line in text.splitlines()):
        _explicit(path, text, out)
    else:
        doc = _yaml(path, text)
        if isinstance(doc, dict) and "package" in doc and "metadata" in doc:
            _conda_lock(path, text, doc, out)
        elif isinstance(doc, dict) and "dependencies" in doc:
            _environment(path, doc, out)
        else:
            raise LockfileError(
                f"lockfile {path}: not a format cas-sync reads (pixi.lock, conda-lock.yml, "
                "an @EXPLICIT file, environment.yml, pylock.toml, uv.lock or a hash-pinned "
                "requirements.txt)")


def _yaml(path: str, text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise LockfileError(f"lockfile {path}{line}: malformed YAML") from None


def _filename(url: str) -> str:
    return unquote(urlsplit(url).path.rpartition("/")[2])


def _pixi(path: str, text: str, out: LockContents) -> None:
    from rattler import CondaLockedBinaryPackage, LockFile, PypiLockedPackage

    try:
        lock = LockFile.from_path(path)
    except Exception as exc:  # noqa: BLE001 - rattler's own error types
        raise LockfileError(f"lockfile {path}: not a pixi.lock rattler can read "
                            f"({' '.join(str(exc).split())})") from None
    seen: set[str] = set()
    for _env_name, env in lock.environments():
        for platform in env.platforms():
            for package in env.packages(platform) or []:
                location = str(package.location)
                if location in seen:
                    continue
                seen.add(location)
                sha256, md5 = _hashes(package)
                at = text.rfind(location)  # its entry under `packages:`, not the list above
                where = f"{path}:{line_of(text, location, max(at, 0))}"
                hash_where = f"{path}:{line_of(text, sha256 or md5 or location, max(at, 0))}"
                if isinstance(package, CondaLockedBinaryPackage):
                    out.conda.append(CondaPin(str(package.name), where, url=location,
                                              sha256=sha256, md5=md5, hash_where=hash_where))
                elif isinstance(package, PypiLockedPackage):
                    out.pypi.append(PypiPin(str(package.name), str(package.version), hash_where,
                                            filename=_filename(location),
                                            sha256=frozenset({sha256} if sha256 else ()),
                                            url=location))


def _hashes(package) -> tuple[str | None, str | None]:
    """(sha256, md5) hex of a locked package; py-rattler's property fails on an entry
    that has no hashes (a PyPI entry written without them)."""
    try:
        hashes = package.hashes
    except AttributeError:
        return None, None
    sha256 = getattr(hashes, "sha256", None)
    md5 = getattr(hashes, "md5", None)
    return (sha256.hex() if sha256 else None), (md5.hex() if md5 else None)


def _conda_lock(path: str, text: str, doc: dict, out: LockContents) -> None:
    packages = doc.get("package")
    if not isinstance(packages, list):
        raise LockfileError(f"lockfile {path}: 'package' is not a list")
    for number, item in enumerate(packages, 1):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise LockfileError(f"lockfile {path}: package {number} has no url")
        url = item["url"]
        where = f"{path}:{line_of(text, url)}"
        hashes = item.get("hash") if isinstance(item.get("hash"), dict) else {}
        sha256, md5 = hashes.get("sha256"), hashes.get("md5")
        at = text.find(url)
        hash_where = f"{path}:{line_of(text, sha256 or md5 or url, max(at, 0))}"
        if item.get("manager") == "pip":
            out.pypi.append(PypiPin(str(item.get("name", "")), str(item.get("version", "")),
                                    where, filename=_filename(url),
                                    sha256=frozenset({sha256} if sha256 else ()), url=url))
        else:
            out.conda.append(CondaPin(str(item.get("name", "")), where, url=url,
                                      sha256=sha256, md5=md5, hash_where=hash_where))


def _explicit(path: str, text: str, out: LockContents) -> None:
    started = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "@EXPLICIT":
            started = True
            continue
        if not started or line.startswith("@"):
            continue
        url, _, fragment = line.partition("#")
        where = f"{path}:{number}"
        if "://" not in url:
            raise LockfileError(f"{where}: expected a package URL, got {safe(line)!r}")
        sha256 = md5 = None
        digest = fragment.removeprefix("sha256:")
        if fragment and not _HEX.match(digest):
            raise LockfileError(f"{where}: {fragment!r} is not an md5 or sha256 hash")
        if len(digest) == 64:
            sha256 = digest
        elif len(digest) == 32:
            md5 = digest
        elif fragment:
            raise LockfileError(f"{where}: {fragment!r} is not an md5 or sha256 hash")
        fn = _filename(url)
        out.conda.append(CondaPin(_package_name(fn), where, url=url, sha256=sha256, md5=md5))


def _package_name(fn: str) -> str:
    stem = fn.removesuffix(".conda").removesuffix(".tar.bz2")
    return stem.rsplit("-", 2)[0]


def _environment(path: str, doc: dict, out: LockContents) -> None:
    specs = []
    for item in doc.get("dependencies") or []:
        if isinstance(item, str):
            specs.append(item.split("::", 1)[-1])  # channel::name: the configured channels
        # {pip: [...]} entries are not pinned: nothing to mirror exactly
    if not specs:
        raise LockfileError(f"lockfile {path}: environment.yml has no conda dependencies")
    name = doc.get("name") if isinstance(doc.get("name"), str) else Path(path).stem
    platforms = doc.get("platforms") if isinstance(doc.get("platforms"), list) else []
    out.environments.append(EnvironmentFile(name, tuple(specs), path,
                                            tuple(str(p) for p in platforms)))
