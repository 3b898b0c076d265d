"""Shipped generations: the completion cache exported to one committed file, and imported back.

Generation is nearly all of the study's cost, and the completion cache (``artifacts/cache/``) is
git-ignored, so a clone would decode every completion again. ``export`` writes every row of the cache
to ``results/generations.jsonl.xz``: one JSON object per line (key, text, n_tokens, finished, meta,
digest), sorted by key, xz with a fixed preset, so the same cache gives the same bytes (with the same
liblzma) and a rerun that decoded nothing new diffs empty. xz rather than gzip because its window spans
the whole file: the rows' repeated meta costs little, and the file is 0.65 of gzip -9's size. ``import_into``
loads such a file into a cache, trusting nothing: each row's digest is recomputed from its key and
text (``cache.text_digest``) and a row that fails is refused (counted, logged with file and line,
never stored); keys the cache already holds are kept as they are; the rest go in one transaction.
A file that is not xz, is cut short or has a malformed line raises ``ShippedError`` naming the file
and line. The keys name everything a text depends on (model weights digest, prompt, config, seed,
engine version), so a shipped row is only ever served for the request that produced it.

The scorers' cosines ship beside them in ``results/cosines.json.gz`` (``export_cosines``/``import_cosines``):
one JSON object of pair key -> cosine in units of 1e-4 (``cache.CosineCache``), so the two
similarity-scored tasks get the committed numbers on a CPU whose float32 kernels round otherwise.

``make all`` imports the file before the notebooks run (once per new file; ``FRESH=1`` skips it) and
``make ship`` exports after a run: ``python -m hagstudy.replay.shipped export|import [--profile P]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import lzma
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hagstudy.engine.cache import COSINES_DB, CacheError, CompletionCache, CosineCache, text_digest
from hagstudy.files import atomic_open

log = logging.getLogger(__name__)

FILE_NAME = "generations.jsonl.xz"
ROW_FIELDS = ("text", "n_tokens", "finished", "meta")  # a cache row's fields (CompletionCache.get_many)
FIELDS = ("key", *ROW_FIELDS, "digest")  # a shipped line's fields
XZ_PRESET = 9  # part of the bytes: another preset is another file for the same rows (9e: 4 % smaller, 2x slower)
COMPRESS_LEVEL = 9  # gzip level of the cosines file, likewise part of its bytes
_CHUNK = 2000  # keys per cache read during export
_LOGGED = 10  # refused rows logged one by one; the rest are counted in the summary line
_FIX = "restore it (`git checkout -- {path}`), or regenerate everything with `make all FRESH=1`"


COSINES_FILE = "cosines.json.gz"
COSINES_VERSION = 1


class ShippedError(RuntimeError):
    """A shipped-generations file that cannot be read (not xz, cut short, a bad line); names file, line, fix."""


@dataclass(frozen=True)
class ImportCounts:
    """What ``import_into`` did with each line of a shipped file (rows = imported + present + refused)."""

    rows: int  # lines read
    imported: int  # new keys, stored
    present: int  # keys the cache already held: kept as they are
    refused: int  # text does not match its digest: not stored
    differing: int  # of ``present``: the cache's text differs from the shipped one (the cache's is kept)


def export(cache_path: Path | str, out_path: Path | str) -> int:
    """Write every row of the cache at ``cache_path`` to ``out_path`` (replaced atomically); return rows written.

    A cached row whose text fails its digest is left out (``CompletionCache.get_many`` logs it).
    """
    cache_path, out_path = Path(cache_path), Path(out_path)
    if not cache_path.is_file():
        raise ShippedError(f"{cache_path}: no completion cache here, nothing to export; run `make all` first")
    written = 0
    with CompletionCache(cache_path) as cache:
        keys = sorted(cache.keys())
        with atomic_open(out_path, "wb") as fh, lzma.LZMAFile(
            fh, mode="wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET
        ) as xz:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                rows = cache.get_many(chunk)
                for key in chunk:
                    if key in rows:
                        xz.write(_line(key, rows[key]))
                        written += 1
    if written < len(keys):
        log.warning("%s: %d row(s) failing their digest left out of %s", cache_path, len(keys) - written, out_path)
    log.info("%s: %d row(s) exported to %s (%d bytes)", cache_path, written, out_path, out_path.stat().st_size)
    return written


def _line(key: str, row: dict[str, Any]) -> bytes:
    """One row as canonical JSON: sorted keys, ASCII escapes (the bytes do not depend on an encoder), no spaces."""
    record = {**{f: row[f] for f in ROW_FIELDS}, "key": key}
    record["digest"] = text_digest(key, record["text"])
    return (json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def import_into(shipped_path: Path | str, cache_path: Path | str) -> ImportCounts:
    """Store the shipped file's rows that the cache lacks, in one transaction; return what happened to each.

    The whole file is read and checked before anything is stored, so a malformed file stores nothing.
    A key the cache holds but whose cached text fails its digest counts as missing and is replaced.
    """
    shipped_path = Path(shipped_path)
    rows: dict[str, dict[str, Any]] = {}
    refused: list[int] = []
    n = 0
    for lineno, record in _records(shipped_path):
        n += 1
        if record["key"] in rows:
            raise ShippedError(f"{shipped_path}:{lineno}: key {record['key']} appears twice; not an export. "
                               + _FIX.format(path=shipped_path))
        if text_digest(record["key"], record["text"]) != record["digest"]:
            refused.append(lineno)
            if len(refused) <= _LOGGED:
                log.warning("%s:%d: key %s: text does not match its digest; refused, not stored",
                            shipped_path, lineno, record["key"])
            continue
        rows[record["key"]] = {f: record[f] for f in ROW_FIELDS}
    if refused:
        log.warning("%s: %d row(s) refused (text does not match digest), at line(s) %s%s", shipped_path, len(refused),
                    ", ".join(map(str, refused[:_LOGGED])), " ..." if len(refused) > _LOGGED else "")
    with CompletionCache(cache_path) as cache:
        cached = cache.get_many(list(rows))
        differing = sum(1 for key, row in cached.items() if _essence(row) != _essence(rows[key]))
        new = {key: row for key, row in rows.items() if key not in cached}
        cache.put_many(new)
    if differing:
        log.warning("%s: %d key(s) already cached with a different text than %s; kept the cache's (this machine "
                    "decoded them differently, so its tables may differ from the committed ones)",
                    cache_path, differing, shipped_path)
    counts = ImportCounts(rows=n, imported=len(new), present=len(cached), refused=len(refused), differing=differing)
    log.info("%s: %d row(s) imported from %s, %d already cached, %d refused", cache_path, counts.imported,
             shipped_path, counts.present, counts.refused)
    return counts


def export_cosines(cosines_path: Path | str, out_path: Path | str) -> int:
    """Write every cached cosine to ``out_path`` (gzip, sorted keys, mtime 0: same cache, same bytes); return how many."""
    cosines_path = Path(cosines_path)
    rows: dict[str, int] = {}
    if cosines_path.is_file():
        store = CosineCache(cosines_path)
        try:
            rows = dict(store.items())
        finally:
            store.close()
    data = json.dumps({"version": COSINES_VERSION, "unit": "1e-4", "cosines": rows}, sort_keys=True,
                      separators=(",", ":")) + "\n"
    with atomic_open(out_path, "wb") as fh, gzip.GzipFile(
        filename="", mode="wb", fileobj=fh, compresslevel=COMPRESS_LEVEL, mtime=0
    ) as gz:
        gz.write(data.encode("ascii"))
    log.info("%d cosine(s) exported to %s", len(rows), out_path)
    return len(rows)


def import_cosines(shipped_path: Path | str, cosines_path: Path | str) -> tuple[int, int]:
    """Store the shipped cosines the cache lacks (one transaction); return (imported, already cached).

    A cached pair keeps its value; one that differs from the shipped value is counted and logged (this
    machine scored it first, so its tables may differ). Nothing is stored unless the whole file checks.
    """
    path = Path(shipped_path)
    try:
        with gzip.open(path, "rb") as fh:
            raw = json.loads(fh.read().decode("ascii"))
    except FileNotFoundError:
        raise ShippedError(f"{path}: no such file; export one after a run with `make ship`") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShippedError(f"{path}: not a gzip JSON export of cosines ({type(err).__name__}: {err}). "
                           + _FIX.format(path=path)) from err
    if not isinstance(raw, dict) or raw.get("version") != COSINES_VERSION or raw.get("unit") != "1e-4" \
            or not isinstance(raw.get("cosines"), dict):
        raise ShippedError(f"{path}: expected {{'version': {COSINES_VERSION}, 'unit': '1e-4', 'cosines': {{...}}}}. "
                           + _FIX.format(path=path))
    rows = raw["cosines"]
    for key, value in rows.items():
        if type(value) is not int or not -10_000 <= value <= 10_000 or len(key) != 64:
            raise ShippedError(f"{path}: cosines[{key!r}]: expected a 64-hex key and an integer in [-10000, 10000], "
                               f"got {value!r}. " + _FIX.format(path=path))
    store = CosineCache(cosines_path)
    try:
        cached = store.get_many(list(rows))
        store.put_many({k: v for k, v in rows.items() if k not in cached})
    finally:
        store.close()
    differing = sum(1 for k, v in cached.items() if rows[k] != v)
    if differing:
        log.warning("%s: %d cosine(s) already cached with another value than %s; kept the cache's", cosines_path,
                    differing, path)
    log.info("%s: %d cosine(s) imported from %s, %d already cached", cosines_path, len(rows) - len(cached), path,
             len(cached))
    return len(rows) - len(cached), len(cached)


def _essence(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["text"], int(row["n_tokens"]), bool(row["finished"])


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, checked record) for each line; ``ShippedError`` naming file and line for anything malformed."""
    if not path.is_file():
        raise ShippedError(f"{path}: no such file; export one after a run with `make ship`, or run `make all FRESH=1`")
    if path.stat().st_size == 0:
        raise ShippedError(f"{path}: empty file, not an xz export (an export of no rows is still an xz stream); "
                           + _FIX.format(path=path))
    lineno = 0
    with lzma.open(path, "rb") as fh:
        lines = iter(fh)
        while True:
            lineno += 1
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise ShippedError(f"{path}:{lineno}: cannot decompress ({type(err).__name__}: {err}); the file is "
                                   "damaged, cut short or not xz. " + _FIX.format(path=path)) from err
            yield lineno, _record(path, lineno, raw)


def _record(path: Path, lineno: int, raw: bytes) -> dict[str, Any]:
    where = f"{path}:{lineno}"
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShippedError(f"{where}: not a JSON line ({err}). " + _FIX.format(path=path)) from err
    if not isinstance(record, dict):
        raise ShippedError(f"{where}: expected a JSON object with fields {list(FIELDS)}, got {type(record).__name__}")
    if sorted(record) != sorted(FIELDS):
        missing, extra = sorted(set(FIELDS) - set(record)), sorted(set(record) - set(FIELDS))
        raise ShippedError(f"{where}: fields must be {list(FIELDS)}; missing {missing}, unknown {extra}")
    types = {"key": str, "text": str, "digest": str, "finished": bool, "meta": (dict, type(None))}
    for field, kind in types.items():
        if not isinstance(record[field], kind):
            raise ShippedError(f"{where}: {field}: expected {getattr(kind, '__name__', 'object or null')}, "
                               f"got {type(record[field]).__name__}")
    if type(record["n_tokens"]) is not int or record["n_tokens"] < 0:
        raise ShippedError(f"{where}: n_tokens: expected an integer >= 0, got {record['n_tokens']!r}")
    if not record["key"]:
        raise ShippedError(f"{where}: key: empty")
    for field in ("key", "text"):  # JSON may escape a lone surrogate; SQLite cannot store one
        try:
            record[field].encode("utf-8")
        except UnicodeEncodeError as err:
            raise ShippedError(f"{where}: {field}: not encodable as UTF-8 ({err})") from err
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("export", "import"), help="cache -> shipped file, or shipped file -> cache")
    parser.add_argument("--profile", default="default",
                        help="picks the paths: <results>/generations.jsonl.xz (results/ only for default; the cache, "
                             "artifacts/cache/, is shared by every profile, so an export holds all of its rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from hagstudy.config import load_profile

    paths = load_profile(args.profile).paths
    cache = paths.cache / "completions.sqlite"  # the file study.Run.cache opens
    shipped = paths.results / FILE_NAME
    cosines, shipped_cosines = paths.cache / COSINES_DB, paths.results / COSINES_FILE
    try:
        if args.action == "export":
            export(cache, shipped)
            export_cosines(cosines, shipped_cosines)
        else:
            import_into(shipped, cache)
            if shipped_cosines.is_file():
                import_cosines(shipped_cosines, cosines)
    except (ShippedError, CacheError) as err:
        raise SystemExit(f"error: {err}") from err


if __name__ == "__main__":
    main()
