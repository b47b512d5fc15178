"""`cas-sync export` and `cas-sync import`: thin shells over `export.run_export` and
`importer.run_import`.

They read the configuration as every cas-sync command does (the standard files, `-f FILE`,
`--mirror-dir`), typed before or after the subcommand; the other options of cas-sync mean
nothing here and are refused. Output: one summary line on stdout (`--json`: an object),
nothing with `--quiet`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from ..command import resolve
from ..config import Config, load_config
from ..console import Session, debug_option
from ..errors import EXIT_OK
from ..logs import level_for
from ..net.space import human_bytes
from ..options import CONDA, Options, overrides_for
from ..text import plural

log = logging.getLogger(__name__)

_SHARED = frozenset({"config", "mirror_dir", "quiet", "json", "verbose", "debug"})


def _shared_options(func):
    for decorate in reversed((
        click.option("-f", "--config", "config", metavar="PATH",
                     help="Read this YAML file after /etc/cas-mirror and ~/.cas-mirror."),
        click.option("--mirror-dir", "--target-directory", "mirror_dir", metavar="PATH",
                     help="Override mirror_dir."),
        click.option("-q", "--quiet", "quiet", is_flag=True, help="No output on success."),
        click.option("--json", "json", is_flag=True, help="Print the result as JSON."),
        click.option("-v", "--verbose", "verbose", count=True,
                     help="Log what the run does to stderr (-vv: DEBUG)."),
        debug_option(help="Show a traceback on unexpected errors, and log at DEBUG."),
    )):
        func = decorate(func)
    return func


def _start(ctx: click.Context) -> tuple[Options, Config]:
    """The shared options wherever typed (others refused), logging, configuration."""
    options = resolve(ctx, CONDA)
    for name in options:
        if name not in _SHARED:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} has no meaning for cas-sync {ctx.info_name}",
                                   ctx=ctx)
    session = ctx.find_object(Session)
    if session is not None:
        session.log_to_stderr(level_for(options.verbose, options.quiet, options.debug))
    config = load_config(options.config, overrides_for(options, CONDA))
    return options, config


def _report(options: Options, result, line: str) -> int:
    if options.json:
        click.echo(json.dumps(result.as_dict(), indent=1))
    elif not options.quiet:
        click.echo(line)
    return EXIT_OK


def _contents(result) -> str:
    return (f"{plural(result.files, 'file')} and {plural(result.metadata, 'metadata file')} "
            f"({human_bytes(result.bytes)}), {plural(result.deletions, 'deletion')}")


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]},
               help="""Write into DEST a bundle of what changed in mirror_dir since the
previous export (or since --since STATE; --since none: everything), for an air-gapped
mirror: `cas-bundle-<state>/` with manifest.json, the volumes bundle.tar.001, ... and, with
--sign, manifest.json.sig. Carry the folder over and run `cas-sync import` there.""")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--since", metavar="STATE", help="Start from this exported state (the "
              "offline mirror's, as `cas-sync import` prints it), or 'none' for a full "
              "bundle; default: the previous export.")
@click.option("--volume-size", metavar="SIZE", help="Cut the bundle into volumes of at most "
              "this size (4GB, 700 MB, bytes); default: one volume.")
@click.option("--sign", "sign_key", metavar="KEY", type=click.Path(path_type=Path),
              help="Sign the manifest with this OpenSSH private key (ssh-keygen -Y sign).")
@_shared_options
@click.pass_context
def export_command(ctx: click.Context, dest: Path, since: str | None, volume_size: str | None,
                   sign_key: Path | None, **_: object) -> int:
    options, config = _start(ctx)
    size = _volume_size(volume_size) if volume_size is not None else None
    from .export import run_export

    result = run_export(Path(config.mirror_dir), config.values["pypi"]["user"], dest,
                        since=since, volume_size=size, sign_key=sign_key)
    if result.state is None:
        return _report(options, result, f"cas-sync export: nothing changed in "
                       f"{result.mirror_dir} since state {result.base}; no bundle written")
    return _report(options, result, (
        f"cas-sync export: {result.bundle}: state {result.state} (base "
        f"{result.base or 'none: a full bundle'}), {_contents(result)}, "
        f"{plural(result.volumes, 'volume')}{', signed' if result.signed else ''}"))


def _volume_size(text: str) -> int:
    from ..config.checks import BadValue, check_size
    from ..options import _scalar

    try:
        return check_size(_scalar(text), Path.cwd())
    except BadValue as exc:
        raise click.BadParameter(str(exc), param_hint="'--volume-size'") from None


@click.command("import", context_settings={"help_option_names": ["-h", "--help"]},
               help="""Check the bundle BUNDLE (a cas-bundle-<state> folder written by
`cas-sync export`) and apply it to mirror_dir: files first, then the metadata, then the
deletions. A damaged volume, a bad signature or a bundle that does not continue this
mirror's state is refused with exit status 5, and nothing is published. Importing a
bundle twice does nothing the second time; an interrupted import is finished by running
it again.""")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--allowed-signers", type=click.Path(path_type=Path), metavar="FILE",
              help="Require a signature by a key of this OpenSSH allowed-signers file.")
@click.option("--verify-key", type=click.Path(path_type=Path), metavar="KEY.pub",
              help="Require a signature by this OpenSSH public key.")
@_shared_options
@click.pass_context
def import_command(ctx: click.Context, bundle: Path, allowed_signers: Path | None,
                   verify_key: Path | None, **_: object) -> int:
    options, config = _start(ctx)
    if allowed_signers is not None and verify_key is not None:
        raise click.UsageError("give --allowed-signers or --verify-key, not both", ctx=ctx)
    from .importer import run_import

    result = run_import(Path(config.mirror_dir), config.values["pypi"]["user"], bundle,
                        allowed_signers=allowed_signers, public_key=verify_key)
    if result.already:
        return _report(options, result, f"cas-sync import: state {result.state} is already "
                       f"imported in {result.mirror_dir}; nothing to do")
    signed = f", signature by {result.signer}" if result.signer else ""
    return _report(options, result, (
        f"cas-sync import: {result.mirror_dir} is now at state {result.state} (was "
        f"{result.base or 'empty'}): {_contents(result)}{signed}"))
