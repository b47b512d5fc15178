"""`cas-index`'s click command: the option table, --help and --version, and click's usage
errors. The command line's work is `cli.run`; `args.py` reads the ordinary forms of the same
options without importing click (a test keeps the two in step), so this module is imported
only when those do not suffice.
"""

from __future__ import annotations

import click

from .cli import PROG, run
from .errors import EXIT_USAGE


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """--debug as parsed (not a scan of argv: `cas-index -- --debug` names a folder)."""
    if value and isinstance(ctx.obj, dict):
        ctx.obj["debug"] = True
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--subdir", "subdirs", multiple=True, metavar="PLATFORM",
              help="Index only this platform folder of each channel root (repeatable), "
                   "e.g. --subdir linux-64 --subdir noarch.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Read up to N packages at once, in worker processes (default: one per "
                   "CPU; 1: in this process).")
@click.option("--force", is_flag=True,
              help="Re-read every package and rewrite what differs, ignoring the cache.")
@click.option("--no-bz2", is_flag=True,
              help="Do not publish repodata.json.bz2 (an existing one is removed).")
@click.option("--no-zst", is_flag=True,
              help="Do not publish repodata.json.zst (an existing one is removed).")
@click.option("--current-repodata", is_flag=True,
              help="Also publish current_repodata.json (newest version of each package and "
                   "what it depends on). Without this flag an old one is removed.")
@click.option("--no-shards", is_flag=True,
              help="Do not publish sharded repodata (CEP-16: repodata_shards.msgpack.zst and "
                   "shards/); an existing shard index is removed, its shards after the "
                   "grace period.")
@click.option("--shard-grace-days", type=click.FloatRange(min=0), default=7.0,
              show_default=True, metavar="DAYS",
              help="Keep a shard the index no longer names this long, for clients holding "
                   "an older index.")
@click.option("--no-run-exports", is_flag=True,
              help="Do not publish run_exports.json (CEP-12; an existing one is removed).")
@click.option("--patch", "patch_file", metavar="FILE",
              help="Apply repodata patch instructions: a patch_instructions.json file (for "
                   "every platform folder) or a repodata-patches package (.conda/.tar.bz2 "
                   "with <platform>/patch_instructions.json). They are saved as "
                   "<platform>/patch_instructions.json, which later runs apply again; the "
                   "unpatched records stay in repodata_from_packages.json.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=600.0,
              show_default=True, metavar="SECONDS",
              help="How long to wait for another cas-index run on the same channel to "
                   "finish; 0 exits at once (status 3) when one is running.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems (skipped files).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as JSON on stdout.")
@click.option("--debug", is_flag=True, callback=_remember_debug,
              help="Show a traceback on internal errors.")
@click.version_option(package_name="cas-mirror", prog_name=PROG)
def cli(paths: tuple[str, ...], subdirs: tuple[str, ...], threads: int | None, force: bool,
        no_bz2: bool, no_zst: bool, current_repodata: bool, no_shards: bool,
        shard_grace_days: float, no_run_exports: bool, patch_file: str | None,
        lock_timeout: float, quiet: bool, as_json: bool, debug: bool) -> int:
    """Rebuild repodata.json and friends for conda channel folders after package files
    were added, replaced or removed. Safe while the folder is being served.

    PATH is a channel root (every platform folder in it is indexed, and noarch/ is created
    when missing) or one platform folder such as CHANNEL/linux-64.

    Exit status: 0 done, 1 some files were skipped (listed on stderr), 2 usage error,
    3 another run holds the channel's lock, 4 disk full, 70 internal error.
    """
    return run(paths, subdirs, threads, force, no_bz2, no_zst, current_repodata, no_shards,
               shard_grace_days, no_run_exports, patch_file, lock_timeout, quiet, as_json,
               debug)


def run_click(argv: list[str], state: dict[str, bool]) -> int:
    """Parse `argv` with click and run; click's own outcomes (--help, --version, usage
    errors, an interrupt) become exit statuses here, everything else goes up to the caller.
    `state["debug"]` is set once --debug is parsed."""
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False, obj=state)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        message = " ".join(exc.format_message().split()).rstrip(".")
        click.echo(f"{PROG}: error: {message} (see {PROG} --help)", err=True)
        return EXIT_USAGE
    except click.Abort:
        raise KeyboardInterrupt from None
    return result if isinstance(result, int) else 0
