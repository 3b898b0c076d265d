import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

from hagstudy import data

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_manifest_vouches_for_every_file_the_tasks_read():
    entries = data.check_all()
    assert entries["strategyqa"]["items"] == 2290
    assert entries["strategyqa"]["sha256"] == "60af9081fed20102fd8bb1e02dc7d9f12238efcba33e4c1a56b4d61cb6409803"
    assert entries["taboo_cards"]["items"] == len(data.read_json(data.file("taboo_cards"))["cards"])
    for entry in entries.values():  # the provenance the issue asks for, per file
        assert entry["source"] and entry["license"] and entry["checked"]
    assert "Apache License" in (data.data_dir() / "bigbench" / "LICENSE").read_text()[:200]  # the licence ships with it


def test_make_data_runs_offline_in_a_clean_checkout(tmp_path):
    """`python -m hagstudy.data` in a fresh copy of the repository, with every way out to the network failing."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    for rel in ("hagstudy", "data"):  # the working tree's current files, committed or not
        shutil.rmtree(clone / rel, ignore_errors=True)
        shutil.copytree(ROOT / rel, clone / rel, ignore=shutil.ignore_patterns("__pycache__", "downloads"))
    guard = tmp_path / "sitecustomize.py"
    guard.write_text(
        "import socket, urllib.request\n"
        "def _refuse(*a, **k):\n    raise OSError('network access attempted')\n"
        "urllib.request.urlopen = _refuse\n"
        "socket.socket.connect = _refuse\n"
        "socket.create_connection = _refuse\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{clone}", "HAGSTUDY_ROOT": str(clone)}
    env.pop(data.SDIST_ENV, None)
    out = subprocess.run([sys.executable, "-m", "hagstudy.data"], cwd=clone, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "strategyqa" in out.stdout and "taboo_cards" in out.stdout and "sha256 ok" in out.stdout
    # the guard is live: the same interpreter set-up refuses a connection
    probe = subprocess.run([sys.executable, "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9')"],
                           env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "network access attempted" in probe.stderr


def test_the_package_has_no_download_code():
    sources = "\n".join(p.read_text() for p in (ROOT / "hagstudy").rglob("*.py"))
    assert "urlopen" not in sources and "urllib.request" not in sources


# --- stored data is checked on use -------------------------------------------------------------

def fake_data(root, name="taboo_cards", text='{"cards": [1, 2]}'):
    """A data folder holding one file and a manifest recording its sha256."""
    path = root / data.FILES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    files = {name: {"path": data.FILES[name], "items": 2, "sha256": data.sha256(path)}}
    (root / "MANIFEST.json").write_text(json.dumps({"files": files}))
    return path


def test_missing_or_unknown_file_names_it_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    with pytest.raises(data.DataError, match=r"cards.json is missing: restore it with `git checkout -- .*cards.json`"):
        data.file("taboo_cards")
    with pytest.raises(data.DataError, match="unknown data file"):
        data.file("nope")


def test_malformed_file_names_the_file(tmp_path):
    bad = tmp_path / "task.json"
    bad.write_text("{not json")
    with pytest.raises(data.DataError, match="task.json is malformed.*git checkout --"):
        data.read_json(bad)


@pytest.mark.parametrize("damage", ["edit", "truncate"])
def test_an_edited_or_truncated_file_is_refused_with_the_git_fix(monkeypatch, tmp_path, damage):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    path = fake_data(tmp_path)
    assert data.file("taboo_cards") == path
    if damage == "edit":
        path.write_text('{"cards": [1, 2, 3]}')
    else:
        path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(data.DataError, match=r"cards.json is not the committed file.*git checkout -- .*cards.json"):
        data.file("taboo_cards")


def test_a_damaged_committed_file_stops_make_data(tmp_path):
    """The real files: a one-byte change to the committed strategyqa file fails `python -m hagstudy.data`."""
    copy = tmp_path / "repo"
    (copy / "configs").mkdir(parents=True)
    shutil.copytree(data.data_dir(), copy / "data", ignore=shutil.ignore_patterns("downloads"))
    target = copy / "data" / data.FILES["strategyqa"]
    raw = bytearray(target.read_bytes())
    raw[100] ^= 1
    target.write_bytes(bytes(raw))
    env = {**os.environ, "HAGSTUDY_ROOT": str(copy)}
    out = subprocess.run([sys.executable, "-m", "hagstudy.data"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "strategyqa/task.json is not the committed file" in out.stderr and "git checkout --" in out.stderr


def test_the_check_is_cached_per_process_while_the_file_is_unchanged(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    fake_data(tmp_path)
    calls = []
    real = data.sha256
    monkeypatch.setattr(data, "sha256", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        data.file("taboo_cards")
    assert len(calls) == 1


@pytest.mark.parametrize("manifest", ["[]", '{"files": []}', '{"files": {"taboo_cards": "x"}}', "{oops"])
def test_a_malformed_manifest_is_a_data_error(monkeypatch, tmp_path, manifest):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    fake_data(tmp_path)
    (tmp_path / "MANIFEST.json").write_text(manifest)
    with pytest.raises(data.DataError, match="MANIFEST.json is malformed.*git checkout --"):
        data.file("taboo_cards")


def test_a_missing_manifest_or_entry_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    fake_data(tmp_path)
    (tmp_path / "MANIFEST.json").write_text('{"files": {}}')
    with pytest.raises(data.DataError, match="lists no sha256 for 'taboo_cards'.*git checkout --"):
        data.file("taboo_cards")
    with pytest.raises(data.DataError, match="has no entry for 'strategyqa'"):
        data.check_all()
    (tmp_path / "MANIFEST.json").unlink()
    with pytest.raises(data.DataError, match="MANIFEST.json is missing: restore it"):
        data.file("taboo_cards")


# --- the optional cross-check against a user's own sdist ---------------------------------------

def fake_sdist(tmp_path, text: bytes):
    member = tmp_path / "src" / data._SDIST_MEMBERS["strategyqa"]
    member.parent.mkdir(parents=True, exist_ok=True)
    member.write_bytes(text)
    sdist = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "src" / "bigbench-1.0.0", arcname="bigbench-1.0.0")
    return sdist


def test_the_sdist_cross_check_compares_the_member(monkeypatch, tmp_path):
    committed = data.file("strategyqa").read_bytes()
    same = fake_sdist(tmp_path / "a", committed)
    monkeypatch.setattr(data, "BIGBENCH_SHA256", data.sha256(same))
    assert data.cross_check_sdist(same) == ["strategyqa"]
    other = fake_sdist(tmp_path / "b", committed[:-1])
    monkeypatch.setattr(data, "BIGBENCH_SHA256", data.sha256(other))
    with pytest.raises(data.DataError, match="differs from .*strategyqa/task.json"):
        data.cross_check_sdist(other)


def test_the_sdist_cross_check_refuses_another_file(tmp_path):
    fake = tmp_path / "bigbench.tar.gz"
    fake.write_bytes(b"not the sdist")
    with pytest.raises(data.DataError, match="is not bigbench-1.0.0.tar.gz"):
        data.cross_check_sdist(fake)
    with pytest.raises(data.DataError, match=r"nowhere.tar.gz \(from \$HAGSTUDY_BIGBENCH_SDIST\) does not exist"):
        data.cross_check_sdist(tmp_path / "nowhere.tar.gz")


def test_no_network_is_touched_while_tasks_read_their_data(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    from hagstudy import tasks

    for name in ("strategyqa", "yes_no_black_white", "taboo"):
        fresh = type(tasks.get(name))()
        assert fresh.items("search", 2)
