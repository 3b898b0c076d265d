"""Ablations: label reliability, search strategies at an equal budget, and the arms of notebook 05.

Everything here reuses the main chain's own functions (search, dataset, training, methods, and
``scoring`` for every score), so an ablation arm differs from HAG only in the one thing it changes.
Labels are compared on *held-out* draws (``seeds.OFFSET_HELDOUT``): a label's search score won a
maximum over noisy candidates and is optimistic; a fresh draw is not.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy import methods, registry, stages, study
from hagstudy.config import TrainSettings
from hagstudy.decoding import HYPERPARAMETERS, DecodingConfig
from hagstudy.engine.pool import map_pooled
from hagstudy.method import dataset, gate, label_check, search, strategies
from hagstudy.method.label_check import heldout_means
from hagstudy.method.search import ItemLabel, PruneResult, generations_per_item
from hagstudy.report import evaluation
from hagstudy.scoring import Engine, Task
from hagstudy.seeds import OFFSET_REPEAT

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item



# ---------------------------------------------------------------------------------------------
# Label reliability (notebook 01)
# ---------------------------------------------------------------------------------------------


@dataclass
class Reliability:
    """Two greedy searches with independent seeds on the same items, and their labels on fresh draws."""

    task: str
    rows: list[dict[str, Any]]
    labels_a: list[ItemLabel] = field(repr=False)
    labels_b: list[ItemLabel] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """Agreement rates and held-out means; ``gap_ab`` near 0 with low agreement means noisy labels."""
        n = len(self.rows)
        out: dict[str, Any] = {"task": self.task, "n_items": n}
        if not n:
            return out
        out["agree_exact"] = float(np.mean([r["agree"] for r in self.rows]))
        for h in HYPERPARAMETERS:
            out[f"agree_{h}"] = float(np.mean([r[f"agree_{h}"] for r in self.rows]))
        for col in ("heldout_a", "heldout_b", "heldout_default", "search_a", "search_b"):
            out[col] = float(np.mean([r[col] for r in self.rows]))
        out["gap_ab"] = out["heldout_a"] - out["heldout_b"]
        out["abs_gap_ab"] = float(np.mean([abs(r["heldout_a"] - r["heldout_b"]) for r in self.rows]))
        out["gain_a_vs_default"] = out["heldout_a"] - out["heldout_default"]
        out["gain_b_vs_default"] = out["heldout_b"] - out["heldout_default"]
        out["optimism_a"] = out["search_a"] - out["heldout_a"]  # selection bias of the search score
        return out


def reliability(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    pruned: PruneResult,
    default: DecodingConfig,
    draws: int,
    order: Sequence[str],
    heldout_draws: int,
    labels_a: Sequence[ItemLabel] | None = None,
) -> Reliability:
    """Repeat greedy with fresh seeds; compare the two labels (exact and per hyperparameter) and score
    both, and the default, on ``heldout_draws`` further fresh draws.

    ``labels_a`` are the original labels (from ``search.run_search``); without them greedy is rerun on
    the original seeds (free from the cache).
    """
    default = default.effective()
    if labels_a is None:
        labels_a = search.greedy(engine, task, items, pruned, default, draws, order)
    else:
        by_id = {lab.item_id: lab for lab in labels_a}
        labels_a = [by_id[item.id] for item in items]
    labels_b = search.greedy(engine, task, items, pruned, default, draws, order, OFFSET_REPEAT, stage="repeat")
    wanted = [(item, [a.config, b.config, default]) for item, a, b in zip(items, labels_a, labels_b)]
    held = heldout_means(engine, task, wanted, heldout_draws, "heldout")
    rows = []
    for item, a, b in zip(items, labels_a, labels_b):
        row: dict[str, Any] = {
            "task": task.name,
            "item_id": item.id,
            "config_a": a.config.to_json(),
            "config_b": b.config.to_json(),
            "agree": a.config.to_json() == b.config.to_json(),
        }
        for h in HYPERPARAMETERS:
            row[f"agree_{h}"] = getattr(a.config, h) == getattr(b.config, h)
        row.update(
            search_a=a.score,
            search_b=b.score,
            heldout_a=held[(item.id, a.config.identity())],
            heldout_b=held[(item.id, b.config.identity())],
            heldout_default=held[(item.id, default.identity())],
        )
        rows.append(row)
    return Reliability(task=task.name, rows=rows, labels_a=list(labels_a), labels_b=list(labels_b))


# ---------------------------------------------------------------------------------------------
# Search strategies at an equal budget (notebook 05)
# ---------------------------------------------------------------------------------------------


def first_fraction(labels: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The first ``ceil(fraction * n)`` labelled items of every task, in search-split order.

    Search items are a fixed, seeded order, so 25 % is a prefix of 50 %, which is a prefix of 100 %.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    parts = [g.head(max(1, math.ceil(fraction * len(g)))) for _, g in labels.groupby("task", sort=False)]
    return pd.concat(parts, ignore_index=True)


def label_quality(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    labels: Mapping[str, Sequence[ItemLabel]],
    default: DecodingConfig,
    draws: int,
) -> pd.DataFrame:
    """Score every strategy's label (and the default) on ``draws`` fresh held-out draws per item.

    One row per (strategy, item): held-out mean of the label, of the default, and the strategy's
    search cost in generations per item.
    """
    by_item = {strategy: {lab.item_id: lab for lab in labs} for strategy, labs in labels.items()}
    wanted = [(item, [default] + [by_item[s][item.id].config for s in labels]) for item in items]
    held = heldout_means(engine, task, wanted, draws, "label_quality")
    rows = []
    for strategy, labs in labels.items():
        cost = generations_per_item(list(labs), draws=_draws_of(labs))
        for lab in labs:
            rows.append(
                {
                    "task": task.name,
                    "strategy": strategy,
                    "item_id": lab.item_id,
                    "generations": cost,
                    "search_score": lab.score,
                    "heldout": held[(lab.item_id, lab.config.identity())],
                    "heldout_default": held[(lab.item_id, default.identity())],
                }
            )
    return pd.DataFrame(rows)


def _draws_of(labels: Sequence[ItemLabel]) -> int:
    for lab in labels:
        if lab.evaluations:
            return len(lab.evaluations[0].seeds)
    return 1


def quality_summary(quality: pd.DataFrame) -> pd.DataFrame:
    """Per task and strategy: search cost, optimistic search score, held-out score and its gain over default."""
    g = quality.groupby(["task", "strategy"], sort=False)
    out = g.agg(
        generations=("generations", "first"),
        search_score=("search_score", "mean"),
        quality=("heldout", "mean"),
        heldout_default=("heldout_default", "mean"),
        n_items=("item_id", "nunique"),
    ).reset_index()
    out["gain_vs_default"] = out["quality"] - out["heldout_default"]
    return out


def search_strategies(run: study.Run, labels: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[ItemLabel]]]:
    """Greedy (the committed labels), random and TPE on the first ``ablation.search_fraction`` of each
    task's search items, at greedy's mean budget per item; every label scored on held-out draws.

    Returns the per-(strategy, item) quality rows and each strategy's labels over all tasks.
    """
    p, base = run.profile, run.engine()

    def one(task: Task) -> tuple[pd.DataFrame, dict[str, list[ItemLabel]]]:
        task_labels = first_fraction(labels[labels.task == task.name], p.ablation.search_fraction)
        items = task.items("search", p.n_search)[: len(task_labels)]
        draws = p.search.greedy_r  # the draws greedy's labels were chosen on: an equal budget in generations
        budget = max(1, int(round(task_labels["search_evals"].mean() * draws)))
        default = base.default_config()
        by_strategy = {
            "greedy": search.item_labels(task_labels),
            "random": strategies.random_search(base, task, items, default, draws, budget, seed=p.seed),
            "tpe": strategies.tpe_search(base, task, items, default, draws, budget, seed=p.seed),
        }
        q = label_quality(base, task, items, by_strategy, default, p.search.heldout_draws)
        return q.assign(generations=q["strategy"].map({"greedy": budget}).fillna(q["generations"])), by_strategy

    quality, strategy_labels = [], {"greedy": [], "random": [], "tpe": []}
    for q, by_strategy in map_pooled(base, one, run.tasks()):  # the tasks' engine calls pooled
        quality.append(q)
        for k, v in by_strategy.items():
            strategy_labels[k].extend(v)
    return pd.concat(quality, ignore_index=True), strategy_labels


# ---------------------------------------------------------------------------------------------
# The arms of notebook 05
# ---------------------------------------------------------------------------------------------


def checked_labels(run: study.Run, labels: Sequence[ItemLabel]) -> pd.DataFrame:
    """Any strategy's labels through the main chain's label check (``label_check.check``), as a frame.

    Each task's start config is the one its greedy search began from (notebook 01's pruning), so an
    arm trained on random or TPE labels gets the same treatment as HAG's own labels.
    """
    p, base = run.profile, run.engine()
    tasks = [task for task in run.tasks() if any(lab.task == task.name for lab in labels)]

    def one(task: Task) -> list[Any]:
        own = [lab for lab in labels if lab.task == task.name]
        start = search.read_prune(stages.SEARCH.find(run), task.name).best()
        return label_check.check(base, task, task.items("search", p.n_search), own, start,
                                 p.search.heldout_draws, p.search.keep_margin)

    return label_check.frame_of([row for rows in map_pooled(base, one, tasks) for row in rows])


def arm_seeds(run: study.Run) -> list[int]:
    """The evaluation seeds every ablation arm uses: the first ``ablation.n_seeds`` of the profile's."""
    return list(run.profile.seeds[: run.profile.ablation.n_seeds])


def train_arm(run: study.Run, name: str, labels: pd.DataFrame) -> tuple[Path, gate.Gate]:
    """An adapter trained on ``labels`` (reused when its inputs are unchanged): the folder of its chosen snapshot, and its gate.

    The arm's own labels are split as the main chain's are, and the gate judges the adapter on its
    own validation rows: did it learn *its* labels? Its snapshot is chosen by the main chain's rule
    (``train.select``), and with ``ablation.equal_steps`` it trains for as many steps as the reference
    HAG adapter.
    """
    p = run.profile
    rows_train, rows_val = dataset.build(labels, p.train.validation_fraction, p.seed)
    _, verdict, _ = gate.train_and_judge(run, name, p.seed, rows_train, rows_val, settings=arm_settings(run))
    return gate.adapter_path(stages.ADAPTERS.find(run) / name, verdict), verdict


def arm_settings(run: study.Run) -> TrainSettings:
    """The training settings of an ablation arm: the profile's, capped at the reference adapter's step count
    when ``ablation.equal_steps`` (so a smaller training set means more epochs, not less training)."""
    p = run.profile
    reference = reference_adapter(run)
    if not p.ablation.equal_steps or reference is None:
        return p.train
    steps = gate.read(stages.GATES.find(run))[reference].steps
    return replace(p.train, max_steps=int(steps))


def hag_arm(
    run: study.Run, method: str, stage1: Engine, stage2: Engine | None = None, keep: Sequence[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two-stage HAG over every task's first ``ablation.n_test`` test items: score rows and proposals."""
    base = run.engine()

    def one(task: Task) -> tuple[pd.DataFrame, pd.DataFrame]:
        items = task.items("test", run.profile.ablation.n_test)
        return methods.stage1_then_answer(stage1, stage2 or base, task, items, arm_seeds(run), base.default_config(),
                                          method, keep=keep)

    parts = map_pooled(stage1, one, run.tasks())  # stage 1's calls pooled over the tasks
    return pd.concat([f for f, _ in parts], ignore_index=True), pd.concat([q for _, q in parts], ignore_index=True)


def reference_adapter(run: study.Run) -> str | None:
    """The HAG adapter the ablations are read against: the first of notebook 03's that passed the gate."""
    gates = gate.read(stages.GATES.find(run))
    return next((name for name, _ in run.hag_adapters() if name in gates and gates[name].passed), None)


def gated_arm(run: study.Run, method: str, adapter: str, labels: pd.DataFrame) -> tuple[pd.DataFrame | None, gate.Gate]:
    """Train an arm's adapter on ``labels``; score it with ``hag_arm`` only if it passes the gate.

    An adapter that did not learn its labels gets no score rows (``None``): its parse rate and exact
    match are reported from the gate instead, never a score that silently equals the default's.
    """
    path, verdict = train_arm(run, adapter, labels)
    if not verdict.passed:  # no engine for an adapter that is not scored
        return None, verdict
    try:
        return hag_arm(run, method, run.engine(adapter=path))[0], verdict
    finally:  # each arm's model copy goes back: eight of them held at once ran a 24 GiB machine out of memory
        run.drop_engine(path)
        gc.collect()


def gate_table(gates: Mapping[str, gate.Gate]) -> pd.DataFrame:
    """One row per arm (method name -> its adapter's gate): did it learn, with the numbers."""
    frame = gate.frame(list(gates.values()))
    frame.insert(0, "method", list(gates))
    frame["status"] = ["learned" if g.passed else "did not learn" for g in gates.values()]
    return frame


def with_unlearned(table: pd.DataFrame, gates: Mapping[str, gate.Gate]) -> pd.DataFrame:
    """The arms' main table plus one row per arm whose adapter failed the gate: no mean, a note why."""
    table = table.assign(note="")
    rows = [
        {"task": "(all)", "method": m, "note": f"did not learn: {g.reason} (parse {g.parse_rate:.2f}, exact {g.exact_match:.2f})"}
        for m, g in gates.items() if not g.passed
    ]
    return pd.concat([table, pd.DataFrame(rows, columns=list(table.columns))], ignore_index=True) if rows else table


def default_arm(run: study.Run) -> pd.DataFrame:
    """The default config on the ablation items and seeds (the reference every arm is read against)."""
    base = run.engine()
    frames = map_pooled(base, lambda t: methods.fixed(base, t, t.items("test", run.profile.ablation.n_test), arm_seeds(run),
                                                      base.default_config(), registry.DEFAULT.name), run.tasks())
    return pd.concat(frames, ignore_index=True)


def versus(scores: pd.DataFrame, variants: Sequence[str], reference: str = registry.HAG.name) -> pd.DataFrame:
    """Each variant against the reference method (paired bootstrap per task)."""
    frames = [evaluation.relative_table(scores, target=v, baselines=(reference,)).assign(variant=v) for v in variants]
    out = pd.concat(frames, ignore_index=True)
    return out[["variant"] + [c for c in out.columns if c != "variant"]]


