"""`cas-server token add|list|revoke` and `cas-server pypi yank|remove`: the command-line
side of private packages. They act on the same files the server does (the token file and
audit log in the state folder, the private index under its lock), so they work while it
runs; every change is written to the audit log with the token `-` and the local user.
"""

from __future__ import annotations

import os

import click

from .. import config as cfg
from ..errors import EXIT_OK, CasError, ConfigError, LockHeldError
from . import audit
from .auth import Refusal
from .uploads import UploadSettings


def _settings(ctx: click.Context) -> UploadSettings:
    params = ctx.find_root().params
    config = cfg.load_config(params.get("config_file"))
    root = params.get("root")
    root_path = os.path.abspath(os.path.expanduser(root)) if root else config.mirror_dir
    if not os.path.isdir(root_path):
        where = "--root" if root else f"mirror_dir ({config.origins['mirror_dir']})"
        raise ConfigError(f"{where}: {root_path} is not a folder; pass --root FOLDER "
                          "before the command (cas-server --root FOLDER token ...)")
    return UploadSettings.from_config(config, root_path)


@click.group("token")
def token_command() -> None:
    """Upload and read tokens (stored as salted scrypt hashes in the state folder)."""


@token_command.command("add")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="pypi:upload, conda:<channel> or read:<path>; repeat for several.")
@click.pass_context
def token_add(ctx: click.Context, name: str, scopes: tuple[str, ...]) -> int:
    """Make a token NAME and print it, once: it is not stored, only its hash."""
    from .tokens import TokenStore

    s = _settings(ctx)
    store = TokenStore(s.state_dir)
    token, text = store.add(name, list(scopes))
    audit.record(s.state_dir, token="-", action="token-add", path=f"token:{name}",
                 client=audit.command_line_client())
    click.echo(text)
    click.echo(f"cas-server: token {name!r} ({', '.join(token.scopes)}) stored in "
               f"{store.path}; it is shown only now", err=True)
    return EXIT_OK


@token_command.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> int:
    """The tokens: name, scopes, creation time (never the tokens themselves)."""
    from .tokens import TokenStore

    tokens = TokenStore(_settings(ctx).state_dir).tokens()
    for token in tokens:
        click.echo(f"{token.name}\t{' '.join(token.scopes)}\t{token.created}")
    if not tokens:
        click.echo("cas-server: no tokens (cas-server token add NAME --scope SCOPE)", err=True)
    return EXIT_OK


@token_command.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> int:
    """Delete token NAME: the next request presenting it is refused (401)."""
    from .tokens import TokenStore

    s = _settings(ctx)
    TokenStore(s.state_dir).revoke(name)
    audit.record(s.state_dir, token="-", action="token-revoke", path=f"token:{name}",
                 client=audit.command_line_client())
    click.echo(f"cas-server: token {name!r} revoked", err=True)
    return EXIT_OK


@click.group("pypi")
def pypi_command() -> None:
    """Manage the private PyPI index."""


def _change(ctx: click.Context, action: str, project: str, version: str,
            reason: str | None = None) -> int:
    from cas_index.errors import LockHeldError as IndexLockHeld

    from .private_index import PrivateIndex

    s = _settings(ctx)
    index = PrivateIndex(os.path.join(s.root, s.private_folder))
    try:
        with index.lock():
            if action == "yank":
                changed = index.yank(project, version, reason)
            else:
                changed = index.remove(project, version)
    except IndexLockHeld as exc:
        raise LockHeldError(str(exc)) from None
    except Refusal as refusal:
        raise CasError(refusal.reason) from None
    for f in changed:
        audit.record(s.state_dir, token="-", action=f"pypi-{action}",
                     path=f"{index.folder}/packages/{project}/{f['filename']}",
                     sha256=f["sha256"], size=f["size"], client=audit.command_line_client())
    done = "yanked" if action == "yank" else "removed"
    click.echo(f"cas-server: {done} {', '.join(f['filename'] for f in changed)}", err=True)
    return EXIT_OK


@pypi_command.command("yank")
@click.argument("project")
@click.argument("version")
@click.option("--reason", help="Shown to installers (PEP 592).")
@click.pass_context
def pypi_yank(ctx: click.Context, project: str, version: str, reason: str | None) -> int:
    """Yank every file of PROJECT VERSION: installers skip it unless pinned (PEP 592)."""
    return _change(ctx, "yank", project, version, reason)


@pypi_command.command("remove")
@click.argument("project")
@click.argument("version")
@click.pass_context
def pypi_remove(ctx: click.Context, project: str, version: str) -> int:
    """Remove every file of PROJECT VERSION from the private index."""
    return _change(ctx, "remove", project, version)
