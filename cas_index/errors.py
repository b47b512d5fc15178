"""cas-index's exit statuses and the errors a user can act on.

The numbers are the project's table (README, "Exit statuses"); they are repeated here
because `cas_index` must not import `cas_mirror`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SKIPPED = 1  # the index was published, but some files were left out (listed)
EXIT_USAGE = 2  # bad argument, unreadable path, bad patch file
EXIT_LOCKED = 3  # another run holds the channel's lock and we did not (or could not) wait
EXIT_NO_SPACE = 4  # the disk filled up while publishing; what was published is consistent
EXIT_BUG = 70  # an unexpected internal error


def reason(exc: OSError) -> str:
    """An OSError's reason in words, as a clause ('no such file or directory'): its first
    letter lowered, the rest as written (a message of ours may hold 'MiB')."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


class CasIndexError(Exception):
    """An error with a one-line message meant for the user and an exit status."""

    exit_code = EXIT_USAGE


class UsageError(CasIndexError):
    """A bad command line, path or input file."""

    exit_code = EXIT_USAGE


class LockHeldError(CasIndexError):
    """Another cas-index run holds the lock on the channel."""

    exit_code = EXIT_LOCKED


class DiskFull(CasIndexError):
    """The disk (or quota) filled up during the run."""

    exit_code = EXIT_NO_SPACE
    advice = "the published files are consistent: free some space and rerun"
