"""Running a click command as a console script: errors become one line and an exit status.

Usage errors exit 2 (click's own), `CasError`s exit with their documented status and a
one-line message, Ctrl-C exits 130 (a server treats it as a normal stop), and anything
else is a bug: one line saying so (the traceback with --debug) and EXIT_BUG.
"""

from __future__ import annotations

import sys
import traceback

import click

from .errors import EXIT_BUG, EXIT_OK, CasError


def run_command(command: click.Command, prog: str, argv: list[str] | None = None, *,
                interrupted_status: int = 130) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        if interrupted_status:
            click.echo(f"{prog}: interrupted", err=True)
        return interrupted_status
    except CasError as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        return exc.exit_code
    except Exception:  # noqa: BLE001 - a bug: say so plainly, traceback only on request
        if "--debug" in argv:
            traceback.print_exc()
        else:
            click.echo(
                f"{prog}: internal error: {sys.exc_info()[1]!r}; rerun with --debug "
                "for the traceback and please report it",
                err=True,
            )
        return EXIT_BUG
    return result if isinstance(result, int) else EXIT_OK
