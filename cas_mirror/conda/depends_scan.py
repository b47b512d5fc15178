"""A byte-level prefilter for the dependency check (unsatisfied.py): which records' raw
`depends` may name one of a set of package names, found by one regular-expression scan
over their joined bytes instead of decoding every dependency string of every kept
record (hundreds of thousands of records, a few strings each).

The scan never passes over a record the exact check (`closure.dependency_name` on each
decoded entry) would report, so the check needs to decode only the candidates:
- JSON strings in a raw slice hold no raw control characters (msgspec refuses them), so
  without a backslash (no escapes) and with ASCII bytes only, an entry's text is the
  bytes between its quotes, and its name (after leading spaces, up to a character of
  `[\\s=<>!~,|\\[]` or the closing quote, lower-cased) is what the pattern matches,
  case-insensitively, at the entry's opening quote;
- a batch holding a backslash or a non-ASCII byte (where the two could differ: escapes,
  Unicode spaces or case) makes every one of its records a candidate; names that are not
  ASCII are therefore left out of the pattern, since only such a batch can name them.
A candidate that names none of them (a closing quote, a nested list, a virtual package)
is found out by the exact check that follows.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate, repeat

# Beyond this many names, compiling the pattern costs more than decoding every string.
MAX_NAMES = 4096
_SEPARATOR = b"\0"  # never in a raw JSON value, so no match spans two records
_NEXT = b"[ \\t\\n\\r\\f\\v=<>!~,|\\[\"]"  # what may follow a name: dependency_name's stops


def name_pattern(names: set[str]) -> re.Pattern[bytes] | None:
    """The pattern of an entry naming one of `names` (lower-case, as missing_names gives
    them), or None when there are too many for a scan to pay."""
    ascii_names = sorted(n for n in names if n.isascii() and n)
    if len(ascii_names) > MAX_NAMES:
        return None
    if not ascii_names:  # only non-ASCII names: only an unsafe batch can name them
        return re.compile(b"(?!)")
    return re.compile(b'"[ \\t\\n\\r\\f\\v]*' + _alternatives(ascii_names) + b"(?=" + _NEXT
                      + b")", re.IGNORECASE)


def _alternatives(names: list[str]) -> bytes:
    """`names` as one group that branches once per distinct next character (a trie), so
    that the regular-expression engine tries few branches at each opening quote."""
    trie: dict = {}
    for name in names:
        node = trie
        for ch in name:
            node = node.setdefault(ch, {})
        node[""] = None  # a name ends here

    def emit(node: dict) -> bytes:
        ends = "" in node
        branches = [re.escape(ch).encode() + emit(node[ch]) for ch in sorted(node) if ch]
        if not branches:
            return b""
        if len(branches) == 1 and not ends:
            return branches[0]
        return b"(?:" + b"|".join(branches) + (b")?" if ends else b")")

    return emit(trie)


def candidates(raws: list, pattern: re.Pattern[bytes]) -> list[int]:
    """Positions in `raws` (raw `depends` slices) of the records whose depends may name one
    of `pattern`'s names, in order: every position when their bytes hold a backslash or a
    non-ASCII byte."""
    joined = _SEPARATOR.join(raws)
    if not joined.isascii() or b"\\" in joined:
        return list(range(len(raws)))
    starts = list(accumulate(map((1).__add__, map(len, raws)), initial=0))
    at = [match.start() for match in pattern.finditer(joined)]
    # a record's matches are neighbours: dict.fromkeys keeps each position once, in order
    return [i - 1 for i in dict.fromkeys(map(bisect_right, repeat(starts), at))]
