"""Running a command as a console script: errors become one line and an exit status.

- Usage errors (click's own: unknown option, bad value, missing argument) print one line,
  `PROG: error: ...`, and exit 2, like configuration errors.
- `CasError`s exit with their documented status and a one-line message.
- An environment problem that escapes (an `OSError`: permission denied, read-only file
  system, a file where a folder should be, a full disk) is one line naming the path and the
  problem: exit 4 for a full disk or quota, 2 otherwise.
- Ctrl-C exits 130 (a server treats it as a normal stop).
- Output nobody reads any more (`cas-sync --show | head`) ends the run quietly with
  status 1, as click's own paths do (cas_index.streams); a message for a closed stderr is
  dropped, its status kept.
- Anything else is a bug: one line saying so (the traceback with --debug) and EXIT_BUG.

Every message passes through `text.safe`: it may quote upstream names or URLs.
The command sees a `Session` as `ctx.obj`: `--debug` and `-v` record there what they ask
for (`debug_option`, `Session.log_to_stderr`), and the session is closed after the run.

`run_command` runs a click command; `run_guarded` runs a plain function (`cas-sync` when
its quick reader read the arguments: args.py) with the same mapping. This module does not
import click: its exception types are looked for only when click is loaded.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import EXIT_ABORTED, EXIT_BUG, EXIT_OK, EXIT_USAGE, CasError, is_disk_full, os_problem
from .text import safe

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import click


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
    import click

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


def _say(line: str) -> None:
    from cas_index.streams import say

    say(line)


def _traceback() -> None:
    import traceback

    traceback.print_exc()


def _bug(prog: str, session: Session) -> int:
    if session.debug:
        _traceback()
    else:
        _say(f"{prog}: internal error: {safe(repr(sys.exc_info()[1]))}; rerun with --debug "
             "for the traceback and please report it")
    return EXIT_BUG


def run_command(command, prog: str, argv: list[str] | None = None, *,
                interrupted_status: int = 130) -> int:
    """Run the click `command` on `argv` (default: sys.argv[1:]); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    return run_guarded(prog, lambda session: command.main(
        args=argv, prog_name=prog, standalone_mode=False, obj=session),
        interrupted_status=interrupted_status)


def run_guarded(prog: str, run: Callable[[Session], object], *,
                interrupted_status: int = 130) -> int:
    """`run(session)`, its errors mapped to one line and an exit status (module
    docstring); returns the exit status (`run`'s own when it returns an int)."""
    session = Session()
    try:
        result = run(session)
        if sys.stdout is not None:  # what is still buffered is written inside the guard
            sys.stdout.flush()
    except BaseException as exc:  # each kind is mapped (or re-raised) by _status
        status = _status(exc, prog, session, interrupted_status)
        if status is None:
            raise
        return status
    finally:
        session.close()
        from cas_index.streams import settle_stdout

        settle_stdout()  # what could not be written is not written again at exit
    return result if isinstance(result, int) else EXIT_OK


def _status(exc: BaseException, prog: str, session: Session,
            interrupted_status: int) -> int | None:
    """The exit status for `exc` (being handled), its line said; None: not ours to map
    (SystemExit and the like)."""
    click = sys.modules.get("click")  # a usage error can only come from a loaded click
    if click is not None:
        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            hint = ""
            if isinstance(exc, click.UsageError):
                hint = f" (see {exc.ctx.command_path if exc.ctx else prog} --help)"
            _say(f"{prog}: error: {one_line(exc.format_message())}{hint}")
            return exc.exit_code
        if isinstance(exc, click.Abort):
            exc = KeyboardInterrupt()
    if isinstance(exc, KeyboardInterrupt):
        if interrupted_status:
            _say(f"{prog}: interrupted")
        return interrupted_status
    if isinstance(exc, BrokenPipeError):
        from cas_index.streams import READER_GONE, reader_went_away

        if reader_went_away(exc):
            return READER_GONE
    if isinstance(exc, CasError):
        _say(f"{prog}: error: {safe(exc)}")
        return exc.exit_code
    if isinstance(exc, OSError):
        if not is_environment_problem(exc):
            return _bug(prog, session)
        if session.debug:
            _traceback()
        _say(f"{prog}: error: {safe(describe_os_error(exc))}")
        return EXIT_ABORTED if is_disk_full(exc) else EXIT_USAGE
    if isinstance(exc, Exception):  # a bug: say so plainly, traceback only on request
        return _bug(prog, session)
    return None
