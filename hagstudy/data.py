"""The study's task data: committed under ``data/``, checked against ``data/MANIFEST.json`` on use.

Nothing is downloaded. ``data/MANIFEST.json`` records, for every file the tasks read, its path, sha256,
size, item count, source, licence and what was checked (``data/README.md`` says the same in prose).
``make data`` (``python -m hagstudy.data``) verifies every file before any notebook runs; a task
verifies its file again when it first reads it, so an edited or truncated file is a ``DataError``
naming the file and ``git checkout -- <file>``, never a silently different item pool.

A user's own copy of the BIG-bench 1.0.0 sdist (``$HAGSTUDY_BIGBENCH_SDIST``) is an optional cross-check:
``make data`` then also compares the committed strategyqa file with the sdist's member, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from hagstudy.config import Paths

# name -> path under data/ (the manifest's keys)
FILES: dict[str, str] = {
    "strategyqa": "bigbench/strategyqa/task.json",
    "taboo_cards": "taboo/cards.json",
}
SDIST_ENV = "HAGSTUDY_BIGBENCH_SDIST"  # optional: a local bigbench-1.0.0.tar.gz to cross-check against
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"  # bigbench-1.0.0.tar.gz
_SDIST_MEMBERS = {"strategyqa": "bigbench-1.0.0/bigbench/benchmark_tasks/strategyqa/task.json"}


class DataError(RuntimeError):
    """Missing, changed or malformed task data, naming the file and the command that fixes it."""


def data_dir() -> Path:
    return Paths.for_profile("default").data


def restore_hint(path: Path) -> str:
    """The fix for a damaged committed file: take it back from git."""
    try:
        shown = path.relative_to(data_dir().parent)
    except ValueError:
        shown = path
    return f"restore it with `git checkout -- {shown}`"


# path -> (size, mtime_ns) of a file whose sha256 matched the manifest: hashed once per process,
# again only if the file changes under it.
_VERIFIED: dict[Path, tuple[int, int]] = {}


def file(name: str) -> Path:
    """Path of a committed data file, checked against its sha256 in ``MANIFEST.json``."""
    if name not in FILES:
        raise DataError(f"unknown data file {name!r}; known: {sorted(FILES)}")
    path = data_dir() / FILES[name]
    if not path.is_file():
        raise DataError(f"{path} is missing: {restore_hint(path)} (the study's data is committed under data/)")
    verify(name, path)
    return path


def verify(name: str, path: Path) -> None:
    """Check ``path`` against the manifest's sha256 for ``name`` (cached per process while the file is unchanged)."""
    stat = path.stat()
    signature = (stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(path) == signature:
        return
    manifest = data_dir() / "MANIFEST.json"
    expected = manifest_files().get(name, {}).get("sha256")
    if not expected:
        raise DataError(f"{manifest} lists no sha256 for {name!r}: {restore_hint(manifest)}")
    actual = sha256(path)
    if actual != expected:
        raise DataError(
            f"{path} is not the committed file: its sha256 is {actual}, {manifest.name} says {expected}; "
            f"{restore_hint(path)}"
        )
    _VERIFIED[path] = signature


def records(name: str, key: str) -> tuple[Path, list[Any]]:
    """(path, the non-empty list under ``key``) of a verified data file; anything else is a ``DataError``."""
    path = file(name)
    raw = read_json(path)
    found = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(found, list) or not found:
        raise DataError(f"{path} has no {key!r} list: {restore_hint(path)}")
    return path, found


def manifest_files() -> dict[str, dict[str, Any]]:
    """The manifest's per-file entries; a missing or malformed manifest is a ``DataError`` naming the fix."""
    manifest = data_dir() / "MANIFEST.json"
    if not manifest.is_file():
        raise DataError(f"{manifest} is missing: {restore_hint(manifest)}")
    info = read_json(manifest)
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise DataError(f"{manifest} is malformed (expected an object with a 'files' mapping): {restore_hint(manifest)}")
    return files


def read_json(path: Path) -> Any:
    """Parse a data file, naming the file and the fix when it is malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is malformed ({err}): {restore_hint(path)}") from err


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_all() -> dict[str, dict[str, Any]]:
    """Verify every file the tasks read; returns the manifest entries. Reads nothing from the network."""
    entries = manifest_files()
    for name, rel in FILES.items():
        entry = entries.get(name)
        if entry is None or entry.get("path") != rel:
            manifest = data_dir() / "MANIFEST.json"
            raise DataError(f"{manifest} has no entry for {name!r} at {rel}: {restore_hint(manifest)}")
        file(name)
    return entries


def cross_check_sdist(sdist: Path) -> list[str]:
    """Compare the committed BIG-bench files with the members of a local bigbench-1.0.0 sdist.

    Returns the names checked; a different sdist or a differing member is a ``DataError``.
    """
    if not sdist.is_file():
        raise DataError(f"{sdist} (from ${SDIST_ENV}) does not exist: point it at bigbench-1.0.0.tar.gz, or unset it")
    if sha256(sdist) != BIGBENCH_SHA256:
        raise DataError(f"{sdist} (from ${SDIST_ENV}) is not bigbench-1.0.0.tar.gz (sha256 {BIGBENCH_SHA256})")
    checked: list[str] = []
    with tarfile.open(sdist, "r:gz") as tar:
        for name, member in _SDIST_MEMBERS.items():
            src = tar.extractfile(member)
            if src is None:
                raise DataError(f"{sdist} lacks {member}")
            digest = hashlib.sha256(src.read()).hexdigest()
            committed = file(name)
            if digest != sha256(committed):
                raise DataError(f"{committed} differs from {member} in {sdist} (sha256 {digest})")
            checked.append(name)
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for name, entry in check_all().items():
        if name in FILES:
            print(f"{name:12s} {entry.get('items', '?'):>5} items  sha256 ok  data/{entry['path']}")
    sdist = os.environ.get(SDIST_ENV)
    if sdist:
        for name in cross_check_sdist(Path(sdist).expanduser()):
            print(f"{name:12s} identical to the member of {sdist}")


if __name__ == "__main__":
    main()
