"""`cas-sync pypi`: the run of the PyPI mirror once the options are read (by args.py or by
click: command.py declares the `pypi` command and its help). A thin layer: config ->
`run_sync` -> report; errors map to the exit statuses of `cas_mirror.cli.main`. It takes
the same options as `cas-sync` (`cas_mirror.options`), typed before or after `pypi`.

Imports stay inside the function so that `cas-sync` (the conda sync) does not pay for the
PyPI modules, nor `cas-sync pypi --show` for the network stack.
"""

from __future__ import annotations

import logging
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from ..config import Config
    from ..options import Options

log = logging.getLogger(__name__)


def run_pypi(options: Options, config: Config) -> int:
    """One `cas-sync pypi` run with the options typed; returns the exit status."""
    from .settings import PypiSettings

    settings = PypiSettings.from_config(config)
    if options.show:
        from .settings import render_show, show_as_json

        sys.stdout.write(show_as_json(config, settings) if options.json
                         else render_show(config, settings))
        return 0
    if options.pip_conf:
        from .. import clients

        sys.stdout.write(clients.pip_conf(config, options.pip_conf))
        return 0

    from ..output import Output, print_result
    from . import report as pypi_report
    from .sync import run_sync

    output = Output(quiet=options.quiet)
    log.info("pypi sync: %s into %s%s", settings.simple_url, settings.tree_location,
             " (dry run)" if options.dry_run else "")
    result = run_sync(config, output=output, dry_run=options.dry_run, verify=options.verify)
    log.info("pypi sync finished: exit status %d", result.exit_code)
    return print_result(pypi_report, result, as_json=options.json, dry_run=options.dry_run,
                        quiet=options.quiet)
