"""Third-party data: fetch the BIG-bench sdist from PyPI, verify it, extract the few files the study reads.

Nothing third-party is committed. ``make data`` (``python -m hagstudy.data``) downloads
``bigbench==1.0.0`` (a 358 MB sdist that carries the task JSON files), checks its sha256 against the
value PyPI publishes, extracts only ``BIGBENCH_FILES`` into ``data/bigbench/`` and writes
``data/MANIFEST.json`` (source, version, sha256, item counts). ``pip download`` cannot fetch this
sdist by itself (its metadata build fails on a direct-URL dependency), so the file is fetched from
the same PyPI address pip would use and verified the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from hagstudy.config import Paths
from hagstudy.files import atomic_write

BIGBENCH_VERSION = "1.0.0"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
BIGBENCH_URL = (
    "https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
    f"bigbench-{BIGBENCH_VERSION}.tar.gz"
)
SDIST_ENV = "HAGSTUDY_BIGBENCH_SDIST"  # a local copy of the sdist, for machines without PyPI
_PREFIX = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/"
BIGBENCH_FILES: dict[str, str] = {
    "strategyqa": "strategyqa/task.json",
    "pig_latin_encode": "language_games/pig_latin_encode/task.json",
    "taboo": "taboo/taboo_data.json",
}


REDO = "run `rm data/MANIFEST.json && make data` (or `python -m hagstudy.data --force`) to extract it again"
OFFLINE_HINT = (
    f"Without access to PyPI, copy bigbench-{BIGBENCH_VERSION}.tar.gz onto this machine and point "
    f"${SDIST_ENV} at it (`{SDIST_ENV}=/path/to/bigbench-{BIGBENCH_VERSION}.tar.gz make data`)"
)


class DataError(RuntimeError):
    """Missing, changed or malformed third-party data, with the command that fixes it."""


def data_dir() -> Path:
    return Paths.for_profile("default").data


# path -> (size, mtime_ns) of a file whose sha256 matched the manifest: hashed once per process,
# again only if the file changes under it.
_VERIFIED: dict[Path, tuple[int, int]] = {}


def bigbench_file(name: str) -> Path:
    """Path of an extracted BIG-bench file, checked against its sha256 in ``MANIFEST.json``.

    A missing, edited or unlisted file is a ``DataError`` naming the file and the fix (``make data``).
    """
    if name not in BIGBENCH_FILES:
        raise DataError(f"unknown BIG-bench file {name!r}; known: {sorted(BIGBENCH_FILES)}")
    path = data_dir() / "bigbench" / BIGBENCH_FILES[name]
    if not path.is_file():
        raise DataError(f"{path} is missing: run `make data` to fetch and extract BIG-bench {BIGBENCH_VERSION}")
    verify(name, path)
    return path


def verify(name: str, path: Path) -> None:
    """Check ``path`` against the manifest's sha256 for ``name`` (cached per process while the file is unchanged)."""
    stat = path.stat()
    signature = (stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(path) == signature:
        return
    expected = manifest_files().get(name, {}).get("sha256")
    if not expected:
        raise DataError(f"{data_dir() / 'MANIFEST.json'} lists no sha256 for {name!r}: {REDO}")
    actual = sha256(path)
    if actual != expected:
        raise DataError(
            f"{path} was changed after `make data`: its sha256 is {actual}, the manifest says {expected}; {REDO}"
        )
    _VERIFIED[path] = signature


def manifest_files() -> dict[str, dict[str, Any]]:
    """The manifest's per-file entries; a missing or malformed manifest is a ``DataError`` saying what to run."""
    manifest = data_dir() / "MANIFEST.json"
    if not manifest.is_file():
        raise DataError(f"{manifest} is missing: run `make data` to fetch, verify and extract BIG-bench {BIGBENCH_VERSION}")
    info = read_json(manifest)
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise DataError(f"{manifest} is malformed (expected an object with a 'files' mapping): {REDO}")
    return files


def read_json(path: Path) -> Any:
    """Parse a data file, naming the file and the fix when it is malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is malformed ({err}): delete it and run `make data` again") from err


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(downloads: Path) -> Path:
    """Download (or reuse) the verified sdist. A partial download never passes for a whole one."""
    local = os.environ.get(SDIST_ENV)
    target = downloads / f"bigbench-{BIGBENCH_VERSION}.tar.gz"
    if local:
        src = Path(local).expanduser()
        if not src.is_file():
            raise DataError(
                f"{src} (from ${SDIST_ENV}) does not exist: point ${SDIST_ENV} at a copy of "
                f"bigbench-{BIGBENCH_VERSION}.tar.gz, or unset it to download from PyPI"
            )
        if sha256(src) != BIGBENCH_SHA256:
            raise DataError(
                f"{src} (from ${SDIST_ENV}) does not have the expected sha256 {BIGBENCH_SHA256}: "
                f"it is not bigbench-{BIGBENCH_VERSION}.tar.gz, or an incomplete copy"
            )
        return src
    if target.is_file() and sha256(target) == BIGBENCH_SHA256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    print(f"downloading {BIGBENCH_URL} (358 MB)")
    try:
        with urllib.request.urlopen(BIGBENCH_URL, timeout=120) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except OSError as err:  # URLError, timeouts, refused connections, a full disk
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {BIGBENCH_URL}: {err}. {OFFLINE_HINT}") from err
    digest = sha256(part)
    if digest != BIGBENCH_SHA256:
        part.unlink()
        raise DataError(f"bigbench sdist sha256 {digest} != expected {BIGBENCH_SHA256}; not using it")
    os.replace(part, target)
    return target


def extract(sdist: Path, out: Path) -> dict[str, Path]:
    """Extract only the study's files (members named explicitly: no path traversal possible)."""
    wanted = {_PREFIX + rel: rel for rel in BIGBENCH_FILES.values()}
    written: dict[str, Path] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                dest = out / "bigbench" / wanted[member.name]
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                atomic_write(dest, src.read())
                written[wanted[member.name]] = dest
                if len(written) == len(wanted):
                    break
    missing = sorted(set(wanted.values()) - set(written))
    if missing:
        raise DataError(f"{sdist} lacks {missing}")
    return written


def item_count(name: str, path: Path) -> int:
    data = read_json(path)
    return len(data["examples"])


def prepare(force: bool = False) -> Path:
    """Fetch, verify, extract and write the manifest; a no-op when the manifest is current."""
    out = data_dir()
    manifest = out / "MANIFEST.json"
    if manifest.is_file() and not force and _current(out):
        return manifest
    sdist = fetch_sdist(out / "downloads")
    extract(sdist, out)
    info = {
        "source": "PyPI sdist bigbench (BIG-bench task files)",
        "url": BIGBENCH_URL,
        "version": BIGBENCH_VERSION,
        "sha256": BIGBENCH_SHA256,
        "license": "Apache-2.0 (BIG-bench)",
        "files": {
            name: {"path": f"bigbench/{rel}", "items": item_count(name, out / "bigbench" / rel),
                   "sha256": sha256(out / "bigbench" / rel)}
            for name, rel in BIGBENCH_FILES.items()
        },
    }
    atomic_write(manifest, json.dumps(info, indent=2) + "\n")
    return manifest


def _current(out: Path) -> bool:
    """Whether the manifest is for this sdist and every file is present with its recorded sha256."""
    try:
        info = read_json(out / "MANIFEST.json")
    except DataError:
        return False
    if not isinstance(info, dict) or info.get("sha256") != BIGBENCH_SHA256 or not isinstance(info.get("files"), dict):
        return False
    for name, rel in BIGBENCH_FILES.items():
        entry, path = info["files"].get(name), out / "bigbench" / rel
        if not isinstance(entry, dict) or not path.is_file() or sha256(path) != entry.get("sha256"):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-extract even when the manifest is current")
    args = parser.parse_args()
    manifest = prepare(force=args.force)
    info = read_json(manifest)
    for name, f in info["files"].items():
        print(f"{name:18s} {f['items']:5d} items  {f['path']}")
    print(f"manifest: {manifest}")


if __name__ == "__main__":
    main()
