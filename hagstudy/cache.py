"""Content-addressed stores in SQLite: completions, and the sentence vectors the scorers embed.

Generation is nearly all of the study's cost, so every finished completion is kept under a key that
names everything its text depends on (``generation.request_key``: model identity, rendered prompt,
config, seed, engine version). A run that is killed midway resumes from what it had written; a
changed model, prompt or config is a different key, so stale text is never served.

Writes are atomic: ``put_many`` is one transaction (WAL mode), so a kill leaves either the whole
batch or none of it. Safe for one writer process (and any number of readers).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key      TEXT PRIMARY KEY,
    text     TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    meta     TEXT,
    created  REAL NOT NULL
) WITHOUT ROWID
"""
_VECTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key  TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT: well under SQLite's bound-variable limit


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we open transactions ourselves, so one put_many is exactly one transaction.
    conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses no committed batch
    conn.execute(schema)
    return conn


def _insert_all(conn: sqlite3.Connection, sql: str, values: Iterator[tuple[Any, ...]]) -> None:
    """One transaction: every row or none (values are converted inside it, so a bad row rolls back all)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, values)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _select_many(conn: sqlite3.Connection, sql: str, keys: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Rows for ``keys``; ``sql`` has one ``{marks}`` placeholder for the IN list."""
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)


class CompletionCache:
    """Completions by key: ``{"text": str, "n_tokens": int, "finished": bool, "meta": dict | None}``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = _connect(self.path, _SCHEMA)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows among ``keys`` (missing keys are simply absent)."""
        found: dict[str, dict[str, Any]] = {}
        sql = "SELECT key, text, n_tokens, finished, meta FROM completions WHERE key IN ({marks})"
        for key, text, n_tokens, finished, meta in _select_many(self._conn, sql, keys):
            found[key] = {
                "text": text,
                "n_tokens": int(n_tokens),
                "finished": bool(finished),
                "meta": json.loads(meta) if meta else None,
            }
        return found

    def put_many(self, rows: dict[str, dict[str, Any]]) -> None:
        """Store rows in one transaction (all or nothing); an existing key is replaced."""
        if not rows:
            return
        now = time.time()

        def values() -> Iterator[tuple[Any, ...]]:
            for key, row in rows.items():
                meta = row.get("meta")
                yield (
                    str(key),
                    str(row["text"]),
                    int(row["n_tokens"]),
                    int(bool(row["finished"])),
                    json.dumps(meta, sort_keys=True) if meta is not None else None,
                    now,
                )

        _insert_all(
            self._conn,
            "INSERT OR REPLACE INTO completions (key, text, n_tokens, finished, meta, created) VALUES (?,?,?,?,?,?)",
            values(),
        )

    def __contains__(self, key: str) -> bool:
        return self._conn.execute("SELECT 1 FROM completions WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def keys(self) -> Iterator[str]:
        for (key,) in self._conn.execute("SELECT key FROM completions ORDER BY key"):
            yield key

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "CompletionCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CompletionCache({str(self.path)!r})"


class VectorCache:
    """float32 vectors by key (the scorers' sentence embeddings), written in one transaction per call.

    Embedding thousands of outputs is most of what a rerun from cached completions still computes;
    a text's vector is kept from the first time it was embedded, so reruns also score identically.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = _connect(self.path, _VECTOR_SCHEMA)

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        sql = "SELECT key, data FROM vectors WHERE key IN ({marks})"
        return {key: np.frombuffer(data, dtype=np.float32) for key, data in _select_many(self._conn, sql, keys)}

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        if vectors:
            values = ((str(k), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items())
            _insert_all(self._conn, "INSERT OR REPLACE INTO vectors (key, data) VALUES (?,?)", values)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"VectorCache({str(self.path)!r})"
