"""`cas-sync --show`: the effective configuration as annotated YAML or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .keys import PYPI_INHERITED, SETTINGS
from .layers import DEFAULT, Config

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
    import yaml  # (only --show writes YAML: a sync does not import it)

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

