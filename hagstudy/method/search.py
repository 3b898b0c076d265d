"""Per-item search for decoding configs: the labels HAG is trained on.

The pipeline per task is (1) *pruning*: the coarse grid is scored on a few search items and every
config that does worse than the default is dropped; the survivors define a few candidate values per
hyperparameter; then (2) *greedy* search per item: one hyperparameter at a time, keep a change only
when the mean score over R seeded draws strictly improves. Random search and Optuna TPE are the
alternatives compared at an equal generation budget (notebook 05), in ``method.strategies``.

Every step scores through ``scoring.score`` (one engine call per step, all items batched), on the
search's draw seeds (``seeds.draw_seeds``: common random numbers, so two configs of one item are
compared on the same seeds, and a rerun asks for exactly the same generations: the cache makes it
free and resumable). Choices use ``scoring.pick_best``. This module also owns the search's files
(``evaluations.jsonl``, ``labels.csv``, ``prune.json``, ``budget.json``): their writer and readers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import (
    HYPERPARAMETERS,
    DecodingConfig,
    SearchSpace,
)
from hagstudy.files import atomic_write
from hagstudy.scoring import EPS, Cost, Engine, Evaluation, Task, evaluate, pick_best

if TYPE_CHECKING:
    from hagstudy.config import Profile
    from hagstudy.tasks.base import Item

LABEL_COLUMNS = ("task", "item_id", "query", "config", "score", "default_score", "n_evals", "search_evals")



# ---------------------------------------------------------------------------------------------
# Evaluation and budget
# ---------------------------------------------------------------------------------------------


@dataclass
class Budget:
    """What a search cost: generations asked for, generated (cache misses), tokens and wall time.

    ``requested`` and ``tokens`` are deterministic; ``generated``, ``new_tokens`` and ``seconds``
    depend on what the cache already held (a resumed run generates less).
    """

    requested: int = 0
    generated: int = 0
    tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, stage: str, cost: Cost) -> None:
        row = self.stages.setdefault(
            stage, {"requested": 0, "generated": 0, "tokens": 0, "new_tokens": 0, "seconds": 0.0}
        )
        for name in ("requested", "generated", "tokens", "new_tokens", "seconds"):
            value = getattr(cost, name)
            row[name] += value
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, this_run: bool = False) -> dict[str, float]:
        """Flat columns per stage: ``requested`` and ``tokens`` always (the same on every rerun), and
        with ``this_run`` also what this run decoded and its seconds (zero when served from the cache)."""
        fields = ("requested", "tokens", "generated", "new_tokens", "seconds") if this_run else ("requested", "tokens")
        out = {name: getattr(self, name) for name in fields}
        for stage, values in self.stages.items():
            out.update({f"{stage}_{name}": values[name] for name in fields})
        return out


def _evaluate(
    engine: Engine,
    task: Task,
    pairs: Sequence[tuple[Item, DecodingConfig]],
    draws: int,
    seed_offset: int,
    stage: str,
    budget: Budget | None,
) -> list[Evaluation]:
    """``scoring.evaluate`` with the cost booked on ``budget`` under ``stage`` (nothing for no pairs)."""
    if not pairs:
        return []
    evals, cost = evaluate(engine, task, pairs, draws, seed_offset, stage=stage)
    if budget is not None:
        budget.add(stage or "evaluate", cost)
    return evals


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """The coarse grid on a few items: config mean scores, the default's threshold, the survivors."""

    task: str
    default: DecodingConfig
    item_ids: tuple[str, ...]
    draws: int
    threshold: float
    table: dict[str, float]  # config JSON -> mean over items and draws, in grid order
    survivors: tuple[str, ...]  # grid order
    candidates: dict[str, tuple[float, ...]]  # hyperparameter -> sorted values among survivors
    evaluations: tuple[Evaluation, ...] = field(default=(), repr=False)

    def best(self) -> DecodingConfig:
        """The best survivor (``scoring.pick_best``): greedy's starting point."""
        options = [(DecodingConfig.from_json(c), self.table[c]) for c in self.survivors]
        return options[pick_best(options, self.default)][0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "default": self.default.to_json(),
            "item_ids": list(self.item_ids),
            "draws": self.draws,
            "threshold": self.threshold,
            "table": self.table,
            "survivors": list(self.survivors),
            "candidates": {h: list(v) for h, v in self.candidates.items()},
            "best": self.best().to_json(),
        }


def prune(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    default: DecodingConfig,
    draws: int,
    space: SearchSpace | None = None,
    *,
    budget: Budget | None = None,
) -> PruneResult:
    """Score the coarse grid (plus the default if the grid lacks it); keep configs at least as good as the default."""
    space = space or SearchSpace()
    grid = [c.effective() for c in space.grid()]
    keys = [c.identity() for c in grid]
    default = default.effective()
    if default.identity() not in keys:
        grid.append(default)
        keys.append(default.identity())
    evals = _evaluate(engine, task, [(i, c) for i in items for c in grid], draws, 0, "prune", budget)
    per_config: dict[str, list[float]] = {k: [] for k in keys}
    for ev in evals:
        per_config[ev.config.identity()].extend(ev.scores)
    table = {k: math.fsum(v) / len(v) for k, v in per_config.items()}
    threshold = table[default.identity()]
    survivors = tuple(k for k in keys if table[k] >= threshold - EPS)
    configs = {k: c for k, c in zip(keys, grid)}
    candidates = {h: tuple(sorted({getattr(configs[k], h) for k in survivors})) for h in HYPERPARAMETERS}
    return PruneResult(
        task=task.name,
        default=default,
        item_ids=tuple(item.id for item in items),
        draws=draws,
        threshold=threshold,
        table=table,
        survivors=survivors,
        candidates=candidates,
        evaluations=tuple(evals),
    )


# ---------------------------------------------------------------------------------------------
# Per-item search: greedy (random and TPE: ``method.strategies``)
# ---------------------------------------------------------------------------------------------


@dataclass
class ItemLabel:
    """A search's choice for one item. ``score`` is on the search seeds (so optimistic by selection)."""

    task: str
    item_id: str
    query: str
    config: DecodingConfig  # the chosen config (effective form)
    score: float  # its mean over the search draws
    default_score: float  # the default's mean on the same seeds
    n_evals: int  # distinct configs evaluated on this item (the default reference included)
    search_evals: int  # configs the search method itself considered (its budget, in configs)
    method: str = "greedy"
    evaluations: tuple[Evaluation, ...] = field(default=(), repr=False)

    def row(self) -> dict[str, Any]:
        """The labels.csv row (the config as canonical JSON)."""
        row = {name: getattr(self, name) for name in LABEL_COLUMNS}
        row["config"] = self.config.to_json()
        return row


class ItemState:
    """One item's memo of evaluations (by effective config) and the order they were made in."""

    def __init__(self, item: Item) -> None:
        self.item = item
        self.memo: dict[str, Evaluation] = {}
        self.order: list[Evaluation] = []
        self.considered: set[str] = set()

    def missing(self, configs: Iterable[DecodingConfig]) -> list[DecodingConfig]:
        out: dict[str, DecodingConfig] = {}
        for c in configs:
            k = c.identity()
            if k not in self.memo and k not in out:
                out[k] = c.effective()
        return list(out.values())

    def record(self, evals: Iterable[Evaluation]) -> None:
        for ev in evals:
            if ev.config.identity() not in self.memo:
                self.memo[ev.config.identity()] = ev
                self.order.append(ev)

    def mean(self, config: DecodingConfig) -> float:
        return self.memo[config.identity()].mean

    def label(self, task: Task, config: DecodingConfig, default: DecodingConfig, method: str) -> ItemLabel:
        return ItemLabel(
            task=task.name,
            item_id=self.item.id,
            query=self.item.query,
            config=config.effective(),
            score=self.mean(config),
            default_score=self.mean(default),
            n_evals=len(self.order),
            search_evals=len(self.considered),
            method=method,
            evaluations=tuple(self.order),
        )


def run_round(
    engine: Engine,
    task: Task,
    states: Sequence[ItemState],
    wanted: Sequence[Sequence[DecodingConfig]],
    draws: int,
    seed_offset: int,
    stage: str,
    budget: Budget | None,
) -> None:
    """Evaluate every state's wanted configs it has not seen yet, for all items in one engine call."""
    pairs = []
    owners = []
    for state, configs in zip(states, wanted):
        for c in state.missing(configs):
            pairs.append((state.item, c))
            owners.append(state)
    evals = _evaluate(engine, task, pairs, draws, seed_offset, stage, budget)
    for state, ev in zip(owners, evals):
        state.record([ev])


def greedy(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    pruned: PruneResult,
    default: DecodingConfig,
    draws: int,
    order: Sequence[str] = HYPERPARAMETERS,
    seed_offset: int = 0,
    *,
    stage: str = "greedy",
    budget: Budget | None = None,
) -> list[ItemLabel]:
    """Greedy one-hyperparameter-at-a-time search per item, batched across items per step.

    Starts from the best surviving config; for each hyperparameter in ``order`` tries its candidate
    values (the others fixed) and moves only on a strict improvement of the mean; among equally good
    improvements the one nearer the default wins.
    """
    default = default.effective()
    start = pruned.best()
    states = [ItemState(item) for item in items]
    current = [start for _ in items]
    run_round(engine, task, states, [[default, start]] * len(states), draws, seed_offset, stage, budget)
    for state in states:
        state.considered.add(start.identity())
    for name in order:
        values = pruned.candidates[name]
        trials = [[c.with_(**{name: v}).effective() for v in values] for c in current]
        run_round(engine, task, states, trials, draws, seed_offset, stage, budget)
        for i, state in enumerate(states):
            options = []
            seen: set[str] = set()
            for c in trials[i]:
                k = c.identity()
                state.considered.add(k)
                if k not in seen:
                    seen.add(k)
                    options.append((c, state.mean(c)))
            best, best_mean = options[pick_best(options, default)]
            if best_mean > state.mean(current[i]) + EPS:
                current[i] = best
    return [state.label(task, current[i], default, "greedy") for i, state in enumerate(states)]


def generations_per_item(labels: Sequence[ItemLabel], draws: int) -> float:
    """Mean search budget per item in generations (configs the method considered x draws)."""
    return float(np.mean([lab.search_evals for lab in labels])) * draws if labels else 0.0


# ---------------------------------------------------------------------------------------------
# The per-task driver and its files
# ---------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    task: str
    default: DecodingConfig
    prune: PruneResult
    labels: list[ItemLabel]
    budget: Budget
    draws: int  # of the greedy stage (pruning has its own, in PruneResult.draws)

    def evaluations(self) -> list[Evaluation]:
        """Every evaluation, in a fixed order: pruning (grid order per item), then each item's search."""
        out = list(self.prune.evaluations)
        for lab in self.labels:
            out.extend(lab.evaluations)
        return out


def run_search(
    engine: Engine,
    task: Task,
    profile: Profile,
    out_dir: Path | str,
    default: DecodingConfig | None = None,
    space: SearchSpace | None = None,
) -> SearchResult:
    """Prune + greedy on the task's first ``profile.n_search`` search items; write the task's files.

    Writes ``out_dir/<task>/evaluations.jsonl``, ``labels.csv`` and ``budget.json`` atomically. Only
    ``budget.json`` holds run-dependent values (wall time, cache misses); rerunning is cheap (cache).
    """
    s = profile.search
    default = default or engine.default_config()
    items = task.items("search", profile.n_search)
    budget = Budget()
    start = time.perf_counter()
    pruned = prune(engine, task, items[: s.prune_items], default, s.draws, space, budget=budget)
    labels = greedy(engine, task, items, pruned, default, s.greedy_r, s.greedy_order, budget=budget)
    budget.seconds = time.perf_counter() - start  # wall time, including scoring and rendering
    result = SearchResult(task=task.name, default=default.effective(), prune=pruned, labels=labels, budget=budget,
                          draws=s.greedy_r)
    write_result(result, Path(out_dir), profile=profile.name)
    return result


def write_result(result: SearchResult, out_dir: Path, profile: str | None = None) -> Path:
    """The task's search files, each written atomically; only ``budget.json`` depends on the cache."""
    folder = Path(out_dir) / result.task
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(ev.to_dict(), sort_keys=True) for ev in result.evaluations()]
    atomic_write(folder / "evaluations.jsonl", "".join(line + "\n" for line in lines))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LABEL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for lab in result.labels:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in lab.row().items()})
    atomic_write(folder / "labels.csv", buf.getvalue())
    atomic_write(folder / "prune.json", json.dumps(result.prune.to_dict(), indent=2, sort_keys=True) + "\n")
    meta = {
        "task": result.task,
        "profile": profile,
        "default": result.default.to_json(),
        "draws": result.draws,
        "n_items": len(result.labels),
        "generations_per_item": generations_per_item(result.labels, result.draws),
        **result.budget.to_dict(),
    }
    atomic_write(folder / "budget.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def read_labels(out_dir: Path | str, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """The labels of ``run_search`` as one DataFrame (strings kept as strings, task order kept)."""
    out_dir = Path(out_dir)
    if tasks is None:
        tasks = sorted(p.parent.name for p in out_dir.glob("*/labels.csv"))
    frames = []
    for name in tasks:
        path = out_dir / name / "labels.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no labels for task {name!r}: {path} (run the search notebook first)")
        frames.append(
            pd.read_csv(path, dtype={"task": str, "item_id": str, "query": str, "config": str}, keep_default_na=False)
        )
    if not frames:
        return pd.DataFrame(columns=list(LABEL_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def read_prune(out_dir: Path | str, task: str) -> PruneResult:
    """The pruning result ``run_search`` wrote (without its evaluations), for later notebooks."""
    raw = json.loads((Path(out_dir) / task / "prune.json").read_text())
    return PruneResult(
        task=raw["task"],
        default=DecodingConfig.from_json(raw["default"]),
        item_ids=tuple(raw["item_ids"]),
        draws=raw["draws"],
        threshold=raw["threshold"],
        table=dict(raw["table"]),
        survivors=tuple(raw["survivors"]),
        candidates={h: tuple(raw["candidates"][h]) for h in HYPERPARAMETERS},
    )


def item_labels(frame: pd.DataFrame) -> list[ItemLabel]:
    """Rows of a labels frame (``read_labels``, or a subset of it) as ItemLabels, without evaluations."""
    return [
        ItemLabel(
            task=r["task"],
            item_id=r["item_id"],
            query=r["query"],
            config=DecodingConfig.from_json(r["config"]),
            score=float(r["score"]),
            default_score=float(r["default_score"]),
            n_evals=int(r["n_evals"]),
            search_evals=int(r["search_evals"]),
        )
        for r in frame.to_dict("records")
    ]


def read_item_labels(out_dir: Path | str, task: str) -> list[ItemLabel]:
    """The labels ``run_search`` wrote for one task, as ItemLabels."""
    return item_labels(read_labels(out_dir, [task]))


def read_evaluations(out_dir: Path | str, task: str) -> list[dict[str, Any]]:
    """The rows of a task's evaluations.jsonl (every scored config of the search, in search order)."""
    path = Path(out_dir) / task / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Frames for the notebooks
# ---------------------------------------------------------------------------------------------


def expand_configs(frame: pd.DataFrame, column: str = "config") -> pd.DataFrame:
    """Add one column per hyperparameter from a JSON config column (in place; returns the frame)."""
    parsed = [json.loads(c) for c in frame[column]]
    for h in HYPERPARAMETERS:
        frame[h] = [p[h] for p in parsed]
    return frame


def budget_frame(results: Sequence[SearchResult], this_run: bool = False) -> pd.DataFrame:
    """One row per task: generations and tokens the search asked for, per stage (see ``Budget.row``)."""
    return pd.DataFrame([{"task": r.task, **r.budget.row(this_run)} for r in results])


def labels_frame(results: SearchResult | Sequence[SearchResult] | Sequence[ItemLabel]) -> pd.DataFrame:
    """Labels as a DataFrame: the labels.csv columns, plus one column per hyperparameter and ``gain``."""
    if isinstance(results, SearchResult):
        results = [results]
    labels: list[ItemLabel] = []
    for r in results:
        labels.extend(r.labels if isinstance(r, SearchResult) else [r])
    frame = pd.DataFrame([{**lab.row(), "method": lab.method} for lab in labels], columns=[*LABEL_COLUMNS, "method"])
    frame = expand_configs(frame)
    frame["gain"] = frame["score"] - frame["default_score"]
    return frame


def prune_frame(pruned: PruneResult | Sequence[PruneResult]) -> pd.DataFrame:
    """The pruning table: one row per grid config with its mean, and whether it survived / is the default."""
    if isinstance(pruned, PruneResult):
        pruned = [pruned]
    rows = []
    for p in pruned:
        survivors = set(p.survivors)
        best = p.best()
        for config, mean in p.table.items():
            rows.append(
                {
                    "task": p.task,
                    "config": config,
                    "mean": mean,
                    "threshold": p.threshold,
                    "survived": config in survivors,
                    "is_default": config == p.default.identity(),
                    "is_start": config == best.identity(),
                }
            )
    frame = pd.DataFrame(rows, columns=["task", "config", "mean", "threshold", "survived", "is_default", "is_start"])
    return expand_configs(frame)
