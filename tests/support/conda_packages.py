"""Build real conda packages and channels for tests, the demo and the benchmarks.

Packages are made by conda-package-handling from a real prefix (`info/index.json`,
`info/paths.json`, `info/about.json` and a payload file), in either format. A channel is a
folder of platform subfolders, each with a `repodata.json` whose records are computed here
independently of our own indexer (so tests of cas-index have an oracle), and always a
`noarch/` subfolder, as conda clients require.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conda_package_handling import api as cph


@dataclass
class PkgSpec:
    name: str
    version: str = "1.0"
    build: str = "0"
    build_number: int = 0
    subdir: str = "noarch"
    fmt: str = ".conda"  # or ".tar.bz2"
    depends: list[str] = field(default_factory=list)
    license: str | None = "MIT"
    license_family: str | None = "MIT"
    payload_size: int = 256  # bytes of incompressible payload
    extra_index: dict[str, Any] = field(default_factory=dict)  # merged into index.json
    drop_index: tuple[str, ...] = ()  # keys left out of index.json (old packages: "subdir")
    about: dict[str, Any] = field(default_factory=dict)
    run_exports: dict[str, list[str]] | None = None  # info/run_exports.json when given
    seed: int | None = None  # payload randomness; default derives from the file name

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}{self.fmt}"

    def index_json(self) -> dict[str, Any]:
        index: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "subdir": self.subdir,
        }
        if self.subdir != "noarch":
            arch = self.subdir.split("-", 1)[1]
            index["arch"] = {"64": "x86_64", "32": "x86", "aarch64": "aarch64",
                             "arm64": "arm64"}.get(arch, arch)
            index["platform"] = {"osx": "osx", "win": "win"}.get(self.subdir.split("-")[0], "linux")
        else:
            index["noarch"] = "generic"
        if self.license is not None:
            index["license"] = self.license
        if self.license_family is not None:
            index["license_family"] = self.license_family
        index.update(self.extra_index)
        for key in self.drop_index:
            index.pop(key, None)
        return index


def build_package(spec: PkgSpec, out_dir: str | os.PathLike) -> Path:
    """Write a real package for `spec` into `out_dir` and return its path."""
    out_dir = Path(out_dir).resolve()  # cph changes directory while it builds
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed if spec.seed is not None else spec.filename)
    payload = rng.randbytes(spec.payload_size)
    payload_rel = f"share/{spec.name}/data.bin"
    with tempfile.TemporaryDirectory(prefix="cas-pkg-") as prefix:
        root = Path(prefix)
        (root / "info").mkdir()
        (root / payload_rel).parent.mkdir(parents=True)
        (root / payload_rel).write_bytes(payload)
        (root / "info/index.json").write_text(json.dumps(spec.index_json(), indent=2))
        about = {"summary": f"{spec.name} test package", "license": spec.license or "",
                 "home": "https://example.invalid/" + spec.name, **spec.about}
        (root / "info/about.json").write_text(json.dumps(about, indent=2))
        paths = {
            "paths": [{
                "_path": payload_rel,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size_in_bytes": len(payload),
            }],
            "paths_version": 1,
        }
        (root / "info/paths.json").write_text(json.dumps(paths, indent=2))
        files = ["info/index.json", "info/about.json", "info/paths.json", payload_rel]
        if spec.run_exports is not None:
            (root / "info/run_exports.json").write_text(json.dumps(spec.run_exports))
            files.append("info/run_exports.json")
        target = out_dir / spec.filename
        target.unlink(missing_ok=True)
        cph.create(str(root), files, spec.filename, out_folder=str(out_dir))
    return target


def file_record(path: Path, index: dict[str, Any]) -> dict[str, Any]:
    """A repodata record for a package file: index.json without arch/platform + hashes."""
    data = path.read_bytes()
    record = {k: v for k, v in index.items() if k not in ("arch", "platform")}
    record.update(
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    return record


def write_repodata(subdir_dir: Path, subdir: str, records: dict[str, dict[str, Any]]) -> dict:
    """Write `repodata.json` for `records` (file name -> record) and return the document."""
    doc = {
        "info": {"subdir": subdir},
        "packages": {fn: r for fn, r in sorted(records.items()) if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in sorted(records.items()) if fn.endswith(".conda")},
        "removed": [],
        "repodata_version": 1,
    }
    subdir_dir.mkdir(parents=True, exist_ok=True)
    (subdir_dir / "repodata.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    return doc


@dataclass
class Channel:
    """A channel folder built on disk: where it is and what each subdir holds."""

    root: Path
    specs: dict[str, PkgSpec] = field(default_factory=dict)  # "subdir/filename" -> spec
    repodata: dict[str, dict] = field(default_factory=dict)  # subdir -> document

    def records(self, subdir: str) -> dict[str, dict]:
        doc = self.repodata[subdir]
        return {**doc["packages"], **doc["packages.conda"]}

    def add(self, specs: Iterable[PkgSpec]) -> Channel:
        """Build more packages into the channel and rewrite the affected repodata."""
        return build_channel(self.root, specs, channel=self)

    def remove(self, subdir: str, filename: str) -> None:
        (self.root / subdir / filename).unlink()
        self.specs.pop(f"{subdir}/{filename}")
        self.repodata[subdir] = write_repodata(self.root / subdir, subdir, {
            fn: r for fn, r in self.records(subdir).items() if fn != filename})

    def write_channeldata(self) -> None:
        subdirs = sorted(self.repodata)
        (self.root / "channeldata.json").write_text(
            json.dumps({"channeldata_version": 1, "packages": {}, "subdirs": subdirs}))


def build_channel(root: str | os.PathLike, specs: Iterable[PkgSpec],
                  channel: Channel | None = None) -> Channel:
    """Build `specs` into a channel at `root` (a noarch folder always exists)."""
    root = Path(root)
    channel = channel or Channel(root)
    by_subdir: dict[str, list[PkgSpec]] = {"noarch": []}
    for spec in specs:
        by_subdir.setdefault(spec.subdir, []).append(spec)
    for subdir, subdir_specs in by_subdir.items():
        folder = root / subdir
        records = dict(channel.records(subdir)) if subdir in channel.repodata else {}
        for spec in subdir_specs:
            path = build_package(spec, folder)
            records[spec.filename] = file_record(path, spec.index_json())
            channel.specs[f"{subdir}/{spec.filename}"] = spec
        channel.repodata[subdir] = write_repodata(folder, subdir, records)
    return channel


def copy_package(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(src, dst_dir / src.name))
