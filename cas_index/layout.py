"""What a channel folder looks like: platform folder names, which files are packages, the
files cas-index publishes, and listing a folder.

Package files are `*.conda` and `*.tar.bz2` whose names do not start with a dot;
anything else (README, `*.part`, temporary files) is never looked at.
"""

from __future__ import annotations

import os
import stat
from array import array

from .atomic import TEMP_PREFIX
from .model import Skipped

# The platform folders conda clients know (conda's and rattler's lists).
KNOWN_SUBDIRS = frozenset({
    "noarch", "emscripten-wasm32", "wasi-wasm32", "freebsd-64", "linux-32", "linux-64",
    "linux-aarch64", "linux-armv6l", "linux-armv7l", "linux-ppc64", "linux-ppc64le",
    "linux-riscv32", "linux-riscv64", "linux-s390x", "osx-64", "osx-arm64", "win-32",
    "win-64", "win-arm64", "zos-z",
})
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
REPODATA = "repodata.json"
FROM_PACKAGES = "repodata_from_packages.json"
CURRENT = "current_repodata.json"
RUN_EXPORTS = "run_exports.json"  # CEP-12
PATCH_FILE = "patch_instructions.json"  # patch.py
SHARD_INDEX = "repodata_shards.msgpack.zst"  # CEP-16, shards.py
SHARDS_DIR = "shards"
# Every file cas-index writes in a platform folder; their sizes and mtimes are part of the
# "nothing changed" check, so a deleted or hand-edited output is rebuilt. The shards
# folder's mtime changes when a shard in it is added, deleted or replaced.
SUBDIR_OUTPUTS = (
    *(f"{base}{suffix}" for base in (REPODATA, FROM_PACKAGES, CURRENT, RUN_EXPORTS)
      for suffix in ("", ".zst", ".bz2")),
    "index.html",
    PATCH_FILE,
    SHARD_INDEX,
    SHARDS_DIR,
)
CHANNEL_OUTPUTS = ("channeldata.json", "index.html")
# Temporary files of ours that a killed run can leave behind (hidden, so never served or
# indexed); we hold the channel lock, so no live run of ours is writing them.
LEFTOVER_PREFIXES = tuple(f"{TEMP_PREFIX}{name}." for name in (*SUBDIR_OUTPUTS,
                                                              *CHANNEL_OUTPUTS))


def publishing_rank(name: str) -> int:
    """Where a platform output (named relative to its platform folder: `shards/<sha256>
    .msgpack.zst`, `repodata.json.zst`...) goes in the order clients need when outputs are
    published one by one (into a bucket): shards first, since the index names them; then
    the other outputs; the shard index; the compressed repodata; repodata.json last, so a
    client that finds it finds the rest."""
    if name.startswith(f"{SHARDS_DIR}/"):
        return 0
    if name == SHARD_INDEX:
        return 2
    if name == REPODATA:
        return 4
    return 3 if name.startswith(REPODATA) else 1


def is_package_name(name: str) -> bool:
    return name.endswith(PACKAGE_SUFFIXES) and not name.startswith(".")


def list_packages(folder: str, leftovers: list[str] | None = None,
                  odd: list[tuple[str, str]] | None = None) -> tuple[list[str], array]:
    """The regular package files in `folder`, in the order the folder lists them: their
    names, and (size, mtime_ns) of each in turn in one flat array. Names of temporary files
    a killed run left are added to `leftovers`; entries named like packages that are not
    files (a folder, a symbolic link to nothing, a FIFO) to `odd`, with what they are
    (`odd_entry`). The loop is the whole of a warm run on a
    large folder (200,000 files): one stat per package file, the name test inlined, and
    no object kept per file beyond its name (a dict of tuples cost a tenth of the run)."""
    names: list[str] = []
    numbers = array("q")
    add_name, add_numbers = names.append, numbers.extend
    suffixes, regular, stat_at = PACKAGE_SUFFIXES, stat.S_IFREG, os.stat
    # os.listdir + stat(dir_fd=) is ~10 % cheaper than scandir's DirEntry objects
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(fd):
            if not name.endswith(suffixes) or name[0] == ".":
                if leftovers is not None and name.startswith(LEFTOVER_PREFIXES):
                    leftovers.append(name)
                continue
            try:
                st = stat_at(name, dir_fd=fd)
            except FileNotFoundError:  # gone since the listing, or a link to nothing
                if odd is not None and (what := odd_entry(name, fd)):
                    odd.append((name, what))
                continue
            if st.st_mode & 0o170000 == regular:
                add_name(name)
                add_numbers((st.st_size, st.st_mtime_ns))
            elif odd is not None:
                odd.append((name, odd_entry(name, fd, st.st_mode)))
    finally:
        os.close(fd)
    return names, numbers


def odd_entry(name: str, fd: int, mode: int | None = None) -> str:
    """Why the entry `name` of the folder open as `fd`, named like a package, is not one
    (its `mode` as stat gave it; None: stat found nothing); "" when it is gone."""
    if mode is None:
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return ""  # deleted since the listing: nothing to report
        return "a symbolic link to nothing; not a package file"
    if stat.S_ISDIR(mode):
        return "a folder, not a package file"
    return "not a regular file (a FIFO, socket or device); not read"


def listing_dict(names: list[str], numbers: array) -> dict[str, tuple[int, int]]:
    """The listing as file name -> (size, mtime_ns)."""
    return dict(zip(names, zip(numbers[::2], numbers[1::2], strict=True), strict=True))


def listing_digest(names: list[str], numbers: array) -> str:
    """Digest of a listing (names, sizes, mtimes, in its order): the names NUL-separated
    (a name cannot hold NUL), then every size and mtime as a 64-bit integer. A tenth of the
    cost of encoding the listing as JSON, which was a quarter of a warm run on 200,000
    files."""
    from .state import hash_bytes

    return hash_bytes("\0".join(names).encode("utf-8", "surrogateescape"),
                      numbers.tobytes())


def channel_name(root: str) -> str:
    """The channel's name, as its pages and digests give it: its folder's name."""
    return os.path.basename(os.path.abspath(root))


def present_subdirs(root: str) -> list[str]:
    return sorted(name for name in KNOWN_SUBDIRS if os.path.isdir(os.path.join(root, name)))


def stray_packages(root: str) -> list[Skipped]:
    """Package files the channel would never serve: directly in the root, or in a folder
    whose name is not a platform."""
    stray = []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name in KNOWN_SUBDIRS:
                continue
            if entry.is_file() and is_package_name(entry.name):
                stray.append(Skipped(entry.name, "package file in the channel root: move it "
                                     "into its platform folder (e.g. noarch/ or linux-64/)"))
            elif entry.is_dir():
                try:
                    count = sum(1 for name in os.listdir(entry.path) if is_package_name(name))
                except OSError:
                    continue
                if count:
                    stray.append(Skipped(entry.name, f"{count} package file(s) in a "
                                         "folder that is not a platform name; not indexed"))
    return stray
