"""Picking the wanted `info/` members out of a small, fully decompressed tar archive.

Reading a package's metadata is mostly tar header parsing when `tarfile` does it (about
40 % of reading a small `.conda`): a Python object per member and per pax header, with
every field decoded. `scan_members` walks the 512-byte headers of an archive held in
memory and slices out only the members asked for. It covers what conda packages are
made of (ustar and GNU headers, pax extended headers, GNU long names); for anything else
(a global pax header, sparse files, base-256 sizes, a bad checksum, a wanted name that is
not a regular file, a truncated archive) it returns None and the caller reads the archive
with `tarfile`, as before, so unusual or damaged files get tarfile's exact outcome.
"""

from __future__ import annotations

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = frozenset({b"0", b"\0", b"7"})  # tarfile's REGULAR_TYPES without sparse
_SKIPPED = frozenset({b"1", b"2", b"3", b"4", b"5", b"6", b"K"})  # links, devices, dirs...


def scan_members(data: bytes, wanted: frozenset[str], groups: tuple[frozenset[str], ...] = ()
                 ) -> dict[str, bytes] | None:
    """name -> bytes of the regular-file members of the tar `data` whose names are in
    `wanted` (the first of each name; once one name of a group is found the rest of that
    group is no longer wanted), stopping when nothing is left to find. None: use
    tarfile."""
    found: dict[str, bytes] = {}
    remaining = set(wanted)
    pos, end = 0, len(data)
    long_name: bytes | None = None
    pax: dict[bytes, bytes] = {}
    while remaining:
        header = data[pos:pos + _BLOCK]
        if len(header) < _BLOCK:
            return None  # truncated (or no end-of-archive blocks): tarfile decides
        if header == _ZERO_BLOCK:
            break
        if header[124] & 0x80 or not _checksum_ok(header):
            return None
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            return None
        kind = header[156:157]
        start = pos + _BLOCK
        if kind == b"x":
            pax = _pax_records(data[start:start + size])
            if pax is None or b"hdrcharset" in pax:
                return None
        elif kind == b"L":
            long_name = data[start:start + size].split(b"\0", 1)[0]
        elif kind in _REGULAR or kind in _SKIPPED:
            if b"size" in pax:
                try:
                    size = int(pax[b"size"])
                except ValueError:
                    return None
            if b"path" in pax:
                raw = pax[b"path"]
            elif long_name is not None:
                raw = long_name
            else:
                raw = header[:100].split(b"\0", 1)[0]
                prefix = header[345:500].split(b"\0", 1)[0]
                if prefix:
                    raw = prefix + b"/" + raw
            name = raw.decode("utf-8", "surrogateescape")
            if kind not in _REGULAR and name.rstrip("/") in remaining:
                return None  # e.g. info/index.json as a link: tarfile resolves those
            if name in remaining:
                if start + size > end:
                    return None
                found[name] = data[start:start + size]
                remaining.discard(name)
                for group in groups:
                    if name in group:
                        remaining.difference_update(group)
            long_name, pax = None, {}
        else:
            return None  # global pax header, sparse file, vendor extension...
        pos = start + (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if pos > end:
            return None
    return found


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(header) - sum(header[148:156]) + 8 * 0x20
    return stored == unsigned


def _pax_records(body: bytes) -> dict[bytes, bytes] | None:
    """The records of a pax extended header (`<length> <key>=<value>\\n`), None when
    malformed."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(body):
        space = body.find(b" ", pos)
        if space < 0:
            return None if body[pos:].strip(b"\0") else records
        try:
            length = int(body[pos:space])
        except ValueError:
            return None
        record = body[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            return None
        key, _, value = record[:-1].partition(b"=")
        records[key] = value
        pos += length
    return records
