"""`Work`: one channel/platform as it moves through a conda sync (gather.py fetches,
filters and plans it; sync.py downloads; publish.py and a target publish it). The model
only: it holds each stage's result and the platform's report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import quiet
from .fetch import ChannelSource, Fetched
from .filter import Decision
from .local import LocalFolder
from .plan import PlatformPlan
from .repodata import UpstreamRepodata
from .results import PlatformReport
from .target import LOCAL, Target


@dataclass
class Work:
    """One channel/platform as it moves through the pipeline."""

    source: ChannelSource
    platform: str
    folder: Path
    state_folder: Path
    report: PlatformReport
    probed: bool = False
    fetched: Fetched | None = None
    upstream: UpstreamRepodata | None = None
    decisions: dict[str, Decision] = field(default_factory=dict)
    local: LocalFolder = field(default_factory=LocalFolder)
    plan: PlatformPlan | None = None
    got: set[str] = field(default_factory=set)  # files downloaded in this run
    run_exports: bytes | None = None  # upstream's run_exports.json (decompressed)
    run_exports_fetched: bool = False  # from upstream in this run (else the cached copy)
    run_exports_error: str | None = None  # could not be read: the published one stays
    quiet: quiet.Recorded | None = None  # nothing to do: the last run's record (quiet.py)
    shards_due: float | None = None  # when publishing may delete an unnamed shard
    started: float = field(default_factory=time.monotonic)
    target: Target = LOCAL  # where it is published (target.py)

    @property
    def usable(self) -> bool:
        return self.report.error is None and self.plan is not None

    def kept(self) -> dict:
        if self.upstream is None:
            return {}
        records = self.upstream.records
        return {fn: records[fn] for fn, d in self.decisions.items() if d.kept}
