"""The quick reading of `cas-index`'s arguments, without click.

A run where nothing changed is mostly interpreter start-up, and importing click is a
large part of it. The ordinary forms (folders and the flags below, `--opt value` or
`--opt=value`) are read here into exactly the parameters click would give
(`command.py` holds the click command and its help; a test keeps the two in step);
anything else (--help, --version, --patch, `--`, a folder starting with `-`, a value click
would refuse, an unknown option) returns None and click reads the arguments, with its
usage errors.
"""

from __future__ import annotations

# option -> parameter name, for the flags
FLAGS = {
    "--force": "force",
    "--no-bz2": "no_bz2",
    "--no-zst": "no_zst",
    "--current-repodata": "current_repodata",
    "--no-shards": "no_shards",
    "--no-run-exports": "no_run_exports",
    "-q": "quiet",
    "--quiet": "quiet",
    "--json": "as_json",
    "--debug": "debug",
}
# option -> parameter name, for the options that take a value (see _value)
VALUED = {
    "--subdir": "subdirs",
    "--threads": "threads",
    "--shard-grace-days": "shard_grace_days",
    "--lock-timeout": "lock_timeout",
}
# every parameter of the click command with its default
DEFAULTS = {
    "paths": (), "subdirs": (), "threads": None, "force": False, "no_bz2": False,
    "no_zst": False, "current_repodata": False, "no_shards": False,
    "shard_grace_days": 7.0, "no_run_exports": False, "patch_file": None,
    "lock_timeout": 600.0, "quiet": False, "as_json": False, "debug": False,
}


def quick_parse(argv: list[str]) -> dict | None:
    """The click command's parameters for `argv`, or None when click must read it."""
    params = dict(DEFAULTS)
    paths: list[str] = []
    subdirs: list[str] = []
    items = iter(argv)
    for arg in items:
        if not arg.startswith("-"):
            paths.append(arg)
            continue
        name, eq, text = arg.partition("=")
        if not eq and name in FLAGS:
            params[FLAGS[name]] = True
            continue
        if name not in VALUED:
            return None
        if not eq:
            text = next(items, None)
            if text is None or text.startswith("-"):
                return None
        value = _value(VALUED[name], text)
        if value is None:
            return None
        if name == "--subdir":
            subdirs.append(value)
        else:
            params[VALUED[name]] = value
    if not paths:
        return None
    params["paths"], params["subdirs"] = tuple(paths), tuple(subdirs)
    return params


def _value(param: str, text: str) -> object:
    """The value as click's types give it (`--threads` an int >= 1, the others a float >=
    0, `--subdir` as written), or None for what click should judge."""
    if param == "subdirs":
        return text
    try:
        value = int(text) if param == "threads" else float(text)
    except ValueError:
        return None
    low = 1 if param == "threads" else 0
    return value if value >= low else None
