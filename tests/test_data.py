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
