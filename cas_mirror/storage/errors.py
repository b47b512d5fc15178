"""The storage errors (base.py's interface raises them), apart from the interface and its
records, so that code that only catches them (every conda sync's publishing) imports
nothing more."""

from __future__ import annotations

from ..errors import EXIT_LOCKED, EXIT_PARTIAL, CasError, ConfigError


class StorageError(CasError):
    """The storage service kept failing (after the retries); nothing half-written is visible."""

    exit_code = EXIT_PARTIAL


class StorageAccessError(ConfigError):
    """The tree cannot be reached as configured: credentials, bucket, endpoint (exit 2)."""


class Conflict(CasError):
    """A conditional write lost: another writer changed the object since it was read."""

    exit_code = EXIT_LOCKED
