"""Filling in the shell header of an installer (`script.TEMPLATE` + `script.FUNCTIONS`):
the spec's values shell-quoted, the license last (user text: no marker inside it is ever
replaced), the payload size and sha256 as fixed-width fields that `build` fills in once
the payload is written.
"""

from __future__ import annotations

import hashlib

from .payload import PayloadSummary
from .script import FUNCTIONS, TEMPLATE
from .spec import InstallerSpec

SIZE_FIELD = "PAYLOAD_SIZE="
SHA_FIELD = "PAYLOAD_SHA256="
SIZE_WIDTH = 20  # digits then spaces, filled in once the payload is written


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _prefix_expression(prefix: str) -> str:
    if prefix.startswith("$HOME"):
        rest = prefix[len("$HOME"):]
        return '"$HOME"' + (shell_quote(rest) if rest else "")
    return shell_quote(prefix)


def render(spec: InstallerSpec, platform: str, summary: PayloadSummary) -> bytes:
    """The header for `platform`, with the payload size and sha256 still zeros."""
    license_text = spec.license_text or ""
    if license_text and not license_text.endswith("\n"):
        license_text += "\n"
    end_marker = "CAS_LICENSE_END_" + hashlib.sha256(license_text.encode()).hexdigest()[:16]
    functions = FUNCTIONS.replace("@LICENSE_END@", end_marker)
    body, main = TEMPLATE.split("\nBATCH=0\n", 1)
    text = body + "\n" + functions + "\nBATCH=0\n" + main
    values = {
        "@NAME@": spec.name, "@VERSION@": spec.version, "@PLATFORM@": platform,
        "@FILE@": spec.installer_name(platform), "@DEFAULT_PREFIX@": spec.default_prefix,
        "@Q_NAME@": shell_quote(spec.name), "@Q_VERSION@": shell_quote(spec.version),
        "@Q_PLATFORM@": shell_quote(platform),
        "@Q_DEFAULT_PREFIX@": _prefix_expression(spec.default_prefix),
        "@Q_PACKAGES@": shell_quote(" ".join(summary.packages)),
        "@MAX_BINARY_PREFIX@": str(summary.max_binary_prefix or ""),
        "@HAS_LICENSE@": "1" if license_text else "0",
        "@PAYLOAD_SIZE@": "0".ljust(SIZE_WIDTH),
        "@PAYLOAD_SHA256@": "0" * 64,
    }
    for marker, value in values.items():
        text = text.replace(marker, value)
    # The license (user text) goes in last, so no marker inside it is ever replaced.
    text = text.replace("@LICENSE@\n", license_text, 1)
    return (text + "__CAS_INSTALLER_PAYLOAD__\n").encode()
