"""The 'examples' list of a BIG-bench task file, checked once for every task that reads one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hagstudy import data


def examples(name: str) -> tuple[Path, list[Any]]:
    """(path, examples) of the extracted BIG-bench task ``name``; a file without them is a DataError."""
    path = data.bigbench_file(name)
    raw = data.read_json(path)
    found = raw.get("examples") if isinstance(raw, dict) else None
    if not isinstance(found, list) or not found:
        raise data.DataError(f"{path} has no 'examples' list: delete it and run `make data` again")
    return path, found
