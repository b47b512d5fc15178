"""libcurl set-up, decided in one place: the options every request gets (proxy, TLS, the
limits derived from the settings), the collector of response headers, and the stall watch.

`timeout` is the longest wait between two reads. libcurl's own low-speed check cannot say
that: it averages the speed over a window of about 5 seconds, so with a limit of 1 byte/s
it gave up `timeout` + 5 to 7 seconds after the last byte (7 to 8 s for a 1 s timeout,
12 s for 5 s). So libcurl is only given the connect and total limits, and the time of the last
read is kept here (`Headers.last_read`) and watched by the loops that drive libcurl.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

import pycurl

from .. import __version__
from ..text import safe
from .types import Fatal, NetworkSettings

WATCH_INTERVAL = 1.0  # the longest one wait for network activity may last


def user_agent() -> str:
    return f"cas-mirror/{__version__}"


def default_ca_bundle() -> str | None:
    """The CA bundle the system's OpenSSL uses (the wheel's libcurl has no path of its own
    that is sure to exist here); the usual variables win, as they do for curl.

    OpenSSL's own default comes from `_ssl`, the extension module `ssl` wraps: importing
    `ssl` itself costs a sync about 7 ms of start-up for the same two strings (the
    variable OpenSSL reads, normally SSL_CERT_FILE, and its compiled-in file)."""
    for name in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(name) and os.path.isfile(os.environ[name]):
            return os.environ[name]
    try:
        from _ssl import get_default_verify_paths
    except ImportError:  # a Python without its OpenSSL module
        openssl_env, openssl_cafile = "SSL_CERT_FILE", None
    else:
        openssl_env, openssl_cafile = get_default_verify_paths()[:2]
    for candidate in (os.environ.get(openssl_env), openssl_cafile,
                      "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if candidate and os.path.isfile(candidate):
            return candidate
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return None


def limit_options(settings: NetworkSettings) -> dict[int, int]:
    """The time limits libcurl enforces itself: connecting (`timeout`) and, when set, the
    whole request (`total_timeout`). No low-speed options: the wait between two reads is
    watched by `stalled` instead (see the module's docstring)."""
    options = {pycurl.CONNECTTIMEOUT_MS: max(1, round(settings.timeout * 1000))}
    if settings.total_timeout:
        options[pycurl.TIMEOUT_MS] = max(1, round(settings.total_timeout * 1000))
    return options


_LOGGED_HEADERS = ("If-None-Match", "If-Modified-Since", "Range", "If-Range")


def describe_request(method: str, url: str, headers: Mapping[str, str] | None) -> str:
    """'GET URL (If-None-Match: "x")': a request and the validators it sends, for logs
    (escaped: URLs and ETags come from upstream)."""
    sent = {k.lower(): v for k, v in (headers or {}).items()}
    shown = [f"{name}: {sent[name.lower()]}" for name in _LOGGED_HEADERS if name.lower() in sent]
    return safe(f"{method} {url}" + (f" ({', '.join(shown)})" if shown else ""))


def stalled(last_read: float, timeout: float, now: float) -> bool:
    """Whether a transfer whose last bytes arrived at `last_read` has waited too long."""
    return now - last_read >= timeout


def stall_message(timeout: float) -> str:
    return f"timed out: no data for {timeout:g} s"


class Headers:
    """Collects the status and headers of the last response (after redirects); the write
    callback needs the status, and libcurl cannot be asked for it during a transfer.

    libcurl hands over each header line to `add`, which is the `append` of a list: a call
    that runs no Python code (a Python callback per line cost a sync of 1,800 small files
    18,000 calls). The lines are parsed when `status` or `values` is first asked for after
    they changed, once per response. `last_read` is when the transfer last received body
    bytes or started; `since` also counts header lines that arrived since its last look."""

    __slots__ = ("_parsed", "_status", "_values", "add", "last_read", "lines", "seen")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.add = self.lines.append  # (HEADERFUNCTION)
        self.seen = 0  # lines already counted by `since`
        self._parsed = 0  # lines `_status` and `_values` come from
        self._status = 0
        self._values: dict[str, str] = {}
        self.last_read = time.monotonic()

    @property
    def status(self) -> int:
        if self._parsed != len(self.lines):
            self._parse()
        return self._status

    @property
    def values(self) -> dict[str, str]:
        if self._parsed != len(self.lines):
            self._parse()
        return self._values

    def since(self, now: float) -> float:
        """When the transfer last received anything, as far as `now` can tell: header lines
        added since the last look count as received at `now`."""
        if self.seen != len(self.lines):
            self.seen = len(self.lines)
            self.last_read = now
        return self.last_read

    def _parse(self) -> None:
        text = b"".join(self.lines).decode("iso-8859-1")
        # The last response's status line starts it (after a redirect or a 100 Continue).
        # Split at "\n" only: each line libcurl handed over ends there, and a value may
        # hold other characters str.splitlines() would also split at (such as \x85).
        first, *rest = text[text.rfind("\nHTTP/") + 1:].split("\n")
        fields = first.split()
        self._status = (int(fields[1]) if first.startswith("HTTP/") and len(fields) > 1
                        and fields[1].isdigit() else 0)
        self._values = {name.strip().lower(): value.strip()
                        for name, colon, value in (line.partition(":") for line in rest)
                        if colon}
        self._parsed = len(self.lines)


class CurlSetup:
    """The options common to every transfer of one Downloader (set again per request:
    reset() clears them, while the handle keeps its connections)."""

    def __init__(self, settings: NetworkSettings):
        self.settings = settings
        self.limits = limit_options(settings)
        self.agent = user_agent()
        self.ca_bundle = (settings.ssl_verify if isinstance(settings.ssl_verify, str)
                          else default_ca_bundle() if settings.ssl_verify else None)
        self._env_proxies: dict[tuple[str, str], str] = {}  # (scheme, host) -> proxy or ""
        self._origins: dict[str, tuple[str, str]] = {}  # URL up to its path -> (scheme, proxy)

    def prepare(self, c: pycurl.Curl, url: str, headers: Mapping[str, str] | None
                ) -> tuple[str, str]:
        """Set every option of a request for `url` on the (reset) handle `c`; returns what
        its URL's origin decided (scheme, proxy), for `retarget`."""
        scheme, proxy = self.origin(url)
        if scheme not in ("http", "https"):
            raise Fatal(f"refusing a {scheme or 'relative'} URL (only http and https)")
        s = self.settings
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.USERAGENT, self.agent)
        for option, value in self.limits.items():
            c.setopt(option, value)
        c.setopt(pycurl.FOLLOWLOCATION, 1)
        c.setopt(pycurl.MAXREDIRS, 10)
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.PROXY, proxy)  # "" also disables libcurl's own
        if s.ssl_verify is False:
            c.setopt(pycurl.SSL_VERIFYPEER, 0)
            c.setopt(pycurl.SSL_VERIFYHOST, 0)
        elif self.ca_bundle:
            c.setopt(pycurl.CAINFO, self.ca_bundle)
        if headers:
            c.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])
        return scheme, proxy

    def retarget(self, c: pycurl.Curl, url: str, prepared: tuple[str, str]) -> bool:
        """Point a handle `prepare` set up for a request without headers at `url`, another
        request without headers, when the two URLs' origins decide the same (`prepared`):
        then every other option stands, and only the URL is set. False: prepare it again."""
        if self.origin(url) != prepared:
            return False
        c.setopt(pycurl.URL, url)
        return True

    def origin(self, url: str) -> tuple[str, str]:
        """The scheme of `url` (as urlsplit gives it) and the proxy for it ("" for none),
        worked out once per URL start: everything up to the path (`scheme://host:port`)
        decides both, and a sync fetches thousands of files from one host."""
        match = _ORIGIN.match(url)
        if match and (known := self._origins.get(match.group())) is not None:
            return known
        parts = urlsplit(url)
        found = parts.scheme, self.proxy_for(parts) if parts.scheme in ("http", "https") else ""
        if match:
            self._origins[match.group()] = found
        return found

    def proxy_for(self, parts: SplitResult) -> str:
        if self.settings.proxy:
            return self.settings.proxy
        key = (parts.scheme, parts.hostname or "")
        if key not in self._env_proxies:  # reading the environment costs more than a request
            self._env_proxies[key] = _environment_proxy(*key)
        return self._env_proxies[key]


def _environment_proxy(scheme: str, host: str) -> str:
    """The proxy the environment names for `scheme` and `host` ("" for none), as Python's
    urllib reads it (HTTPS_PROXY, HTTP_PROXY, NO_PROXY...). On Linux urllib reads a
    scheme's proxy only from `<scheme>_proxy` (any case), so without that variable there
    is none (a NO_PROXY alone names no proxy) and urllib.request (with http.client and
    email: ~40 ms of start-up) is not imported at all."""
    wanted = f"{scheme}_proxy"
    if sys.platform.startswith("linux") and not any(
            name.lower() == wanted for name in os.environ):
        return ""
    import urllib.request

    if urllib.request.proxy_bypass(host):
        return ""
    return urllib.request.getproxies().get(scheme) or ""


# A URL's start as urlsplit reads it: its scheme (urlsplit's characters) and, after "//",
# the network location, which ends at the first "/", "?" or "#". A URL that does not start
# so (leading blanks, no "//") is parsed whole every time.
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")

STALLED = (pycurl.E_OPERATION_TIMEDOUT, "", 0)  # perform_watched's answer for a stall


def perform_watched(multi: pycurl.CurlMulti, c: pycurl.Curl, headers: Headers,
                    timeout: float) -> tuple[int, str, int] | None:
    """Run the transfer prepared on `c` to its end on `multi` (which has no other handle):
    None when libcurl finished it, its error as (code, message, OS errno) when it failed,
    STALLED
    when nothing arrived for `timeout` seconds."""
    multi.add_handle(c)
    try:
        while True:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _, done, failed = multi.info_read()
            if done:
                return None
            if failed:
                return failed[0][1], failed[0][2], c.getinfo(pycurl.OS_ERRNO)
            now = time.monotonic()
            if stalled(headers.since(now), timeout, now):
                return STALLED
            wanted = multi.timeout()  # milliseconds; -1: no timer set
            wait = min(WATCH_INTERVAL, headers.last_read + timeout - now)
            multi.select(wait if wanted < 0 else min(wait, wanted / 1000))
    finally:
        multi.remove_handle(c)
