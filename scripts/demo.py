"""Demo: show the effective configuration of the sample config, with provenance."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cas-demo-") as tmp:
        user = Path(tmp) / "cas-mirror.yaml"
        user.write_text(
            f"mirror_dir: {tmp}/mirror\nplatforms: [linux-64]\nlicense_blacklist: GPL\n"
            "whitelist: [distribute, conda]\nblacklist: [flask, readline]\n")
        env = {**os.environ, "CAS_MIRROR_SYSTEM_CONFIG": str(ROOT / "etc/cas-mirror.yaml"),
               "CAS_MIRROR_USER_CONFIG": str(user)}
        print("$ cas-sync --show --workers 4", flush=True)
        return subprocess.call([BIN / "cas-sync", "--show", "--workers", "4"], env=env)


if __name__ == "__main__":
    sys.exit(main())
