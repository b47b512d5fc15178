"""Blacklist / whitelist entries: parsing them from configuration and matching records.

An entry is one of (GUIDE section 1):

- a package name: ``flask``
- a glob over names: ``r-*``
- a name with a conda version spec (and optionally a build glob):
  ``numpy >=1.20,<2``, ``python 3.11.*``, ``numpy>=1.20``, ``openssl 3.* *_0``
- a conda-mirror style mapping, every key of which must match:
  ``{name: "r-*", version: ">=4", license: "*GPL*"}``. As in conda-mirror, each value is a
  case-insensitive glob over the record's field, except that a ``version`` containing an
  operator is a conda version spec. A whitelist mapping may also say
  ``include_dependencies: true``: the records it keeps bring their dependencies
  (conda/depends.py); it tests no field.

Parsing raises `EntryError` with a message for the user; matching is a pure function of the
entry and a record (a repodata dict). Version specs are evaluated with py-rattler, the
conda world's own implementation, so they mean exactly what they mean to conda/pixi.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from ..errors import did_you_mean, parse_items

_NAME_RE = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.*?\[\]!-]+?)\s*(?P<rest>(?:[=<>~].*|!=.*|\s.*)?)$")
_SPEC_OPERATOR = re.compile(r"[=<>!~|,]")
# Record fields a mapping entry may test. `platform` is accepted as a synonym of subdir.
MAPPING_KEYS = ("name", "version", "build", "build_number", "license", "license_family",
                "subdir", "platform", "fn")
CLOSURE_KEY = "include_dependencies"


class EntryError(ValueError):
    """An entry that cannot be understood; the message says why and what is allowed."""


@dataclass(frozen=True)
class Entry:
    """A parsed entry: an AND of field tests. `text` is how the user wrote it."""

    text: str
    name_glob: str
    version_spec: Any = None  # rattler.VersionSpec, or None
    field_globs: tuple[tuple[str, str], ...] = ()  # (record field, lowercase glob)
    include_dependencies: bool = False  # a whitelist mapping's own closure switch

    def matches(self, record: Mapping[str, Any], name_checked: bool = False) -> bool:
        """Does `record` match? `name_checked`: the caller already matched the name glob."""
        if not name_checked and not fnmatchcase(str(record.get("name", "")).lower(),
                                                self.name_glob):
            return False
        for field, glob in self.field_globs:
            if not fnmatchcase(str(record.get(field, "")).lower(), glob):
                return False
        if self.version_spec is not None:
            version = _parse_version(str(record.get("version", "")))
            if version is None or not self.version_spec.matches(version):
                return False
        return True


def parse_entry(raw: Any) -> Entry:
    """Parse one configured entry (a string or a mapping)."""
    if isinstance(raw, str):
        return _parse_string(raw)
    if isinstance(raw, Mapping):
        return _parse_mapping(raw)
    raise EntryError(
        f"entry {raw!r} is a {type(raw).__name__}; expected a package name, a glob, "
        "'name <version spec>' or a mapping like {name: 'r-*', version: '>=4'}"
    )


def parse_entries(raws: list[Any]) -> list[Entry]:
    return parse_items(raws, parse_entry, EntryError)


def _parse_string(text: str) -> Entry:
    match = _NAME_RE.match(text)
    if not text.strip() or not match:
        raise EntryError(
            f"entry {text!r} is not a package name, glob or 'name <version spec>'"
        )
    name = match.group("name").lower()
    rest = match.group("rest").strip()
    if not rest:
        return Entry(text=text, name_glob=name)
    parts = rest.split()
    if len(parts) > 2:
        raise EntryError(f"entry {text!r}: expected 'name [version spec] [build glob]', "
                         f"got {len(parts) + 1} words")
    spec = _version_spec(parts[0], text)
    globs = (("build", parts[1].lower()),) if len(parts) == 2 else ()
    return Entry(text=text, name_glob=name, version_spec=spec, field_globs=globs)


def _parse_mapping(raw: Mapping[Any, Any]) -> Entry:
    text = "{" + ", ".join(f"{k}: {v}" for k, v in raw.items()) + "}"
    if not raw:
        raise EntryError("an empty mapping matches every package; give at least one key")
    name_glob = "*"
    spec = None
    globs: list[tuple[str, str]] = []
    closure = False
    for key, value in raw.items():
        if key == CLOSURE_KEY:
            if not isinstance(value, bool):
                raise EntryError(f"mapping entry {text}: {CLOSURE_KEY} must be true or "
                                 f"false, got {value!r}")
            closure = value
            continue
        if not isinstance(key, str) or key.lower() not in MAPPING_KEYS:
            hint = did_you_mean(str(key), (*MAPPING_KEYS, CLOSURE_KEY))
            raise EntryError(
                f"mapping entry {text}: unknown key {key!r}{hint}; "
                f"allowed keys: {', '.join((*MAPPING_KEYS, CLOSURE_KEY))}"
            )
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise EntryError(
                f"mapping entry {text}: value of {key!r} must be a string, got {value!r}"
            )
        field = "subdir" if key.lower() == "platform" else key.lower()
        pattern = str(value)
        if field == "name":
            name_glob = pattern.lower()
        elif field == "version" and _SPEC_OPERATOR.search(pattern):
            spec = _version_spec(pattern, text)
        else:
            globs.append((field, pattern.lower()))
    return Entry(text=text, name_glob=name_glob, version_spec=spec, field_globs=tuple(globs),
                 include_dependencies=closure)


def _version_spec(spec_text: str, entry_text: str) -> Any:
    from rattler import VersionSpec  # imported only when an entry carries a spec
    from rattler.exceptions import InvalidVersionSpecError

    try:
        return VersionSpec(spec_text)
    except InvalidVersionSpecError as exc:
        raise EntryError(
            f"entry {entry_text!r}: {spec_text!r} is not a conda version spec ({exc}); "
            "examples: '>=1.20,<2', '3.11.*', '1.2|1.3'"
        ) from None


@lru_cache(maxsize=65536)
def _parse_version(text: str) -> Any:
    from rattler import Version
    from rattler.exceptions import InvalidVersionError

    try:
        return Version(text)
    except InvalidVersionError:
        return None  # an unparsable upstream version matches no spec
