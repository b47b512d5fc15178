"""The target machine of the installer tests: a PATH holding only sh, tar and the
programs of coreutils (a folder of symlinks), so an installer that calls anything else
(python, sed, awk, gzip, ...) fails; and running an installer there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Used when dpkg cannot list coreutils' programs (not a Debian-like machine).
COREUTILS = ("basename", "cat", "chmod", "cp", "date", "dd", "dirname", "head", "ln", "ls",
             "mkdir", "mktemp", "mv", "printf", "pwd", "rm", "sha256sum", "tail", "test",
             "touch", "tr", "wc", "[")


def coreutils_programs() -> list[Path]:
    try:
        listing = subprocess.run(["dpkg", "-L", "coreutils"], capture_output=True, text=True,
                                 check=True).stdout.split()
        found = [Path(p) for p in listing if "/bin/" in p and Path(p).is_file()]
        if found:
            return found
    except (OSError, subprocess.CalledProcessError):
        pass
    return [Path(p) for p in map(shutil.which, COREUTILS) if p]


def minimal_bin(folder: Path) -> Path:
    """`folder` holding sh, tar and coreutils only (symlinks); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for program in coreutils_programs():
        link = folder / program.name
        if not link.exists():
            link.symlink_to(program)
    for name in ("sh", "tar"):
        (folder / name).symlink_to(shutil.which(name))
    return folder


NOBODY = 65534


def run_installer(bin_dir: Path, installer: Path, *args: str, home: Path,
                  answers: str | None = None, as_nobody: bool = False
                  ) -> subprocess.CompletedProcess:
    """Run `sh installer args` with PATH = `bin_dir` only; `answers` go to its stdin.
    `as_nobody`: as an unprivileged user (uid 65534, through util-linux's setpriv when
    the tests run as root), for what only permissions show (read-only files)."""
    env = {"PATH": str(bin_dir), "HOME": str(home)}
    command = [str(bin_dir / "sh"), str(installer), *args]
    if as_nobody and os.geteuid() == 0:
        command = [shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}",
                   "--clear-groups", "--", *command]
    return subprocess.run(command, env=env,
                          input=answers if answers is not None else "", capture_output=True,
                          text=True, timeout=120, cwd=home, check=False)


def no_stray_files(parent: Path, keep: set[str]) -> list[str]:
    """Names in `parent` other than `keep` (a failed install must leave none)."""
    return sorted(n for n in os.listdir(parent) if n not in keep)
