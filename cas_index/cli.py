"""`cas-index`: rebuild repodata for channel folders (the indexer lands with its own issue)."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cas-mirror", prog_name="cas-index")
def cli() -> None:
    """Index conda channel folders."""


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=sys.argv[1:] if argv is None else argv, prog_name="cas-index",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0
