"""`Work`: one channel/platform as it moves through a conda sync (gather.py fetches,
filters and plans it; sync.py downloads; publish.py and a target publish it). The model
only: it holds each stage's result and the platform's report.
"""

from __future__ import annotations

import time
from itertools import compress
from operator import attrgetter, eq
from pathlib import Path

from .local import LocalFolder
from .results import PlatformReport
from .target import LOCAL, Target

_KEPT = attrgetter("kept")
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable

    from cas_index.repodata import Prepared

    from . import quiet
    from .fetch import ChannelSource, Fetched
    from .filter import Decision
    from .plan import PlatformPlan
    from .repodata import UpstreamRepodata


class Work:
    """One channel/platform as it moves through the pipeline. (A plain class, not a
    dataclass: every run builds it, and a dataclass compiles its methods at import.)"""

    def __init__(self, source: ChannelSource, platform: str, folder: Path, state_folder: Path,
                 report: PlatformReport, probed: bool = False) -> None:
        self.source, self.platform, self.folder = source, platform, folder
        self.state_folder, self.report, self.probed = state_folder, report, probed
        self.fetched: Fetched | None = None
        self.upstream: UpstreamRepodata | None = None
        self.decisions: dict[str, Decision] = {}
        self.local = LocalFolder()
        self.plan: PlatformPlan | None = None
        self.got: set[str] = set()  # files downloaded in this run
        self.run_exports: bytes | None = None  # upstream's run_exports.json (decompressed)
        self.run_exports_fetched = False  # from upstream in this run (else the cached copy)
        self.run_exports_error: str | None = None  # not read: the published one stays
        # nothing to do: the last run's record (quiet.py); such a platform has no plan
        self.quiet: quiet.Recorded | None = None
        self.shards_due: float | None = None  # when publishing may delete an unnamed shard
        # publishing's CPU work for the document expected after the downloads, done while
        # they run (publish.prepare_ahead)
        self.prepared: Prepared | None = None
        self.started = time.monotonic()
        self.target: Target = LOCAL  # where it is published (target.py)

    def __repr__(self) -> str:
        return f"Work({self.source.path}/{self.platform})"

    @property
    def usable(self) -> bool:
        """Fetched (and planned, unless quiet) without an error."""
        return self.report.error is None and (self.plan is not None
                                              or self.quiet is not None)

    def kept(self) -> dict:
        """File name -> record of every kept record (C-level passes: a big platform keeps
        hundreds of thousands)."""
        if self.upstream is None:
            return {}
        flags = list(map(_KEPT, self.decisions.values()))
        records = records_of(self.upstream.records, self.decisions)
        return dict(zip(compress(self.decisions, flags), compress(records, flags), strict=True))


def records_of(records: dict, decisions: dict) -> Iterable:
    """The records `decisions` decides, in its order: `records`' values themselves when
    both have the same keys in the same order, as `filter.select` makes them (no look-up
    of each file name, which on a big platform costs more than the rest)."""
    if len(records) == len(decisions) and all(map(eq, records, decisions)):
        return records.values()
    return list(map(records.__getitem__, decisions))
