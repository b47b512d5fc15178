"""Reading one YAML configuration file: a strict loader (duplicate keys refused) and the
top-level keys with their line numbers, so every error can name the file and line. A file
parsed before and unchanged since is taken from `parsed` (then PyYAML is not imported).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import parsed as parsed_cache


@functools.cache
def _strict_loader() -> type:
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
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

    return StrictLoader


def read_yaml_mapping(path: Path, required: bool) -> list[tuple[Any, Any, int, dict]] | None:
    """The top-level (key, value, line, {sub-key: line} when the value is a mapping) of a
    YAML file; None when absent and not required."""
    try:
        st = os.stat(path)
    except OSError:
        st = None  # (reading it says what is wrong)
    else:
        if (known := parsed_cache.recall(path, st)) is not None:
            return known
    from ..userfiles import read_text  # (not by a run whose files are all remembered)

    read_at = time.time()
    try:
        text = read_text(path)
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
    pairs = _parse(path, text)
    if st is not None:
        parsed_cache.remember(path, st, pairs, read_at)
    return pairs


def _parse(path: Path, text: str) -> list[tuple[Any, Any, int, dict]]:
    import yaml

    loader = _strict_loader()(text)
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


def _sub_lines(loader, node) -> dict:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return {}
    lines = {}
    for key_node, _ in node.value:
        with contextlib.suppress(TypeError):  # an unhashable key: the section check reports it
            lines[loader.construct_object(key_node, deep=True)] = key_node.start_mark.line + 1
    return lines

