"""Where the build prefix placeholders are, and how the installer rewrites them.

The build side has Python and the package files, so it finds every placeholder here and
hands the target a list of byte offsets; the target (POSIX sh, tar, coreutils only) then
rewrites each file in one pass without searching: the bytes between offsets copied with
one GNU `dd iflag=skip_bytes,count_bytes` each (else `tail -c | head -c`), the prefix and
the NUL padding written by sh's own printf, the result copied back over the file (`cat >`,
so it keeps its inode and mode):

- text mode: every occurrence of the placeholder is replaced by the prefix (the file's
  length changes). Line `t PLACEHOLDER_LENGTH OFFSET,OFFSET,... PATH`.
- binary mode: each NUL-terminated string that holds the placeholder is rewritten in
  place as the string with every occurrence replaced, padded with NULs to its old length
  (as conda does), so the file keeps its length and the offsets inside it stay valid.
  Line `b PLACEHOLDER_LENGTH A+A...:END,... PATH`: the occurrences of one string and the
  offset of its terminating NUL. An occurrence with no NUL after it is left alone, like
  conda's. A prefix longer than the placeholder cannot fit: the installer refuses it
  before writing anything (`max_binary_prefix`).

Pure functions: bytes in, offsets and lines out.
"""

from __future__ import annotations

from dataclasses import dataclass

# conda-build's historical default, used by has_prefix lines that name no placeholder.
DEFAULT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


def text_offsets(data: bytes, placeholder: bytes) -> list[int]:
    """The offset of each (non-overlapping) occurrence of `placeholder` in `data`."""
    offsets, start = [], 0
    while (found := data.find(placeholder, start)) >= 0:
        offsets.append(found)
        start = found + len(placeholder)
    return offsets


def binary_regions(data: bytes, placeholder: bytes) -> list[tuple[list[int], int]]:
    """(occurrences, offset of the terminating NUL) of each NUL-terminated string that
    holds `placeholder`."""
    regions: list[tuple[list[int], int]] = []
    start = 0
    while (found := data.find(placeholder, start)) >= 0:
        end = data.find(b"\0", found + len(placeholder))
        if end < 0:
            break  # no terminating NUL: conda leaves it too
        regions.append((text_offsets(data[found:end], placeholder), end))
        regions[-1] = ([found + o for o in regions[-1][0]], end)
        start = end + 1
    return regions


@dataclass(frozen=True)
class PrefixPatch:
    """The placeholders of one file of the prefix."""

    path: str  # relative to the prefix
    mode: str  # "text" or "binary"
    placeholder_length: int
    text: tuple[int, ...] = ()
    binary: tuple[tuple[tuple[int, ...], int], ...] = ()

    def line(self) -> str:
        if self.mode == "text":
            where = ",".join(map(str, self.text))
            return f"t {self.placeholder_length} {where} {self.path}"
        where = ",".join("+".join(map(str, occ)) + f":{end}" for occ, end in self.binary)
        return f"b {self.placeholder_length} {where} {self.path}"


def find_patch(path: str, data: bytes, placeholder: str, mode: str) -> PrefixPatch | None:
    """The patch for a file of the prefix, None when the placeholder is not in it."""
    raw = placeholder.encode()
    if mode == "binary":
        regions = binary_regions(data, raw)
        return PrefixPatch(path, mode, len(raw), binary=tuple(
            (tuple(occ), end) for occ, end in regions)) if regions else None
    offsets = text_offsets(data, raw)
    return PrefixPatch(path, "text", len(raw), text=tuple(offsets)) if offsets else None


def apply_patch(data: bytes, patch: PrefixPatch, prefix: str) -> bytes:
    """What the installer makes of `data` for `prefix` (the reference the target's shell
    code is tested against; the build never calls it)."""
    new, length = prefix.encode(), patch.placeholder_length
    if patch.mode == "text":
        out, last = [], 0
        for offset in patch.text:
            out += [data[last:offset], new]
            last = offset + length
        return b"".join([*out, data[last:]])
    buffer = bytearray(data)
    for occurrences, end in patch.binary:
        start = occurrences[0]
        pieces, last = [], start
        for offset in occurrences:
            pieces += [data[last:offset], new]
            last = offset + length
        pieces.append(data[last:end])
        rewritten = b"".join(pieces)
        buffer[start:end] = rewritten + b"\0" * (end - start - len(rewritten))
    return bytes(buffer)
