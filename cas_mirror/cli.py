"""`cas-sync`: the command line. A thin layer that reads the arguments (the ordinary forms
quickly, without click: args.py; anything else, --help and usage errors through click:
command.py), turns flags into configuration overrides (`options`), calls the sync
functions, and maps errors to the documented exit statuses (`console`).

Everything beyond reading the configuration is imported where it is used: a run with
nothing to do is mostly start-up.
"""

from __future__ import annotations

import logging
import sys

from .args import quick_parse
from .console import Session, run_command, run_guarded
from .errors import EXIT_OK
from .options import PYPI, Options, start_run

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

PROG = "cas-sync"


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and maps errors to exit statuses."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quick = quick_parse(argv)
    if quick is None:
        from .command import cli

        return run_command(cli, PROG, argv)
    command, options = quick
    return run_guarded(PROG, lambda session: run(command, options, session))


def console() -> int:
    """The `cas-sync` program (pyproject's entry point): `main` in a process that ends
    with it (cas_index.oneshot)."""
    from cas_index.oneshot import run_once

    return run_once(main)


def run(command: str, options: Options, session: Session | None) -> int:
    """One run of `cas-sync` (CONDA) or `cas-sync pypi` (PYPI) with the options typed,
    whichever reader read them; returns the exit status."""
    config = start_run(options, command, session)
    if command == PYPI:
        from .pypi.cli import run_pypi

        return run_pypi(options, config)
    return run_conda(options, config)


def run_conda(options: Options, config: Config) -> int:
    if options.show:
        from . import config as cfg

        sys.stdout.write(cfg.show_as_json(config) if options.json
                         else cfg.render_show(config))
        return EXIT_OK
    if options.condarc or options.pip_conf:
        from . import clients

        if options.condarc:
            sys.stdout.write(clients.condarc(config, options.condarc))
        if options.pip_conf:
            sys.stdout.write(clients.pip_conf(config, options.pip_conf))
        return EXIT_OK

    from .conda import report as conda_report
    from .conda.sync import run_sync
    from .output import Output, print_result

    output = Output(quiet=options.quiet)
    if options.explain is not None:
        from .conda.explain import explain as explain_records

        rows, result = explain_records(config, options.explain, output)
        if options.json:
            print(conda_report.explain_json(rows))
        else:
            conda_report.render_explain(rows, options.explain, sys.stdout)
        return result.exit_code
    log.info("conda sync: %s from %s into %s, platforms %s%s",
             ", ".join(config.channels), config.remote_url, config.mirror_dir,
             ", ".join(config.platforms or ["(all upstream has)"]),
             " (dry run)" if options.dry_run else "")
    result = run_sync(config, output=output, dry_run=options.dry_run, verify=options.verify)
    log.info("conda sync finished: exit status %d", result.exit_code)
    return print_result(conda_report, result, as_json=options.json, dry_run=options.dry_run,
                        quiet=options.quiet)
