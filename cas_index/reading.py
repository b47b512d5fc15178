"""Reading many package files: in this process, or in worker processes when there are
enough of them to pay for starting the workers.

Workers hand back JSON text (the record and the facts, as the cache stores them), which
is cheaper to send between processes than nested dictionaries.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from typing import Any

# Below this many files to read, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 24


def read_job(job: tuple[str, str]) -> tuple:
    """Runs in a worker: ("ok", size, mtime_ns, record_json, facts_json), ("bad", reason)
    or ("gone",)."""
    from .package import PackageError, read_package

    path, subdir = job
    try:
        info = read_package(path, subdir)
    except FileNotFoundError:
        return ("gone",)
    except PackageError as exc:
        return ("bad", str(exc))
    return ("ok", info.size, info.mtime_ns, _compact(info.record), _compact(info.facts))


def _compact(value: Any) -> str:
    import json  # not needed by a run that reads nothing

    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def read_files(jobs: list[tuple[str, str]], workers: int) -> list[tuple]:
    """`read_job` over `jobs`, in worker processes when that pays."""
    if workers <= 1 or len(jobs) < PARALLEL_MIN_FILES:
        return [read_job(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    from . import package  # noqa: F401 - imported once here, inherited by forked workers

    chunksize = max(1, min(32, len(jobs) // (workers * 4)))
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=_pool_context()) as pool:
        return list(pool.map(read_job, jobs, chunksize=chunksize))


def _pool_context() -> Any:
    import multiprocessing
    import threading

    # fork starts workers in a millisecond with everything imported, but is only safe while
    # this process has no other threads (the command line never does at this point; a test
    # with a server thread does). forkserver otherwise.
    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
