"""`cas-sync pypi`: the command line of the PyPI mirror. A thin layer: flags -> config ->
`run_sync` -> report; errors map to the exit statuses of `cas_mirror.cli.main`. It takes
the same options as `cas-sync` (`cas_mirror.options`), typed before or after `pypi`.

Imports stay inside the function so that `cas-sync` (the conda sync) does not pay for the
PyPI modules, nor `cas-sync pypi --help` for the network stack.
"""

from __future__ import annotations

import logging

import click

from ..options import EXIT_STATUSES, PYPI, add_options, start_run

log = logging.getLogger(__name__)


@click.command("pypi", context_settings={"help_option_names": ["-h", "--help"]},
               help=f"""Mirror PyPI (or any Simple API index, PEP 691 JSON or PEP 503 HTML) into
<mirror_dir>/<user>/web/, a static tree in bandersnatch's layout that pip and uv install
from.

Settings come from the pypi: section of /etc/cas-mirror, ~/.cas-mirror and -f FILE, then
--mirror-config FILE, then --bandersnatch-config FILE (bandersnatch's INI), then the
flags (which set the pypi: keys: --retries sets pypi.retries). Every option means the
same before or after `pypi`; the conda-only ones (--explain, --condarc, --channel,
--platform) are refused.

\b
{EXIT_STATUSES}
""")
@add_options(PYPI)
@click.pass_context
def pypi(ctx: click.Context, **_: object) -> int:
    options, config = start_run(ctx, PYPI)
    from .settings import PypiSettings

    settings = PypiSettings.from_config(config)
    if options.show:
        from .settings import render_show, show_as_json

        click.echo(show_as_json(config, settings) if options.json
                   else render_show(config, settings), nl=False)
        return 0
    if options.pip_conf:
        from .. import clients

        click.echo(clients.pip_conf(config, options.pip_conf), nl=False)
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
