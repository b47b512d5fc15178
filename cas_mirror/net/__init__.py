"""The shared downloader: parallel, verified, resumable transfers on libcurl.

One object with a small surface, used by the conda sync and the PyPI sync:

- `Downloader.get(url)`: a metadata request (repodata, JSON pages, XML-RPC) with retries,
  a size bound, and conditional headers; returns the whole body. Safe to call from several
  threads (each keeps its own keep-alive connection).
- `Downloader.download(jobs)`: files in parallel, `workers` transfers at a time over
  keep-alive connections, each streamed to a hidden `.name.part` file beside its target
  while hashing, checked for size and sha256 (md5 when that is all upstream gives), and
  renamed into place only when verified. An interrupted `.part` is resumed with a Range
  request carrying If-Range (partial.py), or started over when nothing can check it.
- Failures come back as `DownloadResult.error` (the whole story) and `.cause` (short,
  without URL, for grouping); `host_conditions` finds hosts where every file failed with
  one connection-level cause; a stop (full disk) is `stop_reason`, told once.

Retry policy lives in one place (`RetryPolicy`): connection errors, timeouts, 408/429/5xx
(Retry-After honoured) and checksum mismatches are retried with exponential backoff and
jitter, up to `retries` times; a file waiting for its retry does not hold up the others.

We drive libcurl (pycurl) rather than urllib3: one CurlMulti runs every transfer from a
single thread, so thousands of small packages cost ~0.2 ms of CPU each instead of ~1 ms
with a urllib3 thread pool, where threads mostly contend for the GIL. Proxies are decided
here (the `proxy` setting, else HTTP(S)_PROXY / NO_PROXY as Python reads them) and TLS
uses the system's CA bundle unless `ssl_verify` names another (curl.py).

Modules: types (data in and out), retry (policy, classification, host conditions), space
(free-space guard), curl (handle set-up, timeouts, stall watch), partial (.part files and
their validators), transfer (one job, one attempt), multi (the CurlMulti loop), processes
(worker processes), downloader (the `Downloader`). Nothing here prints: modules log to
`logging.getLogger(__name__)`.
"""

from ..lazy import lazy_names

# What each name is imported from, when first asked for (PEP 562): a run that only
# fetches metadata does not import the transfer machinery (multi, processes, transfer).
_FROM = {
    "default_ca_bundle": "curl", "user_agent": "curl",
    "Downloader": "downloader",
    "part_path": "partial",
    "HostCondition": "retry", "RetryPolicy": "retry", "host_conditions": "retry",
    "FreeSpaceGuard": "space", "human_bytes": "space",
    "PART_SUFFIX": "types", "DiskFull": "types", "DownloadJob": "types",
    "DownloadResult": "types", "HttpError": "types", "HttpResponse": "types",
    "NetworkSettings": "types", "ProgressReporter": "types", "left_by_stop": "types",
}

__all__ = sorted(_FROM)
__getattr__, __dir__ = lazy_names(__name__, _FROM, globals())
