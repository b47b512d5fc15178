"""`index.html` pages for people browsing the channel: one per platform folder, one for
the channel.

Pages hold no "generated at" clock time (only times of the files they list), so
re-indexing an unchanged folder produces the same bytes and the file is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from html import escape
from typing import Any

_STYLE = """\
body { font-family: sans-serif; background: #f5f5f5; margin: 1.5em; }
table { background: white; border-collapse: collapse; border-top: 1px solid #646464;
        border-bottom: 1px solid #646464; }
th, td { font: 90% monospace; text-align: left; padding: 2px 14px 2px 4px; }
td.s { text-align: right; }
address { color: #787878; padding-top: 10px; }"""


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _when(timestamp: Any) -> str:
    """UTC time of a record timestamp (ms; old records: s) or a file mtime (s)."""
    try:
        value = float(timestamp)
    except (TypeError, ValueError):
        return ""
    if value > 253402300799:
        value /= 1000
    if value <= 0:
        return ""
    return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _page(title: str, body: list[str]) -> bytes:
    head = ["<!DOCTYPE html>", "<html>", "<head>", '<meta charset="utf-8">',
            f"<title>{escape(title)}</title>", f"<style>\n{_STYLE}\n</style>", "</head>",
            "<body>", f"<h2>{escape(title)}</h2>"]
    return ("\n".join(head + body + ["</body>", "</html>", ""])).encode("utf-8")


def _link(href: str, text: str | None = None) -> str:
    return f'<a href="{escape(href, quote=True)}">{escape(text if text is not None else href)}</a>'


def subdir_index_html(channel: str, subdir: str, packages: dict[str, dict[str, Any]],
                      outputs: Iterable[tuple[str, int, float]]) -> bytes:
    """The page of one platform folder: its metadata files (name, size, mtime) and every
    package (size, build time, sha256, md5), by file name."""
    rows = ["<table>", ("<tr><th>File</th><th>Size</th><th>Modified (UTC)</th>"
                        "<th>SHA256</th><th>MD5</th></tr>")]
    for name, size, mtime in outputs:
        rows.append(f'<tr><td>{_link(name)}</td><td class="s">{human_bytes(size)}</td>'
                    f"<td>{_when(mtime)}</td><td></td><td></td></tr>")
    for fn in sorted(packages):
        record = packages[fn]
        rows.append(f'<tr><td>{_link(fn)}</td><td class="s">'
                    f'{human_bytes(record.get("size", 0) or 0)}</td>'
                    f'<td>{_when(record.get("timestamp"))}</td>'
                    f'<td>{escape(str(record.get("sha256", "")))}</td>'
                    f'<td>{escape(str(record.get("md5", "")))}</td></tr>')
    rows += ["</table>", f"<address>{len(packages)} package files</address>"]
    return _page(f"{channel}/{subdir}", rows)


def _is_web_url(value: Any) -> bool:
    # about.json is written by whoever built the package: link only to web pages, never
    # to javascript: or data: URLs.
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def channel_index_html(channel: str, channeldata: dict[str, Any]) -> bytes:
    """The channel's page: its platform folders and one row per package name."""
    subdirs = list(channeldata.get("subdirs", []))
    packages = channeldata.get("packages", {})
    body = ["<p>" + " &nbsp; ".join(_link(f"{s}/", s) for s in subdirs)
            + " &nbsp; " + _link("channeldata.json") + "</p>",
            "<table>",
            ("<tr><th>Package</th><th>Latest version</th><th>Links</th><th>License</th>"
             + "".join(f"<th>{escape(s)}</th>" for s in subdirs) + "<th>Summary</th></tr>")]
    for name, entry in sorted(packages.items()):
        links = " ".join(_link(str(entry[key]), label) for key, label in
                         (("home", "home"), ("doc_url", "doc"), ("dev_url", "dev"))
                         if _is_web_url(entry.get(key)))
        marks = "".join("<td>X</td>" if s in entry.get("subdirs", []) else "<td></td>"
                        for s in subdirs)
        body.append(f"<tr><td>{escape(name)}</td><td>{escape(str(entry.get('version', '')))}"
                    f"</td><td>{links}</td><td>{escape(str(entry.get('license', '')))}</td>"
                    f"{marks}<td>{escape(str(entry.get('summary', '')))}</td></tr>")
    body += ["</table>", f"<address>{len(packages)} packages</address>"]
    return _page(channel, body)
