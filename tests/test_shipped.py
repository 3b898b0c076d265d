"""Shipped generations: export -> import round trips, deterministic bytes, and refusing bad rows and files."""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import sqlite3
from pathlib import Path

import pytest

from hagstudy.engine.cache import CompletionCache
from hagstudy.replay import shipped
from hagstudy.replay.shipped import ShippedError, export, import_into

ROWS = {
    "k2": {"text": "beta", "n_tokens": 5, "finished": False, "meta": {"seed": 1, "config": {"top_p": 0.9}}},
    "k1": {"text": "alpha ünïcode ✓ \n \"quoted\"", "n_tokens": 3, "finished": True, "meta": None},
    "k3": {"text": "", "n_tokens": 0, "finished": True, "meta": {"model": "m|bfloat16|abc"}},
}


def raw_rows(path: Path) -> list[tuple]:
    """Every column a row's identity depends on (not ``created``: the time it was stored)."""
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT key, text, n_tokens, finished, meta, digest FROM completions ORDER BY key"
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def make_cache(path: Path, rows: dict = ROWS) -> Path:
    with CompletionCache(path) as cache:
        cache.put_many(rows)
    return path


def lines(path: Path) -> list[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write_lines(path: Path, records: list[dict | str]) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    with lzma.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def test_round_trip_into_an_empty_cache_gives_identical_rows(tmp_path):
    source = make_cache(tmp_path / "a.sqlite")
    out = tmp_path / "g.jsonl.xz"
    assert export(source, out) == 3
    assert [r["key"] for r in lines(out)] == ["k1", "k2", "k3"]  # sorted by key
    counts = import_into(out, tmp_path / "b.sqlite")
    assert (counts.rows, counts.imported, counts.present, counts.refused) == (3, 3, 0, 0)
    assert raw_rows(tmp_path / "b.sqlite") == raw_rows(source)
    with CompletionCache(tmp_path / "b.sqlite") as cache:
        assert cache.get_many(list(ROWS)) == ROWS


def test_export_is_byte_deterministic(tmp_path):
    source = make_cache(tmp_path / "a.sqlite")
    export(source, tmp_path / "one.xz")
    # The same rows put in another order, at another time, into another file export to the same bytes.
    make_cache(tmp_path / "b.sqlite", dict(reversed(list(ROWS.items()))))
    export(tmp_path / "b.sqlite", tmp_path / "two.xz")
    data = (tmp_path / "one.xz").read_bytes()
    assert data == (tmp_path / "two.xz").read_bytes()
    assert data[:6] == b"\xfd7zXZ\x00"  # an xz stream: no name or time in its header to vary
    export(source, tmp_path / "one.xz")  # replaces the previous file
    assert (tmp_path / "one.xz").read_bytes() == data
    assert not list(tmp_path.glob(".one.xz.*"))  # no temporary file left behind


def test_a_row_whose_text_was_edited_is_refused(tmp_path, caplog):
    out = tmp_path / "g.jsonl.xz"
    export(make_cache(tmp_path / "a.sqlite"), out)
    records = lines(out)
    records[1]["text"] = "beta, edited"  # line 2, key k2
    write_lines(out, records)
    with caplog.at_level(logging.WARNING, logger="hagstudy.replay.shipped"):
        counts = import_into(out, tmp_path / "b.sqlite")
    assert (counts.rows, counts.imported, counts.refused) == (3, 2, 1)
    assert f"{out}:2: key k2: text does not match its digest" in caplog.text
    with CompletionCache(tmp_path / "b.sqlite") as cache:
        assert set(cache.keys()) == {"k1", "k3"}


def test_a_text_moved_to_another_key_is_refused(tmp_path):
    out = tmp_path / "g.jsonl.xz"
    export(make_cache(tmp_path / "a.sqlite"), out)
    records = lines(out)
    records[0]["key"], records[1]["key"] = "k2", "k1"  # swapped keys, digests kept
    write_lines(out, records)
    counts = import_into(out, tmp_path / "b.sqlite")
    assert (counts.imported, counts.refused) == (1, 2)


def test_import_skips_keys_already_cached(tmp_path, caplog):
    out = tmp_path / "g.jsonl.xz"
    export(make_cache(tmp_path / "a.sqlite"), out)
    target = make_cache(tmp_path / "b.sqlite", {"k1": {"text": "decoded here", "n_tokens": 2, "finished": True},
                                                "k2": ROWS["k2"]})
    with caplog.at_level(logging.WARNING, logger="hagstudy.replay.shipped"):
        counts = import_into(out, target)
    assert (counts.imported, counts.present, counts.differing) == (1, 2, 1)
    assert "1 key(s) already cached with a different text" in caplog.text
    with CompletionCache(target) as cache:
        got = cache.get_many(["k1", "k2", "k3"])
    assert got["k1"]["text"] == "decoded here" and got["k3"] == ROWS["k3"]
    again = import_into(out, target)
    assert (again.imported, again.present) == (0, 3)


def test_corrupt_xz_names_the_file_and_line(tmp_path):
    out = tmp_path / "g.jsonl.xz"
    make_cache(tmp_path / "a.sqlite", {f"k{i:04d}": {"text": f"text {i}" * 20, "n_tokens": i, "finished": True}
                                       for i in range(300)})
    export(tmp_path / "a.sqlite", out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])  # cut short
    with pytest.raises(ShippedError, match=rf"{out}:\d+: cannot decompress .*git checkout"):
        import_into(out, tmp_path / "b.sqlite")
    assert not (tmp_path / "b.sqlite").exists()  # nothing stored: the file is checked before the cache opens
    out.write_bytes(b"not xz at all\n")
    with pytest.raises(ShippedError, match=rf"{out}:1: cannot decompress \(LZMAError"):
        import_into(out, tmp_path / "b.sqlite")
    out.write_bytes(b"")
    with pytest.raises(ShippedError, match=rf"{out}: empty file"):
        import_into(out, tmp_path / "b.sqlite")
    with pytest.raises(ShippedError, match="no such file"):
        import_into(tmp_path / "missing.xz", tmp_path / "b.sqlite")


def test_a_bad_json_line_names_the_file_and_line(tmp_path):
    out = tmp_path / "g.jsonl.xz"
    export(make_cache(tmp_path / "a.sqlite"), out)
    records = lines(out)
    write_lines(out, [records[0], records[1], '{"key": "k3", "text": ', records[2]])
    with pytest.raises(ShippedError, match=rf"{out}:3: not a JSON line"):
        import_into(out, tmp_path / "b.sqlite")
    assert not (tmp_path / "b.sqlite").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("digest"), r"fields must be .*missing \['digest'\]"),
        (lambda r: r.update(extra=1), r"fields must be .*unknown \['extra'\]"),
        (lambda r: r.update(n_tokens="3"), r"n_tokens: expected an integer >= 0, got '3'"),
        (lambda r: r.update(n_tokens=True), r"n_tokens: expected an integer"),
        (lambda r: r.update(finished=1), r"finished: expected bool, got int"),
        (lambda r: r.update(meta=[1]), r"meta: expected object or null, got list"),
        (lambda r: r.update(text="lone \ud800"), r"text: not encodable as UTF-8"),
    ],
)
def test_a_malformed_row_names_the_file_line_and_field(tmp_path, change, message):
    out = tmp_path / "g.jsonl.xz"
    export(make_cache(tmp_path / "a.sqlite"), out)
    records = lines(out)
    change(records[1])
    write_lines(out, records)
    with pytest.raises(ShippedError, match=rf"{out}:2: {message}"):
        import_into(out, tmp_path / "b.sqlite")


def test_a_repeated_key_is_an_error(tmp_path):
    out = tmp_path / "g.jsonl.xz"
    export(make_cache(tmp_path / "a.sqlite"), out)
    records = lines(out)
    write_lines(out, [*records, records[0]])
    with pytest.raises(ShippedError, match=rf"{out}:4: key k1 appears twice"):
        import_into(out, tmp_path / "b.sqlite")


def test_export_leaves_out_rows_failing_their_digest_and_needs_a_cache(tmp_path):
    source = make_cache(tmp_path / "a.sqlite")
    conn = sqlite3.connect(source)
    conn.execute("UPDATE completions SET text = 'tampered' WHERE key = 'k2'")
    conn.commit()
    conn.close()
    out = tmp_path / "g.jsonl.xz"
    assert export(source, out) == 2
    assert [r["key"] for r in lines(out)] == ["k1", "k3"]
    with pytest.raises(ShippedError, match="no completion cache here"):
        export(tmp_path / "none.sqlite", out)


def test_an_empty_cache_exports_a_valid_empty_file(tmp_path):
    CompletionCache(tmp_path / "a.sqlite").close()
    out = tmp_path / "g.jsonl.xz"
    assert export(tmp_path / "a.sqlite", out) == 0
    assert out.stat().st_size > 0 and lines(out) == []
    assert import_into(out, tmp_path / "b.sqlite").rows == 0


def test_cli_exports_and_imports_at_a_profile(tmp_path, monkeypatch):
    """The CLI picks the profile's paths: the shared cache and <results>/generations.jsonl.xz."""
    from hagstudy import config

    root = tmp_path / "repo"
    (root / "configs").mkdir(parents=True)
    for name in ("default", "smoke"):
        (root / "configs" / f"{name}.yaml").write_text((config.repo_root() / "configs" / f"{name}.yaml").read_text())
    monkeypatch.setenv(config.ROOT_ENV, str(root))
    make_cache(root / "artifacts" / "cache" / "completions.sqlite")
    shipped.main(["export", "--profile", "smoke"])
    assert len(lines(root / "artifacts" / "smoke" / "results" / shipped.FILE_NAME)) == 3
    shipped.main(["export"])
    out = root / "results" / shipped.FILE_NAME
    (root / "artifacts" / "cache" / "completions.sqlite").unlink()
    shipped.main(["import"])
    reference = make_cache(tmp_path / "ref.sqlite")
    assert raw_rows(root / "artifacts" / "cache" / "completions.sqlite") == raw_rows(reference)
    out.write_bytes(b"junk")
    with pytest.raises(SystemExit, match=r"error: .*generations.jsonl.xz:1: cannot decompress"):
        shipped.main(["import"])


# -- the scorers' cosines ------------------------------------------------------------------------------
COSINES = {"a" * 64: 1234, "b" * 64: -50, "c" * 64: 10000}


def make_cosines(path: Path, rows: dict = COSINES) -> Path:
    from hagstudy.engine.cache import CosineCache

    store = CosineCache(path)
    store.put_many(rows)
    store.close()
    return path


def test_cosines_round_trip_deterministically_and_keep_cached_values(tmp_path, caplog):
    from hagstudy.engine.cache import CosineCache

    source = make_cosines(tmp_path / "c.sqlite")
    assert shipped.export_cosines(source, tmp_path / "a.json.gz") == 3
    shipped.export_cosines(source, tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    target = make_cosines(tmp_path / "t.sqlite", {"a" * 64: 1235})  # this machine scored one pair first
    with caplog.at_level(logging.WARNING, logger="hagstudy.replay.shipped"):
        assert shipped.import_cosines(tmp_path / "a.json.gz", target) == (2, 1)
    assert "1 cosine(s) already cached with another value" in caplog.text
    store = CosineCache(target)
    assert dict(store.items()) == {**COSINES, "a" * 64: 1235}
    store.close()


@pytest.mark.parametrize("payload, message", [
    (b"not gzip", "not a gzip JSON export of cosines"),
    (gzip.compress(b'{"version": 1, "cosines": {}}'), "expected {'version': 1, 'unit': '1e-4'"),
    (gzip.compress(json.dumps({"version": 1, "unit": "1e-4", "cosines": {"a" * 64: 0.5}}).encode()),
     r"cosines\['a+'\]: expected a 64-hex key and an integer"),
    (gzip.compress(json.dumps({"version": 1, "unit": "1e-4", "cosines": {"short": 5}}).encode()), "cosines\\['short'\\]"),
])
def test_a_bad_cosines_file_names_the_file_and_stores_nothing(tmp_path, payload, message):
    bad = tmp_path / shipped.COSINES_FILE
    bad.write_bytes(payload)
    with pytest.raises(ShippedError, match=message) as err:
        shipped.import_cosines(bad, tmp_path / "t.sqlite")
    assert str(bad) in str(err.value) and not (tmp_path / "t.sqlite").exists()
