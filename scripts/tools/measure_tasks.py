"""Throwaway calibration: default-config and greedy scores per task on the VALIDATION split.

Plain batched ``model.generate`` (bf16, left padding), no cache, no engine. Used to choose task
variants (``--set module.NAME=literal`` overrides a module constant before items are built) and to
fill the table in docs/tasks.md. Never run on the test split.

    .venv/bin/python scripts/tools/measure_tasks.py --n 30 --seeds 0 1
    .venv/bin/python scripts/tools/measure_tasks.py --tasks arithmetic --set arithmetic.DIGITS="(1, 1)" --n 16 --show 4
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import statistics
import time

import torch

from hagstudy import tasks
from hagstudy.engine import models


def apply_overrides(pairs: list[str]) -> None:
    for pair in pairs:
        target, literal = pair.split("=", 1)
        module, attr = target.rsplit(".", 1)
        mod = importlib.import_module(f"hagstudy.tasks.{module}")
        value = ast.literal_eval(literal)
        if not hasattr(mod, attr):
            cls = next(c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, tasks.Task) and hasattr(c, attr))
            setattr(cls, attr, value)
        else:
            setattr(mod, attr, value)


def generate(model, tok, prompts: list[str], max_new_tokens: int, sample: bool, seed: int, batch: int,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 50, repetition_penalty: float = 1.0) -> list[str]:
    """Plain batched ``model.generate``; sampled with the given config, or greedy (then only the penalty applies)."""
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed * 100003 + start)
        kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k) if sample else dict(do_sample=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                                 pad_token_id=tok.pad_token_id, **kwargs)
        out += tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def calibrate() -> None:
    """Percentiles behind the MiniLM rescaling constants, from SEARCH-split data only (no model outputs)."""
    import numpy as np

    from hagstudy.tasks import embed

    enc = embed.encoder()
    tb = tasks.get("taboo").items("search")
    targets = [it.reference["target"] for it in tb]
    lists = [", ".join(w for w in it.reference["taboo"] if w != it.reference["target"]) for it in tb]
    e = enc.encode(targets + lists, normalize_embeddings=True)
    sim = e[: len(tb)] @ e[len(tb):].T
    off = sim[~np.eye(len(tb), dtype=bool)]
    print(f"taboo (n={len(tb)}): target vs own taboo list p10/p50/p90 = {np.percentile(np.diag(sim), [10, 50, 90]).round(3)}")
    print(f"taboo: target vs other targets' lists p50/p90/p99 = {np.percentile(off, [50, 90, 99]).round(3)}")
    yn = tasks.get("yes_no_black_white").items("search")
    qs = [it.reference["question"] for it in yn]
    ex = [it.reference["explanation"] for it in yn]
    evasive = ["I don't know.", "It depends.", "That is a good question.", "Maybe.", "Hard to say."]
    e = enc.encode(qs + ex + evasive, normalize_embeddings=True)
    q, x, v = e[: len(qs)], e[len(qs) : 2 * len(qs)], e[2 * len(qs) :]
    sim = q @ x.T
    off = sim[~np.eye(len(qs), dtype=bool)]
    print(f"ynbw (n={len(qs)}): question vs own explanation p10/p25/p50 = {np.percentile(np.diag(sim), [10, 25, 50]).round(3)}")
    print(f"ynbw: question vs other explanations p50/p90/p99 = {np.percentile(off, [50, 90, 99]).round(3)}")
    print(f"ynbw: question vs evasive answers p50/p90 = {np.percentile(q @ v.T, [50, 90]).round(3)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=tasks.names())
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--no-greedy", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--show", type=int, default=0, help="print this many outputs per run")
    ap.add_argument("--set", nargs="*", default=[], help="module.NAME=python-literal overrides")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    ap.add_argument("--dump", help="append every output (task, run, seed, id, output, score) as JSON lines here")
    ap.add_argument("--calibrate", action="store_true", help="print the MiniLM rescaling statistics and exit")
    args = ap.parse_args()
    if args.calibrate:
        calibrate()
        return
    apply_overrides(args.set)
    torch.set_num_threads(2)
    model, tok = models.load(dtype="bfloat16")
    for name in args.tasks:
        task = tasks.get(name)
        items = task.items("validation", args.n)
        prompts = [tok.apply_chat_template(task.messages(it), tokenize=False, add_generation_prompt=True) for it in items]
        runs = [("default", True, s) for s in args.seeds] + ([] if args.no_greedy else [("greedy", False, 0)])
        result: dict[str, object] = {"task": name, "n": len(items), "set": args.set, "max_new_tokens": task.max_new_tokens}
        for label, sample, seed in runs:
            t0 = time.time()
            outs = generate(model, tok, prompts, task.max_new_tokens, sample, seed, args.batch)
            scores = task.score(items, outs)
            result.setdefault(label, []).append(statistics.mean(scores))  # type: ignore[union-attr]
            print(f"{name:20s} {label:8s} seed={seed} mean={statistics.mean(scores):.3f} ({time.time() - t0:.0f}s)", flush=True)
            if args.dump:
                with open(args.dump, "a") as f:
                    for it, o, s in zip(items, outs, scores):
                        f.write(json.dumps({"task": name, "set": args.set, "run": label, "seed": seed, "id": it.id,
                                            "output": o, "score": s}) + "\n")
            for it, o, s in list(zip(items, outs, scores))[: args.show]:
                print(f"    [{s:.2f}] {it.query.splitlines()[0][:70]!r} -> {o[:150]!r}")
        summary = {k: round(statistics.mean(v), 3) for k, v in result.items() if k in ("default", "greedy")}
        print(f"== {name}: {summary} n={len(items)}", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
