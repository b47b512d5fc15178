"""`cas-sync pypi`: the command line of the PyPI mirror. A thin layer: flags -> config ->
`run_sync` -> report; errors map to the exit statuses of `cas_mirror.cli.main`.

Imports stay inside the function so that `cas-sync` (the conda sync) does not pay for the
PyPI modules, nor `cas-sync pypi --help` for the network stack.
"""

from __future__ import annotations

import click


@click.command("pypi", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--show", is_flag=True,
              help="Print the effective pypi settings and where each value came from; "
                   "touches no network.")
@click.option("--dry-run", is_flag=True,
              help="Fetch upstream metadata and print, per project, what a sync would "
                   "download and delete; change nothing.")
@click.option("--verify", is_flag=True,
              help="Re-fetch every mirrored project, re-hash every file, repair what is "
                   "wrong and delete files no project owns (unless keep_removed).")
@click.option("-q", "--quiet", is_flag=True,
              help="No output on success; failures still go to stderr.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result (summary, plan or --show) as JSON on stdout.")
@click.option("--mirror-config", type=click.Path(dir_okay=False), metavar="FILE",
              help="A standalone YAML file in the Anaconda Repository PyPI mirror's format "
                   "(whitelist, blacklist, latest_only, remote_url, ... at top level); it "
                   "wins over the pypi: section of the other files.")
@click.option("-f", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Read this YAML file after /etc/cas-mirror and ~/.cas-mirror.")
@click.option("--debug", is_flag=True, help="Show a traceback on unexpected errors.")
@click.pass_context
def pypi(ctx: click.Context, show: bool, dry_run: bool, verify: bool, quiet: bool,
         as_json: bool, mirror_config: str | None, config_file: str | None,
         debug: bool) -> int:
    """Mirror PyPI (or any index with the PEP 691 JSON Simple API) into
    <mirror_dir>/<user>/web/, a static tree in bandersnatch's layout that pip and uv
    install from.

    Settings come from the pypi: section of /etc/cas-mirror, ~/.cas-mirror and -f FILE,
    then --mirror-config FILE. Exit status: 0 done, 1 some items failed (the mirror is
    consistent), 2 usage or configuration error, 3 another run holds the lock, 4 stopped
    early (disk space).
    """
    from .. import config as cfg

    parent = ctx.find_root().obj or {}
    config = cfg.load_config(config_file or parent.get("config_file"),
                             parent.get("overrides", ()), mirror_config=mirror_config)
    from .settings import PypiSettings

    settings = PypiSettings.from_config(config)
    if show:
        from .settings import render_show, show_as_json

        click.echo(show_as_json(config, settings) if as_json
                   else render_show(config, settings), nl=False)
        return 0

    from ..output import Output, print_result
    from . import report as pypi_report
    from .sync import run_sync

    output = Output(quiet=quiet)
    result = run_sync(config, output=output, dry_run=dry_run, verify=verify)
    return print_result(pypi_report, result, as_json=as_json, dry_run=dry_run, quiet=quiet)
