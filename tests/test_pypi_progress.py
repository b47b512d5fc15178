"""The download progress of a PyPI sync: PEP 658 `.metadata` files have no size in the
page, so their bytes grow the total as they arrive; the bytes done never pass the total,
and the final total is every byte received (release files and .metadata)."""

from __future__ import annotations

import io
import threading

from cas_mirror import config as cfg
from cas_mirror.net import ProgressReporter
from cas_mirror.output import Output
from cas_mirror.pypi.sync import run_sync
from tests.support.pypi_mirror import PypiMirror, make_upstream


class _Recorder(ProgressReporter):
    def __init__(self):
        self.total = self.done = 0
        self.files = 0
        self.overshoots: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def start(self, files: int, total_bytes: int) -> None:
        self.files, self.total = files, total_bytes

    def grow_total(self, nbytes: int) -> None:
        with self.lock:
            self.total += nbytes

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.done += nbytes
            if self.done > self.total:
                self.overshoots.append((self.done, self.total))


class _RecordingOutput(Output):
    def __init__(self):
        super().__init__(stream=io.StringIO(), interactive=False)
        self.recorder = _Recorder()

    def progress(self, label: str) -> ProgressReporter:
        return self.recorder


def test_metadata_bytes_grow_the_total_and_never_overshoot(tmp_path, http_server,
                                                          isolated_config, run_cli):
    upstream = make_upstream(tmp_path, http_server)
    PypiMirror(tmp_path / "mirror", isolated_config.user, run_cli, upstream)
    output = _RecordingOutput()
    report = run_sync(cfg.load_config(), output=output)
    assert report.exit_code == 0
    files = [f for p in upstream.projects.values() for f in p.files]
    metadata = sum(len(f.metadata) for f in files if f.metadata is not None)
    assert metadata > 0
    recorder = output.recorder
    assert recorder.files == len(files) + sum(1 for f in files if f.metadata is not None)
    assert recorder.overshoots == []
    assert recorder.done == recorder.total == sum(f.size for f in files) + metadata
    assert sum(p.bytes for p in report.projects) == recorder.done
