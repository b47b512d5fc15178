"""Which records a `depends` entry selects: the entry is a MatchSpec and means what it
means to rattler (name, version, build string, build number, hashes, subdir).

- `parsed(text)`: the entry as a `Spec` (None when the text is not a MatchSpec). It
  tests one record; an entry that tests the version alone (`numpy >=1.22`, most of a
  channel's dependencies) also answers for one version, so that the closure
  (depends.py) asks once per distinct version of a name, not once per record.

Pure functions; rattler parses the spec and tests versions.
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from .entries import _parse_version

log = logging.getLogger(__name__)
# version spec text -> record version -> whether it matches (shared by every entry with
# that version spec: ">=1.0" is asked of thousands of names)
_ANSWERS: dict[str, dict[Any, bool]] = {}


class Spec:
    """A parsed entry. `test(record)` tests one record. An entry that tests the version
    alone has `version_text` set, and `version_matches(version)` answers for a version
    string (remembered per version spec: ">=1.0" is asked of thousands of names); one
    that names the package alone has `everything` set."""

    __slots__ = ("_contains", "answers", "everything", "test", "version_text")

    def __init__(self, test, version_text=None, contains=None, everything=False) -> None:
        self.test, self.version_text, self.everything = test, version_text, everything
        self._contains = contains
        # version -> whether it matches (asked through version_matches)
        self.answers = _ANSWERS.setdefault(version_text, {}) if version_text else {}

    def version_matches(self, have: Any) -> bool:
        hit = self.answers.get(have)
        if hit is None:
            parsed = _parse_version(have) if type(have) is str else None
            hit = self.answers[have] = parsed is not None and self._contains(parsed)
        return hit


@lru_cache(maxsize=65536)
def parsed(text: str) -> Spec | None:
    """The entry `text` parsed (None when it is not a MatchSpec)."""
    from rattler import MatchSpec
    from rattler.exceptions import InvalidMatchSpecError, InvalidVersionSpecError

    try:
        match = MatchSpec(text)
        version = _version_spec(match.version) if match.version else None
    except (InvalidMatchSpecError, InvalidVersionSpecError, ValueError) as exc:
        log.debug("dependency %r is not a MatchSpec (%s); not followed", text, exc)
        return None
    build, number = match.build, _number_test(match.build_number)
    fields = [(f, str(getattr(match, f)).lower()) for f in ("sha256", "md5", "subdir")
              if getattr(match, f, None)]
    if build is None and number is None and not fields:
        if version is None:
            return Spec(lambda record: True, everything=True)
        spec = Spec(None, match.version, version.matches)
        spec.test = lambda record: spec.version_matches(record.version)
        return spec

    def matches(record: Any) -> bool:
        if version is not None:
            parsed = _parse_version(str(record.version))
            if parsed is None or not version.matches(parsed):
                return False
        if build is not None and not _build_matches(build, str(record.build)):
            return False
        if number is not None and not number(record.build_number):
            return False
        return all(str(getattr(record, f, "")).lower() == v for f, v in fields)

    return Spec(matches)


@lru_cache(maxsize=4096)
def _version_spec(text: str):
    """rattler's VersionSpec of `text` (thousands of entries share a few, `>=1.0`)."""
    from rattler import VersionSpec

    return VersionSpec(text)


def _build_matches(pattern: str, build: str) -> bool:
    if pattern.startswith("^") and pattern.endswith("$"):
        import re

        return re.match(pattern, build) is not None
    return fnmatchcase(build, pattern)


def _number_test(text: str | None):
    if not text:
        return None
    for op in (">=", "<=", "!=", "==", ">", "<", "="):
        if text.startswith(op):
            value, operator = text[len(op):], op
            break
    else:
        value, operator = text, "=="
    try:
        wanted = int(value)
    except ValueError:
        return None
    compare = {">=": int.__ge__, "<=": int.__le__, "!=": int.__ne__, "==": int.__eq__,
               "=": int.__eq__, ">": int.__gt__, "<": int.__lt__}[operator]
    return lambda have: isinstance(have, int) and compare(have, wanted)
