"""Layered YAML configuration: defaults < system file < user file < --config file < flags.

Owns reading the two standard files (``/etc/cas-mirror`` and ``~/.cas-mirror``; the
environment variables ``CAS_MIRROR_SYSTEM_CONFIG`` / ``CAS_MIRROR_USER_CONFIG`` point them
elsewhere), an optional ``-f FILE``, and command-line overrides; validating every key; and
remembering where each effective value came from (for ``cas-sync --show``). A later layer
replaces a key of an earlier one as a whole, except inside the ``pypi:`` section, whose keys
are merged one by one. Nothing here touches the network or the mirror tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError, did_you_mean, parse_items

SYSTEM_CONFIG_ENV = "CAS_MIRROR_SYSTEM_CONFIG"
USER_CONFIG_ENV = "CAS_MIRROR_USER_CONFIG"
DEFAULT_SYSTEM_CONFIG = "/etc/cas-mirror"
DEFAULT_USER_CONFIG = "~/.cas-mirror"

KNOWN_PLATFORMS = (
    "noarch",
    "linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "linux-32",
    "linux-armv6l", "linux-armv7l", "linux-ppc64", "linux-riscv64", "linux-riscv32",
    "osx-64", "osx-arm64",
    "win-64", "win-32", "win-arm64",
    "freebsd-64", "zos-z", "emscripten-wasm32", "wasi-wasm32",
)  # fmt: skip

DEFAULT = "default"


class BadValue(ValueError):
    """Raised by a check: the message says what is wrong and what is allowed."""


# --------------------------------------------------------------------------- checks
# Each check takes the raw YAML value and the folder relative paths are resolved against,
# and returns the normalized value or raises BadValue.


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({type(value).__name__})"


def check_bool(value: Any, base: Path) -> bool:
    if isinstance(value, bool):
        return value
    raise BadValue(f"expected true or false, got {_describe(value)}")


def check_int(minimum: int) -> Callable[[Any, Path], int]:
    def check(value: Any, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"expected a whole number >= {minimum}, got {_describe(value)}")
        if value < minimum:
            raise BadValue(f"expected a whole number >= {minimum}, got {value}")
        return value

    return check


def check_seconds(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadValue(f"expected a number of seconds > 0, got {_describe(value)}")
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
                       f"seconds, got {_describe(value)}")
    return float(match.group(1)) * _DURATION_UNITS[unit]


def check_url(value: Any, base: Path, schemes: tuple[str, ...] = ("http", "https")) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected a URL such as https://repo.anaconda.com, got {_describe(value)}")
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
        raise BadValue(f"expected a folder or file path, got {_describe(value)}")
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
    raise BadValue(f"expected true, false or the path of a CA bundle, got {_describe(value)}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def check_size(value: Any, base: Path) -> int:
    """Bytes, or a string with a unit: '500 MB', '1GB', '2 GiB' (KB = 1000 B, KiB = 1024 B)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise BadValue(f"expected a size such as 1 GB, 500 MB or 1073741824, "
                       f"got {_describe(value)}")
    number, unit, binary = match.groups()
    return int(float(number) * (1024 if binary else 1000) ** _SIZE_POWER[unit.lower()])


def check_str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise BadValue(f"expected a list of {what}, got {_describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise BadValue(f"item {index + 1}: expected {what[:-1]}, got {_describe(item)}")
    return [item.strip() for item in value]


_CHANNEL_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def check_channels(value: Any, base: Path) -> list[str]:
    channels = check_str_list(value, "channels")
    if not channels:
        raise BadValue("expected at least one channel, e.g. [pkgs/main]")
    seen = set()
    for index, channel in enumerate(channels):
        if "://" in channel:
            try:
                check_url(channel, base)
            except BadValue as exc:
                raise BadValue(f"item {index + 1}: {exc}") from None
        elif not all(_CHANNEL_SEGMENT.match(s) for s in channel.strip("/").split("/")):
            raise BadValue(
                f"item {index + 1}: {channel!r} is not a channel path such as pkgs/main "
                "(letters, digits, '.', '_', '+', '-' separated by '/') nor a URL"
            )
        if channel in seen:
            raise BadValue(f"item {index + 1}: channel {channel!r} is listed twice")
        seen.add(channel)
    return [c if "://" in c else c.strip("/") for c in channels]


def check_platforms(value: Any, base: Path) -> list[str] | None:
    if value is None:
        return None
    platforms = check_str_list(value, "platforms")
    for index, platform in enumerate(platforms):
        if platform not in KNOWN_PLATFORMS:
            raise BadValue(
                f"item {index + 1}: unknown platform {platform!r}"
                f"{did_you_mean(platform, KNOWN_PLATFORMS)}; known platforms: "
                + ", ".join(KNOWN_PLATFORMS)
            )
    # noarch is always mirrored: conda clients refuse a channel without noarch/repodata.json.
    return list(dict.fromkeys([*platforms, "noarch"]))


def check_license_blacklist(value: Any, base: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    return check_str_list(value, "license names")


def check_entries(value: Any, base: Path) -> list[Any]:
    from .conda.entries import EntryError, parse_entries

    if value is None:
        return []
    if not isinstance(value, list):
        raise BadValue("expected a list of package names, globs, specs or mappings, "
                       f"got {_describe(value)}")
    try:
        parse_entries(value)
    except EntryError as exc:
        raise BadValue(str(exc)) from None
    return value


def check_mapping(value: Any, base: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadValue(f"expected a mapping of keys, got {_describe(value)}")
    return value


def check_choice(*choices: str) -> Callable[[Any, Path], str]:
    """One of `choices`, case-insensitive; returns the spelling given in `choices`."""

    def check(value: Any, base: Path) -> str:
        if isinstance(value, str):
            for choice in choices:
                if value.strip().lower() == choice.lower():
                    return choice
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        raise BadValue(f"expected one of {', '.join(choices)}, got {_describe(value)}{hint}")

    return check


def optional(check: Callable[[Any, Path], Any]) -> Callable[[Any, Path], Any]:
    """`check`, or null (for pypi keys, null means: use the top-level value)."""

    def check_or_none(value: Any, base: Path) -> Any:
        return None if value is None else check(value, base)

    return check_or_none


_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def check_user(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value.strip()) \
            or value.strip() in (".cas-sync",):
        raise BadValue(f"expected a folder name such as pypi (letters, digits, '.', '_', '+', "
                       f"'-'), got {_describe(value)}")
    return value.strip()


def _pypi_list(parse_item: Callable[[Any], Any], what: str) -> Callable[[Any, Path], list]:
    def check(value: Any, base: Path) -> list:
        from .pypi.filters import EntryError

        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise BadValue(f"expected a list of {what}, got {_describe(value)}")
        try:
            return parse_items(value, parse_item, EntryError)
        except EntryError as exc:
            raise BadValue(str(exc)) from None

    return check


def _pypi_entry(item: Any) -> str:
    from .pypi.filters import parse_entry

    parse_entry(item)
    return item.strip()


def _pypi_platform(item: Any) -> str:
    from .pypi.filters import EntryError, check_platform

    if not isinstance(item, str) or not item.strip():
        raise EntryError(f"expected a platform name or wheel platform tag, got {item!r}")
    return check_platform(item.strip())


def _pypi_python(item: Any) -> str:
    from .pypi.filters import check_python_version

    return check_python_version(item)


def _pypi_packagetype(item: Any) -> str:
    from .pypi.filters import PACKAGETYPES, EntryError

    if isinstance(item, str) and item.strip().lower() in PACKAGETYPES:
        return item.strip().lower()
    raise EntryError(f"unknown package type {item!r}{did_you_mean(str(item), PACKAGETYPES)}; "
                     f"known types: {', '.join(PACKAGETYPES)}")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    default: Any
    check: Callable[[Any, Path], Any]
    # A section (the `pypi:` mapping) merges key by key across layers; `sub` holds its keys.
    section: bool = False
    sub: dict[str, Setting] | None = None


# The keys of the `pypi:` section (and of a --mirror-config file). A default of None on a
# key in PYPI_INHERITED means: use the top-level key of the same name.
PYPI_SETTINGS: dict[str, Setting] = {
    # from the Anaconda Repository PyPI mirror
    "user": Setting("pypi", check_user),
    "remote_url": Setting("https://pypi.org", check_url),
    "simple_index_url": Setting(None, check_optional_url),
    "xml_rpc_api_url": Setting(None, check_optional_url),
    "use_xml_rpc": Setting(False, check_bool),
    "use_serial": Setting(True, check_bool),
    "create_org": Setting(False, check_bool),
    "whitelist": Setting([], _pypi_list(_pypi_entry, "project names, globs or specs")),
    "blacklist": Setting([], _pypi_list(_pypi_entry, "project names, globs or specs")),
    "latest_only": Setting(False, check_bool),
    # filters users ask for
    "keep_latest": Setting(0, check_int(0)),
    "exclude_prereleases": Setting(False, check_bool),
    "platforms": Setting([], _pypi_list(_pypi_platform, "platforms")),
    "python_versions": Setting([], _pypi_list(_pypi_python, "Python versions")),
    "packagetypes": Setting([], _pypi_list(_pypi_packagetype, "package types")),
    # from bandersnatch
    "simple_format": Setting("ALL", check_choice("ALL", "HTML", "JSON")),
    "release_files": Setting(True, check_bool),
    "root_uri": Setting(None, check_optional_url),
    "json": Setting(False, check_bool),
    "download_mirror": Setting(None, check_optional_url),
    "download_mirror_no_fallback": Setting(False, check_bool),
    "compare_method": Setting("hash", check_choice("hash", "stat")),
    "digest_name": Setting("sha256", check_choice("sha256", "md5")),
    "stop_on_error": Setting(False, check_bool),
    "global_timeout": Setting(1800.0, check_seconds),
    # null: the top-level value
    "workers": Setting(None, optional(check_int(1))),
    "timeout": Setting(None, optional(check_seconds)),
    "retries": Setting(None, optional(check_int(0))),
    "retry_backoff": Setting(None, optional(check_seconds)),
    "proxy": Setting(None, check_proxy),
    "ssl_verify": Setting(None, optional(check_ssl_verify)),
    "minimum_free_space": Setting(None, optional(check_size)),
    "keep_removed": Setting(None, optional(check_bool)),
    "diff_file": Setting(None, check_optional_path),
    "diff_append_epoch": Setting(None, optional(check_bool)),
}
PYPI_INHERITED = ("workers", "timeout", "retries", "retry_backoff", "proxy", "ssl_verify",
                  "minimum_free_space", "keep_removed", "diff_file", "diff_append_epoch")


SETTINGS: dict[str, Setting] = {
    "remote_url": Setting("https://repo.anaconda.com", check_url),
    "channels": Setting(["pkgs/main"], check_channels),
    "mirror_dir": Setting("/opt/cas-mirror", check_path),
    "platforms": Setting(None, check_platforms),
    "license_blacklist": Setting([], check_license_blacklist),
    "blacklist": Setting([], check_entries),
    "whitelist": Setting([], check_entries),
    "workers": Setting(8, check_int(1)),
    "timeout": Setting(30.0, check_seconds),
    "retries": Setting(5, check_int(0)),
    "retry_backoff": Setting(1.0, check_seconds),
    "proxy": Setting(None, check_proxy),
    "ssl_verify": Setting(True, check_ssl_verify),
    "minimum_free_space": Setting(1_000_000_000, check_size),
    "max_repodata_size": Setting(2_000_000_000, check_size),
    "keep_removed": Setting(False, check_bool),
    "diff_file": Setting(None, check_optional_path),
    "diff_append_epoch": Setting(False, check_bool),
    "shards": Setting(True, check_bool),
    "shard_grace_period": Setting(7 * 86400.0, check_duration),
    "pypi": Setting({k: v.default for k, v in PYPI_SETTINGS.items()}, check_mapping,
                    section=True, sub=PYPI_SETTINGS),
}


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigFile:
    role: str  # "system", "user" or "--config"
    path: Path
    status: str  # "read" or "absent"


@dataclass
class Config:
    """The effective configuration: values, where each came from, and the files consulted."""

    values: dict[str, Any]
    origins: dict[str, str]  # key (or "pypi.<key>") -> where its value came from
    files: list[ConfigFile] = field(default_factory=list)
    # key (or "pypi.<key>") -> "FILE, line N" or "command line: --flag", for error messages
    locations: dict[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """Where `key` was set, as error messages name it: "FILE, line N: key 'K'",
        "command line: --flag", or "key 'K' (default)"."""
        location = self.locations.get(key)
        if location is None:
            return f"key {key!r} (default)"
        if location.startswith("command line"):
            return location
        return f"{location}: key {key!r}"

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def standard_config_paths() -> list[tuple[str, Path]]:
    system = os.environ.get(SYSTEM_CONFIG_ENV) or DEFAULT_SYSTEM_CONFIG
    user = os.environ.get(USER_CONFIG_ENV) or DEFAULT_USER_CONFIG
    return [("system", Path(system).expanduser()), ("user", Path(user).expanduser())]


def load_config(
    config_file: str | os.PathLike | None = None,
    overrides: Iterable[tuple[str, Any, str]] = (),
    mirror_config: str | os.PathLike | None = None,
) -> Config:
    """Merge every layer. `overrides` are (key, raw value, flag name) from the command line.
    `mirror_config` is a standalone file of `pypi:` keys at top level (the Anaconda PyPI
    mirror's format); it wins over the `pypi:` section of every other file."""
    values = {key: _copy(setting.default) for key, setting in SETTINGS.items()}
    origins = dict.fromkeys(SETTINGS, DEFAULT)
    locations: dict[str, str] = {}
    files: list[ConfigFile] = []

    layers = standard_config_paths()
    if config_file is not None:
        layers.append(("--config", Path(config_file).expanduser()))
    for role, path in layers:
        pairs = read_yaml_mapping(path, required=(role == "--config"))
        files.append(ConfigFile(role, path, "absent" if pairs is None else "read"))
        if pairs is None:
            continue
        label = f"--config {path}" if role == "--config" else str(path)
        for key, raw, line, sub_lines in pairs:
            _apply(values, origins, locations, key, raw, f"{path}, line {line}", label,
                   path.parent, {k: f"{path}, line {n}" for k, n in sub_lines.items()})

    if mirror_config is not None:
        path = Path(mirror_config).expanduser()
        pairs = read_yaml_mapping(path, required=True)
        files.append(ConfigFile("--mirror-config", path, "read"))
        raw_section = {key: raw for key, raw, _, _ in pairs}
        where = {key: f"{path}, line {line}" for key, _, line, _ in pairs}
        _apply_section(values, origins, locations, "pypi", raw_section, f"{path}",
                       f"--mirror-config {path}", path.parent, where, prefix="")

    for key, raw, flag in overrides:
        _apply(values, origins, locations, key, raw, f"command line: {flag}",
               f"command line ({flag})", Path.cwd())
    return Config(values, origins, files, locations)


def _apply(values, origins, locations, key, raw, where: str, label: str, base: Path,
           sub_where: dict[str, str] | None = None) -> None:
    setting = SETTINGS.get(key) if isinstance(key, str) else None
    if setting is None:
        raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), SETTINGS)}")
    try:
        value = setting.check(raw, base)
    except BadValue as exc:
        raise ConfigError(f"{where}: key {key!r}: {exc}") from None
    if setting.section:
        _apply_section(values, origins, locations, key, value, where, label, base,
                       sub_where or {}, prefix=f"{key}.")
    else:
        values[key] = value
        origins[key] = label
        locations[key] = where


def _apply_section(values, origins, locations, key: str, raw: dict, where: str, label: str,
                   base: Path, sub_where: dict[str, str], prefix: str) -> None:
    """Check and merge the keys of a section one by one. Dashed spellings (bandersnatch's
    `stop-on-error`) are accepted for the underscore keys."""
    table = SETTINGS[key].sub or {}
    seen: dict[str, str] = {}
    for sub, sub_raw in raw.items():
        at = sub_where.get(sub, where)
        name = sub.replace("-", "_") if isinstance(sub, str) else sub
        setting = table.get(name) if isinstance(name, str) else None
        if setting is None:
            raise ConfigError(f"{at}: unknown key '{prefix}{sub}'"
                              f"{did_you_mean(str(name), table)}")
        if name in seen:
            raise ConfigError(f"{at}: key '{prefix}{sub}' is given twice (also as "
                              f"'{prefix}{seen[name]}')")
        seen[name] = sub
        try:
            values[key][name] = setting.check(sub_raw, base)
        except BadValue as exc:
            raise ConfigError(f"{at}: key '{prefix}{name}': {exc}") from None
        origins[f"{key}.{name}"] = label
        locations[f"{key}.{name}"] = at


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"duplicate key {key!r} (first on line {seen[key]})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # unhashable key: let PyYAML report it as usual
                break
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path, required: bool) -> list[tuple[Any, Any, int, dict]] | None:
    """The top-level (key, value, line, {sub-key: line} when the value is a mapping) of a
    YAML file; None when absent and not required."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: configuration file not found") from None
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a YAML configuration file") from None
    except PermissionError:
        raise ConfigError(
            f"{path}: cannot read the configuration file (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected YAML") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None

    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            kind = {"SequenceNode": "a list", "ScalarNode": "a single value"}.get(
                type(node).__name__, "not a mapping"
            )
            raise ConfigError(
                f"{path}, line {node.start_mark.line + 1}: the file is {kind}; "
                "expected a mapping of keys such as 'mirror_dir: /srv/mirror'"
            )
        loader.construct_document(node)  # checks the whole document, duplicates included
        return [
            (
                loader.construct_object(key_node, deep=True),
                loader.construct_object(value_node, deep=True),
                key_node.start_mark.line + 1,
                _sub_lines(loader, value_node),
            )
            for key_node, value_node in node.value
        ]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "cannot parse"
        raise ConfigError(f"{path}, {where}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()


def _sub_lines(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines = {}
    for key_node, _ in node.value:
        with contextlib.suppress(TypeError):  # an unhashable key: the section check reports it
            lines[loader.construct_object(key_node, deep=True)] = key_node.start_mark.line + 1
    return lines


# --------------------------------------------------------------------------- --show


def render_show(config: Config, keys: Iterable[str] | None = None) -> str:
    """The effective configuration as YAML, each value followed by where it came from."""
    lines = ["# Effective cas-sync configuration: each value says where it came from.",
             "# Files, lowest precedence first (defaults < system < user < --config < flags):"]
    for f in config.files:
        lines.append(f"#   {f.role:<8} {f.path}  ({f.status})")
    for key in keys if keys is not None else SETTINGS:
        value = config.values[key]
        if SETTINGS[key].section:
            lines.append(f"{key}:" + ("" if value else " {}") + f"  # {config.origins[key]}")
            for sub, sub_value in value.items():
                origin = config.origins.get(f"{key}.{sub}", DEFAULT)
                if sub_value is None and sub in PYPI_INHERITED:
                    origin += f" (null: the top-level {sub} applies)"
                lines.extend("  " + line for line in _render_item(sub, sub_value, origin))
        else:
            lines.extend(_render_item(key, value, config.origins[key]))
    return "\n".join(lines) + "\n"


def _render_item(key: str, value: Any, origin: str) -> list[str]:
    dumped = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False,
                            allow_unicode=True).rstrip("\n").split("\n")
    if len(dumped) == 1:
        return [f"{dumped[0]}  # {origin}"]
    return [f"{dumped[0]}  # {origin}", *dumped[1:]]


def show_as_json(config: Config) -> str:
    return json.dumps(
        {
            "values": config.values,
            "origins": config.origins,
            "files": [{"role": f.role, "path": str(f.path), "status": f.status}
                      for f in config.files],
        },
        indent=2,
    )
