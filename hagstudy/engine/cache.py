"""Content-addressed stores in SQLite: completions, and the sentence vectors the scorers embed.

Generation is nearly all of the study's cost, so every finished completion is kept under a key that
names everything its text depends on (``requests.request_key``: model identity, rendered prompt,
config, seed, engine version). A run that is killed midway resumes from what it had written; a
changed model, prompt or config is a different key, so stale text is never served.

Writes are atomic: ``put_many`` is one transaction (WAL mode), so a kill leaves either the whole
batch or none of it. Safe for one writer process (and any number of readers).

Stored text is checked, not trusted: each completion row carries a digest of its key and text,
checked on every read; a row that fails it is a miss (logged and counted), so it is decoded again
and replaced. A file written before digests existed is migrated when opened (the column is added
and its rows' digests computed once), so its completions keep being served. Opening waits for
another process that is creating or migrating the same file, and a corrupt or unreadable file
raises ``CacheError`` naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from hagstudy.files import shown

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key      TEXT PRIMARY KEY,
    text     TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    meta     TEXT,
    created  REAL NOT NULL,
    digest   TEXT
) WITHOUT ROWID
"""
_VECTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key  TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT: well under SQLite's bound-variable limit
LOCK_TIMEOUT_S = 60.0  # how long opening or writing waits for another process before giving up


class CacheError(RuntimeError):
    """A cache file that cannot be used (corrupt, not a database, locked too long); names the file and the fix."""


def text_digest(key: str, text: str) -> str:
    """What a completion row's ``digest`` holds: sha256 of key and text (a text moved to another key fails too)."""
    data = f"{key}\0{text}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]


def _explain(path: Path, err: sqlite3.Error) -> CacheError:
    text = str(err)
    if _is_locked(err):
        return CacheError(
            f"{path}: still locked by another process after {LOCK_TIMEOUT_S:.0f} s ({text}); "
            "wait for the other run to finish, or stop it"
        )
    return CacheError(
        f"{path}: cannot use this cache file ({text}); it is damaged or not a cache. Move it aside "
        "(e.g. `mv completions.sqlite completions.sqlite.bad`): the study recomputes what it held"
    )


def _is_locked(err: sqlite3.Error) -> bool:
    return isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err))


def _connect(path: Path, schema: str, migrate: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """Open (creating or migrating) a cache file, waiting while another process holds it.

    SQLite does not wait for every lock: switching a new file to WAL while another connection is
    creating it fails at once with "database is locked", so the whole set-up is retried with
    backoff until ``LOCK_TIMEOUT_S``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    delay = 0.005
    while True:
        conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: we open transactions ourselves, so one put_many is exactly one transaction.
            # check_same_thread=False: ``pool.map_pooled``'s pieces run in threads, one at a time, never concurrently.
            conn = sqlite3.connect(str(path), timeout=LOCK_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal" and time.monotonic() < deadline:
                raise sqlite3.OperationalError("database is locked (journal mode not switched to WAL yet)")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses no committed batch
            conn.execute(schema)
            if migrate is not None:
                migrate(conn)
            return conn
        except sqlite3.Error as err:
            if conn is not None:
                conn.close()
            if _is_locked(err) and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
                continue
            raise _explain(path, err) from err


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


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Turn SQLite's errors (a damaged file, a lock held too long) into a ``CacheError`` naming the file."""
    try:
        yield
    except sqlite3.Error as err:
        raise _explain(path, err) from err


def _add_digests(conn: sqlite3.Connection, path: Path) -> None:
    """Migrate a completions table written before digests: add the column and fill it, in one transaction."""
    if "digest" in _columns(conn):
        return
    conn.execute("BEGIN IMMEDIATE")  # waits for (and then excludes) another process migrating the same file
    try:
        n = 0
        if "digest" not in _columns(conn):
            conn.create_function("hagstudy_digest", 2, text_digest, deterministic=True)
            conn.execute("ALTER TABLE completions ADD COLUMN digest TEXT")
            n = conn.execute("UPDATE completions SET digest = hagstudy_digest(key, text)").rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    log.info("%s: migrated a cache written before text digests: %d row(s) given a digest, all kept", shown(path), n)


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(completions)")}


class CompletionCache:
    """Completions by key: ``{"text": str, "n_tokens": int, "finished": bool, "meta": dict | None}``.

    ``n_mismatched`` counts rows read whose text failed its digest (served as misses).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.n_mismatched = 0
        self._conn = _connect(self.path, _SCHEMA, lambda conn: _add_digests(conn, self.path))

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows among ``keys`` (missing keys, and rows failing their digest, are absent)."""
        found: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        sql = "SELECT key, text, n_tokens, finished, meta, digest FROM completions WHERE key IN ({marks})"
        with _naming(self.path):
            for key, text, n_tokens, finished, meta, digest in _select_many(self._conn, sql, keys):
                # A NULL digest is a row put by code older than digests, after this file was migrated.
                if digest is not None and digest != text_digest(key, text):
                    bad.append(key)
                    continue
                found[key] = {
                    "text": text,
                    "n_tokens": int(n_tokens),
                    "finished": bool(finished),
                    "meta": json.loads(meta) if meta else None,
                }
        if bad:
            self.n_mismatched += len(bad)
            log.warning(
                "%s: %d cached row(s) whose text does not match its digest treated as misses (decoded again "
                "and replaced), e.g. key %s", shown(self.path), len(bad), bad[0],
            )
        return found

    def put_many(self, rows: dict[str, dict[str, Any]]) -> None:
        """Store rows in one transaction (all or nothing); an existing key is replaced."""
        if not rows:
            return
        now = time.time()

        def values() -> Iterator[tuple[Any, ...]]:
            for key, row in rows.items():
                meta = row.get("meta")
                key, text = str(key), str(row["text"])
                yield (
                    key,
                    text,
                    int(row["n_tokens"]),
                    int(bool(row["finished"])),
                    json.dumps(meta, sort_keys=True) if meta is not None else None,
                    now,
                    text_digest(key, text),
                )

        with _naming(self.path):
            _insert_all(
                self._conn,
                "INSERT OR REPLACE INTO completions (key, text, n_tokens, finished, meta, created, digest) "
                "VALUES (?,?,?,?,?,?,?)",
                values(),
            )

    def __contains__(self, key: str) -> bool:
        with _naming(self.path):
            return self._conn.execute("SELECT 1 FROM completions WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with _naming(self.path):
            return int(self._conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def keys(self) -> Iterator[str]:
        with _naming(self.path):
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


class _KeyedStore:
    """One SQLite table of values by key in its own file: opening, counting, closing (the stores below)."""

    _table = ""
    _schema = ""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = _connect(self.path, self._schema)

    def __len__(self) -> int:
        with _naming(self.path):
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class VectorCache(_KeyedStore):
    """float32 vectors by key (the scorers' sentence embeddings), written in one transaction per call.

    Embedding thousands of outputs is most of what a rerun from cached completions still computes;
    a text's vector is kept from the first time it was embedded, so reruns also score identically.
    """

    _table, _schema = "vectors", _VECTOR_SCHEMA

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        sql = "SELECT key, data FROM vectors WHERE key IN ({marks})"
        with _naming(self.path):
            return {key: np.frombuffer(data, dtype=np.float32) for key, data in _select_many(self._conn, sql, keys)}

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        if vectors:
            values = ((str(k), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items())
            with _naming(self.path):
                _insert_all(self._conn, "INSERT OR REPLACE INTO vectors (key, data) VALUES (?,?)", values)


COSINES_DB = "cosines.sqlite"  # the cosine cache's file name in the cache folder (study, shipped)
_COSINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosines (
    key  TEXT PRIMARY KEY,
    tenk INTEGER NOT NULL
) WITHOUT ROWID
"""


class CosineCache(_KeyedStore):
    """The scorers' rounded cosine similarities by pair key, as integers in units of 1e-4 (exact, unlike a float).

    A cosine depends on float32 kernels, hence on the CPU; kept from the first time a pair was scored (and
    shipped with the results, ``shipped.export_cosines``), a rescore on any machine gives the same number.
    """

    _table, _schema = "cosines", _COSINE_SCHEMA

    def get_many(self, keys: Sequence[str]) -> dict[str, int]:
        sql = "SELECT key, tenk FROM cosines WHERE key IN ({marks})"
        with _naming(self.path):
            return {key: int(tenk) for key, tenk in _select_many(self._conn, sql, keys)}

    def put_many(self, cosines: dict[str, int]) -> None:
        if cosines:
            values = ((str(k), int(v)) for k, v in cosines.items())
            with _naming(self.path):
                _insert_all(self._conn, "INSERT OR IGNORE INTO cosines (key, tenk) VALUES (?,?)", values)

    def items(self) -> Iterator[tuple[str, int]]:
        with _naming(self.path):
            for key, tenk in self._conn.execute("SELECT key, tenk FROM cosines ORDER BY key"):
                yield key, int(tenk)
