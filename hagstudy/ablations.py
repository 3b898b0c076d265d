"""Ablation helpers: label subsets, search strategies at an equal budget, label quality on fresh draws.

The ablation notebook reuses the pipeline's own functions (search, dataset, training, methods) through
these few helpers; nothing here re-implements a step of the main chain.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from hagstudy import evaluation
from hagstudy.search import (
    OFFSET_HELDOUT,
    ItemLabel,
    config_from_json,
    evaluate_pairs,
    generations_per_item,
)


def first_fraction(labels: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The first ``ceil(fraction * n)`` labelled items of every task, in search-split order.

    Search items are a fixed, seeded order, so 25 % is a prefix of 50 %, which is a prefix of 100 %.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    parts = [g.head(max(1, math.ceil(fraction * len(g)))) for _, g in labels.groupby("task", sort=False)]
    return pd.concat(parts, ignore_index=True)


def labels_to_frame(labels: Sequence[ItemLabel]) -> pd.DataFrame:
    """ItemLabels (any search method) as the labels frame ``dataset.build`` takes."""
    from hagstudy.search import LABEL_COLUMNS

    return pd.DataFrame([lab.row() for lab in labels], columns=list(LABEL_COLUMNS))


def label_quality(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    labels: Mapping[str, Sequence[ItemLabel]],
    default_json: str,
    draws: int,
) -> pd.DataFrame:
    """Score every strategy's label (and the default) on ``draws`` fresh held-out draws per item.

    One row per (strategy, item): held-out mean of the label, of the default, and the strategy's
    search cost in generations per item. The search score of a label is optimistic (it won a
    maximum over noisy candidates); this held-out score is not.
    """
    mnt = task.max_new_tokens
    default = config_from_json(default_json, mnt)
    pairs: list[tuple[Any, Any]] = []
    seen: set[tuple[str, str]] = set()
    by_item = {strategy: {lab.item_id: lab for lab in labs} for strategy, labs in labels.items()}
    for item in items:
        for cfg in [default] + [config_from_json(by_item[s][item.id].config, mnt) for s in labels]:
            if (item.id, cfg.to_json()) not in seen:
                seen.add((item.id, cfg.to_json()))
                pairs.append((item, cfg))
    evals = evaluate_pairs(engine, task, pairs, draws, OFFSET_HELDOUT, stage="label_quality")
    held = {(ev.item_id, ev.config): ev.mean for ev in evals}
    rows = []
    for strategy, labs in labels.items():
        cost = generations_per_item(list(labs), draws=_draws_of(labs))
        for lab in labs:
            cfg = config_from_json(lab.config, mnt)
            rows.append(
                {
                    "task": task.name,
                    "strategy": strategy,
                    "item_id": lab.item_id,
                    "generations": cost,
                    "search_score": lab.score,
                    "heldout": held[(lab.item_id, cfg.to_json())],
                    "heldout_default": held[(lab.item_id, default.to_json())],
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


def versus(scores: pd.DataFrame, variants: Sequence[str], reference: str = "hag") -> pd.DataFrame:
    """Each variant against the reference method (paired bootstrap per task)."""
    frames = [evaluation.relative_table(scores, target=v, baselines=(reference,)).assign(variant=v) for v in variants]
    out = pd.concat(frames, ignore_index=True)
    return out[["variant"] + [c for c in out.columns if c != "variant"]]


def mean_over_tasks(main: pd.DataFrame) -> pd.DataFrame:
    """Unweighted mean of each method's task means (a one-number summary; the per-task table is the result)."""
    return main.groupby("method", sort=False)["mean"].mean().rename("mean_over_tasks").reset_index()

