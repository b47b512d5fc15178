"""`cas-sync --condarc URL` / `--pip-conf URL`, and the scheduling files in etc/."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import yaml

from cas_mirror.cli import main

ETC = Path(__file__).resolve().parent.parent / "etc"


def make_tree(root: Path) -> None:
    for channel in ("pkgs/main", "internal-pkgs", "team/tools", "zeta-internal"):
        folder = root / channel / "noarch"
        folder.mkdir(parents=True)
        (folder / "repodata.json").write_text(json.dumps({"packages": {}}))
    (root / "empty-folder/linux-64").mkdir(parents=True)  # no repodata: not a channel
    (root / ".cas-sync/channels/x/noarch").mkdir(parents=True)
    (root / ".cas-sync/channels/x/noarch/repodata.json").write_text("{}")
    (root / "pypi/web/simple").mkdir(parents=True)


def test_condarc_lists_internal_channels_first(run_cli, isolated_config, tmp_path):
    make_tree(tmp_path / "mirror")
    isolated_config.write_user(f"mirror_dir: {tmp_path / 'mirror'}\nchannels: [pkgs/main]\n")
    result = run_cli(main, ["--condarc", "http://mirror.example.invalid:8080/"])
    assert result.code == 0, result
    condarc = yaml.safe_load(result.out)
    assert condarc["channels"] == [
        "http://mirror.example.invalid:8080/internal-pkgs",
        "http://mirror.example.invalid:8080/team/tools",
        "http://mirror.example.invalid:8080/zeta-internal",
        "http://mirror.example.invalid:8080/pkgs/main",
    ]
    assert condarc["default_channels"] == []
    again = run_cli(main, ["--condarc", "http://mirror.example.invalid:8080"])
    assert again.out == result.out  # stable


def test_pip_conf(run_cli, isolated_config):
    isolated_config.write_user("pypi:\n  user: pypi-mirror\n")
    result = run_cli(main, ["--pip-conf", "http://mirror.example.invalid:8080"])
    assert result.code == 0
    parser = configparser.ConfigParser()
    parser.read_string(result.out)
    assert parser["global"]["index-url"] == "http://mirror.example.invalid:8080/pypi-mirror/simple"
    assert parser["global"]["trusted-host"] == "mirror.example.invalid"
    secure = run_cli(main, ["--pip-conf", "https://mirror.example.invalid"])
    assert "trusted-host" not in secure.out


def test_client_url_must_be_a_url(run_cli):
    result = run_cli(main, ["--condarc", "mirror:8080"])
    assert result.code == 2 and "not a URL" in result.err


def test_scheduling_files_run_quietly():
    cron = [line for line in (ETC / "cron.d-cas-mirror").read_text().splitlines()
            if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(cron) == 2 and all("cas-sync" in line and "--quiet" in line for line in cron)
    assert all(len(line.split()) >= 7 for line in cron)  # 5 time fields, user, command
    for name in ("cas-sync", "cas-sync-pypi"):
        service = configparser.ConfigParser(strict=False, interpolation=None)
        service.read(ETC / "systemd" / f"{name}.service")
        assert service["Service"]["Type"] == "oneshot"
        assert service["Service"]["ExecStart"].endswith("--quiet")
        timer = configparser.ConfigParser(strict=False, interpolation=None)
        timer.read(ETC / "systemd" / f"{name}.timer")
        assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["OnCalendar"]
