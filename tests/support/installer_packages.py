"""Real conda packages for the installer tests: files with build prefix placeholders in
text and binary mode (paths.json, and the older info/files + info/has_prefix), symlinks,
read-only files, a `noarch: python` package with entry points, and a stand-in `python`
whose `bin/python` is a shell script that records how it was called (the target has no
real python in these tests).

Built with conda-package-handling, like tests/support/conda_packages.py, whose repodata
writer they share.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from conda_package_handling import api as cph

from tests.support.conda_packages import file_record, write_repodata

# conda-build's long placeholder: 255 bytes, so any prefix up to that long fits binaries.
LONG_PLACEHOLDER = ("/tmp/build/_h_env" + "_placehold" * 30)[:255]
OLD_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


@dataclass
class File:
    path: str
    data: bytes = b""
    placeholder: str | None = None
    mode: str | None = None  # "text" / "binary" with a placeholder
    symlink_to: str | None = None
    permissions: int = 0o644


@dataclass
class Package:
    name: str
    version: str = "1.0"
    build: str = "0"
    subdir: str = "linux-64"
    files: list[File] = field(default_factory=list)
    depends: list[str] = field(default_factory=list)
    noarch_python: bool = False
    entry_points: list[str] = field(default_factory=list)
    old_style: bool = False  # info/files + info/has_prefix instead of info/paths.json
    fmt: str = ".conda"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}{self.fmt}"

    def index_json(self) -> dict:
        index = {"name": self.name, "version": self.version, "build": self.build,
                 "build_number": 0, "depends": self.depends, "subdir": self.subdir,
                 "license": "MIT", "timestamp": 1700000000000}
        if self.noarch_python:
            index["noarch"] = "python"
        elif self.subdir == "noarch":
            index["noarch"] = "generic"
        elif self.subdir == "linux-64":
            index.update(arch="x86_64", platform="linux")
        return index


def build(package: Package, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cas-inst-pkg-") as tmp:
        root = Path(tmp)
        (root / "info").mkdir()
        names = []
        for item in package.files:
            target = root / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.symlink_to is not None:
                os.symlink(item.symlink_to, target)
            else:
                target.write_bytes(item.data)
            names.append(item.path)
        (root / "info/index.json").write_text(json.dumps(package.index_json()))
        if package.old_style:
            (root / "info/files").write_text("".join(n + "\n" for n in names))
            lines = [f"{f.placeholder} {f.mode} {f.path}" if f.placeholder != OLD_PLACEHOLDER
                     else f.path for f in package.files if f.placeholder]
            (root / "info/has_prefix").write_text("".join(line + "\n" for line in lines))
            info = ["info/index.json", "info/files", "info/has_prefix"]
        else:
            paths = []
            for item in package.files:
                entry = {"_path": item.path,
                         "path_type": "softlink" if item.symlink_to else "hardlink"}
                if item.symlink_to is None:
                    entry.update(sha256=hashlib.sha256(item.data).hexdigest(),
                                 size_in_bytes=len(item.data))
                if item.placeholder:
                    entry.update(prefix_placeholder=item.placeholder, file_mode=item.mode)
                paths.append(entry)
            (root / "info/paths.json").write_text(json.dumps(
                {"paths": paths, "paths_version": 1}))
            info = ["info/index.json", "info/paths.json"]
        if package.noarch_python:
            (root / "info/link.json").write_text(json.dumps({
                "noarch": {"type": "python", "entry_points": package.entry_points},
                "package_metadata_version": 1}))
            info.append("info/link.json")
        for item in package.files:  # modes last: read-only files must be written first
            if item.symlink_to is None:
                (root / item.path).chmod(item.permissions)
        target = out_dir / package.filename
        target.unlink(missing_ok=True)
        cph.create(str(root), info + names, package.filename, out_folder=str(out_dir))
    return target


def build_channel(root: Path, packages: list[Package]) -> dict[str, Package]:
    """A channel folder with repodata for `packages` (and always noarch/)."""
    by_subdir: dict[str, dict] = {"noarch": {}}
    for package in packages:
        subdir = "noarch" if package.noarch_python else package.subdir
        path = build(package, root / subdir)
        by_subdir.setdefault(subdir, {})[package.filename] = file_record(
            path, package.index_json())
    for subdir, records in by_subdir.items():
        write_repodata(root / subdir, subdir, records)
    return {p.filename: p for p in packages}


def binary_blob(placeholder: str) -> bytes:
    """Bytes like a shared library's: NUL-terminated strings holding the placeholder
    (one alone, one with two occurrences after other text), and one occurrence at the
    end with no NUL after it (conda leaves that one alone)."""
    ph = placeholder.encode()
    return (b"\x7fELF\x02\x01\x01\0" + bytes(range(256)) + ph + b"/lib\0"
            + b"\x01\x02RPATH=" + ph + b"/lib:" + ph + b"/lib64\0" + b"\xff" * 40 + ph)


def python(version: str = "3.11.4") -> Package:
    recorder = (b"#!/bin/sh\n# a stand-in for python: records its arguments and stdin\n"
                b"here=$(dirname \"$0\")\nprintf '%s\\n' \"$*\" > \"$here/../python-called\"\n"
                b"cat >> \"$here/../python-called\"\n")
    return Package("python", version, files=[File("bin/python", recorder, permissions=0o755)])


def tool(version: str = "1.0", extra: str = "") -> Package:
    ph = LONG_PLACEHOLDER
    conf = f"prefix={ph}\nlib={ph}/lib\n# {extra}\ndata={ph}/share/tool\n".encode()
    return Package("tool", version, depends=["python"], files=[
        File("etc/tool.conf", conf, ph, "text"),
        File("bin/tool", f"#!{ph}/bin/python\nprint('tool')\n".encode(), ph, "text",
             permissions=0o755),
        File("etc/readonly.conf", f"root={ph}\n".encode(), ph, "text", permissions=0o444),
        File("lib/libtool.so", binary_blob(ph), ph, "binary", permissions=0o755),
        File("lib/libtool.so.1", symlink_to="libtool.so"),
        File(f"share/tool/{version}.txt", f"tool {version}\n".encode()),
    ])


def legacy() -> Package:
    return Package("legacy", "2.0", fmt=".tar.bz2", old_style=True, files=[
        File("etc/legacy.cfg", f"home={OLD_PLACEHOLDER}/legacy\n".encode(), OLD_PLACEHOLDER,
             "text"),
        File("lib/liblegacy.so", binary_blob(LONG_PLACEHOLDER), LONG_PLACEHOLDER, "binary"),
    ])


def pyapp() -> Package:
    return Package("pyapp", "0.5", build="py_0", subdir="noarch", noarch_python=True,
                   depends=["python"], entry_points=["pyapp = pyapp.cli:main"], files=[
                       File("site-packages/pyapp/__init__.py", b"VERSION = '0.5'\n"),
                       File("site-packages/pyapp/cli.py", b"def main():\n    return 0\n"),
                       File("python-scripts/pyapp-helper", b"#!/bin/sh\necho helper\n",
                            permissions=0o755),
                   ])
