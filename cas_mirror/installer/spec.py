"""The installer spec: reading and checking `SPEC.yaml` for cas-installer.

Owns the keys of the spec (the seed's `name`, `version`, `channels`, `specs`,
`license_file`, plus `platforms`, `default_prefix` and `installer_type`), each checked
with the generic checks of `cas_mirror.config.checks`, the file read with the same strict
loader as cas-sync's configuration (`config.yamlfile`: duplicate keys refused, line
numbers kept), so every mistake is one line naming the file, the line and the key
(`ConfigError`, exit status 2). Pure apart from reading the spec and the license file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config.checks import BadValue, check_choice, check_path, check_str_list, check_url
from ..config.keys import KNOWN_PLATFORMS
from ..config.yamlfile import read_yaml_mapping
from ..errors import ConfigError, did_you_mean
from ..userfiles import read_text

# A name or version goes into the installer's file name and its shell header: keep it to
# what conda itself allows in package names and versions.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+!]*$")
# The platforms a POSIX sh installer can run on (Windows would need an .exe).
SH_PLATFORMS = tuple(p for p in KNOWN_PLATFORMS if p.split("-")[0] in ("linux", "osx",
                                                                         "freebsd"))
INSTALLER_TYPES = ("sh",)
KEYS = ("name", "version", "channels", "specs", "license_file", "platforms",
        "default_prefix", "installer_type")
REQUIRED = ("name", "version", "channels", "specs")


@dataclass(frozen=True)
class Channel:
    """One channel of the spec: `location` is what the solver is given (a URL, or an
    absolute folder path); `url` is what the installed `.condarc` names (None for a local
    folder, which the target machine does not have)."""

    location: str
    url: str | None


@dataclass(frozen=True)
class InstallerSpec:
    path: Path
    name: str
    version: str
    channels: tuple[Channel, ...]
    specs: tuple[str, ...]
    platforms: tuple[str, ...]
    default_prefix: str  # may start with $HOME or ~, expanded on the target
    installer_type: str = "sh"
    license_file: Path | None = None
    license_text: str | None = None

    def installer_name(self, platform: str) -> str:
        return f"{self.name}-{self.version}-{platform}.{self.installer_type}"


def _check_name(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise BadValue(f"expected a name of letters, digits, '.', '_', '+', '-' "
                       f"(e.g. my-installer), got {value!r}")
    return value


def _check_channels(value: Any, base: Path) -> tuple[Channel, ...]:
    items = check_str_list(value, "channels")
    if not items:
        raise BadValue("expected at least one channel URL or folder")
    channels = []
    for index, item in enumerate(items):
        try:
            if item.startswith(("http://", "https://")):
                url = check_url(item, base)
                channels.append(Channel(url, url))
                continue
            folder = Path(check_path(item.removeprefix("file://"), base))
        except BadValue as exc:
            raise BadValue(f"item {index + 1}: {exc}") from None
        if not folder.is_dir():
            raise BadValue(f"item {index + 1}: {item!r} is neither an http(s) URL nor an "
                           f"existing channel folder ({folder} is not a folder)")
        channels.append(Channel(str(folder), None))
    return tuple(channels)


def _check_specs(value: Any, base: Path) -> tuple[str, ...]:
    from rattler import MatchSpec

    specs = check_str_list(value, "specs")
    if not specs:
        raise BadValue("expected at least one package spec, e.g. [python, conda]")
    for index, spec in enumerate(specs):
        try:
            MatchSpec(spec)
        except Exception as exc:  # noqa: BLE001 - rattler raises several types
            raise BadValue(f"item {index + 1}: {spec!r} is not a conda match spec "
                           f"({' '.join(str(exc).split())})") from None
    return tuple(specs)


def check_platforms(value: Any, base: Path) -> tuple[str, ...]:
    platforms = check_str_list(value, "platforms")
    if not platforms:
        raise BadValue("expected at least one platform, e.g. [linux-64]")
    for index, platform in enumerate(platforms):
        if platform not in SH_PLATFORMS:
            hint = did_you_mean(platform, SH_PLATFORMS)
            why = (" (a .sh installer runs on linux, osx and freebsd only)"
                   if platform in KNOWN_PLATFORMS else hint)
            raise BadValue(f"item {index + 1}: platform {platform!r} not allowed{why}; "
                           f"allowed: {', '.join(SH_PLATFORMS)}")
    return tuple(dict.fromkeys(platforms))


def _check_prefix(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"expected an absolute folder path, $HOME/... or ~/..., "
                       f"got {value!r}")
    prefix = value.strip().rstrip("/")
    for start in ("${HOME}", "$HOME", "~"):
        if prefix == start or prefix.startswith(start + "/"):
            prefix = "$HOME" + prefix[len(start):]
            break
    else:
        if not prefix.startswith("/"):
            raise BadValue(f"expected an absolute folder path, $HOME/... or ~/..., "
                           f"got {value!r}")
    if "$" in prefix[1:] or any(c in prefix for c in "\n\r\t\\\"'`"):
        raise BadValue(f"{value!r}: a prefix may not hold quotes, backslashes, control "
                       "characters or $ other than a leading $HOME")
    return prefix


def _check_license(value: Any, base: Path) -> tuple[Path, str]:
    """The license file and its text, read once (a second read could find it gone)."""
    path = Path(check_path(value, base))
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise BadValue(f"license file {str(path)!r} not found") from None
    except UnicodeDecodeError:
        raise BadValue(f"license file {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise BadValue(f"cannot read license file {str(path)!r} "
                       f"({exc.strerror or exc})") from None
    return path, text


_CHECKS = {
    "name": _check_name,
    "channels": _check_channels,
    "specs": _check_specs,
    "license_file": _check_license,
    "platforms": check_platforms,
    "default_prefix": _check_prefix,
    "installer_type": check_choice(*INSTALLER_TYPES),
}


def _version_text(path: Path, line: int) -> Any:
    """The version as written (`1.10` stays "1.10", which YAML would read as 1.1)."""
    node = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    for key_node, value_node in node.value:
        if key_node.start_mark.line + 1 == line and isinstance(value_node, yaml.ScalarNode):
            return value_node.value
    return None


def read_spec(path: Path, build_platform: str) -> InstallerSpec:
    """Read and check the spec at `path`; `build_platform` is the default `platforms`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: spec file not found (see etc/installer-example.yaml)")
    items = read_yaml_mapping(path, required=True)
    base = path.resolve().parent
    values: dict[str, Any] = {}
    for key, value, line, _ in items or []:
        where = f"{path}, line {line}: key {key!r}"
        if key not in KEYS:
            raise ConfigError(f"{path}, line {line}: unknown key {key!r}"
                              f"{did_you_mean(str(key), KEYS)}; known keys: {', '.join(KEYS)}")
        try:
            if key == "version":
                text = _version_text(path, line) if not isinstance(value, str) else value
                if not isinstance(text, str) or not _VERSION_RE.match(text.strip()):
                    raise BadValue(f"expected a version such as 1.0, got {value!r}")
                values[key] = text.strip()
            elif value is None and key not in REQUIRED:
                continue  # an empty optional key means its default
            else:
                values[key] = _CHECKS[key](value, base)
        except BadValue as exc:
            raise ConfigError(f"{where}: {exc}") from None
    missing = [key for key in REQUIRED if key not in values]
    if missing:
        raise ConfigError(f"{path}: missing key {missing[0]!r}; a spec needs "
                          f"{', '.join(REQUIRED)} (see etc/installer-example.yaml)")
    if build_platform not in SH_PLATFORMS and "platforms" not in values:
        raise ConfigError(f"{path}: key 'platforms' is needed: this machine is "
                          f"{build_platform}, which a .sh installer does not run on")
    license_file, license_text = values.get("license_file", (None, None))
    return InstallerSpec(
        path=path,
        name=values["name"],
        version=values["version"],
        channels=values["channels"],
        specs=values["specs"],
        platforms=values.get("platforms", (build_platform,)),
        default_prefix=values.get("default_prefix", f"$HOME/{values['name']}"),
        installer_type=values.get("installer_type", "sh"),
        license_file=license_file,
        license_text=license_text,
    )
