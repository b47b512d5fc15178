"""Lockfiles as input (`lockfiles:`, `cas-sync --from-lock FILE`): reading pixi.lock,
conda-lock.yml, `@EXPLICIT` files and environment.yml (conda.py), and pylock.toml (PEP
751), uv.lock and hash-pinned requirements.txt (pypi.py) into plain pins: what file, with
which hash, named where ("FILE:LINE"). The conda sync keeps the conda pins
(conda/wishes.py) and solves the environments; the PyPI sync mirrors the PyPI pins
(pypi/locked.py). Which format a file is comes from its name, then its content.

A file that cannot be read or is not the format its name says is a `LockfileError`
(exit 2) naming the file (and line where there is one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import ConfigError, os_problem
from ..userfiles import MAX_LOCKFILE_TEXT, read_text


class LockfileError(ConfigError):
    """A lockfile that cannot be used: the message names the file and line."""


@dataclass(frozen=True)
class CondaPin:
    name: str
    where: str  # "FILE:LINE"
    url: str | None = None
    channel: str | None = None  # when there is no URL: channel, subdir and file name
    subdir: str | None = None
    filename: str | None = None
    sha256: str | None = None
    md5: str | None = None
    hash_where: str | None = None  # where the hash is written, when not on the same line


@dataclass(frozen=True)
class PypiPin:
    name: str  # as written
    version: str | None
    where: str
    filename: str | None = None  # None: any file of the version whose hash is listed
    sha256: frozenset[str] = frozenset()  # allowed hashes (empty: no hash given)
    url: str | None = None


@dataclass(frozen=True)
class EnvironmentFile:
    name: str
    specs: tuple[str, ...]
    where: str
    platforms: tuple[str, ...] = ()


@dataclass
class LockContents:
    conda: list[CondaPin] = field(default_factory=list)
    pypi: list[PypiPin] = field(default_factory=list)
    environments: list[EnvironmentFile] = field(default_factory=list)


def read_lockfiles(paths: Iterable[str]) -> LockContents:
    from .conda import read_conda_lockfile
    from .pypi import is_pypi_lockfile, read_pypi_lockfile

    out = LockContents()
    for path in paths:
        try:
            text = read_text(path, MAX_LOCKFILE_TEXT)
        except UnicodeDecodeError as exc:
            raise LockfileError(f"lockfile {path}: not UTF-8 text (byte {exc.start})") \
                from None
        except OSError as exc:
            raise LockfileError(f"lockfile {path}: cannot read it ({os_problem(exc)})") \
                from None
        if is_pypi_lockfile(path, text):
            out.pypi.extend(read_pypi_lockfile(path, text))
        else:
            read_conda_lockfile(path, text, out)
    return out


def line_of(text: str, needle: str, start: int = 0) -> int:
    """The 1-based line of the first `needle` in `text` (1 when absent)."""
    at = text.find(needle, start)
    return text.count("\n", 0, at) + 1 if at >= 0 else 1
