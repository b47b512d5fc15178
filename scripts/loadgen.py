#!/usr/bin/env python3
"""Load generators for scripts/bench_serve.py: the wrk command (with a Lua script that picks
a random path per request) and, when wrk is missing, a Python asyncio client (this module
run as a script). Both print one line, `BENCH {json}`: requests, bytes, duration (us),
p50/p99 latency (us), errors; `parse_bench_line` reads it back.

    scripts/loadgen.py URL PATHS_FILE SECONDS CONNECTIONS
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    requests: int
    bytes: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6


WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  math.randomseed(1000 + id)
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %d, \\"bytes\\": %d, \\"us\\": %d, \\"p50\\": %d, \\"p99\\": %d, "
    .. "\\"errors\\": %d}\\n", summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_command(url: str, paths_file: Path, duration: int, connections: int,
                threads: int) -> list[str]:
    """wrk with the path-picking script (its done() prints the BENCH line)."""
    script = paths_file.with_name("pick.lua")
    script.write_text(WRK_SCRIPT)
    return ["env", f"BENCH_PATHS={paths_file}", "wrk", f"-t{threads}", f"-c{connections}",
            f"-d{duration}s", "--timeout", "10s", "-s", str(script), url]


def client_command(url: str, paths_file: Path, duration: int, connections: int) -> list[str]:
    """The Python fallback: this module as a script, printing the same BENCH line."""
    return [sys.executable, __file__, url, str(paths_file), str(duration), str(connections)]


def parse_bench_line(stdout: str) -> Result:
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"bench_serve: no BENCH line from the load generator: {stdout}")
    data = json.loads(line[len("BENCH "):])
    return Result(data["requests"], data["bytes"], data["us"] / 1e6, data["p50"] / 1000,
                  data["p99"] / 1000, data["errors"])


def run_python_client(url: str, paths: list[str], duration: int, connections: int) -> Result:
    """Fallback load generator: keep-alive HTTP/1.1 connections on asyncio streams."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    totals = {"requests": 0, "bytes": 0, "errors": 0}

    async def one_connection(seed: int, stop_at: float) -> None:
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < stop_at:
                path = rng.choice(paths)
                started = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                totals["requests"] += 1
                totals["bytes"] += len(head) + len(body)
                if status >= 400:
                    totals["errors"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            totals["errors"] += 1
        finally:
            writer.close()

    async def main() -> float:
        started = time.monotonic()
        stop_at = started + duration
        await asyncio.gather(*(one_connection(i, stop_at) for i in range(connections)))
        return time.monotonic() - started

    seconds = asyncio.run(main())
    latencies.sort()
    def pick(q):
        return (latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
                if latencies else 0.0)
    return Result(totals["requests"], totals["bytes"], seconds, pick(0.5), pick(0.99),
                  totals["errors"])


def main() -> int:
    url, paths_file, duration, connections = sys.argv[1:5]
    paths = Path(paths_file).read_text().split()
    r = run_python_client(url, paths, int(duration), int(connections))
    print("BENCH " + json.dumps({"requests": r.requests, "bytes": r.bytes,
                                 "us": int(r.seconds * 1e6), "p50": int(r.p50_ms * 1000),
                                 "p99": int(r.p99_ms * 1000), "errors": r.errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
