"""Calibrate a task before the study uses it: chance, default, greedy and a few configs on VALIDATION items.

For each task (``hagstudy.tasks`` by name) and its first ``--n`` validation items, prints and appends to
``--json`` the mean score with a bootstrap 95% CI over items (``stats.bootstrap_ci``; seeds resampled
within items) for:
- chance: the best of the task's ``chance_answers``, chosen on the SEARCH split (as ``methods.chance``);
- every config in ``CONFIGS``: transformers' defaults (the study's ``default``), greedy, and three others
  along the search space's axes; sampled configs run ``--seeds`` seeds, greedy one.
The test split is never generated on. Generation is ``measure_tasks.generate`` (plain batched
``model.generate``, bf16, left padding), not the study's engine, so the numbers are independent of it.

    nice -n 19 .venv/bin/python scripts/tools/calibrate_tasks.py --tasks number_words taboo --n 60 --json calib.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_tasks import generate  # noqa: E402

from hagstudy import methods, tasks
from hagstudy.engine import models
from hagstudy.report import stats  # noqa: E402

CONFIGS: dict[str, dict[str, float]] = {
    "default": {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0},
    "greedy": {},
    "T=0.5": {"temperature": 0.5, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0},
    "T=0.7,top_p=0.9": {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "repetition_penalty": 1.0},
    "greedy,rep=1.2": {"repetition_penalty": 1.2},
}


def ci(ids: list[str], runs: dict[int, list[float]]) -> dict[str, float]:
    frame = pd.DataFrame([{"item_id": i, "seed": s, "score": v} for s, vals in runs.items() for i, v in zip(ids, vals)])
    est = stats.bootstrap_ci(frame)
    return {"mean": round(est.mean, 3), "lo": round(est.ci_low, 3), "hi": round(est.ci_high, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", help="append one line per task here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = models.load(dtype="bfloat16")
    for name in args.tasks:
        task = tasks.get(name)
        items = task.items("validation", args.n)
        ids = [it.id for it in items]
        chance = methods.chance(task, items, [0], task.items("search"))  # chosen on the search split
        row: dict[str, object] = {"task": name, "n": len(items), "chance_answer": chance["config"].iloc[0],
                                  "chance": ci(ids, {0: chance["score"].tolist()})}
        prompts = [tok.apply_chat_template(task.messages(it), tokenize=False, add_generation_prompt=True) for it in items]
        for label, cfg in CONFIGS.items():
            t0 = time.time()
            sampled = cfg.get("temperature", 0.0) > 0
            runs = {s: task.score(items, generate(model, tok, prompts, task.max_new_tokens, sampled, s, args.batch, **cfg))
                    for s in (args.seeds if sampled else [0])}
            row[label] = ci(ids, runs)
            print(f"{name:14s} {label:16s} {row[label]} ({time.time() - t0:.0f}s)", flush=True)
        print(f"{name:14s} chance ({row['chance_answer']}) {row['chance']}", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
