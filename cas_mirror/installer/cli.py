"""`cas-installer SPEC.yaml`: the command line, a thin shell over `build.build_all`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

import click

from ..console import debug_option, run_command
from ..errors import EXIT_OK
from ..logs import level_for

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cas-installer"


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, help="""Build a
self-contained installer (NAME-VERSION-PLATFORM.sh) of a conda environment from a spec
YAML (name, version, channels, specs; optional license_file, platforms, default_prefix,
installer_type: see etc/installer-example.yaml). The installer needs only sh, tar and
coreutils on the target: no network, no conda, no Python.

\b
Exit status: 0 built; 1 some packages could not be fetched or verified (no installer
written); 2 bad spec, option or unsolvable specs; 4 the disk filled up; 70 internal error.
""")
@click.argument("spec_file", metavar="SPEC.yaml",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Folder the installers are written to.")
@click.option("--platform", "platforms", multiple=True, metavar="PLATFORM",
              help="Build for this platform instead of the spec's (repeatable).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Downloaded packages and repodata "
              "[default: $XDG_CACHE_HOME/cas-installer or ~/.cache/cas-installer].")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@debug_option()
@click.pass_context
def cli(ctx: click.Context, spec_file: Path, output_dir: Path, platforms: tuple[str, ...],
        cache_dir: Path | None, verbose: int, quiet: bool, debug: bool) -> int:
    import rattler

    from ..config.checks import BadValue
    from ..errors import ConfigError
    from .build import build_all
    from .spec import check_platforms, read_spec

    ctx.obj.log_to_stderr(level_for(verbose, quiet, debug))
    spec = read_spec(spec_file, str(rattler.Subdir.current()))
    if platforms:
        try:
            spec = dataclasses.replace(spec, platforms=check_platforms(list(platforms), Path()))
        except BadValue as exc:
            raise ConfigError(f"command line: --platform: {exc}") from None
    for built in build_all(spec, output_dir, cache_dir or default_cache_dir()):
        if not quiet:
            click.echo(f"{built.path}: {built.platform}, {built.packages} packages, "
                       f"{built.size} bytes")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_command(cli, "cas-installer", argv)


def console() -> None:
    """The `cas-installer` console script: `main()`, then an exit that skips interpreter
    finalisation once rattler is loaded. py-rattler 0.28 can crash (SIGSEGV or abort) while
    its runtime is torn down after a failed solve, turning exit status 2 into -11; every
    output stream is flushed and every file closed before, so nothing is lost."""
    import sys

    status = main()
    if "rattler" not in sys.modules:
        raise SystemExit(status)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    console()
