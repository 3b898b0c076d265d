"""A content-addressed store of completions in SQLite.

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
_CHUNK = 500  # keys per SELECT: well under SQLite's bound-variable limit


class CompletionCache:
    """Completions by key: ``{"text": str, "n_tokens": int, "finished": bool, "meta": dict | None}``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, so one put_many is exactly one transaction.
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses no committed batch
        self._conn.execute(_SCHEMA)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows among ``keys`` (missing keys are simply absent)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, text, n_tokens, finished, meta FROM completions WHERE key IN ({marks})", chunk
            )
            for key, text, n_tokens, finished, meta in rows:
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

        def values() -> Iterator[tuple[Any, ...]]:  # converted inside the transaction: a bad row rolls back all
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

        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO completions (key, text, n_tokens, finished, meta, created) VALUES (?,?,?,?,?,?)",
                values(),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
