"""`cas-sync`: the command line. A thin layer that turns flags into configuration
overrides (`options`), calls the sync functions, and maps errors to the documented exit
statuses (`console.run_command`).
"""

from __future__ import annotations

import logging
import sys

import click

from . import config as cfg
from .console import run_command
from .errors import EXIT_OK
from .options import CONDA, EXIT_STATUSES, add_options, start_run

log = logging.getLogger(__name__)


_LAZY = {"pypi": "cas_mirror.pypi.cli:pypi",
         "export": "cas_mirror.airgap.cli:export_command",
         "import": "cas_mirror.airgap.cli:import_command"}


class _Subcommands(click.Group):
    """A group whose subcommands are imported when one is used (or listed by --help): a
    conda sync or `--version` does not import the PyPI side or the air-gap bundles."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            import importlib

            module, _, name = _LAZY[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Subcommands, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]},
             help=f"""Mirror conda channels into a local folder that conda, mamba, pixi and
rattler use; `cas-sync pypi` mirrors PyPI.

Configuration is read from /etc/cas-mirror, then ~/.cas-mirror (the user file wins), then
-f FILE, then the flags below. Every option means the same before or after `pypi`.
Aliases for conda-mirror users: --upstream-channel (--channel), --target-directory
(--mirror-dir), --num-threads (--workers), --minimum-free-disk (--minimum-free-space, a
size), -k/--insecure (--no-ssl-verify), --max-retries (--retries).

\b
{EXIT_STATUSES}
""")
@add_options(CONDA)
@click.pass_context
def cli(ctx: click.Context, **_: object) -> int:
    if ctx.invoked_subcommand is not None:
        return EXIT_OK  # the subcommand reads the options typed here too (options.resolve)
    options, config = start_run(ctx, CONDA)
    if options.show:
        click.echo(cfg.show_as_json(config) if options.json else cfg.render_show(config),
                   nl=False)
        return EXIT_OK
    if options.condarc or options.pip_conf:
        from . import clients

        if options.condarc:
            click.echo(clients.condarc(config, options.condarc), nl=False)
        if options.pip_conf:
            click.echo(clients.pip_conf(config, options.pip_conf), nl=False)
        return EXIT_OK

    from .conda import report as conda_report
    from .conda.sync import run_sync
    from .output import Output, print_result

    output = Output(quiet=options.quiet)
    if options.explain is not None:
        from .conda.explain import explain as explain_records

        rows, result = explain_records(config, options.explain, output)
        if options.json:
            click.echo(conda_report.explain_json(rows))
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


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and maps errors to exit statuses."""
    return run_command(cli, "cas-sync", argv)
