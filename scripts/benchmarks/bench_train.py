"""TRL SFT steps on CPU, timed: a plain fp32-autocast step against each lever ``training.train`` pulls.

Usage: ``.venv/bin/python scripts/benchmarks/bench_train.py [--steps 7] [--profile default]``.

Arms, each a fresh trainer on the same rows and seed (the profile's dataset, or generated rows if
notebook 02 has not run), cumulative:
  fp32-autocast  fp32 base weights, bf16 autocast, SDPA attention, loss head over every position (the baseline)
  bf16-weights   base weights loaded in bf16
  label-head     + TRL's fused LM head over label positions only (``training.label_positions_only``)
  eager-attn     + eager attention (what ``training.train`` runs on CPU)
Prints the median s/step after the first step, its ratio to ``fp32-autocast`` and the first losses
(the levers change rounding, not the objective).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from transformers import TrainerCallback

from hagstudy import config
from hagstudy.engine import models
from hagstudy.method import training

ARMS = ("fp32-autocast", "bf16-weights", "label-head", "eager-attn")


class _Timer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._start = time.perf_counter()

    def on_step_end(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--profile", default="default")
    args = ap.parse_args()
    prof = config.load_profile(args.profile)
    rows_file = ROOT / "artifacts" / prof.name / "dataset" / "train.jsonl"
    if not rows_file.is_file():
        raise SystemExit(f"{rows_file} is missing: run notebooks 00-02 at profile {prof.name!r} first")
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    settings = replace(prof.train, max_steps=args.steps, checkpoints=1)
    print(f"{len(rows)} rows, batch {settings.batch_size}, {args.steps} steps per arm, load avg {os.getloadavg()[0]:.1f}")
    base = None
    for k, arm in enumerate(ARMS):
        model, tok = models.load(prof.model, dtype="float32" if arm == "fp32-autocast" else "bfloat16")
        if k >= ARMS.index("eager-attn"):
            model.set_attn_implementation("eager")
        trainer = training.build_trainer(model, tok, rows, None, settings, tempfile.mkdtemp(), 1234, progress=False)
        timer = _Timer()
        trainer.add_callback(timer)
        head = training.label_positions_only() if k >= ARMS.index("label-head") else contextlib.nullcontext()
        with head:
            trainer.train()
        med = statistics.median(timer.times[1:])
        base = base or med
        losses = [round(e["loss"], 3) for e in trainer.state.log_history if "loss" in e][:4]
        print(f"{arm:14s} {med:5.2f} s/step  {base / med:4.2f}x  losses {losses}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
