"""Calibration of replacement candidates for the at-chance reasoning tasks (issue 14, item 6).

For each candidate BIG-bench task (read straight from the verified sdist in data/downloads/, so the
shared ``data/MANIFEST.json`` is not touched) the script builds the pool exactly like a study task
(``shuffled(examples, seed)`` cut into search / validation / test blocks), and on the first ``--n``
**validation** items reports, each with a bootstrap 95% CI over items (``stats.bootstrap_ci``):

- chance: the best of the task's ``chance_answers`` (chosen on the SEARCH split, as ``methods.chance``
  does), scored on the same validation items with the task's metric;
- uniform: for closed-answer tasks, the expected score of picking one of the item's listed options at
  random (not a constant answer, but the floor a model that cannot reason reaches by guessing);
- default: sampled, T=1.0, top_p=1.0, top_k=50, repetition_penalty=1.0, two seeds (CI resamples items
  and seeds, as the study does);
- greedy: one run.

Generation is ``measure_tasks.generate`` (plain batched ``model.generate``, bf16, left padding). The
test split is never generated on. Results go to ``--json`` (one line per candidate) for docs/tasks.md.

    nice -n 19 .venv/bin/python scripts/calibrate_candidates.py --n 30 --json /tmp/calib.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_tasks import generate  # noqa: E402

from hagstudy import data, stats  # noqa: E402
from hagstudy.tasks.base import ECHO, Item, Task, chance_output, shuffled  # noqa: E402
from hagstudy.tasks.text import normalize  # noqa: E402

PREFIX = f"bigbench-{data.BIGBENCH_VERSION}/bigbench/benchmark_tasks/"
FILES = {
    "colored_objects": "reasoning_about_colored_objects/task.json",
    "object_counting": "object_counting/task.json",
    "shuffled_objects": "tracking_shuffled_objects/three_objects/task.json",
    "logical_deduction": "logical_deduction/three_objects/task.json",
    "colored_what_color": "reasoning_about_colored_objects/task.json",
}


def read_sdist(rels: Sequence[str]) -> dict[str, Any]:
    """The named task files, parsed, from the verified sdist (one pass over the archive)."""
    sdist = data.fetch_sdist(data.data_dir() / "downloads")  # verifies the sha256; never downloads if present
    wanted = {PREFIX + r: r for r in rels}
    out: dict[str, Any] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                src = tar.extractfile(member)
                assert src is not None
                out[wanted[member.name]] = json.loads(src.read())
                if len(out) == len(wanted):
                    break
    return out


# -- closed-set answer extraction ----------------------------------------------------------------
_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:=]?", re.IGNORECASE)


def first_option(text: str, options: Sequence[str]) -> str | None:
    """The option that occurs first (whole words) after the last 'Answer:', else in the whole text."""
    t = normalize(text)
    marks = list(_ANSWER.finditer(t))
    for region in ([t[marks[-1].end():]] if marks else []) + [t]:
        best: tuple[int, int, str] | None = None
        for opt in options:
            m = re.search(r"(?<!\w)" + re.escape(normalize(opt)) + r"(?!\w)", region)
            if m and (best is None or (m.start(), -len(opt)) < best[:2]):
                best = (m.start(), -len(opt), opt)
        if best is not None:
            return best[2]
    return None


class ChoiceTask(Task):
    """A closed-answer task: reference = {"answer": gold option, "options": [...]}; score 1 if extracted."""

    max_new_tokens = 16
    examples: list[dict[str, Any]] = []

    def chance_answers(self, search_items: Sequence[Item]) -> list[str]:
        counts = Counter(it.reference["answer"] for it in search_items)
        return ["", ECHO] + [f"Answer: {a}" for a, _ in counts.most_common()]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        return [1.0 if first_option(o, it.reference["options"]) == it.reference["answer"] else 0.0
                for it, o in zip(items, outputs)]

    def uniform(self, items: Sequence[Item]) -> list[float]:
        return [1.0 / len(it.reference["options"]) for it in items]


def _gold(ex: dict[str, Any]) -> str:
    return max(ex["target_scores"].items(), key=lambda kv: kv[1])[0]


class ColoredObjects(ChoiceTask):
    name = "colored_objects"
    capability = "logical reasoning"
    seed = 23
    system = ("You answer questions about objects and their colors. Reply with one line in exactly this "
              "format: 'Answer: <answer>'.")

    kinds: tuple[str, ...] = ()  # BIG-bench's 'comment' subtypes to keep; empty keeps all five

    def _build(self) -> list[Item]:
        items, seen = [], set()
        for i, ex in shuffled(list(enumerate(self.examples)), self.seed):
            q = ex["input"].strip()
            if q in seen or (self.kinds and ex.get("comment") not in self.kinds):
                continue
            seen.add(q)
            items.append(Item(self.name, f"{self.name}-{i:04d}", q,
                              {"answer": _gold(ex), "options": list(ex["target_scores"]), "kind": ex.get("comment")}))
        return items


class ColoredWhatColor(ColoredObjects):
    """Only the 200 'what_color' items ("... What color is the booklet?"): binding a color to an object."""

    name = "colored_what_color"
    kinds = ("what_color",)
    max_new_tokens = 24
    split_sizes = {"search": 40, "validation": 40, "test": 120}


class FamilyRelationships(ChoiceTask):
    """reasoning-gym ``family_relationships`` (generated, seeded), families of 3-4 people."""

    name = "family_relationships"
    capability = "logical reasoning (kinship)"
    max_new_tokens = 16
    seed = 41
    system = "You answer questions about families. Reply with one line in exactly this format: 'Answer: <relationship>'."

    def _build(self) -> list[Item]:
        import reasoning_gym

        ds = reasoning_gym.create_dataset("family_relationships", seed=self.seed, size=1200,
                                          min_family_size=3, max_family_size=4)
        rows, seen = [], set()
        for row in ds:
            q = row["question"].replace(" Respond only with the word that describes their relationship.", "").strip()
            if q not in seen:
                seen.add(q)
                rows.append((q, row["answer"]))
        options = sorted({a for _, a in rows})
        return [Item(self.name, f"{self.name}-{k:04d}", q, {"answer": a, "options": options})
                for k, (q, a) in enumerate(rows[:700])]


NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                "nineteen", "twenty"]


class ObjectCounting(ChoiceTask):
    name = "object_counting"
    capability = "symbolic reasoning (counting)"
    max_new_tokens = 32
    seed = 29
    system = "You count things carefully. Reply with one line in exactly this format: 'Answer: <number>'."

    def _build(self) -> list[Item]:
        items, seen = [], set()
        options = [str(n) for n in range(len(NUMBER_WORDS))]
        for i, ex in shuffled(list(enumerate(self.examples)), self.seed):
            q = ex["input"].strip()
            if q in seen:
                continue
            seen.add(q)
            digit = next(t for t in ex["target"] if t.isdigit())
            items.append(Item(self.name, f"{self.name}-{i:04d}", q, {"answer": digit, "options": options}))
        return items

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        words = {w: str(n) for n, w in enumerate(NUMBER_WORDS)}
        out = []
        for it, o in zip(items, outputs):
            t = normalize(o)
            t = re.sub(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", lambda m: words[m.group(1)], t)
            marks = list(_ANSWER.finditer(t))
            after = re.findall(r"\d+", t[marks[-1].end():]) if marks else []
            anywhere = re.findall(r"\d+", t)
            # the first number after the last 'Answer:', else the last number (the model lists, then totals)
            got = after[0] if after else (anywhere[-1] if anywhere else None)
            out.append(1.0 if got == it.reference["answer"] else 0.0)
        return out

    def uniform(self, items: Sequence[Item]) -> list[float]:
        return [float("nan")] * len(items)  # open answer: no option list


class ShuffledObjects(ChoiceTask):
    name = "shuffled_objects"
    capability = "logical reasoning (state tracking)"
    max_new_tokens = 24
    seed = 31
    system = ("You track who holds what. Reply with one line in exactly this format: 'Answer: <item>'.")

    def _build(self) -> list[Item]:
        items, seen = [], set()
        for i, ex in shuffled(list(enumerate(self.examples)), self.seed):
            options = [o.strip().rstrip(".") for o in ex["target_scores"]]
            stem = re.sub(r"\s+", " ", ex["input"]).strip()
            q = f"{stem} ...\nWhich one? Options: {', '.join(options)}."
            if q in seen:
                continue
            seen.add(q)
            items.append(Item(self.name, f"{self.name}-{i:04d}", q,
                              {"answer": _gold(ex).strip().rstrip("."), "options": options}))
        return items


class LogicalDeduction(ChoiceTask):
    name = "logical_deduction"
    capability = "logical reasoning (deduction)"
    max_new_tokens = 24
    seed = 37
    system = ("You solve logic puzzles. Reply with one line in exactly this format: 'Answer: (A)', "
              "'Answer: (B)' or 'Answer: (C)'.")

    def _build(self) -> list[Item]:
        items, seen = [], set()
        for i, ex in shuffled(list(enumerate(self.examples)), self.seed):
            opts = list(ex["target_scores"])
            letters = [f"({chr(65 + k)})" for k in range(len(opts))]
            body = "\n".join(f"{lt} {o}" for lt, o in zip(letters, opts))
            q = f"{ex['input'].strip()}\nWhich statement is true?\n{body}"
            if q in seen:
                continue
            seen.add(q)
            items.append(Item(self.name, f"{self.name}-{i:04d}", q,
                              {"answer": letters[opts.index(_gold(ex))], "options": letters}))
        return items


CANDIDATES: dict[str, type[ChoiceTask]] = {
    "colored_objects": ColoredObjects, "object_counting": ObjectCounting,
    "shuffled_objects": ShuffledObjects, "logical_deduction": LogicalDeduction,
    "colored_what_color": ColoredWhatColor, "family_relationships": FamilyRelationships,
}


def frame(ids: Sequence[str], runs: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"item_id": i, "seed": s, "score": v} for s, vals in runs.items() for i, v in zip(ids, vals)])


def ci(ids: Sequence[str], runs: dict[int, list[float]]) -> list[float]:
    est = stats.bootstrap_ci(frame(ids, runs), n_boot=2000, rng_seed=0)
    return [round(est.mean, 3), round(est.ci_low, 3), round(est.ci_high, 3)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-model", action="store_true", help="only the chance baselines (no generation)")
    ap.add_argument("--show", type=int, default=0)
    ap.add_argument("--system", help="replace the candidates' system prompt (a prompt variant)")
    ap.add_argument("--json")
    ap.add_argument("--dump", help="append every output as JSON lines here")
    args = ap.parse_args()
    raw = read_sdist(sorted({FILES[t] for t in args.tasks if t in FILES}))
    model = tok = None
    if not args.no_model:
        import torch

        from hagstudy import models

        torch.set_num_threads(2)
        model, tok = models.load(dtype="bfloat16")
    for name in args.tasks:
        cls = CANDIDATES[name]
        if name in FILES:
            cls.examples = raw[FILES[name]]["examples"]
        task = cls()
        if args.system:
            task.system = args.system
        items = task.items("validation", args.n)
        ids = [it.id for it in items]
        search = task.items("search")
        cands = task.chance_answers(search)
        best = max(cands, key=lambda c: sum(task.score(search, [chance_output(c, it) for it in search])))
        result: dict[str, Any] = {
            "task": name, "system": task.system, "n": len(items), "pool": len(task.pool()), "source": FILES.get(name, "reasoning-gym"),
            "max_new_tokens": task.max_new_tokens, "chance_answer": best,
            "chance": ci(ids, {0: task.score(items, [chance_output(best, it) for it in items])}),
            "uniform": round(sum(task.uniform(items)) / len(items), 3),
        }
        if model is not None:
            prompts = [tok.apply_chat_template(task.messages(it), tokenize=False, add_generation_prompt=True) for it in items]
            for label, sample, seeds in (("default", True, args.seeds), ("greedy", False, [0])):
                runs = {}
                for seed in seeds:
                    t0 = time.time()
                    outs = generate(model, tok, prompts, task.max_new_tokens, sample, seed, args.batch)
                    runs[seed] = task.score(items, outs)
                    print(f"{name:18s} {label:8s} seed={seed} mean={sum(runs[seed]) / len(items):.3f} "
                          f"({time.time() - t0:.0f}s)", flush=True)
                    if args.dump:
                        with open(args.dump, "a") as f:
                            for it, o, s in zip(items, outs, runs[seed]):
                                f.write(json.dumps({"task": name, "run": label, "seed": seed, "id": it.id,
                                                    "gold": it.reference["answer"], "output": o, "score": s}) + "\n")
                    for it, o, s in list(zip(items, outs, runs[seed]))[: args.show]:
                        print(f"    [{s:.0f}] gold={it.reference['answer']!r} -> {o[:120]!r}")
                result[label] = ci(ids, runs)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
