"""The errors users can act on, and the exit statuses they map to.

Every error a user can cause or fix (bad configuration, a lock held by another run,
no disk space) is a `CasError` carrying its exit status; the CLI prints its message
in one line and exits with that status, without a traceback. Anything else that
escapes is a bug and exits with `EXIT_BUG`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # the run finished, some items failed; the published mirror is consistent
EXIT_USAGE = 2  # bad command line, configuration or input file
EXIT_LOCKED = 3  # another run holds the lock on this mirror
EXIT_ABORTED = 4  # the run stopped early (disk space); what was published is consistent
EXIT_REFUSED = 5  # cas-sync import: the bundle was refused (damaged, badly signed, out of order)
EXIT_BUG = 70  # an unexpected internal error (EX_SOFTWARE); please report it


class CasError(Exception):
    """An error with a message meant for the user and a documented exit status."""

    exit_code = EXIT_USAGE


class ConfigError(CasError):
    """Bad configuration file, key, value or command-line flag."""

    exit_code = EXIT_USAGE


class LockHeldError(CasError):
    """Another run holds the lock on the same tree."""

    exit_code = EXIT_LOCKED


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' when a choice is close to `word`, else ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_items(values, parse, error: type[Exception]) -> list:
    """[parse(v) for v in values], with an `error` from one item re-raised as
    'item N: ...' so the user can find it in a YAML list."""
    out = []
    for index, value in enumerate(values):
        try:
            out.append(parse(value))
        except error as exc:
            raise error(f"item {index + 1}: {exc}") from None
    return out


class DiskFullError(CasError):
    """The disk (or quota) filled up while writing; what was published stays consistent."""

    exit_code = EXIT_ABORTED


_OS_PROBLEMS = {
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EROFS": "read-only file system",
    "ENOSPC": "no space left on device",
    "EDQUOT": "disk quota exceeded",
    "ENOTDIR": "a path component is a file, not a folder",
    "EEXIST": "already exists",
    "EISDIR": "is a folder",
}


def os_problem(exc: OSError) -> str:
    """A short lower-case description of an environment problem ('permission denied')."""
    import errno

    from cas_index.errors import reason

    name = errno.errorcode.get(exc.errno or 0, "")
    return _OS_PROBLEMS.get(name) or reason(exc)


def is_disk_full(exc: BaseException) -> bool:
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
