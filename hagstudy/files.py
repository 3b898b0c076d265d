"""Atomic writes: every file the study writes appears whole or not at all.

A killed run must never leave half a table, label file or download that a rerun would trust. Each
write goes to a temporary file in the target's folder and is renamed over the target (``os.replace``
is atomic on one filesystem); on any error the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file handle whose contents replace ``path`` only when the block ends without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a study file is as readable as any other
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, newlines untranslated) to ``path`` atomically; return the path."""
    with atomic_open(path, "w" if isinstance(data, str) else "wb") as fh:
        fh.write(data)
    return Path(path)


def shown(path: str | os.PathLike) -> str:
    """``path`` as a message shows it: relative to the study's root when inside it, else as given.

    Rendered notebooks and logs travel (committed, shared, diffed): an absolute path names one
    machine's checkout and changes with it, a root-relative one reads the same everywhere.
    """
    from hagstudy.config import repo_root  # config imports this module

    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.resolve().relative_to(repo_root()))
    except ValueError:
        return str(p)
