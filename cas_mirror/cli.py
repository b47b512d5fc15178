"""`cas-sync`: the command line. A thin layer that turns flags into configuration
overrides, calls the sync functions, and maps errors to the documented exit statuses.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import config as cfg
from .console import run_command
from .errors import EXIT_OK

# (click parameter name, configuration key, flag as the user typed it)
_OVERRIDES = [
    ("mirror_dir", "mirror_dir", "--mirror-dir"),
    ("remote_url", "remote_url", "--remote-url"),
    ("channel", "channels", "--channel"),
    ("platform", "platforms", "--platform"),
    ("workers", "workers", "--workers"),
    ("timeout", "timeout", "--timeout"),
    ("retries", "retries", "--retries"),
    ("proxy", "proxy", "--proxy"),
    ("ca_bundle", "ssl_verify", "--ca-bundle"),
    ("no_ssl_verify", "ssl_verify", "--no-ssl-verify"),
    ("minimum_free_space", "minimum_free_space", "--minimum-free-space"),
    ("keep_removed", "keep_removed", "--keep-removed"),
    ("diff_file", "diff_file", "--diff-file"),
]


def overrides_from(params: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """Configuration overrides for the flags the user actually gave."""
    out = []
    for name, key, flag in _OVERRIDES:
        value = params.get(name)
        if value in (None, (), False):
            continue
        if name == "no_ssl_verify":
            value = False
        elif isinstance(value, tuple):
            value = list(value)
        out.append((key, value, flag))
    return out


def config_options(func):
    """The flags every cas-sync command shares: where the configuration comes from."""
    options = [
        click.option("-f", "--config", "config_file", type=click.Path(dir_okay=False),
                     help="Read this YAML file after /etc/cas-mirror and ~/.cas-mirror."),
        click.option("--mirror-dir", type=str, help="Override mirror_dir."),
        click.option("--remote-url", type=str, help="Override remote_url."),
        click.option("--channel", multiple=True,
                     help="Mirror this channel (path under remote_url, or a URL); repeatable."),
        click.option("--platform", multiple=True,
                     help="Mirror this platform (noarch is always added); repeatable."),
        click.option("--workers", type=int, help="Parallel downloads."),
        click.option("--timeout", type=float, help="Network timeout in seconds."),
        click.option("--retries", type=int, help="Retries per request."),
        click.option("--proxy", type=str, help="HTTP(S) proxy URL."),
        click.option("--ca-bundle", type=str, help="Verify TLS with this CA bundle."),
        click.option("--no-ssl-verify", is_flag=True, help="Do not verify TLS certificates."),
        click.option("--minimum-free-space", type=str,
                     help="Refuse to download when less than this is free (e.g. '5 GB')."),
        click.option("--keep-removed", is_flag=True, help="Keep files upstream removed."),
        click.option("--diff-file", type=str, help="Write the list of new/changed files here."),
        click.option("--debug", is_flag=True, help="Show a traceback on unexpected errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--show", is_flag=True,
              help="Print the effective configuration and where each value came from; "
                   "touches no network.")
@click.option("--dry-run", is_flag=True,
              help="Print what a sync would download and delete per channel/platform; "
                   "change nothing.")
@click.option("--verify", is_flag=True,
              help="Re-hash existing files (sha256, else md5) instead of trusting their size.")
@click.option("--explain", metavar="NAME",
              help="Show each record of NAME (a name, glob or 'name spec') per platform: "
                   "kept or dropped, and the filter step that decided.")
@click.option("--condarc", "condarc_url", metavar="URL",
              help="Print the .condarc channels block for clients of the mirror served at "
                   "URL (internal channels first); touches no network.")
@click.option("--pip-conf", "pip_conf_url", metavar="URL",
              help="Print the pip.conf lines for the PyPI mirror served at URL.")
@click.option("-q", "--quiet", is_flag=True,
              help="No output on success; failures still go to stderr.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result (summary, plan, --show, --explain) as JSON on stdout.")
@config_options
@click.version_option(package_name="cas-mirror", prog_name="cas-sync")
@click.pass_context
def cli(ctx: click.Context, show: bool, dry_run: bool, verify: bool, explain: str | None,
        condarc_url: str | None, pip_conf_url: str | None, quiet: bool, as_json: bool,
        config_file: str | None, debug: bool, **params: Any) -> int:
    """Mirror conda channels into a local folder that conda, mamba, pixi and rattler use.

    Configuration is read from /etc/cas-mirror, then ~/.cas-mirror (the user file wins),
    then -f FILE, then the flags below. Exit status: 0 done, 1 some items failed (the
    mirror is consistent), 2 usage or configuration error, 3 another run holds the lock,
    4 stopped early (disk space).
    """
    if ctx.invoked_subcommand is not None:
        # `cas-sync -f FILE pypi`: the subcommand reads the same configuration.
        ctx.obj = {"config_file": config_file, "overrides": overrides_from(params)}
        return EXIT_OK
    config = cfg.load_config(config_file, overrides_from(params))
    if show:
        click.echo(cfg.show_as_json(config) if as_json else cfg.render_show(config), nl=False)
        return EXIT_OK
    if condarc_url or pip_conf_url:
        from . import clients

        if condarc_url:
            click.echo(clients.condarc(config, condarc_url), nl=False)
        if pip_conf_url:
            click.echo(clients.pip_conf(config, pip_conf_url), nl=False)
        return EXIT_OK

    from .conda import report as conda_report
    from .conda.sync import explain as explain_records
    from .conda.sync import run_sync
    from .output import Output, print_result

    output = Output(quiet=quiet)
    if explain is not None:
        rows, result = explain_records(config, explain, output)
        if as_json:
            click.echo(conda_report.explain_json(rows))
        else:
            conda_report.render_explain(rows, explain, sys.stdout)
        return result.exit_code
    result = run_sync(config, output=output, dry_run=dry_run, verify=verify)
    return print_result(conda_report, result, as_json=as_json, dry_run=dry_run, quiet=quiet)


from .pypi.cli import pypi as _pypi_command  # noqa: E402  (the group must exist first)

cli.add_command(_pypi_command)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and maps errors to exit statuses."""
    return run_command(cli, "cas-sync", argv)
