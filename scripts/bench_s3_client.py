#!/usr/bin/env python
"""Choosing the S3 client library of cas_mirror/storage: obstore against boto3 on the
same work, PUT then GET of 1,800 objects of 20 KB (the size of the conda benchmark
set's files) with 16 requests in flight, then a LIST of them, against moto's S3 server on
127.0.0.1 (the endpoint the tests use; started once here, in this process, so a run's
CPU column is the client's alone).

Shared protocol (benchlib.alternate): a warm-up each, then --runs rounds alternating the
sides, every run a child process creating its own bucket. moto is slow per request, so
wall time mostly measures it; CPU time is where the clients differ.

    .venv/bin/pip install boto3   # the baseline; not a dependency of cas-mirror
    .venv/bin/python scripts/bench_s3_client.py [--runs 5] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import (  # noqa: E402
    Side,
    alternate,
    check_protocol_args,
    crash_note,
    machine_line,
    protocol_args,
    protocol_note,
    scratch_space,
    table,
    update_docs,
)

from tests.support.s3 import credentials_env, running_endpoint  # noqa: E402

COUNT, SIZE, IN_FLIGHT = 1800, 20_000, 16

CLIENT = r"""
import os, sys, uuid, http.client, concurrent.futures as cf
from urllib.parse import urlsplit
kind, url, count, size, in_flight = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
bucket = "bench-" + uuid.uuid4().hex[:12]
conn = http.client.HTTPConnection(urlsplit(url).netloc); conn.request("PUT", "/" + bucket)
assert conn.getresponse().status == 200
body = os.urandom(size)
keys = [f"ch/linux-64/pkg-{i:05d}.conda" for i in range(count)]
if kind == "obstore":
    import asyncio, obstore
    from obstore.store import S3Store
    store = S3Store(bucket, endpoint=url, region="us-east-1", client_options={"allow_http": True})
    async def run():
        gate = asyncio.Semaphore(in_flight)
        async def put(k):
            async with gate: await obstore.put_async(store, k, body)
        async def get(k):
            async with gate: return len(await (await obstore.get_async(store, k)).bytes_async())
        await asyncio.gather(*map(put, keys))
        got = await asyncio.gather(*map(get, keys))
        assert sum(got) == count * size
    asyncio.run(run())
    listed = sum(len(batch) for batch in obstore.list(store, prefix="ch"))
else:
    import boto3, botocore.config
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      config=botocore.config.Config(max_pool_connections=in_flight))
    with cf.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body), keys))
        read = lambda k: len(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
        got = list(pool.map(read, keys))
    assert sum(got) == count * size
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="ch/")
    listed = sum(len(p.get("Contents", [])) for p in pages)
assert listed == count, listed
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    protocol_args(parser, tmpfs="256m")
    args = parser.parse_args()
    check_protocol_args(parser, args)
    try:
        import boto3  # noqa: F401
    except ImportError:
        parser.error("the baseline needs boto3: .venv/bin/pip install boto3")
    machine = machine_line()
    load = os.getloadavg()[0]
    env = {**os.environ, **credentials_env(ROOT / "bench-data")}
    with running_endpoint() as endpoint, scratch_space("256m", "bench-s3-") as scratch:
        url = endpoint.moto_url  # straight to moto: the recording proxy would add its cost

        def side(kind: str) -> Side:
            return Side(lambda _folder: [sys.executable, "-c", CLIENT, kind, url, str(COUNT),
                                         str(SIZE), str(IN_FLIGHT)], env=env)

        stats = alternate({"obstore": side("obstore"), "boto3": side("boto3")}, args.runs,
                          scratch.path)
    labels = {"obstore": f"obstore {_version('obstore')}",
              "boto3": f"boto3 {_version('boto3')}"}
    section = "\n\n".join(filter(None, [
        "## cas_mirror/storage: choosing the S3 client",
        (f"`scripts/bench_s3_client.py`, {machine}. Each run: PUT then GET of {COUNT:,} "
        f"objects of {SIZE // 1000} KB, {IN_FLIGHT} requests in flight, then a LIST, "
        "against moto's S3 server on loopback (in the benchmark's own process, so CPU is "
        "the client's alone; moto is slow per request and sets most of the wall time). "
        "The peak column is not the clients': each child is forked from the benchmark "
        "process, whose moto keeps every run's objects in memory, so it grows run by run. "
        "Compare the sides of one table, not figures across tables (the load average "
        "says how busy the machine was)."),
        table(stats, against={"obstore": "boto3"}, labels=labels),
        protocol_note(args.runs, scratch, load),
        crash_note(stats),
    ]))
    print(section)
    if args.write_docs:
        update_docs(section)
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
