"""The key tables: every configuration key of cas-sync and of its `pypi:` section, with
its default and its check (the domain checks of channels, platforms, filter entries and
PyPI lists live here; the generic ones in `checks`). `etc/cas-mirror.yaml` documents the
same keys, and a test keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cas_index.plain import Frozen

from ..errors import CasError, did_you_mean, parse_items
from .checks import (
    BadValue,
    check_bool,
    check_choice,
    check_duration,
    check_int,
    check_mapping,
    check_optional_path,
    check_optional_url,
    check_path,
    check_proxy,
    check_seconds,
    check_size,
    check_ssl_verify,
    check_str_list,
    check_url,
    describe,
    optional,
)

# Retries per file or request: each waits up to 60 s (Retry-After up to 120 s), so 100
# already lets one failing file hold a nightly run for well over an hour; a larger number
# (a typo, a "retry forever") would keep it from ever ending.
MAX_RETRIES = 100

KNOWN_PLATFORMS = (
    "noarch",
    "linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "linux-32",
    "linux-armv6l", "linux-armv7l", "linux-ppc64", "linux-riscv64", "linux-riscv32",
    "osx-64", "osx-arm64",
    "win-64", "win-32", "win-arm64",
    "freebsd-64", "zos-z", "emscripten-wasm32", "wasi-wasm32",
)  # fmt: skip


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
    from ..conda.entries import EntryError, parse_entries

    if value is None:
        return []
    if not isinstance(value, list):
        raise BadValue("expected a list of package names, globs, specs or mappings, "
                       f"got {describe(value)}")
    try:
        parse_entries(value)
    except EntryError as exc:
        raise BadValue(str(exc)) from None
    return value



_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def check_user(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value.strip()) \
            or value.strip() in (".cas-sync",):
        raise BadValue(f"expected a folder name such as pypi (letters, digits, '.', '_', '+', "
                       f"'-'), got {describe(value)}")
    return value.strip()


def _pypi_list(parse_item: Callable[[Any], Any], what: str) -> Callable[[Any, Path], list]:
    def check(value: Any, base: Path) -> list:
        from ..pypi.filters import EntryError

        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise BadValue(f"expected a list of {what}, got {describe(value)}")
        try:
            return parse_items(value, parse_item, EntryError)
        except EntryError as exc:
            raise BadValue(str(exc)) from None

    return check


def _pypi_entry(item: Any) -> str:
    from ..pypi.filters import parse_entry

    parse_entry(item)
    return item.strip()


def _pypi_platform(item: Any) -> str:
    from ..pypi.filters import EntryError, check_platform

    if not isinstance(item, str) or not item.strip():
        raise EntryError(f"expected a platform name or wheel platform tag, got {item!r}")
    return check_platform(item.strip())


def _pypi_python(item: Any) -> str:
    from ..pypi.filters import check_python_version

    return check_python_version(item)


def _pypi_packagetype(item: Any) -> str:
    from ..pypi.filters import PACKAGETYPES, EntryError

    if isinstance(item, str) and item.strip().lower() in PACKAGETYPES:
        return item.strip().lower()
    raise EntryError(f"unknown package type {item!r}{did_you_mean(str(item), PACKAGETYPES)}; "
                     f"known types: {', '.join(PACKAGETYPES)}")


def _pypi_exclude_platform(item: Any) -> str:
    from ..pypi.filters import EntryError, check_excluded_platform

    if not isinstance(item, str) or not item.strip():
        raise EntryError(f"expected a platform name, wheel platform tag or pyX.Y, got {item!r}")
    return check_excluded_platform(item.strip())


def _pypi_regex(item: Any) -> str:
    from ..pypi.filters import EntryError

    if not isinstance(item, str) or not item.strip():
        raise EntryError(f"expected a regular expression, got {item!r}")
    try:
        re.compile(item.strip())
    except re.error as exc:
        raise EntryError(f"{item!r} is not a regular expression: {exc}") from None
    return item.strip()
def check_environments(value: Any, base: Path) -> list[dict]:
    from ..conda.solve import check_environments as check

    return check(value)


def check_lockfiles(value: Any, base: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    return [check_path(item, base) for item in check_str_list(value, "lockfile paths")]


# --------------------------------------------------------------------------- settings


class Setting(Frozen):
    _fields = ("default", "check", "section", "sub")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"section": False, "sub": None}
    if TYPE_CHECKING:
        default: Any
        check: Callable[[Any, Path], Any]
        # A section (the `pypi:` mapping) merges key by key across layers; `sub` holds
        # its keys.
        section: bool
        sub: dict[str, Setting] | None


def _check_pypi_target(value: Any, base: Path) -> str | None:
    """pypi.mirror_dir: null, a folder, or a bucket location (s3://bucket/prefix)."""
    if isinstance(value, str) and value.strip()[:5].lower() == "s3://":
        from ..errors import ConfigError
        from ..storage.urls import parse_bucket_url

        try:
            return str(parse_bucket_url(value.strip(), "pypi.mirror_dir"))
        except ConfigError as exc:
            raise BadValue(str(exc).split(": ", 1)[-1]) from None
    return check_optional_path(value, base)


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
    "retries": Setting(None, optional(check_int(0, MAX_RETRIES))),
    "retry_backoff": Setting(None, optional(check_seconds)),
    "proxy": Setting(None, check_proxy),
    "ssl_verify": Setting(None, optional(check_ssl_verify)),
    "minimum_free_space": Setting(None, optional(check_size)),
    "keep_removed": Setting(None, optional(check_bool)),
    "diff_file": Setting(None, check_optional_path),
    "diff_append_epoch": Setting(None, optional(check_bool)),
    # bandersnatch parity (issue 13): its layout options and its filter plugins' settings
    "hash_index": Setting(False, check_bool),
    "keep_index_versions": Setting(0, check_int(0)),
    "cleanup": Setting(False, check_bool),
    "storage_backend": Setting("filesystem", check_choice("filesystem", "s3")),
    "exclude_platforms": Setting([], _pypi_list(_pypi_exclude_platform, "platforms")),
    "exclude_project_regex": Setting([], _pypi_list(_pypi_regex, "regular expressions")),
    "exclude_release_regex": Setting([], _pypi_list(_pypi_regex, "regular expressions")),
    "max_project_size": Setting(None, optional(check_size)),
    # mirroring what environments need (pypi/depends.py)
    "include_dependencies": Setting(False, check_bool),
    # where the PyPI tree goes: a folder, or s3://bucket/prefix (pypi/bucket.py); null:
    # the top-level mirror_dir
    "mirror_dir": Setting(None, _check_pypi_target),
}
PYPI_INHERITED = ("workers", "timeout", "retries", "retry_backoff", "proxy", "ssl_verify",
                  "minimum_free_space", "keep_removed", "diff_file", "diff_append_epoch")


def _check_mirror_dir(value: Any, base: Path) -> str:
    """A folder, or an s3://bucket/prefix location (never taken for a relative folder
    named 's3:'; README, "Object storage")."""
    if isinstance(value, str) and value.strip()[:5].lower() == "s3://":
        from ..storage import parse_bucket_url

        try:
            return str(parse_bucket_url(value.strip(), "mirror_dir"))
        except CasError as exc:
            raise BadValue(str(exc).removeprefix("mirror_dir: ")) from None
    return check_path(value, base)


SETTINGS: dict[str, Setting] = {
    "remote_url": Setting("https://repo.anaconda.com", check_url),
    "channels": Setting(["pkgs/main"], check_channels),
    "mirror_dir": Setting("/opt/cas-mirror", _check_mirror_dir),
    "platforms": Setting(None, check_platforms),
    "license_blacklist": Setting([], check_license_blacklist),
    "blacklist": Setting([], check_entries),
    "whitelist": Setting([], check_entries),
    "workers": Setting(8, check_int(1)),
    "timeout": Setting(30.0, check_seconds),
    "retries": Setting(5, check_int(0, MAX_RETRIES)),
    "retry_backoff": Setting(1.0, check_seconds),
    "proxy": Setting(None, check_proxy),
    "ssl_verify": Setting(True, check_ssl_verify),
    "minimum_free_space": Setting(1_000_000_000, check_size),
    "max_repodata_size": Setting(2_000_000_000, check_size),
    "keep_removed": Setting(False, check_bool),
    "diff_file": Setting(None, check_optional_path),
    "diff_append_epoch": Setting(False, check_bool),
    "shards": Setting(True, check_bool),
    "upstream_shards": Setting(True, check_bool),
    "shard_grace_period": Setting(7 * 86400.0, check_duration),
    "pypi": Setting({k: v.default for k, v in PYPI_SETTINGS.items()}, check_mapping,
                    section=True, sub=PYPI_SETTINGS),
    # cas-server: private packages (uploads, tokens, the merged PyPI view)
    "upload_channels": Setting([], lambda v, b: _tree_folders(v, "upload_channels")),
    "upload_max_size": Setting(1_000_000_000, check_size),
    "server_state_dir": Setting(None, check_optional_path),
    "pypi_private_folder": Setting(None, optional(check_user)),
    "pypi_merge_allowed": Setting([], lambda v, b: _project_names(v)),
    "private_paths": Setting([], lambda v, b: _tree_folders(v, "private_paths")),
    # object storage (mirror_dir, cas-server --root, cas-index on s3://bucket/prefix)
    "s3_endpoint_url": Setting(None, check_optional_url),
    "s3_region": Setting(None, optional(lambda value, base: _check_word(value, "region"))),
    "s3_profile": Setting(None, optional(lambda value, base: _check_word(value, "profile"))),
    # the local state of a sync into a bucket (conda/bucket.py, pypi/bucket.py);
    # null: $XDG_STATE_HOME/cas-mirror/sync/<bucket>/<prefix>
    "state_dir": Setting(None, check_optional_path),
    # mirroring what environments need (conda/depends.py, conda/solve.py, lockfiles/)
    "include_dependencies": Setting(False, check_bool),
    "closure": Setting("depends", check_choice("depends", "solve")),
    "environments": Setting([], check_environments),
    "lockfiles": Setting([], check_lockfiles),
}


def _check_word(value: Any, what: str) -> str:
    """An AWS region or profile name: one word without spaces."""
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise BadValue(f"expected an AWS {what} name such as "
                       f"{'eu-west-1' if what == 'region' else 'mirror'}, got {describe(value)}")
    return value


def _tree_folders(value: Any, what: str) -> list[str]:
    """Folders of the served tree (`internal-pkgs`, `team/internal`): no '..', no hidden
    names, no absolute paths."""
    folders = check_str_list(value, "folders of the served tree")
    for index, folder in enumerate(folders):
        if not all(_SEGMENT.match(s) for s in folder.strip("/").split("/")):
            raise BadValue(f"item {index + 1}: {folder!r} is not a folder of the served tree "
                           f"(e.g. internal-pkgs); {what} names folders under mirror_dir")
    return [folder.strip("/") for folder in folders]


def _project_names(value: Any) -> list[str]:
    from ..pypi.model import is_valid_name

    names = check_str_list(value, "project names")
    for index, name in enumerate(names):
        if not is_valid_name(name):
            raise BadValue(f"item {index + 1}: {name!r} is not a project name")
    return names


# --------------------------------------------------------------------------- cache_proxy
# The caching proxy of cas-server (server/proxy/settings.py checks its entries).


def _proxy_channels(value: Any, base: Path) -> list:
    from ..server.proxy.settings import check_proxy_channels

    return check_proxy_channels(value, base)


def _proxy_pypi(value: Any, base: Path) -> dict | None:
    from ..server.proxy.settings import check_proxy_pypi

    return check_proxy_pypi(value, base)


CACHE_PROXY_SETTINGS: dict[str, Setting] = {
    "channels": Setting([], _proxy_channels),
    "pypi": Setting(None, _proxy_pypi),
    "metadata_ttl": Setting(600.0, check_duration),
    "cache_max_size": Setting(None, optional(check_size)),
    "cache_dir": Setting(None, check_optional_path),
}
SETTINGS["cache_proxy"] = Setting({k: v.default for k, v in CACHE_PROXY_SETTINGS.items()},
                                  check_mapping, section=True, sub=CACHE_PROXY_SETTINGS)

