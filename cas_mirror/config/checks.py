"""The generic checks of configuration values (booleans, numbers, URLs, paths, sizes,
lists, choices), each taking the raw YAML value and the folder relative paths resolve
against, and returning the normalized value or raising `BadValue` with a message saying
what is wrong and what is allowed. Nothing here knows a key or a domain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import did_you_mean


class BadValue(ValueError):
    """Raised by a check: the message says what is wrong and what is allowed."""


# --------------------------------------------------------------------------- checks
# Each check takes the raw YAML value and the folder relative paths are resolved against,
# and returns the normalized value or raises BadValue.


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({type(value).__name__})"


def check_bool(value: Any, base: Path) -> bool:
    if isinstance(value, bool):
        return value
    raise BadValue(f"expected true or false, got {describe(value)}")


def check_int(minimum: int, maximum: int | None = None) -> Callable[[Any, Path], int]:
    wanted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def check(value: Any, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"expected a whole number {wanted}, got {describe(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            raise BadValue(f"expected a whole number {wanted}, got {value}")
        return value

    return check


def check_seconds(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadValue(f"expected a number of seconds > 0, got {describe(value)}")
    return float(value)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
                   "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600,
                   "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800,
                   "weeks": 604800}


def check_duration(value: Any, base: Path) -> float:
    """Seconds (>= 0), or a string with a unit: '7 days', '12 hours', '30 min', '1 week'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else None
    if unit not in _DURATION_UNITS:
        raise BadValue(f"expected a duration such as 7 days, 12 hours, 30 min or a number of "
                       f"seconds, got {describe(value)}")
    return float(match.group(1)) * _DURATION_UNITS[unit]


def check_url(value: Any, base: Path, schemes: tuple[str, ...] = ("http", "https")) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected a URL such as https://repo.anaconda.com, got {describe(value)}")
    parts = urlsplit(value.strip())
    if parts.scheme not in schemes or not parts.netloc:
        raise BadValue(
            f"{value!r} is not a URL; expected {' or '.join(s + '://' for s in schemes)}HOST[/PATH]"
        )
    return value.strip().rstrip("/")


def check_optional_url(value: Any, base: Path) -> str | None:
    return None if value is None else check_url(value, base)


def check_proxy(value: Any, base: Path) -> str | None:
    if value is None:
        return None
    return check_url(value, base, schemes=("http", "https", "socks5", "socks5h"))


def check_path(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"expected a folder or file path, got {describe(value)}")
    path = Path(value.strip()).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def check_optional_path(value: Any, base: Path) -> str | None:
    return None if value is None else check_path(value, base)


def check_ssl_verify(value: Any, base: Path) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        path = Path(check_path(value, base))
        if not path.is_file():
            raise BadValue(f"CA bundle {str(path)!r} does not exist or is not a file")
        return str(path)
    raise BadValue(f"expected true, false or the path of a CA bundle, got {describe(value)}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def check_size(value: Any, base: Path) -> int:
    """Bytes, or a string with a unit: '500 MB', '1GB', '2 GiB' (KB = 1000 B, KiB = 1024 B)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise BadValue(f"expected a size such as 1 GB, 500 MB or 1073741824, "
                       f"got {describe(value)}")
    number, unit, binary = match.groups()
    return int(float(number) * (1024 if binary else 1000) ** _SIZE_POWER[unit.lower()])


def check_str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise BadValue(f"expected a list of {what}, got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise BadValue(f"item {index + 1}: expected {what[:-1]}, got {describe(item)}")
    return [item.strip() for item in value]



def check_mapping(value: Any, base: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadValue(f"expected a mapping of keys, got {describe(value)}")
    return value


def check_choice(*choices: str) -> Callable[[Any, Path], str]:
    """One of `choices`, case-insensitive; returns the spelling given in `choices`."""

    def check(value: Any, base: Path) -> str:
        if isinstance(value, str):
            for choice in choices:
                if value.strip().lower() == choice.lower():
                    return choice
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        raise BadValue(f"expected one of {', '.join(choices)}, got {describe(value)}{hint}")

    return check


def optional(check: Callable[[Any, Path], Any]) -> Callable[[Any, Path], Any]:
    """`check`, or null (for pypi keys, null means: use the top-level value)."""

    def check_or_none(value: Any, base: Path) -> Any:
        return None if value is None else check(value, base)

    return check_or_none

