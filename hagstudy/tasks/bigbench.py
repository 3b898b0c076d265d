"""The 'examples' list of a BIG-bench task file, checked once for every task that reads one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hagstudy import data


def examples(name: str) -> tuple[Path, list[Any]]:
    """(path, examples) of the committed BIG-bench task ``name``; a file without them is a DataError."""
    path = data.file(name)
    raw = data.read_json(path)
    found = raw.get("examples") if isinstance(raw, dict) else None
    if not isinstance(found, list) or not found:
        raise data.DataError(f"{path} has no 'examples' list: {data.restore_hint(path)}")
    return path, found
