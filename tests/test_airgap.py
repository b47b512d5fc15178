"""Air-gap bundles end to end: a real conda + PyPI mirror synced from loopback upstreams,
exported twice (the second time incrementally, signed, in several volumes), imported into
empty offline mirrors; damaged, out-of-order, badly signed, repeated and killed imports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cas_mirror.airgap.tree import list_tree
from cas_mirror.cli import main
from tests.support.cas_server import CasServer
from tests.support.clients import rattler_install
from tests.support.conda_mirror import SPECS
from tests.support.conda_packages import PkgSpec, build_channel
from tests.support.http_server import TestHTTPServer
from tests.support.pypi_packages import SimpleUpstream

VOLUME = 12_000  # bytes: small, so the test bundles span several volumes


def _run(args) -> int:
    return main([str(a) for a in args])


def _bundle(dest: Path, before: set[str]) -> Path:
    (new,) = {p for p in dest.iterdir() if p.name.startswith("cas-bundle-")} - before
    return new


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """An online mirror (conda pkgs/main linux-64 + noarch, and PyPI), exported once,
    changed upstream (one package added, one removed, on both sides), synced and exported
    again, signed and in volumes of VOLUME bytes."""
    base = tmp_path_factory.mktemp("airgap")
    conda_root, pypi_root = base / "upstream-conda", base / "upstream-pypi"
    channel = build_channel(conda_root / "pkgs/main", SPECS)
    conda_server = TestHTTPServer(conda_root).start()
    pypi_server = TestHTTPServer(pypi_root).start()
    pypi = SimpleUpstream(pypi_root).serve(pypi_server)
    pypi.add("alpha", "1.0")
    pypi.add("beta", "0.5", kinds=("sdist",))
    mirror, bundles = base / "online", base / "bundles"
    config = base / "cas-mirror.yaml"
    config.write_text(yaml.safe_dump({
        "remote_url": conda_server.url, "mirror_dir": str(mirror), "platforms": ["linux-64"],
        "retries": 1, "retry_backoff": 0.01, "timeout": 5, "minimum_free_space": 0,
        "pypi": {"remote_url": pypi.url, "retries": 1, "retry_backoff": 0.01, "timeout": 5}}))
    key = base / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f",
                    str(key)], check=True)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CAS_MIRROR_SYSTEM_CONFIG", str(base / "no-system-config"))
        env.setenv("CAS_MIRROR_USER_CONFIG", str(config))
        try:
            assert _run([]) == 0 and _run(["pypi"]) == 0
            assert _run(["export", bundles, "--volume-size", VOLUME]) == 0
            first = _bundle(bundles, set())
            channel.add([PkgSpec("epsilon", "1.0", subdir="linux-64", depends=["gamma"])])
            channel.remove("linux-64", "beta-2.0-0.conda")
            pypi.add("alpha", "2.0")
            pypi.remove_project("beta")
            assert _run([]) == 0 and _run(["pypi"]) == 0
            assert _run(["export", bundles, "--volume-size", VOLUME, "--sign", key]) == 0
            second = _bundle(bundles, {first})
        finally:
            conda_server.stop()
            pypi_server.stop()
    return SimpleNamespace(dir=mirror, config=config, first=first, second=second, key=key,
                           bundles=bundles)


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_bytes())


def import_(run_cli, offline: Path, bundle: Path, *args):
    return run_cli(main, ["import", bundle, "--mirror-dir", offline, *args])


def published(root: Path) -> dict[str, bytes]:
    """Every file a server would publish (hidden state folders left out), with its bytes."""
    return {rel: (root / rel).read_bytes() for rel in list_tree(root)}


def consistent(root: Path) -> bool:
    """Every file a published repodata.json or PyPI project page names is in place."""
    for doc_path in root.rglob("repodata.json"):
        doc = json.loads(doc_path.read_bytes())
        for fn in {**doc["packages"], **doc["packages.conda"]}:
            if not (doc_path.parent / fn).is_file():
                return False
    for page in root.glob("*/web/simple/*/index.v1_json"):
        for entry in json.loads(page.read_bytes())["files"]:
            if not (page.parent / entry["url"].partition("#")[0]).is_file():
                return False
    return True


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


# ------------------------------------------------------------------------------ export


def test_bundles_carry_what_changed_with_a_manifest_of_every_member(online):
    first, second = manifest(online.first), manifest(online.second)
    assert first["base"] is None and first["chain"] == []
    assert second["base"] == first["state"] and second["chain"] == [first["state"]]
    assert online.first.name == f"cas-bundle-{first['state']}"
    # the first bundle is the whole tree of then, the second only what changed since
    shipped = {m["path"] for m in first["members"]}
    carried = {m["path"] for m in second["members"]}
    assert shipped == (set(list_tree(online.dir)) - (carried - shipped)) \
        | set(second["deletions"])
    assert "pkgs/main/linux-64/beta-2.0-0.conda" in shipped
    assert "pkgs/main/linux-64/epsilon-1.0-0.conda" in carried
    assert "pkgs/main/linux-64/alpha-1.0-0.conda" not in carried  # unchanged: not carried
    assert {"pkgs/main/linux-64/repodata.json", "pypi/web/simple/index.v1_json",
            "pypi/web/simple/alpha/index.v1_json"} <= carried
    assert "pkgs/main/linux-64/beta-2.0-0.conda" in second["deletions"]
    assert any(d.startswith("pypi/web/simple/beta/") for d in second["deletions"])
    assert any(d.startswith("pypi/web/packages/") for d in second["deletions"])
    # the volumes are one tar stream cut in pieces of at most VOLUME bytes
    assert len(first["volumes"]) > 1
    assert all(v["size"] == VOLUME for v in first["volumes"][:-1])
    stream = b"".join((online.first / v["name"]).read_bytes() for v in first["volumes"])
    tar_path = online.bundles.parent / "joined.tar"
    tar_path.write_bytes(stream)
    listed = subprocess.run(["tar", "-tf", tar_path], check=True, capture_output=True,
                            text=True).stdout.split()
    assert listed == [m["path"] for m in first["members"]]  # what README says tar shows
    with tarfile.open(tar_path) as tar:
        assert [i.name for i in tar.getmembers()] == [m["path"] for m in first["members"]]
        for member in first["members"]:
            data = tar.extractfile(member["path"]).read()
            assert hashlib.sha256(data).hexdigest() == member["sha256"]
            assert len(data) == member["size"]
    assert (online.second / "manifest.json.sig").is_file()
    assert not (online.first / "manifest.json.sig").exists()


def test_export_with_nothing_changed_writes_no_bundle(online, run_cli, tmp_path):
    result = run_cli(main, ["-f", online.config, "export", tmp_path / "out"])
    assert result.code == 0, result
    assert "nothing changed" in result.out and manifest(online.second)["state"] in result.out
    assert not (tmp_path / "out").exists()


def test_export_refuses_bad_arguments(online, run_cli, tmp_path):
    inside = run_cli(main, ["export", online.dir / "bundles", "-f", online.config])
    assert inside.code == 2 and "inside mirror_dir" in inside.err
    tiny = run_cli(main, ["export", tmp_path, "--volume-size", "4", "-f", online.config])
    assert tiny.code == 2 and "--volume-size" in tiny.err and "too small" in tiny.err
    bad = run_cli(main, ["export", tmp_path, "--volume-size", "4 parsecs", "-f", online.config])
    assert bad.code == 2 and "expected a size" in bad.err
    since = run_cli(main, ["export", tmp_path, "--since", "20200101T000000Z-00000000", "-f",
                           online.config])
    assert since.code == 2 and "no snapshot of state 20200101T000000Z-00000000" in since.err
    other = run_cli(main, ["--dry-run", "export", tmp_path, "-f", online.config])
    assert other.code == 2 and "--dry-run has no meaning for cas-sync export" in other.err
    assert list(tmp_path.iterdir()) == []


def test_export_since_none_is_a_full_bundle(online, run_cli, tmp_path):
    mirror = Path(shutil.copytree(online.dir, tmp_path / "copy"))  # its exports change
    result = run_cli(main, ["-f", online.config, "--mirror-dir", mirror, "export", tmp_path,
                            "--since", "none", "--json"])
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["base"] is None
    bundle = Path(summary["bundle"])
    assert {m["path"] for m in manifest(bundle)["members"]} == set(list_tree(mirror))
    offline = tmp_path / "offline"
    assert import_(run_cli, offline, bundle).code == 0
    assert published(offline) == published(online.dir)
    # the next export continues the full bundle's state
    assert (mirror / ".cas-sync/exports/latest").read_text().strip() == summary["state"]


# ------------------------------------------------------------------------------ import


def test_both_bundles_make_the_online_mirror_and_rattler_installs_from_it(online, run_cli,
                                                                        tmp_path):
    offline = tmp_path / "offline"
    first = import_(run_cli, offline, online.first)
    assert first.code == 0, first
    assert "now at state" in first.out
    second = import_(run_cli, offline, online.second, "--verify-key", f"{online.key}.pub")
    assert second.code == 0, second
    assert "signature by" in second.out and "1 deletion" not in second.out
    assert published(offline) == published(online.dir) and consistent(offline)
    assert {rel: (offline / rel).stat().st_mtime_ns for rel in list_tree(offline)} == \
        {rel: (online.dir / rel).stat().st_mtime_ns for rel in list_tree(online.dir)}
    assert not (offline / ".cas-sync/imports/staging").exists()
    server = CasServer(offline, tmp_path / "server")
    try:
        installed = rattler_install([f"{server.url}/pkgs/main"], ["epsilon", "delta"],
                                    tmp_path / "env")
    finally:
        server.stop()
    assert "epsilon-1.0-0.conda" in installed and "gamma-1.0-0.conda" in installed


def test_import_twice_does_nothing_the_second_time(online, run_cli, tmp_path):
    offline = tmp_path / "offline"
    assert import_(run_cli, offline, online.first).code == 0
    state = offline / ".cas-sync/imports/state.json"

    def stamps():
        return {rel: (offline / rel).stat().st_ino for rel in list_tree(offline)}, \
            state.stat().st_mtime_ns

    before = stamps()
    again = import_(run_cli, offline, online.first)
    assert again.code == 0 and "already imported" in again.out
    assert stamps() == before  # no file replaced, the state not rewritten


@pytest.mark.parametrize("which", [0, -1], ids=["first-volume", "last-volume"])
def test_a_damaged_volume_is_named_and_nothing_is_published(online, run_cli, tmp_path, which):
    bundle = copy_bundle(online.first, tmp_path)
    volume = bundle / manifest(bundle)["volumes"][which]["name"]
    data = bytearray(volume.read_bytes())
    data[len(data) // 2] ^= 0x01
    volume.write_bytes(bytes(data))
    offline = tmp_path / "offline"
    result = import_(run_cli, offline, bundle)
    assert result.code == 5, result
    assert str(volume) in result.err and "damaged" in result.err
    assert "nothing was published" in result.err and "Traceback" not in result.err
    assert list_tree(offline) == {}
    assert not (offline / ".cas-sync/imports/staging").exists()
    assert not (offline / ".cas-sync/imports/state.json").exists()


def test_a_missing_volume_is_named(online, run_cli, tmp_path):
    bundle = copy_bundle(online.first, tmp_path)
    (bundle / "bundle.tar.002").unlink()
    result = import_(run_cli, tmp_path / "offline", bundle)
    assert result.code == 5 and "bundle.tar.002 is missing" in result.err


def test_the_second_bundle_first_is_refused_naming_the_missing_one(online, run_cli, tmp_path):
    offline = tmp_path / "offline"
    result = import_(run_cli, offline, online.second)
    assert result.code == 5, result
    assert f"import first {online.first.name}" in result.err
    assert list_tree(offline) == {}


def test_a_signature_by_another_key_is_refused(online, run_cli, tmp_path):
    offline = tmp_path / "offline"
    assert import_(run_cli, offline, online.first).code == 0
    before = published(offline)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    wrong = import_(run_cli, offline, online.second, "--verify-key", f"{other}.pub")
    assert wrong.code == 5 and "does not verify" in wrong.err, wrong
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ops@example.invalid {(tmp_path / 'other.pub').read_text()}")
    listed = import_(run_cli, offline, online.second, "--allowed-signers", signers)
    assert listed.code == 5 and "allowed-signers" in listed.err, listed
    unsigned = import_(run_cli, tmp_path / "fresh", online.first, "--verify-key",
                       f"{online.key}.pub")
    assert unsigned.code == 5 and "not signed" in unsigned.err
    assert published(offline) == before  # nothing of the second bundle published
    signers.write_text(f"ops@example.invalid {Path(f'{online.key}.pub').read_text()}")
    good = import_(run_cli, offline, online.second, "--allowed-signers", signers)
    assert good.code == 0 and "signature by ops@example.invalid" in good.out, good


_KILL_AT = """
import os, signal, sys
from cas_mirror.cli import main
name, at = sys.argv[1], int(sys.argv[2])
count, real = [0], getattr(os, name)
def patched(*args, **kwargs):
    count[0] += 1
    if count[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, name, patched)
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("phase", ["staging", "files", "metadata"])
def test_a_killed_import_is_finished_by_running_it_again(online, run_cli, tmp_path, phase):
    offline = tmp_path / "offline"
    assert import_(run_cli, offline, online.first).code == 0
    before = published(offline)
    members = manifest(online.second)["members"]
    files = sum(1 for m in members if m["kind"] == "file")
    # killed at the 2nd member staged (os.utime), or at the n-th rename into place
    call, at = {"staging": ("utime", 2), "files": ("replace", 1),
                "metadata": ("replace", files + 2)}[phase]
    assert at < len(members)
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, call, str(at), "import",
                             online.second, "--mirror-dir", offline],
                            check=False, capture_output=True, env=os.environ.copy())
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if phase == "staging":
        assert published(offline) == before  # nothing published yet
        assert len(list((offline / ".cas-sync/imports/staging").iterdir())) == 2
    else:
        assert published(offline) != published(online.dir)  # stopped half-way
    assert consistent(offline)  # yet every published document names files in place
    rerun = import_(run_cli, offline, online.second)
    assert rerun.code == 0, rerun
    assert published(offline) == published(online.dir)
    assert not (offline / ".cas-sync/imports/staging").exists()


def test_a_bundle_older_than_the_mirror_is_already_imported(online, run_cli, tmp_path):
    offline = tmp_path / "offline"
    assert import_(run_cli, offline, online.first).code == 0
    assert import_(run_cli, offline, online.second).code == 0
    before = published(offline)
    older = import_(run_cli, offline, online.first)
    assert older.code == 0 and "already imported" in older.out
    assert published(offline) == before


def test_a_manifest_path_out_of_the_mirror_is_refused(online, run_cli, tmp_path):
    bundle = copy_bundle(online.first, tmp_path)
    data = manifest(bundle)
    data["deletions"] = ["pkgs/../../outside"]
    (bundle / "manifest.json").write_text(json.dumps(data))
    result = import_(run_cli, tmp_path / "offline", bundle)
    assert result.code == 5 and "deletion 1" in result.err and "'..'" in result.err
    data["deletions"], data["members"][0]["path"] = [], ".cas-sync/imports/state.json"
    (bundle / "manifest.json").write_text(json.dumps(data))
    result = import_(run_cli, tmp_path / "offline", bundle)
    assert result.code == 5 and "member 1" in result.err and "hidden" in result.err
    assert list_tree(tmp_path / "offline") == {}


def test_export_and_import_wait_for_no_sync(online, run_cli, tmp_path):
    from cas_mirror.lock import TreeLock

    offline = tmp_path / "offline"
    with TreeLock(online.dir / ".cas-sync/lock"):
        result = run_cli(main, ["-f", online.config, "export", tmp_path / "out"])
        assert result.code == 3 and "holds the lock" in result.err
    with TreeLock(offline / ".cas-sync/lock"):
        assert import_(run_cli, offline, online.first).code == 3
    assert list_tree(offline) == {}


def test_export_takes_internal_channels_whole_and_waits_for_no_cas_index(online, run_cli,
                                                                        tmp_path):
    from cas_index.cli import main as index_main
    from cas_index.lock import ChannelLock
    from tests.support.conda_packages import build_package

    mirror = Path(shutil.copytree(online.dir, tmp_path / "copy"))  # its exports change
    internal = mirror / "internal-pkgs"
    build_package(PkgSpec("tool", "1.0", subdir="linux-64"), internal / "linux-64")
    assert index_main([str(internal)]) == 0
    export = ["-f", online.config, "--mirror-dir", mirror, "export", tmp_path / "out"]
    with ChannelLock(internal, timeout=0):
        busy = run_cli(main, export)
    assert busy.code == 3 and f"{internal}: cas-index is indexing" in busy.err, busy
    assert not (tmp_path / "out").exists()
    done = run_cli(main, [*export, "--json"])
    assert done.code == 0, done
    carried = {m["path"] for m in manifest(Path(json.loads(done.out)["bundle"]))["members"]}
    assert {"internal-pkgs/linux-64/tool-1.0-0.conda", "internal-pkgs/linux-64/repodata.json",
            "internal-pkgs/channeldata.json"} <= carried
    assert not any("/." in p or p.startswith(".") for p in carried)


@pytest.fixture
def mounts():
    from tests.support.mounts import Mounts

    m = Mounts()
    yield m
    m.unmount_all()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_a_full_disk_while_staging_publishes_nothing(online, run_cli, tmp_path, mounts):
    offline = mounts.tmpfs(tmp_path / "offline", 16 * 4096)  # less than the bundle needs
    result = import_(run_cli, offline, online.first)
    assert result.code == 4, result
    assert "no space left on device" in result.err and "nothing was published" in result.err
    assert list_tree(offline) == {}
    assert not (offline / ".cas-sync/imports/staging").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_a_full_disk_while_exporting_leaves_no_bundle(online, run_cli, tmp_path, mounts):
    dest = mounts.tmpfs(tmp_path / "dest", 4 * 4096)
    result = run_cli(main, ["-f", online.config, "export", dest, "--since", "none"])
    assert result.code == 4, result
    assert "no space left on device" in result.err and "no bundle was written" in result.err
    assert list(dest.iterdir()) == []


def test_since_a_state_and_a_bundle_of_deletions_only(online, run_cli, tmp_path):
    mirror = Path(shutil.copytree(online.dir, tmp_path / "copy"))  # its exports change
    first, second = manifest(online.first)["state"], manifest(online.second)["state"]
    export = ["-f", online.config, "--mirror-dir", mirror, "export", tmp_path / "out",
              "--json"]
    # a site that lost the second bundle gets one from the first state instead
    done = run_cli(main, [*export, "--since", first])
    assert done.code == 0, done
    since_first = Path(json.loads(done.out)["bundle"])
    assert manifest(since_first)["base"] == first
    lost = tmp_path / "lost"
    assert import_(run_cli, lost, online.first).code == 0
    assert import_(run_cli, lost, since_first).code == 0
    assert published(lost) == published(online.dir)
    # a mirror that went the other way (first, second) cannot take it: says what to export
    offline = tmp_path / "offline"
    assert import_(run_cli, offline, online.first).code == 0
    assert import_(run_cli, offline, online.second).code == 0
    refused = import_(run_cli, offline, since_first)
    assert refused.code == 5 and f"cas-sync export --since {second}" in refused.err, refused
    # deleting a file online makes a bundle with no member, only the deletion
    (mirror / "pkgs/main/linux-64/delta-1.0-0.conda").unlink()
    done = run_cli(main, [*export, "--since", second])
    assert done.code == 0, done
    deletion = manifest(Path(json.loads(done.out)["bundle"]))
    assert deletion["members"] == []
    assert deletion["deletions"] == ["pkgs/main/linux-64/delta-1.0-0.conda"]
    applied = import_(run_cli, offline, Path(json.loads(done.out)["bundle"]))
    assert applied.code == 0 and "1 deletion" in applied.out, applied
    assert published(offline) == published(mirror)
