"""One decode step, timed: the eager forward against ``decode_step`` on the same batch and cache.

Usage: ``.venv/bin/python scripts/benchmarks/bench_step.py [--batches 8,32,96] [--reps 5] [--threads 1]``.

End-to-end tokens/s (scripts/benchmarks/bench_generation.py) mixes the step's speed with the texts' lengths,
which differ between steps (another rounding ends rows at other tokens). This times the forward
alone: a batch of task prompts is prefilled once, and each arm runs ``--reps`` steps from the same
cache state, interleaved, at each batch size. Prints ms per step and the ratio to eager; "fused" uses
oneDNN-prepacked bf16 weights, "fused-plain" the same step with plain weights (without oneDNN prepacking).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_generation.py

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "benchmarks"))

from bench_generation import task_prompts

from hagstudy.decoding import DecodingConfig
from hagstudy.engine import decode_step, models
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="8,32,96")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = models.load(dtype="bfloat16")
    eager = Engine(model, tok, cache=None, progress=False)
    fused = Engine(model, tok, cache=None, progress=False, step="fused")
    arms = {"eager": eager, "fused": fused}
    plain = Engine(model, tok, cache=None, progress=False, step="fused")
    plain._weights, plain._weights_stamp = decode_step.pack(model, prepack=False), None
    plain._packed = lambda: plain._weights  # type: ignore[method-assign]
    arms["fused-plain"] = plain
    prompts = task_prompts(eager, 12)
    print(f"torch threads {torch.get_num_threads()}  load avg {os.getloadavg()[0]:.1f}")
    for b in [int(x) for x in args.batches.split(",")]:
        reqs = [Request(prompts[i % len(prompts)], DecodingConfig(1.0, 0.9, 0, 1.1, 64), seed=i) for i in range(b)]
        ids = tok([r.prompt for r in reqs], add_special_tokens=False)["input_ids"]
        times: dict[str, list[float]] = {k: [] for k in arms}
        with torch.inference_mode():
            # The eager step appends into spare columns reserved at prefill; the fused step grows its own.
            bases = {"eager": eager._prefill(list(range(b)), ids, reqs, 64), "fused": fused._prefill(list(range(b)), ids, reqs, 64)}
            base = bases["fused"]
            for _ in range(args.rounds):
                for name, e in arms.items():
                    batch = copy.deepcopy(bases["eager" if name == "eager" else "fused"])
                    e._forward(batch)  # first step: buffer growth, warm caches
                    start = time.perf_counter()
                    for _ in range(args.reps):
                        e._forward(batch)
                        batch.pos = batch.pos + 1
                    times[name].append((time.perf_counter() - start) / args.reps)
        med = {k: statistics.median(v) for k, v in times.items()}
        line = "  ".join(f"{k} {1e3 * v:.0f} ms ({med['eager'] / v:.2f}x)" for k, v in med.items())
        print(f"batch {b:4d} width {base.mask.shape[1]}: {line}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
