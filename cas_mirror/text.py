"""Text as users read it, defined once for every line a command prints or logs.

- `safe`: untrusted text (upstream file and project names, URLs, server messages) made safe
  to print or log: control characters (NUL, ESC, newline, DEL, C1) are shown as escapes, so
  a name cannot clear a terminal, recolour it, or forge a log line.
- `plural`: "1 file", "2 files".
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(text: object) -> str:
    """`text` with each control character replaced by a visible escape (\\x1b, \\n, ...)."""
    value = str(text)
    if not _CONTROL.search(value):
        return value
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1] if m.group() in "\n\r\t"
                        else f"\\x{ord(m.group()):02x}", value)


def plural(count: int, word: str, words: str | None = None) -> str:
    """'1 file', '0 files', '2 files' (`words` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"
