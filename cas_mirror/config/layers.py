"""Merging the layers: defaults < system file < user file < --config file < flags, with
where each effective value came from (`Config.origins`, for --show) and where it was set
(`Config.locations`, for error messages found after loading).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cas_index.plain import Frozen, Plain

from ..errors import ConfigError, did_you_mean
from .checks import BadValue
from .keys import SETTINGS
from .yamlfile import read_yaml_mapping

SYSTEM_CONFIG_ENV = "CAS_MIRROR_SYSTEM_CONFIG"
USER_CONFIG_ENV = "CAS_MIRROR_USER_CONFIG"
DEFAULT_SYSTEM_CONFIG = "/etc/cas-mirror"
DEFAULT_USER_CONFIG = "~/.cas-mirror"

DEFAULT = "default"



# --------------------------------------------------------------------------- loading


class ConfigFile(Frozen):
    _fields = ("role", "path", "status")
    __slots__ = _fields
    if TYPE_CHECKING:
        role: str  # "system", "user" or "--config"
        path: Path
        status: str  # "read" or "absent"


class Config(Plain):
    """The effective configuration: values, where each came from, and the files consulted."""

    _fields = ("values", "origins", "files", "locations", "notes")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"files": list, "locations": dict, "notes": list}
    _factories: ClassVar[frozenset] = frozenset(_defaults)
    if TYPE_CHECKING:
        values: dict[str, Any]
        origins: dict[str, str]  # key (or "pypi.<key>") -> where its value came from
        files: list[ConfigFile]
        # key (or "pypi.<key>") -> "FILE, line N" or "command line: --flag", for messages
        locations: dict[str, str]
        # what a --bandersnatch-config file set that has no key of its own (said by --show)
        notes: list[str]

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
    bandersnatch_config: str | os.PathLike | None = None,
) -> Config:
    """Merge every layer. `overrides` are (key, raw value, flag name) from the command line.
    `mirror_config` is a standalone file of `pypi:` keys at top level (the Anaconda PyPI
    mirror's format); it wins over the `pypi:` section of every other file."""
    values = {key: _copy(setting.default) for key, setting in SETTINGS.items()}
    origins = dict.fromkeys(SETTINGS, DEFAULT)
    locations: dict[str, str] = {}
    files: list[ConfigFile] = []
    notes: list[str] = []

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

    if bandersnatch_config is not None:
        _apply_bandersnatch(values, origins, locations, files, notes,
                            Path(bandersnatch_config).expanduser())

    for key, raw, flag in overrides:
        _apply(values, origins, locations, key, raw, f"command line: {flag}",
               f"command line ({flag})", Path.cwd())
    return Config(values, origins, files, locations, notes)


def _apply_bandersnatch(values, origins, locations, files, notes, path: Path) -> None:
    """bandersnatch's INI file (pypi/bandersnatch.py maps it): like --mirror-config, it wins
    over the pypi: section; its `directory` also sets the top-level mirror_dir."""
    from ..pypi.bandersnatch import TOP_LEVEL_KEYS, read_bandersnatch_config

    mapped = read_bandersnatch_config(path)
    files.append(ConfigFile("--bandersnatch-config", path, "read"))
    where: dict[str, str] = {}
    for item in mapped.values:
        label = f"--bandersnatch-config {item.where}"
        if item.key in TOP_LEVEL_KEYS:  # mirror_dir, and the bucket's endpoint and region
            _apply(values, origins, locations, item.key, item.value, item.where, label,
                   path.parent)
            continue
        key = item.key.removeprefix("pypi.")
        where[key] = item.where
        _apply_section(values, origins, locations, "pypi", {key: item.value},
                       item.where, label, path.parent, where, prefix="")
    notes.extend(mapped.notes)


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

