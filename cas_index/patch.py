"""Repodata patches (hotfixes) in conda-index's `patch_instructions.json` format.

Instructions for one platform folder are a JSON object:

- `packages` / `packages.conda`: file name -> keys to set in that record (values replace;
  nested mappings are merged; `null` removes the key, as conda-index does: a record
  holding `"features": null` breaks conda and rattler). Instructions for `x.tar.bz2`
  also apply to `x.conda`, so one entry fixes both formats; `packages.conda` entries
  apply last.
- `remove`: file names dropped from the index and listed under `removed`.
- `revoke`: file names kept but marked `revoked` and made uninstallable with a
  `package_has_been_revoked` dependency.
- `patch_instructions_version`: 1 (newer versions are refused).

Other keys (real channels carry some) are left out with a warning naming them; the known
parts still apply.

A `--patch` source is either such a JSON file (applied to every platform folder indexed)
or a repodata-patches package (`.conda`/`.tar.bz2`) carrying
`<platform>/patch_instructions.json` per folder. Only file names present in the index are
touched; records are copied before they are changed, so the unpatched document stays
intact for `repodata_from_packages.json`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .errors import UsageError, reason
from .layout import PATCH_FILE

SUPPORTED_VERSION = 1
KNOWN_KEYS = ("packages", "packages.conda", "remove", "revoke", "patch_instructions_version")


class PatchSource:
    """Where patch instructions come from: a JSON file or a repodata-patches package."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.is_package = self.path.name.endswith((".conda", ".tar.bz2"))
        if not self.path.is_file():
            expected = "expected a JSON file or a repodata-patches package"
            problem = ("no such file" if not self.path.exists() else
                       f"is a folder; {expected}" if self.path.is_dir() else
                       f"not a regular file; {expected}")
            raise UsageError(f"--patch {self.path}: {problem}")
        self._json: dict[str, Any] | None = None
        self.warning: str | None = None  # about the JSON file, said once per run
        if not self.is_package:
            try:
                raw = self.path.read_bytes()
            except OSError as exc:
                raise UsageError(f"--patch {self.path}: cannot read it ({reason(exc)})") \
                    from None
            self._json, self.warning = parse_instructions(raw, str(self.path))

    def for_subdir(self, subdir: str) -> tuple[dict[str, Any], str | None]:
        """The instructions for `subdir` ({} when the patches package has none for it) and
        a warning about them (a JSON file's warning is `self.warning`, not repeated)."""
        if self._json is not None:
            return self._json, None
        from .package import PackageError, read_patch_member

        member = f"{subdir}/{PATCH_FILE}"
        try:
            raw = read_patch_member(self.path, member)
        except PackageError as exc:
            raise UsageError(f"--patch {self.path}: {exc}") from None
        if raw is None:
            return {}, None
        return parse_instructions(raw, f"{self.path}!{member}")


def parse_instructions(raw: bytes, where: str) -> tuple[dict[str, Any], str | None]:
    """Validated instructions from JSON bytes, without the keys cas-index does not know,
    and a warning naming those (None when there are none); `where` names the source."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: patch instructions must be a JSON object")
    version = doc.get("patch_instructions_version", 1)
    if not isinstance(version, int) or version > SUPPORTED_VERSION:
        raise UsageError(f"{where}: patch_instructions_version {version!r} is not supported "
                         f"(up to {SUPPORTED_VERSION})")
    for key in ("packages", "packages.conda"):
        value = doc.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise UsageError(f"{where}: {key!r} must map file names to objects of keys to set")
    for key in ("remove", "revoke"):
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: {key!r} must be a list of file names")
    unknown = sorted(set(doc) - set(KNOWN_KEYS))
    if not unknown:
        return doc, None
    warning = (f"{where}: unknown key(s) {', '.join(unknown)} ignored (cas-index applies "
               f"{', '.join(KNOWN_KEYS)}); the rest applies")
    return {key: value for key, value in doc.items() if key in KNOWN_KEYS}, warning


def _conda_name(fn: str) -> str:
    return fn[: -len(".tar.bz2")] + ".conda" if fn.endswith(".tar.bz2") else fn


def apply_instructions(doc: dict[str, Any], instructions: dict[str, Any]) -> dict[str, Any]:
    """A patched copy of repodata document `doc` (which is left unchanged)."""
    patched = dict(doc)
    packages = dict(doc.get("packages", {}))
    conda = dict(doc.get("packages.conda", {}))
    patched["packages"], patched["packages.conda"] = packages, conda
    removed = list(doc.get("removed", []))

    def update(section: dict[str, Any], fn: str, changes: dict[str, Any]) -> None:
        if fn in section:
            section[fn] = _merged(section[fn], changes)

    for fn, changes in instructions.get("packages", {}).items():
        update(packages, fn, changes)
        if fn.endswith(".tar.bz2"):
            update(conda, _conda_name(fn), changes)
    for fn, changes in instructions.get("packages.conda", {}).items():
        update(conda, fn, changes)

    for fn in instructions.get("revoke", []):
        for section, name in ((packages, fn), (conda, _conda_name(fn))):
            if name in section:
                record = copy.deepcopy(section[name])
                record["revoked"] = True
                record.setdefault("depends", []).append("package_has_been_revoked")
                section[name] = record

    for fn in instructions.get("remove", []):
        for section, name in ((packages, fn), (conda, _conda_name(fn))):
            if section.pop(name, None) is not None:
                removed.append(name)
    patched["removed"] = sorted(removed)
    return patched


def _merged(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dumps_instructions(instructions: dict[str, Any]) -> bytes:
    return (json.dumps(instructions, indent=2, sort_keys=True) + "\n").encode("utf-8")
