"""The completion cache: round trips, atomic batches, keys, and resuming an interrupted run."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hagstudy.decoding import DecodingConfig as C
from hagstudy.engine import cache as cache_mod
from hagstudy.engine import models
from hagstudy.engine import requests as requests_mod
from hagstudy.engine.cache import CompletionCache
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request, request_key

ROOT = Path(__file__).resolve().parent.parent


def row(text: str, n: int = 3, finished: bool = True) -> dict:
    return {"text": text, "n_tokens": n, "finished": finished}


def test_round_trip_missing_keys_and_replace(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    cache.put_many({"a": row("alpha"), "b": {**row("beta", 5, False), "meta": {"seed": 1}}})
    got = cache.get_many(["a", "b", "zzz", "a"])
    assert set(got) == {"a", "b"}
    assert got["a"] == {"text": "alpha", "n_tokens": 3, "finished": True, "meta": None}
    assert got["b"] == {"text": "beta", "n_tokens": 5, "finished": False, "meta": {"seed": 1}}
    cache.put_many({"a": row("alpha2")})
    assert cache.get_many(["a"])["a"]["text"] == "alpha2" and len(cache) == 2 and "b" in cache
    cache.close()
    reopened = CompletionCache(tmp_path / "c.sqlite")
    assert reopened.get_many(["b"])["b"]["text"] == "beta"
    mode = sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_many_keys_are_chunked(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    rows = {f"k{i}": row(str(i)) for i in range(1500)}
    cache.put_many(rows)
    assert len(cache.get_many(list(rows))) == 1500


def test_a_batch_is_all_or_nothing(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    cache.put_many({"old": row("kept")})
    bad = {"x": row("x"), "y": {"text": "y", "n_tokens": "not a number", "finished": True}, "z": row("z")}
    with pytest.raises(ValueError):
        cache.put_many(bad)
    assert set(cache.keys()) == {"old"}


def test_request_key_names_everything_the_text_depends_on(monkeypatch):
    base = Request("prompt", C(1.0, 0.9, 0, 1.0, 16), seed=0)
    key = request_key("model|bf16|abc", base)
    variants = [
        request_key("model|float32|abc", base),
        request_key("model|bf16|abc", Request("prompt ", base.config, 0)),
        request_key("model|bf16|abc", Request("prompt", base.config.with_(top_p=0.8), 0)),
        request_key("model|bf16|abc", Request("prompt", base.config.with_(max_new_tokens=17), 0)),
        request_key("model|bf16|abc", Request("prompt", base.config, 1)),
    ]
    assert len({key, *variants}) == 6
    # Greedy ignores top_p / top_k, so those do not split the cache.
    g1, g2 = C(0.0, 0.5, 10, 1.0), C(0.0, 1.0, 0, 1.0)
    assert request_key("m", Request("p", g1)) == request_key("m", Request("p", g2))
    monkeypatch.setattr(requests_mod, "ENGINE_VERSION", "next")
    assert request_key("model|bf16|abc", base) != key


def requests(engine: Engine) -> list[Request]:
    prompts = [engine.render([{"role": "user", "content": q}]) for q in ("one", "two words", "three little words")]
    cfgs = [C(0.0, 1.0, 0, 1.0, 5), C(1.0, 0.9, 0, 1.1, 7), C(0.7, 1.0, 10, 1.0, 4)]
    return [Request(p, c, seed=s) for p in prompts for c in cfgs for s in (0, 1)]


def test_second_call_is_served_from_the_cache(tiny, tmp_path):
    model, tok = tiny
    engine = Engine(model, tok, CompletionCache(tmp_path / "c.sqlite"), progress=False)
    reqs = requests(engine)
    first = engine.generate(reqs)
    assert engine.stats["misses"] == len(reqs) and engine.stats["hits"] == 0
    again = engine.generate(reqs)
    assert engine.stats["hits"] == len(reqs) and engine.stats["misses"] == len(reqs)
    assert all(c.cached for c in again) and not any(c.cached for c in first)
    assert [(c.text, c.n_tokens, c.finished) for c in again] == [(c.text, c.n_tokens, c.finished) for c in first]
    other = Engine(model, tok, engine.cache, progress=False, identity="another model")
    other.generate(reqs[:3])
    assert other.stats["misses"] == 3  # a different model identity never reads these rows


class Crash(Exception):
    pass


class CrashingModel:
    """The model, but the forward pass raises after ``limit`` calls (a crash in the middle of a run)."""

    def __init__(self, model, limit: int) -> None:
        self._model, self._left = model, limit

    def __call__(self, **kwargs):
        self._left -= 1
        if self._left < 0:
            raise Crash("injected")
        return self._model(**kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_a_crashed_run_resumes_without_regenerating_finished_rows(tiny, tmp_path):
    model, tok = tiny
    ident = models.identity(model)
    reference = Engine(model, tok, progress=False, max_batch_size=4).generate(requests(Engine(model, tok, progress=False)))

    cache = CompletionCache(tmp_path / "c.sqlite")
    crashing = Engine(CrashingModel(model, limit=12), tok, cache, progress=False, max_batch_size=4, group_rows=2, identity=ident)
    reqs = requests(crashing)
    with pytest.raises(Crash):
        crashing.generate(reqs)
    saved = len(cache)
    assert 0 < saved < len(reqs)

    resumed = Engine(model, tok, cache, progress=False, max_batch_size=4, identity=ident)
    outs = resumed.generate(reqs)
    assert resumed.stats["hits"] == saved and resumed.stats["misses"] == len(reqs) - saved
    assert [(c.text, c.n_tokens, c.finished) for c in outs] == [(c.text, c.n_tokens, c.finished) for c in reference]


def test_a_killed_process_keeps_its_committed_groups(tiny, tmp_path):
    """A hard kill (no cleanup at all) after some groups were committed: the rerun generates only the rest."""
    db = tmp_path / "c.sqlite"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        from hagstudy.engine import models
        from hagstudy.engine.cache import CompletionCache
        from hagstudy.engine.engine import Engine
        from test_cache import requests

        model, tok = models.load("tiny-random", dtype="float32")
        calls = [0]
        real = model.forward
        def forward(*a, **k):
            calls[0] += 1
            if calls[0] > 12:
                os._exit(9)  # like SIGKILL: no finally blocks, no close
            return real(*a, **k)
        model.forward = forward
        engine = Engine(model, tok, CompletionCache({str(db)!r}), progress=False, max_batch_size=4, group_rows=2,
                        identity=models.identity(model))
        engine.generate(requests(engine))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 9, proc.stderr[-2000:]

    model, tok = tiny
    cache = CompletionCache(db)
    saved = len(cache)
    engine = Engine(model, tok, cache, progress=False, max_batch_size=4)
    reqs = requests(engine)
    assert 0 < saved < len(reqs)
    outs = engine.generate(reqs)
    assert engine.stats["hits"] == saved and engine.stats["misses"] == len(reqs) - saved
    reference = Engine(model, tok, progress=False).generate(reqs)
    assert [(c.text, c.n_tokens, c.finished) for c in outs] == [(c.text, c.n_tokens, c.finished) for c in reference]


# --- stored data is checked: digests, migration of old files, corruption, concurrent opening ---------

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key      TEXT PRIMARY KEY,
    text     TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    meta     TEXT,
    created  REAL NOT NULL
) WITHOUT ROWID
"""  # the schema before digests, verbatim


def write_old_cache(path: Path, rows: list[tuple]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(OLD_SCHEMA)
    conn.executemany("INSERT INTO completions VALUES (?,?,?,?,?,?)", rows)
    conn.close()


def test_an_old_cache_is_migrated_and_keeps_every_row(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    write_old_cache(path, [("a", "alpha", 3, 1, None, 1.0), ("b", "beta", 5, 0, '{"seed": 1}', 2.0)])
    with caplog.at_level("INFO", logger="hagstudy.engine.cache"):
        cache = CompletionCache(path)
    assert "2 row(s) given a digest" in caplog.text
    assert cache.get_many(["a", "b"]) == {
        "a": {"text": "alpha", "n_tokens": 3, "finished": True, "meta": None},
        "b": {"text": "beta", "n_tokens": 5, "finished": False, "meta": {"seed": 1}},
    }
    digests = dict(sqlite3.connect(path).execute("SELECT key, digest FROM completions"))
    assert digests == {"a": cache_mod.text_digest("a", "alpha"), "b": cache_mod.text_digest("b", "beta")}
    cache.close()
    caplog.clear()
    with caplog.at_level("INFO", logger="hagstudy.engine.cache"):
        CompletionCache(path).close()
    assert "migrated" not in caplog.text  # once


def test_a_cached_rerun_from_an_old_cache_decodes_nothing(tiny, tmp_path):
    model, tok = tiny
    new = tmp_path / "new.sqlite"
    engine = Engine(model, tok, CompletionCache(new), progress=False)
    reqs = requests(engine)
    first = engine.generate(reqs)
    old_rows = sqlite3.connect(new).execute("SELECT key, text, n_tokens, finished, meta, created FROM completions").fetchall()
    write_old_cache(tmp_path / "old.sqlite", old_rows)
    rerun = Engine(model, tok, CompletionCache(tmp_path / "old.sqlite"), progress=False)
    again = rerun.generate(reqs)
    assert rerun.stats["misses"] == 0 and rerun.stats["hits"] == len(reqs)
    assert [(c.text, c.n_tokens, c.finished) for c in again] == [(c.text, c.n_tokens, c.finished) for c in first]


def test_altered_text_is_a_logged_miss_and_is_replaced(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    cache = CompletionCache(path)
    cache.put_many({"a": row("alpha"), "b": row("beta")})
    sqlite3.connect(path, isolation_level=None).execute("UPDATE completions SET text = 'tampered' WHERE key = 'a'")
    with caplog.at_level("WARNING", logger="hagstudy.engine.cache"):
        got = cache.get_many(["a", "b"])
    assert set(got) == {"b"} and cache.n_mismatched == 1
    assert "c.sqlite: 1 cached row(s) whose text does not match its digest" in caplog.text
    cache.put_many({"a": row("alpha")})  # decoded again and written back
    assert cache.get_many(["a"])["a"]["text"] == "alpha"


def test_text_moved_to_another_key_fails_its_digest(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    cache.put_many({"a": row("alpha"), "b": row("beta")})
    conn = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    digest_a = conn.execute("SELECT digest FROM completions WHERE key = 'a'").fetchone()[0]
    conn.execute("UPDATE completions SET text = 'alpha', digest = ? WHERE key = 'b'", (digest_a,))
    assert set(cache.get_many(["a", "b"])) == {"a"}


@pytest.mark.parametrize("cls", [CompletionCache, cache_mod.VectorCache])
def test_a_corrupt_file_names_the_file(tmp_path, cls):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not an SQLite database, just bytes " * 100)
    with pytest.raises(cache_mod.CacheError, match=r"broken\.sqlite: cannot use this cache file .*Move it aside"):
        cls(path)


def test_a_damaged_page_names_the_file_on_read(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = CompletionCache(path)
    cache.put_many({f"k{i}": row("x" * 200) for i in range(200)})
    cache.close()
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    data = bytearray(path.read_bytes())
    data[4096 + 100 : 4096 + 4000] = b"\xff" * 3900  # scribble over the second page (table b-tree)
    path.write_bytes(bytes(data))
    with pytest.raises(cache_mod.CacheError, match=r"c\.sqlite: cannot use this cache file"):
        reopened = CompletionCache(path)
        reopened.get_many([f"k{i}" for i in range(200)])


def test_opening_waits_for_a_process_that_is_creating_the_file(tmp_path):
    """SQLite fails the WAL switch at once while another connection writes the new file; opening must wait."""
    path = tmp_path / "c.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute(OLD_SCHEMA)
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    start = time.monotonic()
    cache = CompletionCache(path)
    assert time.monotonic() - start >= 0.4
    cache.put_many({"a": row("alpha")})
    assert cache.get_many(["a"])["a"]["text"] == "alpha"
    other.close()


def _open_and_put(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        with CompletionCache(path) as cache:
            cache.put_many({f"k{os.getpid()}": row("x")})
        results.put("ok")
    except Exception as err:  # reported to the parent
        results.put(repr(err))


def test_many_processes_open_a_new_file_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_and_put, args=(str(tmp_path / "c.sqlite"), barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join()
    assert outcomes == ["ok"] * n
    assert len(CompletionCache(tmp_path / "c.sqlite")) == n


def test_keys_and_row_meta_are_the_committed_bytes():
    """``request_key`` and a cache row's meta, for eager and fused rows with and without min-p/EDT, are the
    strings the shipped generations were keyed by (eager rows: computed before the engine module was split;
    fused rows: at STEP_VERSION 4; a version bump changes them, and must update them here)."""
    ident = "smollm2|bfloat16|abcd"
    reqs = [
        Request("<|im_start|>user\nhi é<|im_end|>\n", C(0.7, 0.9, 50, 1.1, 64), 3),
        Request("p", C(0.0, 1.0, 0, 1.0, 8), 0),
        Request("q", C(1.0, 1.0, 0, 1.0, 8, min_p=0.1), 2**40),
        Request("q", C(1.0, 1.0, 0, 1.0, 8, edt_theta=0.5), 7),
    ]
    want = [
        ("641abeb626f7e5eebac849d686c6839eb209be8d4ab501f6ebb77a725ea79fc2", "8e709a640ee63a30"),
        ("0263c821a528225fdfb0fcc86df17e8d73be39314498371e1fd7be021a8bf80a", "8e709a640ee63a30"),
        ("070a91a12cccfcf531d132aa7364709db8d893ccc3add42466e19a018d6cfb39", "148de9c5a7a44d19"),
        ("0ee96d6868a9e9b9a0179728529d740a5082850c3a89ce1c3126a6f657210d68", "148de9c5a7a44d19"),
        ("67d93c84f084da8303ef1496828eacd93cf933d5cc7b42495d0d2f1a428aff34", "8e35c2cd3bf6641b"),
        ("5201dff68560f8832eab3285e1af220c442a7847137bfae63fee933a98dd3b09", "8e35c2cd3bf6641b"),
        ("021c5fadb0a18dbdaa05fdc5434fec0e84db33e42c0c1a231c582cd4b64ccc27", "8e35c2cd3bf6641b"),
        ("d77d8b0bfaeb786cd149f7f14a6a489ce9bc26f10b616eb904654b835320c588", "8e35c2cd3bf6641b"),
    ]
    got = []
    for r in reqs:
        for step in ("eager", "fused"):
            meta = requests_mod.meta(ident, r, step)
            assert meta["engine"] == ("2" if step == "eager" else "4") and meta.get("step") == (None if step == "eager" else step)
            assert meta["model"] == ident and meta["seed"] == r.seed and meta["config"] == json.loads(r.config.key())
            got.append((request_key(ident, r, step), meta["prompt_sha256"]))
    assert got == want
