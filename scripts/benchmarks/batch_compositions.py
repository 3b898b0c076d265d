"""Do a call's texts depend on what else is in the batch? A stress test for the run-to-run defect (docs/known-issues.md).

Decodes one fixed *target* set of search-shaped requests (``--items`` prompts x 8 configs x 2 draws, fused
step, bf16, no cache) first alone, then ``--trials`` times inside random batch compositions: a random number
of filler requests from other prompts and a random batch size. Every trial reports how many target rows
decoded to another text and under how many prompts they fall. ``--repeats`` more trials repeat the reference
composition exactly: those must never differ (the engine's resume guarantee rests on it). ``--load K`` runs K
processes of bf16 matmuls beside it. Prints one line per trial and a summary; ``--out`` writes them as JSON.

``.venv/bin/python scripts/benchmarks/batch_compositions.py --trials 12 --repeats 4 --load 1``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_generation as bg  # noqa: E402

from hagstudy.engine.engine import Engine  # noqa: E402

LOAD = "import torch\na = torch.randn(1024, 1024).to(torch.bfloat16)\nwhile True:\n    a @ a"


def decode(model, tok, target, fillers, batch):
    engine = Engine(model, tok, cache=None, progress=False, step="fused", max_batch_size=batch)
    outs = engine.generate(list(target) + list(fillers), desc="stress")
    return [c.text for c in outs[: len(target)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2, help="target prompts (x 8 configs x 2 draws)")
    ap.add_argument("--trials", type=int, default=12, help="random compositions")
    ap.add_argument("--repeats", type=int, default=4, help="repeats of the reference composition")
    ap.add_argument("--load", type=int, default=0, help="processes doing bf16 matmuls beside it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    model, tok = bg.load_model("cpu", "bfloat16")
    probe = Engine(model, tok, cache=None, progress=False, step="fused")
    pool = bg.search_requests(probe, 24, 2)
    per_prompt = len(bg.CONFIGS) * 2
    target, others = pool[: args.items * per_prompt], pool[args.items * per_prompt :]
    load = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(args.load)]
    rng = random.Random(args.seed)
    rows = []
    try:
        reference = decode(model, tok, target, [], len(target))
        plan = [("repeat", 0, len(target))] * args.repeats
        plan += [("random", rng.randint(1, len(others)), rng.choice([16, 48, 96, 256])) for _ in range(args.trials)]
        for kind, n_fill, batch in plan:
            fillers = rng.sample(others, n_fill) if n_fill else []
            start = time.perf_counter()
            texts = decode(model, tok, target, fillers, batch)
            changed = [i for i, (a, b) in enumerate(zip(reference, texts)) if a != b]
            prompts = sorted({target[i].prompt for i in changed})
            rows.append({"kind": kind, "fillers": n_fill, "batch": batch, "changed_rows": len(changed),
                         "changed_prompts": len(prompts), "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for proc in load:
            proc.kill()
    repeats = [r for r in rows if r["kind"] == "repeat"]
    randoms = [r for r in rows if r["kind"] == "random"]
    summary = {
        "target_rows": len(target), "load": args.load,
        "repeats_differing": sum(r["changed_rows"] > 0 for r in repeats), "repeats": len(repeats),
        "random_differing": sum(r["changed_rows"] > 0 for r in randoms), "random": len(randoms),
        "random_changed_rows_max": max((r["changed_rows"] for r in randoms), default=0),
    }
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "trials": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
