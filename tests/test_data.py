import json
import tarfile

import pytest

from hagstudy import data


def test_manifest_lists_verified_files_and_counts():
    manifest = data.prepare()
    info = json.loads(manifest.read_text())
    assert info["sha256"] == data.BIGBENCH_SHA256 and info["version"] == "1.0.0"
    assert info["files"]["strategyqa"]["items"] == 2290
    assert info["files"]["pig_latin_encode"]["items"] == 1000
    assert info["files"]["taboo"]["items"] == 100


def test_missing_file_names_make_data(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    with pytest.raises(data.DataError, match="make data"):
        data.bigbench_file("taboo")
    with pytest.raises(data.DataError, match="unknown BIG-bench file"):
        data.bigbench_file("nope")


def test_malformed_file_names_the_file(tmp_path):
    bad = tmp_path / "task.json"
    bad.write_text("{not json")
    with pytest.raises(data.DataError, match="task.json is malformed.*make data"):
        data.read_json(bad)


def test_wrong_checksum_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "bigbench.tar.gz"
    fake.write_bytes(b"not the sdist")
    monkeypatch.setenv(data.SDIST_ENV, str(fake))
    with pytest.raises(data.DataError, match="sha256"):
        data.fetch_sdist(tmp_path)


def test_extract_takes_only_the_named_members(tmp_path):
    src = tmp_path / "src"
    for rel in list(data.BIGBENCH_FILES.values()) + ["other/task.json"]:
        f = src / data._PREFIX / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text('{"examples": []}')
    sdist = tmp_path / "sdist.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(src / data._PREFIX.split("/")[0], arcname=data._PREFIX.split("/")[0])
    written = data.extract(sdist, tmp_path / "out")
    assert sorted(written) == sorted(data.BIGBENCH_FILES.values())
    assert not (tmp_path / "out" / "bigbench" / "other").exists()


# --- stored data is checked on use -------------------------------------------------------------

def fake_data(root, name="taboo", text='{"examples": [1, 2]}'):
    """A data folder holding one extracted file and a manifest recording its sha256."""
    path = root / "bigbench" / data.BIGBENCH_FILES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    files = {name: {"path": f"bigbench/{data.BIGBENCH_FILES[name]}", "items": 2, "sha256": data.sha256(path)}}
    (root / "MANIFEST.json").write_text(json.dumps({"sha256": data.BIGBENCH_SHA256, "files": files}))
    return path


def test_a_file_edited_after_make_data_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    path = fake_data(tmp_path)
    assert data.bigbench_file("taboo") == path
    path.write_text('{"examples": [1, 2, 3]}')
    with pytest.raises(data.DataError, match=r"taboo_data.json was changed after `make data`.*make data"):
        data.bigbench_file("taboo")


def test_the_check_is_cached_per_process_while_the_file_is_unchanged(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    fake_data(tmp_path)
    calls = []
    real = data.sha256
    monkeypatch.setattr(data, "sha256", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        data.bigbench_file("taboo")
    assert len(calls) == 1


@pytest.mark.parametrize("manifest", ["[]", '{"files": []}', '{"files": {"taboo": "x"}}', "{oops"])
def test_a_malformed_manifest_is_a_data_error(monkeypatch, tmp_path, manifest):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    fake_data(tmp_path)
    (tmp_path / "MANIFEST.json").write_text(manifest)
    with pytest.raises(data.DataError, match="MANIFEST.json is malformed.*make data"):
        data.bigbench_file("taboo")


def test_a_missing_manifest_or_entry_says_make_data(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    fake_data(tmp_path)
    (tmp_path / "MANIFEST.json").write_text('{"files": {}}')
    with pytest.raises(data.DataError, match="lists no sha256 for 'taboo'.*make data"):
        data.bigbench_file("taboo")
    (tmp_path / "MANIFEST.json").unlink()
    with pytest.raises(data.DataError, match="MANIFEST.json is missing: run `make data`"):
        data.bigbench_file("taboo")


def fake_sdist(tmp_path):
    src = tmp_path / "src"
    for rel in data.BIGBENCH_FILES.values():
        f = src / data._PREFIX / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text('{"examples": [1]}')
    sdist = tmp_path / "sdist.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(src / data._PREFIX.split("/")[0], arcname=data._PREFIX.split("/")[0])
    return sdist


@pytest.mark.parametrize("manifest", ["[]", '{"sha256": "other"}', None])
def test_make_data_repairs_a_bad_manifest_or_edited_file(monkeypatch, tmp_path, manifest):
    out = tmp_path / "data"
    sdist = fake_sdist(tmp_path)
    monkeypatch.setattr(data, "data_dir", lambda: out)
    monkeypatch.setattr(data, "BIGBENCH_SHA256", data.sha256(sdist))
    monkeypatch.setenv(data.SDIST_ENV, str(sdist))
    data.prepare()
    edited = out / "bigbench" / data.BIGBENCH_FILES["taboo"]
    if manifest is None:
        edited.write_text('{"examples": []}')
    else:
        (out / "MANIFEST.json").write_text(manifest)
    data.prepare()  # not a no-op: the manifest or a file is not what `make data` wrote
    assert data.bigbench_file("taboo") == edited and data.read_json(edited) == {"examples": [1]}


def test_a_missing_sdist_in_the_variable_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv(data.SDIST_ENV, str(tmp_path / "nowhere.tar.gz"))
    with pytest.raises(data.DataError, match=r"nowhere.tar.gz \(from \$HAGSTUDY_BIGBENCH_SDIST\) does not exist"):
        data.fetch_sdist(tmp_path)


def test_offline_download_hints_at_the_variable(monkeypatch, tmp_path):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv(data.SDIST_ENV, raising=False)
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(data.DataError, match=r"could not download .*HAGSTUDY_BIGBENCH_SDIST=/path/to/bigbench-1.0.0"):
        data.fetch_sdist(tmp_path)
    assert not list(tmp_path.glob("*.part"))
