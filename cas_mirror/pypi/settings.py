"""The effective settings of one `cas-sync pypi` run, resolved from the layered config.

Owns the rules the issue leaves to us: which URLs `remote_url` implies, where the tree
lands (`<mirror_dir>/<user>/web/`), which keys fall back to the top-level values
(`PYPI_INHERITED` in config.py: network, disk space, keep_removed, diff_file), and the
fingerprint of everything that shapes the published pages, so a configuration change
re-examines every project even when no serial moved. Also renders `--show`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

from ..config import DEFAULT, PYPI_INHERITED, PYPI_SETTINGS, Config
from ..net import NetworkSettings
from ..paths import bucket_work_dir

STATE_DIR = ".cas-sync"
# Keys whose change alters what the pages say or which files are selected.
_SHAPING = ("whitelist", "blacklist", "latest_only", "keep_latest", "exclude_prereleases",
            "platforms", "python_versions", "packagetypes", "simple_format", "release_files",
            "root_uri", "json", "digest_name", "hash_index", "exclude_platforms",
            "exclude_project_regex", "exclude_release_regex", "max_project_size")


class PypiSettings(NamedTuple):  # not a dataclass: start-up (model.py)
    values: dict[str, Any]  # every pypi key, inherited ones resolved
    origins: dict[str, str]  # key -> where its value came from
    mirror_dir: Path
    simple_url: str  # ends with '/'
    xmlrpc_url: str
    json_api_url: str  # <base>/pypi, for /pypi/<name>/json
    network: NetworkSettings
    # The tree's bucket, `s3://bucket/prefix` (pypi.mirror_dir, else the top-level key);
    # None for a folder. With a bucket, `mirror_dir` is this machine's folder for the
    # state and the staging of downloads (`state_dir`).
    bucket: str | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def tree(self) -> Path:
        return self.mirror_dir / self.values["user"]

    @property
    def web(self) -> Path:
        return self.tree / "web"

    @property
    def tree_location(self) -> str:
        """Where the published tree is: the `web/` folder, or its s3:// URL."""
        if self.bucket:
            return f"{self.bucket.rstrip('/')}/{self.values['user']}/web/"
        return str(self.web)

    @property
    def state_dir(self) -> Path:
        return self.tree / STATE_DIR

    @property
    def fingerprint(self) -> str:
        shaping = {k: self.values[k] for k in _SHAPING}
        shaping["simple_url"] = self.simple_url
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, config: Config) -> PypiSettings:
        section = config.values["pypi"]
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for key in PYPI_SETTINGS:
            value = section.get(key)
            origin = config.origins.get(f"pypi.{key}", DEFAULT)
            if key in PYPI_INHERITED and value is None:
                value = config.values[key]
                origin = f"top-level {key}: {config.origins[key]}"
                if key == "diff_file" and value is not None:
                    value = _pypi_diff_file(value)
                    origin += " (+ '-pypi')"
            values[key] = value
            origins[key] = origin
        remote = values["remote_url"].rstrip("/")
        simple = (values["simple_index_url"] or f"{remote}/simple").rstrip("/") + "/"
        network = NetworkSettings(workers=values["workers"], timeout=values["timeout"],
                                  retries=values["retries"], backoff=values["retry_backoff"],
                                  proxy=values["proxy"], ssl_verify=values["ssl_verify"],
                                  total_timeout=values["global_timeout"])
        target = values["mirror_dir"] or config.values["mirror_dir"]
        # (storage.urls.is_bucket_url's test, without importing the storage layer)
        bucket = target if target[:5].lower() == "s3://" else None
        # With a bucket: this machine's folder, laid out like a mirror_dir (`state_dir`,
        # shared with a conda sync into a bucket, else the default per bucket/prefix).
        local = Path(config.values["state_dir"] or bucket_work_dir(bucket, "sync", kept=True)) \
            if bucket else Path(target)
        return cls(values, origins, local,
                   simple, values["xml_rpc_api_url"] or f"{remote}/pypi", f"{remote}/pypi",
                   network, bucket)

    def where_target(self, config: Config) -> str:
        """Where the tree's location was set, for messages."""
        return config.where("pypi.mirror_dir" if self.values["mirror_dir"] else "mirror_dir")



def _pypi_diff_file(path: str) -> str:
    """The top-level diff_file, made distinct so the conda list is not overwritten."""
    target = Path(path)
    if target.is_dir():
        return str(target / "mirrored-files-pypi")
    return str(target.with_name(f"{target.name}-pypi"))


def render_show(config: Config, settings: PypiSettings) -> str:
    import yaml

    lines = ["# Effective cas-sync pypi configuration: each value says where it came from.",
             "# Files, lowest precedence first (defaults < system < user < --config <",
             "# --mirror-config, which wins over the pypi: section of every other file;",
             "# --bandersnatch-config wins over all of them):"]
    for f in config.files:
        lines.append(f"#   {f.role:<15} {f.path}  ({f.status})")
    lines.append(f"# The tree: {settings.tree_location} (served as /{settings.user}/simple/)")
    if settings.bucket:
        lines.append(f"# This machine's state and staging: {settings.tree}")
    lines.append(f"mirror_dir: {config.values['mirror_dir']}  # {config.origins['mirror_dir']}")
    for note in config.notes:
        lines.append(f"# accepted from --bandersnatch-config, no setting of its own: {note}")
    lines.append("pypi:")
    for key, value in settings.values.items():
        dumped = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False,
                                allow_unicode=True).rstrip("\n").split("\n")
        lines.append(f"  {dumped[0]}  # {settings.origins[key]}")
        lines.extend(f"  {line}" for line in dumped[1:])
    return "\n".join(lines) + "\n"


def show_as_json(config: Config, settings: PypiSettings) -> str:
    return json.dumps({
        "values": settings.values, "origins": settings.origins,
        "mirror_dir": str(settings.mirror_dir), "tree": settings.tree_location,
        "simple_url": settings.simple_url, "xml_rpc_api_url": settings.xmlrpc_url,
        "files": [{"role": f.role, "path": str(f.path), "status": f.status}
                  for f in config.files],
        "notes": config.notes,
    }, indent=2)
