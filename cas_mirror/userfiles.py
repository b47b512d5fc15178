"""Reading a text file the user names: a configuration file, bandersnatch's INI, an
installer spec or its license, a lockfile. Each is read with a bound, so that a path to
something that never ends (`-f /dev/zero`) or a file far larger than any such file
(hundreds of MB given by mistake) is one line saying so instead of a run that reads and
parses until memory or patience runs out. A pipe stays readable (`-f <(make-config)`).

The refusal is an OSError (EFBIG) naming the file: each reader already turns OSErrors
into its own one-line message.
"""

from __future__ import annotations

import errno

MAX_CONFIG_TEXT = 8 << 20  # configuration, INI, spec, license: far above any real one
MAX_LOCKFILE_TEXT = 64 << 20  # lockfiles of many environments run to a few MB


def read_text(path, limit: int = MAX_CONFIG_TEXT) -> str:
    """The UTF-8 text of `path` (newlines as `open` reads them); OSError EFBIG beyond
    `limit` characters, UnicodeDecodeError for bytes that are not UTF-8."""
    with open(path, encoding="utf-8") as f:
        text = f.read(limit + 1)
    if len(text) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB: not a file of this "
                      "kind; refusing it", str(path))
    return text
