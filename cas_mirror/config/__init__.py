"""Layered YAML configuration: defaults < system file < user file < --config file < flags.

Owns reading the two standard files (``/etc/cas-mirror`` and ``~/.cas-mirror``; the
environment variables ``CAS_MIRROR_SYSTEM_CONFIG`` / ``CAS_MIRROR_USER_CONFIG`` point them
elsewhere), an optional ``-f FILE``, and command-line overrides; validating every key; and
remembering where each effective value came from (for ``cas-sync --show``). A later layer
replaces a key of an earlier one as a whole, except inside the ``pypi:`` section, whose keys
are merged one by one. Nothing here touches the network or the mirror tree.

The package is split by concern: `checks` (generic value checks), `keys` (the key tables),
`yamlfile` (reading one file), `layers` (merging, provenance), `show` (--show).
"""

from .checks import BadValue, check_url
from .keys import KNOWN_PLATFORMS, PYPI_INHERITED, PYPI_SETTINGS, SETTINGS, Setting
from .layers import DEFAULT, Config, ConfigFile, load_config, standard_config_paths
from .show import render_show, show_as_json
from .yamlfile import read_yaml_mapping

__all__ = [
    "DEFAULT", "KNOWN_PLATFORMS", "PYPI_INHERITED", "PYPI_SETTINGS", "SETTINGS", "BadValue",
    "Config", "ConfigFile", "Setting", "check_url", "load_config", "read_yaml_mapping",
    "render_show", "show_as_json", "standard_config_paths",
]
