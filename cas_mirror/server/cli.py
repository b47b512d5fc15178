"""`cas-server`: the command line. Reads the options and the layered configuration, checks
that the root exists and the address is free, then hands over to granian's worker processes.

Errors users can fix (a missing root, a busy port, a bad option) get one line and exit
status 2, without a traceback, like `cas-sync`.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import click

from .. import __version__
from .. import config as cfg
from ..console import debug_option, run_command
from ..errors import EXIT_OK, ConfigError
from ..storage.urls import is_bucket_url
from . import app, proxy, uploads


def default_workers() -> int:
    """One worker process per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True, no_args_is_help=False)
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Address to listen on (127.0.0.1 for this machine only, :: for IPv6).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="TCP port to listen on.")
@click.option("--root", type=str,
              help="Folder (or s3://bucket/prefix) to serve. Default: mirror_dir from the "
                   "configuration.")
@click.option("-f", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Read this YAML file after /etc/cas-mirror and ~/.cas-mirror.")
@click.option("--workers", type=click.IntRange(1, 512),
              help="Worker processes sharing the port. Default: one per CPU.")
@click.option("-q", "--quiet", is_flag=True, help="No access log.")
@click.option("--certfile", type=click.Path(dir_okay=False),
              help="Serve HTTPS with this PEM certificate (chain); needs --keyfile.")
@click.option("--keyfile", type=click.Path(dir_okay=False),
              help="The private key of --certfile (PEM).")
@debug_option()
@click.version_option(__version__, prog_name="cas-server")
@click.pass_context
def cli(ctx: click.Context, host: str, port: int, root: str | None, config_file: str | None,
        workers: int | None, quiet: bool, certfile: str | None, keyfile: str | None,
        debug: bool) -> int:
    """Serve the mirror over HTTP: conda channels at /<channel>/, the PyPI mirror at
    /<pypi folder>/ (pip's index URL is http://HOST:PORT/pypi/simple/).

    Without a command, serves. Hidden files (names starting with a dot) and anything outside
    the root are never served. Access log in the common log format on stderr unless --quiet.
    """
    if ctx.invoked_subcommand is not None:
        return EXIT_OK
    config = cfg.load_config(config_file)
    if root and is_bucket_url(root):  # object storage: bucket.py checks it and tells workers
        from .bucket import prepare_bucket_root

        workers = workers or default_workers()
        tls = check_tls(certfile, keyfile)
        check_address(host, port)
        click.echo(prepare_bucket_root(root, config, host, port, workers, quiet), err=True)
        serve(host, port, workers, tls)
        return EXIT_OK
    root_path = os.path.abspath(os.path.expanduser(root)) if root else config.mirror_dir
    where = "--root" if root else f"mirror_dir ({config.origins['mirror_dir']})"
    if not os.path.isdir(root_path):
        what = "is not a folder" if os.path.exists(root_path) else "does not exist"
        raise ConfigError(f"{where}: {root_path} {what}; pass --root FOLDER or set mirror_dir")
    if not os.access(root_path, os.R_OK | os.X_OK):
        raise ConfigError(f"{where}: cannot read {root_path} (permission denied)")
    pypi_folder = str(config.pypi.get("user", "pypi"))
    workers = workers or default_workers()
    upload_settings = uploads.UploadSettings.from_config(config, root_path)
    tls = check_tls(certfile, keyfile)
    check_address(host, port)

    os.environ[app.ENV_ROOT] = root_path
    os.environ[app.ENV_PYPI_FOLDER] = pypi_folder
    os.environ[app.ENV_ACCESS_LOG] = "0" if quiet else "1"
    os.environ[uploads.ENV_UPLOADS] = upload_settings.to_env()
    uploads.remove_leftovers(upload_settings)
    os.environ.update(proxy.environment(config, root_path))
    shown_host = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown_host}:{port}"
    # the pip index is advertised only when there is a PyPI tree to serve
    has_pypi = os.path.isdir(os.path.join(root_path, pypi_folder, "web", "simple"))
    pip = f" (pip index: {url}/{pypi_folder}/simple/)" if has_pypi else ""
    click.echo(
        f"cas-server: serving {root_path} at {url}/ with {workers} worker"
        f"{'s' if workers != 1 else ''}{pip}; Ctrl-C stops",
        err=True,
    )
    warn_about_own_venv(root_path)
    proxy.announce(url)
    serve(host, port, workers, tls)
    return EXIT_OK


def check_tls(certfile: str | None, keyfile: str | None) -> tuple[str, str] | None:
    """(certificate, key) paths when both are given and readable; one alone is an error."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ConfigError("--certfile and --keyfile go together: give both for HTTPS")
    import ssl

    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not os.path.isfile(path):
            raise ConfigError(f"{flag} {path}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--certfile {certfile} / --keyfile {keyfile}: not a usable PEM "
                          f"certificate and key ({exc.strerror or exc})") from None
    return os.path.abspath(certfile), os.path.abspath(keyfile)


def warn_about_own_venv(root: str) -> None:
    """Say so when the program's own virtual environment is inside the served folder: it is
    never served (files.py refuses venvs), but it belongs outside the tree."""
    prefix = os.path.realpath(sys.prefix)
    if prefix.startswith(os.path.realpath(root).rstrip("/") + "/"):
        click.echo(f"cas-server: warning: the program's virtual environment {prefix} is "
                   "inside the served folder; it is not served, but move it out (README, "
                   "\"Production install\")", err=True)


def check_address(host: str, port: int) -> None:
    """Fail early, in one line, when the address cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = {
                errno.EADDRINUSE: " (another server is using it: choose another --port)",
                errno.EACCES: " (ports below 1024 need root: choose another --port)",
                errno.EADDRNOTAVAIL: " (not an address of this machine: check --host)",
            }.get(exc.errno, "")
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None


# How long a worker may take to stop after SIGTERM/Ctrl-C (finishing the responses in
# flight) before the server kills it. Without a bound granian's master waits for ever on
# a worker that does not stop (one told to stop while still starting, for instance), and
# when the master is then killed by its supervisor the worker lives on, holding the port.
STOP_GRACE_SECONDS = 10


def serve(host: str, port: int, workers: int, tls: tuple[str, str] | None = None) -> None:
    """Run granian until it is stopped (Ctrl-C, SIGTERM); no worker outlives it."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    server = Granian(
        "cas_mirror.server.app:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=workers,
        websockets=False,
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        workers_kill_timeout=STOP_GRACE_SECONDS,
        **({"ssl_cert": Path(tls[0]), "ssl_key": Path(tls[1])} if tls else {}),
    )
    server.serve()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and maps errors to exit statuses."""
    return run_command(cli, "cas-server", argv, interrupted_status=EXIT_OK)


from .upload_cli import pypi_command, token_command  # noqa: E402 - commands of uploads

cli.add_command(token_command)
cli.add_command(pypi_command)
cli.add_command(proxy.proxy_stats)
