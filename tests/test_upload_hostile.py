"""Hostile uploads to cas-server: each gets its status and a one-line reason, and nothing
half-written becomes visible (no file under its final name, no page naming it, no
temporary left behind)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import threading
import zipfile
from types import SimpleNamespace

import pytest
import requests

from tests.support.cas_server import CasServer
from tests.support.conda_packages import PkgSpec, build_package
from tests.support.mounts import Mounts, fill
from tests.support.pypi_packages import build_wheel
from tests.support.uploads import add_token, raw_request, wait_until

LIMIT = 2_000_000


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("upload-hostile")
    root = base / "mirror"
    (root / "internal").mkdir(parents=True)
    (root / "mirrored" / "noarch").mkdir(parents=True)
    config = base / "cas-mirror.yaml"
    config.write_text(f"upload_max_size: {LIMIT}\nupload_channels: [internal]\n")
    leftovers = [root / "internal/.cas-uploads/0123abcd/x-1-0.conda",
                 root / "pypi-private/.incoming/body-0123abcd"]
    for leftover in leftovers:  # what a killed server leaves
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"partial")
    token = add_token(root, config, base, "ci", "pypi:upload", "conda:internal")
    other = add_token(root, config, base, "other", "conda:elsewhere")
    server = CasServer(root, base / "logs", "-f", str(config), workers=2)
    yield SimpleNamespace(root=root, base=base, token=token, other=other, server=server,
                          leftovers=leftovers,
                          url=server.url, private=root / "pypi-private")
    server.stop()


def form(name: str, version: str, filename: str, data: bytes, **extra: str) -> dict:
    fields = {":action": "file_upload", "protocol_version": "1", "name": name,
              "version": version, "filetype": "bdist_wheel",
              "sha256_digest": hashlib.sha256(data).hexdigest(), **extra}
    return {"data": fields, "files": {"content": (filename, data)}}


def upload(site, token: str | None, payload: dict) -> requests.Response:
    auth = ("__token__", token) if token else None
    return requests.post(f"{site.url}/pypi/legacy/", auth=auth, timeout=30, **payload)


def nothing_visible(site) -> bool:
    """No uploaded file and no temporary left in the private index."""
    packages = site.private / "packages"
    visible = [p for p in packages.rglob("*") if p.is_file()] if packages.exists() else []
    incoming = site.private / ".incoming"
    leftovers = list(incoming.iterdir()) if incoming.exists() else []
    return not visible and not leftovers


@pytest.fixture
def wheel():
    filename, data, _ = build_wheel("victim", "1.0")
    return filename, data


def one_line(response: requests.Response) -> str:
    text = response.text
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text


def test_a_starting_server_removes_bodies_a_killed_one_left(site):
    assert not any(path.exists() for path in site.leftovers)
    assert not (site.root / "internal/.cas-uploads/0123abcd").exists()


def test_missing_token_is_401_with_a_challenge(site, wheel):
    response = upload(site, None, form("victim", "1.0", *wheel))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "token with scope pypi:upload" in one_line(response)
    bearer = requests.put(f"{site.url}/internal/noarch/x-1-0.conda", data=b"x", timeout=10,
                          headers={"Authorization": "Bearer cas_000000000000_" + "a" * 43})
    assert bearer.status_code == 401 and "unknown or was revoked" in bearer.text
    assert nothing_visible(site)


def test_wrong_scope_is_403(site, wheel):
    response = upload(site, site.other, form("victim", "1.0", *wheel))
    assert response.status_code == 403
    assert "does not have scope pypi:upload" in one_line(response)
    put = requests.put(f"{site.url}/internal/noarch/x-1-0.conda", data=b"x", timeout=10,
                       auth=("__token__", site.other))
    assert put.status_code == 403 and "conda:internal" in put.text
    assert nothing_visible(site)


@pytest.mark.parametrize("filename", ["../../../victim-1.0-py3-none-any.whl",
                                      "sub/victim-1.0-py3-none-any.whl",
                                      ".victim-1.0-py3-none-any.whl",
                                      "..\\victim-1.0-py3-none-any.whl"])
def test_path_traversal_in_the_file_name_is_400(site, wheel, filename):
    response = upload(site, site.token, form("victim", "1.0", filename, wheel[1]))
    assert response.status_code == 400
    assert "not a plain file name" in one_line(response)
    assert nothing_visible(site)
    assert not (site.root.parent / "victim-1.0-py3-none-any.whl").exists()


def test_path_traversal_in_form_fields_is_400(site, wheel):
    response = upload(site, site.token, form("../victim", "1.0", *wheel))
    assert response.status_code == 400 and "the form says project" in one_line(response)
    response = upload(site, site.token, form("victim", "../1.0", *wheel))
    assert response.status_code == 400 and "the form says version" in one_line(response)
    assert nothing_visible(site)


def test_conda_path_traversal_and_hidden_names_are_refused(site):
    head = ("PUT /internal/noarch/../../escape-1-0.conda HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {site.token}\r\nContent-Length: 1\r\nConnection: close")
    answer = raw_request(site.url, head, b"x")
    assert answer.split(b" ", 2)[1] in (b"400", b"403"), answer
    hidden = requests.put(f"{site.url}/internal/noarch/.hidden-1-0.conda", data=b"x",
                          auth=("__token__", site.token), timeout=10)
    assert hidden.status_code == 400 and "not a package file name" in hidden.text
    platform = requests.put(f"{site.url}/internal/nowhere/a-1-0.conda", data=b"x",
                            auth=("__token__", site.token), timeout=10)
    assert platform.status_code == 400 and "not a platform folder" in platform.text
    assert not (site.root / "escape-1-0.conda").exists()
    assert not list((site.root / "internal").rglob("*-1-0.conda"))


def test_a_non_package_with_a_package_extension_is_400(site):
    junk = b"this is not a zip archive at all" * 10
    response = upload(site, site.token, form("victim", "1.0", "victim-1.0-py3-none-any.whl",
                                             junk))
    assert response.status_code == 400 and "not a valid wheel" in one_line(response)
    sdist = upload(site, site.token, form("victim", "1.0", "victim-1.0.tar.gz", junk,
                                          filetype="sdist"))
    assert sdist.status_code == 400 and "not a valid sdist" in one_line(sdist)
    conda = requests.put(f"{site.url}/internal/noarch/victim-1.0-0.conda", data=junk,
                         auth=("__token__", site.token), timeout=10)
    assert conda.status_code == 400 and "not a valid package" in one_line(conda)
    assert nothing_visible(site)
    assert not (site.root / "internal/noarch/victim-1.0-0.conda").exists()


def test_a_wheel_whose_metadata_names_another_project_is_400(site):
    _, data, _ = build_wheel("someone-else", "1.0")
    response = upload(site, site.token, form("victim", "1.0", "victim-1.0-py3-none-any.whl",
                                             data))
    assert response.status_code == 400
    assert "names project 'someone-else'" in one_line(response)
    assert nothing_visible(site)


def test_a_conda_package_whose_index_disagrees_with_its_path_is_400(site, tmp_path):
    package = build_package(PkgSpec("realname", "1.0", "0", fmt=".tar.bz2"), tmp_path)
    response = requests.put(f"{site.url}/internal/noarch/fakename-1.0-0.tar.bz2",
                            data=package.read_bytes(), auth=("__token__", site.token),
                            timeout=10)
    assert response.status_code == 400 and "says it is realname-1.0-0" in one_line(response)
    renamed = build_package(PkgSpec("realname", "1.0", "0"), tmp_path)
    response = requests.put(f"{site.url}/internal/noarch/fakename-1.0-0.conda",
                            data=renamed.read_bytes(), auth=("__token__", site.token),
                            timeout=10)
    assert response.status_code == 400 and "renamed .conda" in one_line(response)
    linux = build_package(PkgSpec("realname", "1.0", "0", subdir="linux-64"), tmp_path)
    response = requests.put(f"{site.url}/internal/noarch/realname-1.0-0.conda",
                            data=linux.read_bytes(), auth=("__token__", site.token),
                            timeout=10)
    assert response.status_code == 400 and "says subdir 'linux-64'" in one_line(response)
    assert not list((site.root / "internal").rglob("*name-1.0-0.*"))


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """A wheel-shaped zip whose second member inflates to 300 MiB of zeros."""
    return zip_of_zeros("victim-1.0.dist-info/METADATA",
                        b"Metadata-Version: 2.1\nName: victim\nVersion: 1.0\n\n")


def test_a_zip_bomb_is_refused_before_it_is_inflated(site, zip_bomb):
    assert len(zip_bomb) < LIMIT
    response = upload(site, site.token, form("victim", "1.0", "victim-1.0-py3-none-any.whl",
                                             zip_bomb))
    assert response.status_code == 400 and "zip bomb" in one_line(response)
    assert nothing_visible(site)
    conda = requests.put(f"{site.url}/internal/noarch/victim-1.0-0.conda", data=zip_bomb,
                         auth=("__token__", site.token), timeout=30)
    assert conda.status_code == 400 and "zip bomb" in one_line(conda)
    assert not (site.root / "internal/noarch/victim-1.0-0.conda").exists()


def test_a_digest_that_does_not_match_is_400(site, wheel):
    payload = form("victim", "1.0", *wheel, sha256_digest="0" * 64)
    response = upload(site, site.token, payload)
    assert response.status_code == 400 and "sha256_digest does not match" in one_line(response)
    assert nothing_visible(site)


def test_an_oversized_upload_is_413_before_its_body_is_read(site):
    head = (f"POST /pypi/legacy/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {site.token}\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n"
            f"Content-Length: {LIMIT * 50}")
    answer = raw_request(site.url, head)  # no body sent at all: the answer comes anyway
    assert answer.startswith(b"HTTP/1.1 413"), answer
    put_head = (f"PUT /internal/noarch/big-1-0.conda HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {site.token}\r\nContent-Length: {LIMIT + 1}")
    assert raw_request(site.url, put_head).startswith(b"HTTP/1.1 413")
    assert nothing_visible(site)


def test_an_upload_without_length_is_cut_at_the_limit(site):
    def body():
        chunk = b"x" * 65536
        for _ in range(LIMIT // len(chunk) + 4):
            yield chunk

    try:
        response = requests.put(f"{site.url}/internal/noarch/big-1-0.conda", data=body(),
                                auth=("__token__", site.token), timeout=30)
        assert response.status_code == 413
    except requests.ConnectionError:
        pass  # the server answered 413 and closed while the body was still going out
    assert wait_until(lambda: '"PUT /internal/noarch/big-1-0.conda HTTP/1.1" 413'
                      in site.server.log())
    staging = site.root / "internal" / ".cas-uploads"
    assert wait_until(lambda: not staging.exists() or not list(staging.iterdir()))
    assert not (site.root / "internal/noarch/big-1-0.conda").exists()


def test_an_upload_cut_off_mid_body_leaves_nothing(site, wheel):
    request = requests.Request("POST", f"{site.url}/pypi/legacy/",
                               auth=("__token__", site.token),
                               **form("victim", "1.0", *wheel)).prepare()
    head = "\r\n".join(["POST /pypi/legacy/ HTTP/1.1", "Host: x", "Connection: close",
                        *(f"{k}: {v}" for k, v in request.headers.items())])
    raw_request(site.url, head, request.body[: len(request.body) // 2], close_after_body=True)
    assert wait_until(lambda: '"POST /pypi/legacy/ HTTP/1.1" 400' in site.server.log())
    assert wait_until(lambda: nothing_visible(site))
    assert not (site.private / "simple" / "victim").exists()


def test_the_same_file_uploaded_twice_at_once_is_published_once(site):
    filename, data, _ = build_wheel("twice", "1.0")
    statuses = []

    def send():
        statuses.append(upload(site, site.token, form("twice", "1.0", filename, data)).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    page = requests.get(f"{site.url}/pypi/simple/twice/", timeout=10,
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert [f["filename"] for f in page["files"]] == [filename]
    assert not list((site.private / ".incoming").iterdir())
    (site.private / "packages/twice" / filename).unlink()  # keep nothing_visible() true
    (site.private / "packages/twice" / f"{filename}.metadata").unlink()


def test_other_methods_and_forms_are_refused(site, wheel):
    assert requests.get(f"{site.url}/pypi/legacy/", timeout=10).status_code == 405
    response = upload(site, site.token, form("victim", "1.0", *wheel, **{":action": "remove"}))
    assert response.status_code == 400 and "unsupported :action" in one_line(response)
    plain = requests.post(f"{site.url}/pypi/legacy/", data=b"x", timeout=10,
                          auth=("__token__", site.token))
    assert plain.status_code == 400 and "multipart/form-data" in one_line(plain)
    mirrored = requests.put(f"{site.url}/mirrored/noarch/a-1-0.conda", data=b"x", timeout=10,
                            auth=("__token__", site.token))
    assert mirrored.status_code == 403 and "not in an upload channel" in one_line(mirrored)
    assert nothing_visible(site)


def zip_of_zeros(first: str, first_data: bytes, megabytes: int = 300) -> bytes:
    """A zip archive holding `first` and a member of `megabytes` MiB of zeros: a bomb."""
    buffer = io.BytesIO()
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(first, first_data)
        with archive.open("bomb.bin", "w", force_zip64=True) as member:
            for _ in range(megabytes):
                member.write(zeros)
    return buffer.getvalue()


def test_a_gzip_bomb_sdist_is_refused_while_it_is_inflated(site):
    # gzip members may follow each other: 300 copies of one compressed MiB of zeros
    # inflate to a 300 MiB tar member that comes before PKG-INFO
    header = tarfile.TarInfo("victim-1.0/bomb.bin")
    header.size = 300 << 20
    pkg_info = b"Metadata-Version: 2.1\nName: victim\nVersion: 1.0\n\n"
    info = tarfile.TarInfo("victim-1.0/PKG-INFO")
    info.size = len(pkg_info)
    zeros = gzip.compress(bytes(1 << 20), compresslevel=9)
    data = (gzip.compress(header.tobuf(format=tarfile.PAX_FORMAT)) + zeros * 300
            + gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT) + pkg_info
                            + bytes(512 - len(pkg_info)) + bytes(1024)))
    assert len(data) < LIMIT
    response = upload(site, site.token, form("victim", "1.0", "victim-1.0.tar.gz", data,
                                             filetype="sdist"))
    assert response.status_code == 400 and "gzip bomb" in one_line(response)
    assert nothing_visible(site)


def test_a_conda_upload_cut_off_mid_body_leaves_nothing(site, tmp_path):
    package = build_package(PkgSpec("cutoff", "1.0", "0", payload_size=20000), tmp_path)
    data = package.read_bytes()
    head = (f"PUT /internal/noarch/{package.name} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {site.token}\r\nContent-Length: {len(data)}\r\n"
            "Connection: close")
    raw_request(site.url, head, data[: len(data) // 2], close_after_body=True)
    assert wait_until(lambda: f'"PUT /internal/noarch/{package.name} HTTP/1.1" 400'
                      in site.server.log())
    staging = site.root / "internal" / ".cas-uploads"
    assert wait_until(lambda: not staging.exists() or not list(staging.iterdir()))
    assert not (site.root / "internal/noarch" / package.name).exists()


@pytest.fixture
def mounts():
    m = Mounts()
    yield m
    m.unmount_all()


def test_a_full_disk_is_507_and_leaves_nothing(site, mounts, tmp_path):
    staging = mounts.tmpfs(site.root / "internal" / ".cas-uploads", 16 * 4096)
    package = build_package(PkgSpec("toobig", "1.0", "0", payload_size=200_000), tmp_path)
    response = requests.put(f"{site.url}/internal/noarch/{package.name}",
                            data=package.read_bytes(), auth=("__token__", site.token),
                            timeout=30)
    assert response.status_code == 507 and "no space left" in one_line(response)
    assert not list(staging.iterdir())
    assert not (site.root / "internal/noarch" / package.name).exists()

    incoming = mounts.tmpfs(site.private / ".incoming", 16 * 4096)
    filename, data, _ = build_wheel("victim", "1.0", payload=400_000)
    response = upload(site, site.token, form("victim", "1.0", filename, data))
    assert response.status_code == 507 and "no space left" in one_line(response)
    assert not list(incoming.iterdir())
    mounts.unmount_all()
    assert nothing_visible(site)


def test_a_disk_full_while_pages_are_written_takes_the_upload_back(site, mounts):
    simple = mounts.tmpfs(site.private / "simple", 4 * 4096)
    fill(simple, 0)
    filename, data, _ = build_wheel("rolled-back", "1.0")
    response = upload(site, site.token, form("rolled-back", "1.0", filename, data))
    assert response.status_code == 507 and "no space left" in one_line(response)
    mounts.unmount_all()
    assert not (site.private / "packages/rolled-back" / filename).exists()
    assert not (site.private / "packages/rolled-back" / f"{filename}.metadata").exists()
    assert not (site.private / ".state/rolled-back.json").exists()
    again = upload(site, site.token, form("rolled-back", "1.0", filename, data))
    assert again.status_code == 200, again.text  # not 409: nothing of the first try stayed
    for leftover in (site.private / "packages/rolled-back").iterdir():
        leftover.unlink()
