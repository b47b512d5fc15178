"""Is a wanted file already in place under `web/packages/`? The only stage that reads the
files themselves: size first, then the digest (`compare_method: hash`) unless the state's
entry for the same size and mtime says it was verified before; `--verify` always re-hashes.
"""

from __future__ import annotations

from ..digests import file_digest
from .plan import WantedFile
from .settings import PypiSettings


def digest_for(s: PypiSettings, want: WantedFile) -> tuple[str | None, str | None]:
    """(algorithm, expected hex digest) to compare a local file with."""
    if s.digest_name == "md5" and want.md5:
        return "md5", want.md5
    if want.sha256:
        return "sha256", want.sha256
    if want.md5:
        return "md5", want.md5
    return None, None


def check_local(s: PypiSettings, want: WantedFile, cached: list | None,
                verify: bool) -> tuple[list | None, str | None]:
    """(the state entry of a local file that is in place and verified, None) or (None,
    what is wrong with it: "missing", a size or digest mismatch)."""
    path = s.web / "packages" / want.relpath
    try:
        st = path.stat()
    except OSError:
        return None, "missing"
    if want.size is not None and st.st_size != want.size:
        return None, f"{st.st_size} bytes, upstream says {want.size}"
    algorithm, expected = digest_for(s, want)
    if s.compare_method == "stat" and not verify:
        return [st.st_size, st.st_mtime_ns, algorithm, expected], None
    if expected is None:
        return [st.st_size, st.st_mtime_ns, None, None], None
    if not verify and cached and cached[:4] == [st.st_size, st.st_mtime_ns, algorithm, expected]:
        return cached, None
    if file_digest(path, algorithm) != expected:
        return None, f"{algorithm} mismatch"
    return [st.st_size, st.st_mtime_ns, algorithm, expected], None
