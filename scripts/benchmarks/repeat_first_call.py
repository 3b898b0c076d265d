"""Decode the smoke chain's first call (coinflip prune, 20 requests) in N fresh processes and compare the texts.

A diagnostic for the run-to-run defect in docs/known-issues.md: once, a cold smoke chain
decoded other texts from this very call. Each repeat runs in a fresh study root with an empty cache and
prints a digest of its (key, text) rows; a run whose digest differs from the first keeps its rows in
``--keep`` for a diff. ``--load K`` runs K processes of bf16 matmuls beside the repeats (the failing chain
ran beside heavy jobs). ``python scripts/benchmarks/repeat_first_call.py -n 20 --load 2``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def once(keep: Path | None) -> str:
    """One repeat, in this process: a fresh root, the call, the digest of its rows."""
    root = Path(tempfile.mkdtemp(prefix="first-call-")) / "root"
    root.mkdir()
    for name in ("configs", "data", "notebooks"):
        (root / name).symlink_to(REPO / name)
    (root / "artifacts").mkdir()
    (root / "artifacts" / "models").symlink_to(REPO / "artifacts" / "models")
    os.environ.update(HAGSTUDY_ROOT=str(root), HAGSTUDY_PROFILE="smoke", HAGSTUDY_NO_PROGRESS="1")
    os.chdir(root)
    from hagstudy import study
    from hagstudy.method import search

    run = study.start("smoke", notebook="first_call")
    engine = run.engine()
    task = run.tasks()[0]
    items = task.items("search", run.profile.n_search)[: run.profile.search.prune_items]
    search.prune(engine, task, items, engine.default_config(), run.profile.search.draws, run.search_space())
    with sqlite3.connect(root / "artifacts" / "cache" / "completions.sqlite") as db:
        rows = sorted(db.execute("select key, text from completions"))
    if keep is not None:
        keep.write_text("".join(f"{k}\t{t!r}\n" for k, t in rows))
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="repeats, each in a fresh process")
    ap.add_argument("--keep", type=Path, default=Path("first_call_rows"), help="folder for the rows of differing runs")
    ap.add_argument("--load", type=int, default=0, help="processes doing bf16 matmuls beside the repeats")
    ap.add_argument("--once", type=Path, default=None, help=argparse.SUPPRESS)  # a child: write rows here
    args = ap.parse_args()
    if args.once is not None:
        print(once(args.once))
        return
    args.keep.mkdir(parents=True, exist_ok=True)
    load = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(args.load)]
    try:
        digests = repeat(args.n, args.keep)
    finally:
        for proc in load:
            proc.kill()
    counts = collections.Counter(digests)
    print(f"{len(counts)} distinct digest(s) in {args.n} runs (load {args.load}): {dict(counts)}; rows of differing runs in {args.keep}/")


LOAD = "import torch\na = torch.randn(1024, 1024).to(torch.bfloat16)\nwhile True:\n    a @ a"


def repeat(n: int, keep: Path) -> list[str]:
    """``n`` repeats in fresh processes; the first run's rows stay as the reference, differing runs' rows too."""
    digests: list[str] = []
    for i in range(n):
        rows = keep / f"run_{i:03d}.tsv"
        out = subprocess.run([sys.executable, __file__, "--once", str(rows)], capture_output=True, text=True, check=True)
        digests.append(out.stdout.strip().splitlines()[-1])
        if i and digests[-1] == digests[0]:
            rows.unlink()  # the first run's rows stay, as the reference
        print(f"{i + 1}/{n}: {digests[-1]}", flush=True)
    return digests


if __name__ == "__main__":
    main()
