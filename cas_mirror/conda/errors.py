"""The conda sync's own error kinds, in a module of their own: the code that only catches
them (a run with nothing to do, quiet.py) does not import what raises them (repodata
parsing)."""

from __future__ import annotations

from ..errors import CasError


class RepodataError(CasError):
    """Upstream repodata that cannot be used; the message names the URL."""
