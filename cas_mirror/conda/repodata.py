"""Upstream repodata as the sync sees it: parsed lazily, validated, and re-published.

A channel's `repodata.json` can hold hundreds of thousands of records (~150 MB). We decode
it with msgspec twice over the same buffer: once into `Raw` slices (each record's exact
bytes, kept for re-publishing untouched) and once into `RecordView`s holding only the
fields the filter and the plan read. Both passes together take well under a second and a
few hundred MB for 320,000 records, where `json.loads` takes seconds and ~1 GB.

Upstream controls file names: a record whose key is not a plain
`name-version-build.conda|.tar.bz2` (separators, `..`, control characters, a leading dot)
is refused here, before anything downstream can use it as a path.
"""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import repeat
from operator import add, attrgetter, ne
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import msgspec

from cas_index.plain import Plain

from .errors import RepodataError

PACKAGE_KEYS = ("packages", "packages.conda")
EXTENSIONS = (".conda", ".tar.bz2")
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+!-]*\.(?:conda|tar\.bz2)$")


class RecordView(msgspec.Struct, gc=False):
    """The fields of a record the filter and the plan need (the record's exact bytes stay
    in the document: `restricted_document` finds them there when publishing).

    Not tracked by the garbage collector (`gc=False`): a platform holds hundreds of
    thousands of them, none can be part of a reference cycle (strings, numbers, raw
    slices), and the collector's passes over them cost more than the parse."""

    name: Any = None
    version: Any = None
    build: Any = None
    build_number: Any = None
    license: Any = None
    license_family: Any = None
    subdir: Any = None
    size: Any = None
    sha256: Any = None
    md5: Any = None
    # Kept raw (no strings decoded) until the dependency check asks: thousands of
    # dependency strings per platform cost more than the rest of a record.
    depends: msgspec.Raw = msgspec.Raw(b"[]")
    fn: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value


class PublishedRecord(msgspec.Struct):
    """What our own published repodata says about a file we verified when we fetched it."""

    name: Any = None
    sha256: Any = None
    md5: Any = None


class _PublishedDoc(msgspec.Struct, rename={"conda": "packages.conda"}):
    packages: dict[str, PublishedRecord] = {}
    conda: dict[str, PublishedRecord] = {}


_RAW_MAP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY = msgspec.json.Decoder()
_PUBLISHED = msgspec.json.Decoder(_PublishedDoc)
_VIEW_MAP = msgspec.json.Decoder(dict[str, RecordView])
_INFO = msgspec.json.Decoder(dict[str, Any])


class UpstreamRepodata(Plain):
    """One platform's upstream document: records by file name, and what was refused.
    The views are the only per-record objects kept; `sections()` gives the document's
    top-level keys as raw slices, from which publishing takes the records' bytes."""
    _fields = ("url", "platform", "top", "info", "records", "refused", "document")
    __slots__ = _fields
    _defaults: ClassVar[dict] = {"records": dict, "refused": dict, "document": b""}
    _factories: ClassVar[frozenset] = frozenset({"records", "refused"})
    if TYPE_CHECKING:
        url: str
        platform: str
        top: dict[str, msgspec.Raw] | None  # every top-level key, raw (None: not yet found)
        info: dict[str, Any]
        records: dict[str, RecordView]  # fn -> view, both kinds
        refused: dict[str, str]  # fn -> why
        document: bytes  # what `top` is found in when first asked for

    def sections(self) -> dict[str, msgspec.Raw]:
        if self.top is None:
            self.top = _RAW_MAP.decode(self.document)
        return self.top


def decompress(data: bytes, url: str, max_size: int) -> bytes:
    """Decompress a .zst / .bz2 body (by the URL's suffix), never beyond `max_size`."""
    import zstandard  # here, not at import: only fetching needs it

    try:
        if url.endswith(".zst"):
            reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
            out = reader.read(max_size + 1)
        elif url.endswith(".bz2"):
            decompressor = bz2.BZ2Decompressor()
            out = decompressor.decompress(data, max_length=max_size + 1)
            if len(out) <= max_size and not decompressor.eof:
                raise RepodataError(f"{url}: truncated bz2 stream")
        else:
            out = data
    except RepodataError:
        raise
    except (zstandard.ZstdError, OSError, EOFError) as exc:  # corrupt input
        raise RepodataError(f"{url}: cannot decompress ({exc})") from None
    if len(out) > max_size:
        raise RepodataError(
            f"{url}: repodata grows past max_repodata_size ({max_size} bytes) when "
            "decompressed; refusing it"
        )
    return out


def parse_repodata(data: bytes, url: str, platform: str) -> UpstreamRepodata:
    """Validate and index a decompressed document. Raises RepodataError for the whole
    platform when the document is malformed or says it is another platform.

    A document whose records are all plain is decoded in one pass (`_plain_document`);
    any other is first cut into its top-level sections, and each is decoded on its own
    (`_add_section`), so that a bad record costs only its own refusal."""
    plain = _plain_document(data, platform)
    if plain is not None:
        info, records = plain
        _check_subdir(info, url, platform)
        return UpstreamRepodata(url, platform, None, info, records, document=data)
    try:
        top = _RAW_MAP.decode(data)
    except msgspec.DecodeError as exc:
        raise RepodataError(f"{url}: malformed or truncated repodata ({exc})") from None
    try:
        info = _INFO.decode(top["info"]) if "info" in top else {}
        if not isinstance(info, dict):
            raise msgspec.ValidationError("`info` is not an object")
        _check_subdir(info, url, platform)
        records: dict[str, RecordView] = {}
        refused: dict[str, str] = {}
        for key in PACKAGE_KEYS:
            if key in top:
                _add_section(top[key], ".conda" if key == "packages.conda" else ".tar.bz2",
                             platform, records, refused)
    except msgspec.DecodeError as exc:
        raise RepodataError(f"{url}: malformed repodata ({exc})") from None
    except msgspec.ValidationError as exc:
        raise RepodataError(f"{url}: malformed repodata ({exc})") from None
    return UpstreamRepodata(url, platform, top, info, records, refused)


def _check_subdir(info: dict[str, Any], url: str, platform: str) -> None:
    subdir = info.get("subdir")
    if subdir is not None and subdir != platform:
        raise RepodataError(f"{url}: info.subdir is {subdir!r}, expected {platform!r}; refusing")


def _plain_document(data: bytes, platform: str
                    ) -> tuple[dict[str, Any], dict[str, RecordView]] | None:
    """(info, records) of a document decoded whole in one pass, when every record is
    plain (`_plain_decoder`) and every file name is its record's (`_plain_names`); None
    for any other document, which `parse_repodata` then reads section by section (and
    says what is wrong with it)."""
    try:
        doc = _plain_document_decoder(platform).decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    records: dict[str, RecordView] = {}
    for views, extension in ((doc.packages, ".tar.bz2"), (doc.conda, ".conda")):
        if not _plain_names(views, extension):
            return None
        _finish(views)
        records.update(views)
    return doc.info, records


@lru_cache(maxsize=64)
def _plain_document_decoder(platform: str) -> msgspec.json.Decoder:
    """A decoder of a whole document whose records are all plain: `info` an object, the
    two package sections of `_plain_decoder`'s records; other keys are left to
    `sections()`."""
    view = _plain_view(platform)
    doc = msgspec.defstruct("PlainDocument", [
        ("info", dict[str, Any], msgspec.field(default_factory=dict)),
        ("packages", dict[str, view], msgspec.field(default_factory=dict)),
        ("conda", dict[str, view], msgspec.field(default_factory=dict, name="packages.conda")),
    ], gc=False, module=__name__)
    return msgspec.json.Decoder(doc)


def _finish(views: dict[str, RecordView]) -> None:
    """Each view learns its file name, and records of one name share one name string.
    Each pass is one C-level loop over the section: a Python test per record costs more
    than decoding it. One string object for each distinct name means less memory, and
    its hash computed once for all the look-ups by name that follow; subdirs already are
    one object (the Literal's)."""
    values = views.values()
    any(map(setattr, values, repeat("fn"), views))
    names = list(map(_NAME, values))
    one = {}.setdefault
    any(map(setattr, values, repeat("name"), map(one, names, names)))


def _add_section(section: msgspec.Raw, extension: str, platform: str,
                 records: dict[str, RecordView], refused: dict[str, str]) -> None:
    """Decode one of `packages` / `packages.conda` into `records` (valid records) and
    `refused` (fn -> why). A section whose records all decode as `_plain_view` (msgspec
    checks their fields' types while decoding) and whose file names `_plain_names`
    accepts is taken whole; any other is decoded again, leniently, and tested record by
    record (`_add_one_by_one`)."""
    try:
        views = _plain_decoder(platform).decode(section)
    except msgspec.ValidationError:
        views = None
    if views is None or not _plain_names(views, extension):
        _add_one_by_one(_VIEW_MAP.decode(section), extension, platform, records, refused)
        return
    _finish(views)
    records.update(views)


_NAME, _NAME_VERSION_BUILD = attrgetter("name"), attrgetter("name", "version", "build")
_SHA256 = Annotated[str, msgspec.Meta(min_length=64, max_length=64)]
_MD5 = Annotated[str, msgspec.Meta(min_length=32, max_length=32)]
_SIZE = Annotated[int, msgspec.Meta(ge=0)]


@lru_cache(maxsize=64)
def _plain_view(platform: str) -> type[RecordView]:
    """The view of a plain record (`_add_one_by_one`'s inline test, bar the file name):
    name, version and build strings, the subdir absent or `platform`, the size absent or
    a non-negative int, sha256 and md5 absent or strings of their length. A section with
    any other record fails to decode as a whole."""
    return msgspec.defstruct("PlainView", [
        ("name", str), ("version", str), ("build", str),
        ("subdir", Literal[platform] | None, None),  # one string object: the Literal's
        ("size", _SIZE | None, None), ("sha256", _SHA256 | None, None),
        ("md5", _MD5 | None, None)], bases=(RecordView,), gc=False, module=__name__)


@lru_cache(maxsize=64)
def _plain_decoder(platform: str) -> msgspec.json.Decoder:
    """A decoder of a section whose records are all plain (`_plain_view`)."""
    return msgspec.json.Decoder(dict[str, _plain_view(platform)])


def _plain_names(views: dict[str, RecordView], extension: str) -> bool:
    """Whether every file name of a section is its record's `name-version-build` and
    `extension`, and a plain file name (`_SAFE_FILENAME`, no `..`), tested over the whole
    section at once."""
    expected = map(add, map("-".join, map(_NAME_VERSION_BUILD, views.values())),
                   repeat(extension))
    if any(map(ne, expected, views)):  # (compared as made: no list of names held)
        return False
    return all(map(_SAFE_FILENAME.match, views)) and ".." not in "/".join(views)


def _add_one_by_one(views: dict[str, RecordView], extension: str, platform: str,
                    records: dict[str, RecordView], refused: dict[str, str]) -> None:
    """`_add_section` for a section with some record that is not plain: the common case
    is tested inline, `record_problem` says what is wrong with the others."""
    safe_name, problem_of = _SAFE_FILENAME.match, record_problem
    one = {platform: platform}.setdefault
    for fn, view in views.items():
        name, version, build, size = view.name, view.version, view.build, view.size
        sha256, md5, subdir = view.sha256, view.md5, view.subdir
        if not (type(name) is str and type(version) is str and type(build) is str
                and fn == f"{name}-{version}-{build}{extension}" and safe_name(fn)
                and ".." not in fn and (subdir is None or subdir == platform)
                and (size is None or (type(size) is int and size >= 0))
                and (sha256 is None or (type(sha256) is str and len(sha256) == 64))
                and (md5 is None or (type(md5) is str and len(md5) == 32))):
            problem = problem_of(fn, view, extension, platform)
            if problem:
                refused[fn] = problem
                continue
        view.fn, view.name = fn, one(name, name)
        if subdir is not None:
            view.subdir = platform
        records[fn] = view


def record_problem(fn: str, view: RecordView, extension: str, platform: str) -> str | None:
    """Why a record cannot be mirrored, or None when it can (checked for every record of
    every platform, so the common case is a handful of cheap tests)."""
    name, version, build = view.name, view.version, view.build
    if not (type(name) is str and type(version) is str and type(build) is str):
        missing = [a for a, v in (("name", name), ("version", version), ("build", build))
                   if not isinstance(v, str) or not v]
        return f"record has no {missing[0] if missing else 'valid name'}"
    # The pattern admits no separators, control characters or leading dot.
    if not _SAFE_FILENAME.match(fn) or ".." in fn:
        return "file name is not a plain package file name; refusing it"
    if fn != f"{name}-{version}-{build}{extension}":
        if not fn.endswith(extension):
            return f"file name does not end in {extension}"
        return f"file name does not match the record ({name}-{version}-{build})"
    if view.subdir is not None and view.subdir != platform:
        return f"record says subdir {view.subdir!r}, expected {platform!r}"
    size = view.size
    if size is not None and (type(size) is not int or size < 0):
        return f"record has an invalid size {size!r}"
    sha256, md5 = view.sha256, view.md5
    if sha256 is not None and (type(sha256) is not str or len(sha256) != 64):
        return "record has an invalid sha256"
    if md5 is not None and (type(md5) is not str or len(md5) != 32):
        return "record has an invalid md5"
    return None


def restricted_document(upstream: UpstreamRepodata, keep: set[str]) -> bytes:
    """The upstream document with only the records in `keep`, ready to publish.

    `packages` and `packages.conda` stay apart; `info`, `repodata_version` and `removed`
    are upstream's, except that `info.base_url` is dropped (the files are now here).
    Other top-level sections are dropped: they may name files we did not mirror.
    Each record is written as upstream's bytes (a slice of its section, found now: a
    dry run never needs them), never decoded and encoded again.
    """
    out: dict[str, Any] = {}
    top = upstream.sections()
    if "info" in top:
        info = {k: v for k, v in upstream.info.items() if k != "base_url"}
        out["info"] = info if len(info) != len(upstream.info) else top["info"]
    records = upstream.records
    chosen = sorted(fn for fn in keep if fn in records)
    for key, extension in zip(PACKAGE_KEYS, EXTENSIONS[::-1], strict=True):
        raws = _RAW_MAP.decode(top[key]) if key in top else {}
        out[key] = {fn: raws[fn] for fn in chosen if fn.endswith(extension) and fn in raws}
        del raws
    for key in ("removed", "repodata_version"):
        if key in top:
            out[key] = top[key]
    return msgspec.json.encode(out)


def depends_of(upstream: UpstreamRepodata, keep: Iterable[str]) -> dict[str, Any]:
    """File name -> `depends` of the records in `keep`, decoded from the raw slices the
    parse kept. Records with byte-identical `depends` (builds of one package, most of a
    channel) share one decoded list, and the distinct ones are decoded in one call."""
    records = upstream.records
    slot_of: dict[bytes, int] = {}
    distinct: list[msgspec.Raw] = []
    slots: dict[str, int] = {}
    for fn in keep:
        view = records.get(fn)
        if view is None:
            continue
        raw = view.depends
        key = bytes(raw)
        slot = slot_of.get(key)
        if slot is None:
            slot = slot_of[key] = len(distinct)
            distinct.append(raw)
        slots[fn] = slot
    try:  # encoding a list of Raw slices joins them in C
        lists = _ANY.decode(msgspec.json.encode(distinct))
    except msgspec.DecodeError:  # one of them is not JSON we can read: one by one
        lists = []
        for raw in distinct:
            try:
                lists.append(_ANY.decode(raw))
            except msgspec.DecodeError:
                lists.append(_UNREADABLE)  # nothing to compare
    return {fn: lists[slot] for fn, slot in slots.items() if lists[slot] is not _UNREADABLE}


_UNREADABLE = object()


def published_records(path) -> dict[str, PublishedRecord]:
    """The records of the repodata.json we published last time (file name -> hashes);
    empty when there is none or it cannot be read."""
    try:
        doc = _PUBLISHED.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return {}
    return {**doc.packages, **doc.conda}


def empty_document(platform: str) -> bytes:
    """What we publish for a platform upstream does not have (conda needs noarch)."""
    return msgspec.json.encode(
        {"info": {"subdir": platform}, "packages": {}, "packages.conda": {}, "removed": [],
         "repodata_version": 1})
