"""`cas-sync` and `cas-sync pypi` as click commands: their --help, --version and usage
errors, for the arguments the quick reader (args.py) leaves to click.

The options are declared from the one table (`options.OPTIONS`, `add_options`) and what
click parsed is read back into the same `Options` (`resolve`); the run itself is
`cli.run`, whichever reader read the arguments. `export` and `import` are imported when
used (or listed by --help).
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from . import __version__
from .console import Session, debug_option
from .errors import EXIT_OK
from .options import BY_NAME, CONDA, EXIT_STATUSES, OPTIONS, PYPI, Options

_LAZY = {"export": "cas_mirror.airgap.cli:export_command",
         "import": "cas_mirror.airgap.cli:import_command"}


def add_options(command: str):
    """Decorate a click command with every option; those that do not apply to `command`
    are accepted (to be refused with a clear message) but hidden from its --help."""

    def decorate(func):
        func = click.version_option(__version__, prog_name="cas-sync")(func)
        for opt in reversed(OPTIONS):
            kwargs: dict[str, Any] = {"help": opt.help, "hidden": command not in opt.commands}
            if opt.name == "debug":
                func = debug_option(**kwargs)(func)
                continue
            if opt.kind == "flag":
                kwargs["is_flag"] = True
            elif opt.kind == "count":
                kwargs["count"] = True
            else:
                kwargs.update(type=str, metavar=opt.metavar, multiple=opt.kind == "multi")
            func = click.option(*opt.decls, opt.name, **kwargs)(func)
        return func

    return decorate


def _typed(ctx: click.Context) -> dict[str, Any]:
    return {name: value for name, value in ctx.params.items()
            if name in BY_NAME and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}


def resolve(ctx: click.Context, command: str) -> Options:
    """The options of this run, wherever they were typed; refuses (exit 2) an option that
    does not apply to `command`. A value typed after the subcommand wins over one before."""
    typed: dict[str, Any] = {}
    for level in reversed(_chain(ctx)):
        for name, value in _typed(level).items():
            kind = BY_NAME[name].kind
            if kind == "count":
                typed[name] = typed.get(name, 0) + value
            elif kind == "multi":
                typed[name] = (*typed.get(name, ()), *value)
            else:
                typed[name] = value
    for name in typed:
        opt = BY_NAME[name]
        if command not in opt.commands:
            raise click.UsageError(f"{opt.flag} {opt.where}", ctx=ctx)
    return Options(typed)


def _chain(ctx: click.Context) -> list[click.Context]:
    chain = []
    level: click.Context | None = ctx
    while level is not None:
        chain.append(level)
        level = level.parent
    return chain


def _run(ctx: click.Context, command: str) -> int:
    from .cli import run

    return run(command, resolve(ctx, command), ctx.find_object(Session))


class _Subcommands(click.Group):
    """A group whose air-gap subcommands are imported when one is used (or listed by
    --help): a sync or `--version` does not import the bundles' code."""

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
        return EXIT_OK  # the subcommand reads the options typed here too (resolve)
    return _run(ctx, CONDA)


@cli.command("pypi", context_settings={"help_option_names": ["-h", "--help"]},
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
    return _run(ctx, PYPI)
