"""What decoding in resumable groups costs: the engine with its default groups against one group per call.

Usage: ``.venv/bin/python scripts/bench_groups.py [--prompts 48] [--batch-size 32] [--repeats 2]``.

The engine commits a call's completions group by group (``group_rows``, by default 4 batches) so that a
killed run resumes to identical texts; a group drains its batch before the next starts, which leaves
slots idle at each boundary. This times the same requests (bench_generation's workload: task prompts x
8 configs, 64 new tokens, cache off) with the default groups and with a single group (the engine
before resumable groups), interleaved per repeat, and prints the ratio. Texts are compared too: they
may differ in bf16 (batch composition changes rounding), which is why groups exist.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_generation.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_generation import build_requests  # noqa: E402

from hagstudy.engine import models  # noqa: E402
from hagstudy.engine.engine import GROUP_BATCHES, Engine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=48, help="distinct prompts (x 8 configs = requests)")
    ap.add_argument("--batch-size", type=int, default=32, help="engine rows per batch")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(models.DTYPES))
    args = ap.parse_args()

    model, tok = models.load(models.EMBEDDED, dtype=args.dtype)
    variants = {
        f"groups of {GROUP_BATCHES} batches": Engine(model, tok, progress=False, max_batch_size=args.batch_size),
        "one group per call": Engine(model, tok, progress=False, max_batch_size=args.batch_size, group_rows=10**9),
    }
    reqs = build_requests(next(iter(variants.values())), args.prompts)
    print(f"{len(reqs)} requests, batch {args.batch_size}, {args.dtype}")
    rates: dict[str, list[float]] = {name: [] for name in variants}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, engine in variants.items():
            start = time.perf_counter()
            outs = engine.generate(reqs, desc=name)
            seconds = time.perf_counter() - start
            rates[name].append(sum(c.n_tokens for c in outs) / seconds)
            texts[name] = [c.text for c in outs]
            print(f"  {name}: {rates[name][-1]:.0f} tok/s")
    grouped, single = (statistics.median(r) for r in rates.values())
    same = sum(a == b for a, b in zip(*texts.values()))
    print(f"texts identical in both: {same} of {len(reqs)}")
    print(f"grouped_vs_single_group_throughput: {grouped / single:.2f}")


if __name__ == "__main__":
    main()
