"""`cas-sync pypi --bandersnatch-config FILE`: bandersnatch's INI file mapped onto our keys.

Owns reading the file (configparser, with our own scan for line numbers, which configparser
does not keep), turning each `[mirror]` option and each enabled filter plugin's section into
the raw value of one of our keys, and refusing what we do not support: an unknown option,
a plugin we do not have, a section no enabled plugin reads. Each refusal names the file,
line, section and key. The values are then checked by the key table's own checks (the
caller passes them to `config.layers`), so a bandersnatch value and a YAML value are
refused with the same words.

`directory` is split into `mirror_dir` (its parent) and `user` (its last name): our tree,
`<mirror_dir>/<user>/web/`, is then bandersnatch's `<directory>/web/`, and an existing
bandersnatch tree is synced in place.
"""

from __future__ import annotations

import configparser
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..userfiles import read_text

log = logging.getLogger(__name__)

_BOOLEANS = configparser.ConfigParser.BOOLEAN_STATES
_SECTION = re.compile(r"^\[([^\]]+)\]")
_OPTION = re.compile(r"^([^\s:=;#][^:=]*?)\s*[:=]")


@dataclass(frozen=True)
class MappedValue:
    key: str  # our key: a pypi: key, or "mirror_dir" (top level)
    value: Any  # raw, as YAML would give it; checked by the key table
    where: str  # "FILE, line N ([section] option)"


@dataclass
class Mapped:
    values: list[MappedValue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # accepted with no effect of their own

    def add(self, key: str, value: Any, where: str) -> None:
        self.values.append(MappedValue(key, value, where))


def _bool(text: str, where: str) -> bool:
    if text.strip().lower() in _BOOLEANS:
        return _BOOLEANS[text.strip().lower()]
    raise ConfigError(f"{where}: expected true or false (also yes/no, on/off, 1/0), "
                      f"got {text!r}")


def _number(text: str, where: str, whole: bool = False) -> int | float:
    try:
        return int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{where}: expected {kind}, got {text!r}") from None


def _lines(text: str) -> list[str]:
    """A multi-line option's entries, one per line as bandersnatch reads them (a comma
    belongs to a specifier: `django>=4,<5`), comments dropped."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


# `[mirror]` options: bandersnatch name -> (our key, kind). Kinds: str, bool, int, float,
# url, path; None as our key means "accepted, no key of its own" (explained in NOTES).
MIRROR_OPTIONS: dict[str, tuple[str | None, str]] = {
    "directory": ("directory", "path"),
    "master": ("remote_url", "str"),
    "workers": ("workers", "int"),
    "timeout": ("timeout", "float"),
    "global-timeout": ("global_timeout", "float"),
    "stop-on-error": ("stop_on_error", "bool"),
    "hash-index": ("hash_index", "bool"),
    "simple-format": ("simple_format", "str"),
    "release-files": ("release_files", "bool"),
    "root_uri": ("root_uri", "str"),
    "json": ("json", "bool"),
    "diff-file": ("diff_file", "path"),
    "diff-append-epoch": ("diff_append_epoch", "bool"),
    "download-mirror": ("download_mirror", "str"),
    "download-mirror-no-fallback": ("download_mirror_no_fallback", "bool"),
    "cleanup": ("cleanup", "bool"),
    "verifiers": (None, "int"),
    "compare-method": ("compare_method", "str"),
    "digest_name": ("digest_name", "str"),
    "keep_index_versions": ("keep_index_versions", "int"),
    "proxy": ("proxy", "str"),
    "storage-backend": ("storage_backend", "str"),
    "allow-non-https": (None, "bool"),
    "api-method": ("use_xml_rpc", "api-method"),
}
NOTES = {
    "verifiers": "verifiers: cas-sync pypi --verify hashes with the `workers` threads",
    "allow-non-https": "allow-non-https: cas-sync pypi accepts http:// upstreams as they are",
}
# Our spelling of bandersnatch's underscore/dash variants (it accepts both for some).
_ALIASES = {"global_timeout": "global-timeout", "stop_on_error": "stop-on-error",
            "hash_index": "hash-index", "simple_format": "simple-format",
            "release_files": "release-files", "diff_file": "diff-file",
            "diff_append_epoch": "diff-append-epoch", "download_mirror": "download-mirror",
            "download_mirror_no_fallback": "download-mirror-no-fallback",
            "compare_method": "compare-method", "digest-name": "digest_name",
            "keep-index-versions": "keep_index_versions", "storage_backend": "storage-backend",
            "root-uri": "root_uri", "allow_non_https": "allow-non-https",
            "api_method": "api-method"}

PLUGINS = ("allowlist_project", "allowlist_release", "project_requirements",
           "project_requirements_pinned", "blocklist_project", "blocklist_release",
           "exclude_platform", "prerelease_release", "regex_release", "regex_project",
           "latest_release", "size_project_metadata")
# section -> option -> the plugins that read it
_PLUGIN_OPTIONS = {
    "allowlist": {"packages": ("allowlist_project", "allowlist_release"),
                  "requirements": ("allowlist_project", "allowlist_release",
                                   "project_requirements", "project_requirements_pinned"),
                  "requirements_path": ("allowlist_project", "allowlist_release",
                                        "project_requirements", "project_requirements_pinned")},
    "blocklist": {"packages": ("blocklist_project", "blocklist_release"),
                  "platforms": ("exclude_platform",)},
    "filter_regex": {"releases": ("regex_release",), "packages": ("regex_project",)},
    "latest_release": {"keep": ("latest_release",), "sort_by": ("latest_release",)},
    "size_project_metadata": {"max_package_size": ("size_project_metadata",)},
}
# Sections bandersnatch reads for storage backends: [s3] is read with storage-backend = s3
# (S3_OPTIONS), the others refused as a whole.
_OTHER_SECTIONS = {"swift", "s3"}
BACKENDS = ("filesystem", "s3")
# [s3] options of bandersnatch's S3 plugin -> our top-level key (None: refused, see why)
S3_OPTIONS = {"region_name": "s3_region", "endpoint_url": "s3_endpoint_url",
              "signature_version": None}
_S3_REFUSED = {
    "aws_access_key_id": "credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID / "
                         "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, or a profile named by "
                         "s3_profile; keep them out of this file",
    "aws_secret_access_key": "credentials come from the standard AWS chain: "
                             "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, "
                             "or a profile named by s3_profile; keep them out of this file",
}
# Keys a bandersnatch file sets outside the pypi: section (layers.py applies them).
TOP_LEVEL_KEYS = ("mirror_dir", "s3_region", "s3_endpoint_url")


def _scan_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, option) -> line number, for the messages (configparser keeps none)."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        match = _SECTION.match(line)
        if match:
            section = match.group(1).strip()
            lines.setdefault((section, ""), number)
            continue
        match = _OPTION.match(line)
        if match and section:
            lines.setdefault((section, match.group(1).strip().lower()), number)
    return lines


def read_bandersnatch_config(path: Path) -> Mapped:
    """The file's settings as our keys; ConfigError naming file, line, section and key for
    anything we do not support or cannot read."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: bandersnatch configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected bandersnatch's INI file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected an INI "
                          "file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") \
            from None
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"{path}: malformed INI file: {message}") from None
    lines = _scan_lines(text)

    def where(section: str, option: str = "") -> str:
        line = lines.get((section, option)) or lines.get((section, ""))
        at = f", line {line}" if line else ""
        return f"{path}{at} ([{section}]{' ' + option if option else ''})"

    mapped = Mapped()
    if not parser.has_section("mirror"):
        raise ConfigError(f"{path}: no [mirror] section; bandersnatch's configuration "
                          "needs one with at least directory and master")
    backend = _map_mirror(parser, where, mapped)
    _map_plugins(parser, where, mapped, path.parent)
    if backend == "s3" and parser.has_section("s3"):
        _map_s3(parser, where, mapped)
    for section in parser.sections():
        if section in ("mirror", "plugins") or section in _PLUGIN_OPTIONS \
                or (section == "s3" and backend == "s3"):
            continue
        why = ("a storage backend's section: cas-sync pypi reads [s3] with storage-backend "
               "= s3 only" if section in _OTHER_SECTIONS else "cas-sync pypi does not read it")
        raise ConfigError(f"{where(section)}: section [{section}] is not supported ({why})")
    log.info("bandersnatch configuration %s: %d settings mapped", path, len(mapped.values))
    return mapped


def _map_mirror(parser: configparser.ConfigParser, where, mapped: Mapped) -> str:
    """The [mirror] options; returns the storage backend (filesystem or s3)."""
    seen: dict[str, str] = {}
    directory: tuple[str, str] | None = None
    backend = "filesystem"
    for option, raw_text in parser.items("mirror", raw=True):
        if option in parser.defaults():
            continue
        name = _ALIASES.get(option, option)
        at = where("mirror", option)
        if name not in MIRROR_OPTIONS:
            hint = did_you_mean(option, MIRROR_OPTIONS)
            why = ("cas-sync pypi logs through -v/-vv and the cron/systemd setup"
                   if name == "log-config" else "not a bandersnatch option cas-sync pypi "
                   "knows")
            raise ConfigError(f"{at}: option {option!r} is not supported{hint} ({why})")
        if name in seen:
            raise ConfigError(f"{at}: option {option!r} is given twice (also as "
                              f"{seen[name]!r})")
        seen[name] = option
        key, kind = MIRROR_OPTIONS[name]
        text = raw_text.strip()
        if kind == "bool":
            value: Any = _bool(text, at)
        elif kind == "int":
            value = _number(text, at, whole=True)
        elif kind == "float":
            value = _number(text, at)
        elif kind == "api-method":
            if text.lower() not in ("simple", "xmlrpc"):
                raise ConfigError(f"{at}: expected simple or xmlrpc, got {text!r}")
            value = text.lower() == "xmlrpc"
        else:
            value = text or None
        if key is None:
            mapped.notes.append(NOTES[name])
            continue
        if key == "directory":
            directory = (text, at)
            continue
        if key == "storage_backend":
            if text not in BACKENDS:
                raise ConfigError(f"{at}: storage-backend {text!r} is not supported (cas-sync "
                                  "pypi writes to a folder or an S3-compatible bucket; "
                                  f"expected one of {', '.join(BACKENDS)})")
            backend = text
        if key == "remote_url" and value:
            value = value.rstrip("/")
        mapped.add(key, value, at)
    if directory is None:
        raise ConfigError(f"{where('mirror')}: option 'directory' is required (the mirror's "
                          "folder)")
    _map_directory(*directory, backend, mapped)
    return backend


def _map_directory(text: str, at: str, backend: str, mapped: Mapped) -> None:
    """`directory`: a folder split into mirror_dir + user, or with storage-backend = s3
    bandersnatch's `/<bucket>/<prefix>`, split into pypi.mirror_dir (s3://bucket/...) and
    user (its last name), so the tree is bandersnatch's `<prefix>/web/` in the bucket."""
    if backend == "s3":
        parts = [p for p in text.removeprefix("s3://").split("/") if p]
        if len(parts) < 2:
            raise ConfigError(f"{at}: with storage-backend = s3, expected /<bucket>/<prefix> "
                              f"(the tree goes to <prefix>/web/ in the bucket), got {text!r}")
        mapped.add("pypi.mirror_dir", "s3://" + "/".join(parts[:-1]), at)
        mapped.add("user", parts[-1], at)
        return
    folder = Path(text).expanduser()
    if not text or not folder.name:
        raise ConfigError(f"{at}: expected the mirror's folder, got {text!r}")
    mapped.add("mirror_dir", str(folder.parent), at)
    mapped.add("user", folder.name, at)


def _map_s3(parser: configparser.ConfigParser, where, mapped: Mapped) -> None:
    """bandersnatch's [s3] section: the endpoint and region; the signature is always
    SigV4; credentials and boto3 call parameters are refused."""
    for option, raw_text in parser.items("s3", raw=True):
        if option in parser.defaults():
            continue
        at = where("s3", option)
        text = raw_text.strip()
        if option in _S3_REFUSED:
            raise ConfigError(f"{at}: option {option!r} is not supported "
                              f"({_S3_REFUSED[option]})")
        if option not in S3_OPTIONS:
            why = ("boto3 call parameters are not passed on"
                   if option.startswith("config_param_")
                   else "not an option of bandersnatch's S3 plugin cas-sync pypi knows")
            hint = did_you_mean(option, S3_OPTIONS)
            raise ConfigError(f"{at}: option {option!r} is not supported{hint} ({why})")
        if option == "signature_version":
            if text.lower() not in ("s3v4", "v4", ""):
                raise ConfigError(f"{at}: signature_version {text!r} is not supported "
                                  "(requests are signed with SigV4: s3v4)")
            continue
        if text:
            mapped.add(S3_OPTIONS[option], text, at)


def _map_plugins(parser: configparser.ConfigParser, where, mapped: Mapped,
                 base: Path) -> None:
    enabled: set[str] = set()
    if parser.has_section("plugins"):
        for option, text in parser.items("plugins", raw=True):
            if option in parser.defaults():
                continue
            if option != "enabled":
                raise ConfigError(f"{where('plugins', option)}: option {option!r} is not "
                                  "supported (only 'enabled')")
            for name in _lines(text):
                if name == "all":
                    enabled.update(p for p in PLUGINS if p != "project_requirements_pinned")
                elif name in PLUGINS:
                    enabled.add(name)
                else:
                    raise ConfigError(f"{where('plugins', 'enabled')}: filter plugin {name!r} "
                                      f"is not supported{did_you_mean(name, PLUGINS)}; "
                                      f"supported: {', '.join(PLUGINS)}")
    for section, options in _PLUGIN_OPTIONS.items():
        if not parser.has_section(section):
            continue
        for option, _ in parser.items(section, raw=True):
            if option in parser.defaults():
                continue
            readers = options.get(option)
            if readers is None:
                raise ConfigError(f"{where(section, option)}: option {option!r} is not "
                                  f"supported{did_you_mean(option, options)}")
            if not enabled & set(readers):
                raise ConfigError(f"{where(section, option)}: no enabled plugin reads it "
                                  f"(add {' or '.join(readers)} to [plugins] enabled, or "
                                  "remove the option)")

    def get(section: str, option: str) -> str | None:
        if parser.has_section(section) and parser.has_option(section, option):
            return parser.get(section, option, raw=True)
        return None

    _map_allowlist(enabled, get, where, mapped, base)
    packages = _lines(get("blocklist", "packages") or "")
    if packages:
        at = where("blocklist", "packages")
        entries = []
        for item in packages:
            name, spec = _split_requirement(item, at)
            if not spec:  # either plugin drops every release of a bare name
                entries.append(name)
            elif "blocklist_release" in enabled:
                entries.append(f"{name}{spec}")
        mapped.add("blacklist", entries, at)
    platforms = _lines(get("blocklist", "platforms") or "")
    if platforms:
        mapped.add("exclude_platforms", platforms, where("blocklist", "platforms"))
    if "prerelease_release" in enabled:
        mapped.add("exclude_prereleases", True, where("plugins", "enabled"))
    for option, key in (("releases", "exclude_release_regex"),
                        ("packages", "exclude_project_regex")):
        patterns = _lines(get("filter_regex", option) or "")
        if patterns:
            mapped.add(key, patterns, where("filter_regex", option))
    if "latest_release" in enabled:
        keep = get("latest_release", "keep")
        at = where("latest_release", "keep")
        sort_by = (get("latest_release", "sort_by") or "version").strip().lower()
        if sort_by != "version":
            raise ConfigError(f"{where('latest_release', 'sort_by')}: sort_by {sort_by!r} is "
                              "not supported (cas-sync pypi keeps the newest by version)")
        mapped.add("keep_latest", _number(keep, at, whole=True) if keep else 0, at)
    size = get("size_project_metadata", "max_package_size")
    if size is not None:
        mapped.add("max_project_size", size.strip(),
                   where("size_project_metadata", "max_package_size"))


def _map_allowlist(enabled, get, where, mapped: Mapped, base: Path) -> None:
    if "allowlist_release" in enabled and "allowlist_project" not in enabled:
        raise ConfigError(f"{where('plugins', 'enabled')}: allowlist_release without "
                          "allowlist_project is not supported (cas-sync pypi's whitelist "
                          "limits the projects and their versions together)")
    releases = bool(enabled & {"allowlist_release", "project_requirements",
                               "project_requirements_pinned"})
    entries: list[str] = []
    at = where("allowlist", "packages")
    for item in _lines(get("allowlist", "packages") or ""):
        name, spec = _split_requirement(item, at)
        entries.append(f"{name}{spec}" if releases else name)
    files = _lines(get("allowlist", "requirements") or "")
    if files:
        folder = Path((get("allowlist", "requirements_path") or "").strip() or base)
        if not folder.is_absolute():
            folder = base / folder
        req_at = where("allowlist", "requirements")
        for name in files:
            entries.extend(_read_requirements(folder / name, req_at, releases,
                                              "project_requirements_pinned" in enabled))
        at = at if get("allowlist", "packages") else req_at
    if entries:
        mapped.add("whitelist", list(dict.fromkeys(entries)), at)


def _split_requirement(text: str, where: str) -> tuple[str, str]:
    """(name, specifier text) of a PEP 508 requirement; extras and markers dropped."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{where}: {text!r} is not a requirement such as "
                          f"'requests' or 'requests>=2.30' ({exc})") from None
    return requirement.name, str(requirement.specifier)


def _read_requirements(path: Path, where: str, releases: bool, pinned: bool) -> list[str]:
    try:
        text = read_text(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: requirements file {path} is not UTF-8 text (byte "
                          f"{exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read requirements file {path}: "
                          f"{exc.strerror or exc}") from None
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ConfigError(f"{path}, line {number}: {line.split()[0]!r} is not supported in "
                              "an allowlist requirements file (one requirement per line)")
        requirement = line.split(" --hash", 1)[0].rstrip(" \\")
        name, spec = _split_requirement(requirement, f"{path}, line {number}")
        if pinned and not spec.startswith("=="):
            continue  # project_requirements_pinned: only pinned lines count
        entries.append(f"{name}{spec}" if releases else name)
    return entries
