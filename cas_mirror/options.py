"""The options of `cas-sync` and `cas-sync pypi`, defined once for both.

Every option is declared on both commands, so it means the same before or after `pypi`
(`cas-sync --dry-run pypi` = `cas-sync pypi --dry-run`); an option that has no meaning
for the command that runs (`--explain` for pypi, `--mirror-config` for conda) is refused
with exit 2 and a message saying where it goes, never silently dropped.

Configuration flags become overrides of the configuration keys (`overrides_for`); their
values are read as a YAML scalar would be (`--retries 0` is the 0 of `retries: 0`) or as
text (paths and URLs), and checked by the same code as a file's value, so a flag and a
file accept and refuse the same values with the same message. For `cas-sync pypi`, the
flags set the keys of the `pypi:` section, so they win over the files there too.

Aliases carry the names conda-mirror users know (`--upstream-channel`, `--num-threads`,
`-k/--insecure`, ...).

This module is the table and what a run makes of it; it does not import click (a run
whose arguments `args.py` reads never loads it). `command.py` declares the table on the
click commands (--help, usage errors) and reads what click parsed back into `Options`.
"""

from __future__ import annotations

import logging
from typing import Any

from .config import PYPI_INHERITED, Config, load_config
from .logs import level_for

CONDA, PYPI = "conda", "pypi"
BOTH = frozenset({CONDA, PYPI})

log = logging.getLogger(__name__)

EXIT_STATUSES = """Exit status:
  0  done
  1  some items failed (the mirror is consistent)
  2  usage or configuration error, or a path the run cannot use (permission
     denied, read-only file system, a file where a folder should be)
  3  another run holds the lock
  4  stopped early: too little free disk space, or the disk filled up
  5  cas-sync import: the bundle was refused (damaged, badly signed, or it
     does not continue the mirror's state); nothing was published"""


class Opt:
    """One option: its spellings, help, kind ("flag", "value" (scalar: YAML), "text",
    "multi" (text, repeatable), "count"), the configuration key it overrides, the commands
    it applies to and, for the others, where it goes instead (for the refusal). A plain
    class: a dataclass would compile its methods at every start."""

    __slots__ = ("commands", "decls", "flag", "help", "key", "kind", "metavar", "name",
                 "where")

    def __init__(self, decls: tuple[str, ...], help: str, kind: str = "flag",
                 metavar: str | None = None, *, key: str | None = None,
                 commands: frozenset[str] = BOTH, where: str = "") -> None:
        self.decls, self.help, self.kind, self.metavar = decls, help, kind, metavar
        self.key, self.commands, self.where = key, commands, where
        self.flag = next(d for d in decls if d.startswith("--"))
        self.name = self.flag.lstrip("-").replace("-", "_")


def _conda_only(use: str) -> str:
    return f"is an option of the conda sync ({use}); cas-sync pypi has no such option"


OPTIONS: tuple[Opt, ...] = (
    # what to do
    Opt(("--show",), "Print the effective configuration and where each value came from; "
        "touches no network."),
    Opt(("--dry-run",), "Fetch upstream metadata and print what a sync would download and "
        "delete; change nothing."),
    Opt(("--verify",), "Re-hash existing files (sha256, else md5) instead of trusting their "
        "size; repair what is wrong."),
    Opt(("--explain",), "Show each record of NAME (a name, glob or 'name spec') per platform: "
        "kept or dropped, and the filter step that decided.", "text", "NAME",
        commands=frozenset({CONDA}), where=_conda_only("cas-sync --explain NAME")),
    Opt(("--condarc",), "Print the .condarc channels block for clients of the mirror served "
        "at URL (internal channels first); touches no network.", "text", "URL",
        commands=frozenset({CONDA}), where=_conda_only("cas-sync --condarc URL")),
    Opt(("--pip-conf",), "Print the pip.conf lines for the PyPI mirror served at URL.",
        "text", "URL"),
    # what reaches the user
    Opt(("-q", "--quiet"), "No output on success; failures still go to stderr."),
    Opt(("--json",), "Print the result (summary, plan, --show, --explain) as JSON on stdout."),
    Opt(("-v", "--verbose"), "Log what the run does to stderr, timestamped: -v INFO (what "
        "was read and fetched), -vv DEBUG (each request, cache hits, retries and why).",
        "count"),
    # where the configuration comes from
    Opt(("-f", "--config"), "Read this YAML file after /etc/cas-mirror and ~/.cas-mirror.",
        "text", "PATH"),
    Opt(("--mirror-config",), "A standalone YAML file in the Anaconda Repository PyPI "
        "mirror's format (whitelist, blacklist, latest_only, remote_url, ... at top level); "
        "it wins over the pypi: section of the other files.", "text", "PATH",
        commands=frozenset({PYPI}),
        where="is an option of cas-sync pypi (cas-sync pypi --mirror-config PATH)"),
    Opt(("--bandersnatch-config",), "bandersnatch's INI file (/etc/bandersnatch.conf): its "
        "[mirror] options and filter plugin sections, mapped onto the pypi: keys; it wins "
        "over the pypi: section of the other files.", "text", "PATH",
        commands=frozenset({PYPI}),
        where="is an option of cas-sync pypi (cas-sync pypi --bandersnatch-config PATH)"),
    # configuration overrides
    Opt(("--mirror-dir", "--target-directory"), "Override mirror_dir (--target-directory: "
        "conda-mirror's name; each channel gets its own folder under it).", "text", "PATH",
        key="mirror_dir"),
    Opt(("--remote-url",), "Override remote_url (for cas-sync pypi: pypi.remote_url).",
        "text", "URL", key="remote_url"),
    Opt(("--channel", "--upstream-channel"), "Mirror this channel (path under remote_url, "
        "or a URL); repeatable (--upstream-channel: conda-mirror's name).", "multi",
        "CHANNEL", key="channels", commands=frozenset({CONDA}),
        where=_conda_only("cas-sync --channel CHANNEL")),
    Opt(("--platform",), "Mirror this platform (noarch is always added); repeatable "
        "(conda-mirror's name too).", "multi", "PLATFORM", key="platforms",
        commands=frozenset({CONDA}),
        where=_conda_only("cas-sync --platform PLATFORM; PyPI wheel platforms are the "
                          "pypi.platforms key")),
    Opt(("--workers", "--num-threads"), "Parallel downloads (--num-threads: conda-mirror's "
        "name).", "value", "N", key="workers"),
    Opt(("--timeout",), "Longest wait between two reads from the network, in seconds.",
        "value", "SECONDS", key="timeout"),
    Opt(("--retries", "--max-retries"), "Retries per request (--max-retries: conda-mirror's "
        "name).", "value", "N", key="retries"),
    Opt(("--proxy",), "HTTP(S) or SOCKS proxy URL.", "text", "URL", key="proxy"),
    Opt(("--ca-bundle",), "Verify TLS with this CA bundle.", "text", "PATH", key="ssl_verify"),
    Opt(("--no-ssl-verify", "-k", "--insecure"), "Do not verify TLS certificates "
        "(-k/--insecure: conda-mirror's names).", key="ssl_verify"),
    Opt(("--minimum-free-space", "--minimum-free-disk"), "Refuse to download when less than "
        "this is free (a size: '5 GB', '500 MiB', bytes; --minimum-free-disk: conda-mirror's "
        "name, but a size, not a fraction).", "value", "SIZE", key="minimum_free_space"),
    Opt(("--keep-removed",), "Keep files upstream removed.", key="keep_removed"),
    Opt(("--diff-file",), "Write the list of new/changed files here.", "text", "PATH",
        key="diff_file"),
    Opt(("--from-lock",), "Mirror exactly what this lockfile names (pixi.lock, "
        "conda-lock.yml, @EXPLICIT, environment.yml; for cas-sync pypi: their PyPI entries, "
        "pylock.toml, uv.lock, hash-pinned requirements.txt); repeatable.", "multi", "FILE",
        key="lockfiles"),
    Opt(("--debug",), "Show a traceback on unexpected errors, and log at DEBUG (as -vv)."),
)
BY_NAME = {opt.name: opt for opt in OPTIONS}


class Options(dict):
    """The options the user typed (before and after the subcommand), by name; options not
    typed read as None (False for flags, 0 for -v)."""

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name not in BY_NAME:
            raise AttributeError(name)
        return {"flag": False, "count": 0, "multi": ()}.get(BY_NAME[name].kind)


def _scalar(text: str) -> Any:
    """A flag's value as the same text in a YAML file would be read: '0' -> 0, '2.5' -> 2.5,
    '5 GB' -> '5 GB', '' -> None; text that is not YAML stays text."""
    import yaml  # (a run whose flags carry no value does not import it: config/parsed.py)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def overrides_for(options: Options, command: str) -> list[tuple[str, Any, str]]:
    """(configuration key, raw value, flag) for each configuration flag the user typed; for
    `cas-sync pypi`, the keys of the pypi: section wherever it has one."""
    out = []
    for opt in OPTIONS:
        if opt.key is None or opt.name not in options:
            continue
        value = options[opt.name]
        if opt.kind == "flag":
            value = opt.name != "no_ssl_verify"
        elif opt.kind == "value":
            value = _scalar(value)
        elif opt.kind == "multi":
            value = list(value)
        if command == PYPI and (opt.key in PYPI_INHERITED or opt.key == "remote_url"):
            out.append(("pypi", {opt.key: value}, opt.flag))
        else:
            out.append((opt.key, value, opt.flag))
    return out


def start_run(options: Options, command: str, session=None) -> Config:
    """Logging set up as the options of this run ask (on `session`, a console.Session),
    and the configuration they select."""
    if session is not None:
        session.debug = session.debug or bool(options.debug)
        session.log_to_stderr(level_for(options.verbose, options.quiet, options.debug))
    config = load_config(options.config, overrides_for(options, command),
                         mirror_config=options.mirror_config,
                         bandersnatch_config=options.bandersnatch_config)
    log.info("configuration: %s", "; ".join(f"{f.role} {f.path} ({f.status})"
                                            for f in config.files))
    return config
