"""Running a click command as a console script: errors become one line and an exit status.

- Usage errors (click's own: unknown option, bad value, missing argument) print one line,
  `PROG: error: ...`, and exit 2, like configuration errors.
- `CasError`s exit with their documented status and a one-line message.
- An environment problem that escapes (an `OSError`: permission denied, read-only file
  system, a file where a folder should be, a full disk) is one line naming the path and the
  problem: exit 4 for a full disk or quota, 2 otherwise.
- Ctrl-C exits 130 (a server treats it as a normal stop).
- Anything else is a bug: one line saying so (the traceback with --debug) and EXIT_BUG.

Every message passes through `text.safe`: it may quote upstream names or URLs.
The command sees a `Session` as `ctx.obj`: `--debug` and `-v` record there what they ask
for (`debug_option`, `Session.log_to_stderr`), and the session is closed after the run.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import traceback
from pathlib import Path

import click

from .errors import EXIT_ABORTED, EXIT_BUG, EXIT_OK, EXIT_USAGE, CasError, is_disk_full, os_problem
from .text import safe


class Session:
    """What one run of a command asked for beyond its own work: a traceback on a bug,
    logging to stderr. `run_command` hands it to the command as `ctx.obj`."""

    def __init__(self) -> None:
        self.debug = False
        self._resources = contextlib.ExitStack()

    def log_to_stderr(self, level: int) -> None:
        from .logs import logging_to_stderr

        self._resources.close()  # a subcommand's choice replaces its group's
        self._resources.enter_context(logging_to_stderr(level))

    def close(self) -> None:
        self._resources.close()


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        session = ctx.find_object(Session)
        if session is not None:
            session.debug = True
    return value


def debug_option(help: str = "Show a traceback on unexpected errors.", **kwargs):
    """The `--debug` flag of every command run by `run_command`."""
    return click.option("--debug", is_flag=True, callback=_set_debug, help=help, **kwargs)


def one_line(text: str) -> str:
    """A message for one line of output: whitespace runs (click wraps some) become one space,
    control characters are escaped."""
    return safe(" ".join(str(text).split()))


_FILESYSTEM_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                      errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def is_environment_problem(exc: OSError) -> bool:
    """A problem of the machine the user can fix (a path, its permissions, the disk), as
    opposed to a network error or a bug that happens to be an OSError."""
    return exc.filename is not None or exc.errno in _FILESYSTEM_ERRNOS


def describe_os_error(exc: OSError) -> str:
    """'PATH: problem' ('/srv/mirror/lock: permission denied'), the path first."""
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(str(p) for p in paths)
    problem = os_problem(exc)
    if exc.errno == errno.EEXIST and exc.filename is not None \
            and not Path(exc.filename).is_dir():
        problem = "is a file, not a folder"
    return f"{where}: {problem}" if where else problem


def _bug(prog: str, session: Session) -> int:
    if session.debug:
        traceback.print_exc()
    else:
        click.echo(
            f"{prog}: internal error: {safe(repr(sys.exc_info()[1]))}; rerun with --debug "
            "for the traceback and please report it",
            err=True,
        )
    return EXIT_BUG


def run_command(command: click.Command, prog: str, argv: list[str] | None = None, *,
                interrupted_status: int = 130) -> int:
    argv = sys.argv[1:] if argv is None else argv
    session = Session()
    try:
        result = command.main(args=argv, prog_name=prog, standalone_mode=False, obj=session)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError):
            hint = f" (see {exc.ctx.command_path if exc.ctx else prog} --help)"
        click.echo(f"{prog}: error: {one_line(exc.format_message())}{hint}", err=True)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        if interrupted_status:
            click.echo(f"{prog}: interrupted", err=True)
        return interrupted_status
    except CasError as exc:
        click.echo(f"{prog}: error: {safe(exc)}", err=True)
        return exc.exit_code
    except OSError as exc:
        if not is_environment_problem(exc):
            return _bug(prog, session)
        if session.debug:
            traceback.print_exc()
        click.echo(f"{prog}: error: {safe(describe_os_error(exc))}", err=True)
        return EXIT_ABORTED if is_disk_full(exc) else EXIT_USAGE
    except Exception:  # noqa: BLE001 - a bug: say so plainly, traceback only on request
        return _bug(prog, session)
    finally:
        session.close()
    return result if isinstance(result, int) else EXIT_OK
