"""A configuration file parsed before and unchanged since is not parsed again
(config/parsed.py): the same answer, no PyYAML; any change, a value JSON cannot carry, a
file written just now, or an error means a fresh parse."""

from __future__ import annotations

import os

import pytest

from cas_mirror.config import parsed, yamlfile
from cas_mirror.config.yamlfile import read_yaml_mapping
from cas_mirror.errors import ConfigError

TEXT = "mirror_dir: /srv/mirror  # a comment\nworkers: 4\npypi:\n  workers: 2\n"


@pytest.fixture
def settled(monkeypatch):
    """Files written by a test count as settled at once (the rule itself: its own test)."""
    monkeypatch.setattr(parsed, "SETTLED", 0.0)


def no_parsing(monkeypatch):
    def refuse(path, text):
        raise AssertionError(f"{path} was parsed again")

    monkeypatch.setattr(yamlfile, "_parse", refuse)


def test_an_unchanged_file_is_not_parsed_again(tmp_path, settled, monkeypatch):
    path = tmp_path / "cas-mirror.yaml"
    path.write_text(TEXT)
    first = read_yaml_mapping(path, required=True)
    assert first == [("mirror_dir", "/srv/mirror", 1, {}), ("workers", 4, 2, {}),
                     ("pypi", {"workers": 2}, 3, {"workers": 4})]
    with monkeypatch.context() as patched:
        no_parsing(patched)
        assert read_yaml_mapping(path, required=True) == first
    path.write_text(TEXT.replace("4", "8", 1))  # same size, another value
    assert read_yaml_mapping(path, required=True)[1] == ("workers", 8, 2, {})


def test_the_cache_never_hides_a_change_or_an_error(tmp_path, settled):
    path = tmp_path / "cas-mirror.yaml"
    path.write_text(TEXT)
    read_yaml_mapping(path, required=True)
    stat = path.stat()
    path.write_text(TEXT.replace("4", "8", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime set back: ctime moved
    assert read_yaml_mapping(path, required=True)[1] == ("workers", 8, 2, {})
    path.write_text(TEXT + "workers: 5\n")
    with pytest.raises(ConfigError, match="duplicate key 'workers'"):
        read_yaml_mapping(path, required=True)
    with pytest.raises(ConfigError, match="duplicate key 'workers'"):  # not remembered
        read_yaml_mapping(path, required=True)
    path.unlink()
    with pytest.raises(ConfigError, match="configuration file not found"):
        read_yaml_mapping(path, required=True)


@pytest.mark.parametrize("text", ["when: 2026-12-02\n", "pypi:\n  1: x\n",
                                  "pairs: !!omap [{a: 1}]\n", "ratio: .nan\n"])
def test_values_json_cannot_carry_are_parsed_every_time(tmp_path, settled, monkeypatch,
                                                          text):
    path = tmp_path / "cas-mirror.yaml"
    path.write_text(text)
    first = read_yaml_mapping(path, required=True)
    assert not list(parsed.cache_folder().glob("*.json"))
    calls = []
    real = yamlfile._parse
    monkeypatch.setattr(yamlfile, "_parse", lambda *a: calls.append(a) or real(*a))
    assert repr(read_yaml_mapping(path, required=True)) == repr(first) and calls


def test_a_file_written_just_now_is_not_remembered(tmp_path):
    """Within SETTLED seconds of its last change a file could change again with the same
    times and size (a timestamp tick): it is parsed, never remembered."""
    path = tmp_path / "cas-mirror.yaml"
    path.write_text(TEXT)
    read_yaml_mapping(path, required=True)
    folder = parsed.cache_folder()
    assert folder is not None and not (folder.exists() and list(folder.iterdir()))


def test_an_empty_cache_variable_turns_it_off(tmp_path, settled, monkeypatch):
    monkeypatch.setenv(parsed.CACHE_ENV, "")
    path = tmp_path / "cas-mirror.yaml"
    path.write_text(TEXT)
    read_yaml_mapping(path, required=True)
    assert parsed.cache_folder() is None
    assert not (tmp_path / "cas-mirror-cache").exists()


def test_a_pipe_is_read_every_time(tmp_path, settled):
    """`-f <(command)` names a pipe: the same identity can carry other text next time."""
    import threading

    pipe = tmp_path / "config.fifo"
    os.mkfifo(pipe)
    for text in (TEXT, TEXT.replace("4", "8", 1)):
        writer = threading.Thread(target=pipe.write_text, args=(text,))
        writer.start()
        pairs = read_yaml_mapping(pipe, required=True)
        writer.join()
        assert pairs[1][1] == int(text.split("workers: ")[1][0])
    assert not list(parsed.cache_folder().glob("*.json"))
