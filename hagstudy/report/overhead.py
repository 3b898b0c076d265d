"""What each compared method costs: generations and training to set it up, passes and tokens per query.

A per-query method is only worth its gain if its cost is known. Every number here comes from the run's
own files: the search budget and the held-out check (notebook 01's tables), the candidates the oracles and
the adaptive samplers were tuned over (their tables), each adapter's training log, the answers' token
counts (notebook 04's score rows) and stage 1's tokens (the consistency table). Set-up generations are
*requested* generations, the search budget's convention (``scoring.Cost.requested``: cells x draws, cached
cells included, the same on every rerun). Where a stage does not log its count, the count is derived from
the logged candidates by the rule the code runs, and the ``note`` says so; anything no file records is
left empty and named in the ``note``.
"""

from __future__ import annotations

import inspect
from typing import Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from hagstudy import registry, stages
from hagstudy.method import oracles
from hagstudy.method.consistency import ORIGINAL

COLUMNS = ["method", "setup_generations", "setup_train_seconds", "per_query_passes", "per_query_tokens", "note"]
# How many pruning configs each oracle re-scores: read from the functions notebook 01 calls, never copied.
TASK_ORACLE_TOP: int = inspect.signature(oracles.task_oracle).parameters["top"].default
SINGLE_CONFIG_TOP: int = inspect.signature(oracles.best_single_config).parameters["top"].default


class Trained(Protocol):
    """What the table needs from an adapter's training log (``training.TrainResult`` is one)."""

    steps: int
    wall_seconds: float


def search_items(label_check_items: pd.DataFrame) -> dict[str, int]:
    """Search items per task: the held-out check runs on every labelled search item, one row each."""
    stages.require_columns(label_check_items, ["task", "item_id"], stages.LABEL_CHECK_ITEMS.name)
    return {str(t): int(n) for t, n in label_check_items.groupby("task", sort=False)["item_id"].nunique().items()}


def label_check_generations(label_check_items: pd.DataFrame, heldout_draws: int) -> int:
    """``label_check.check``'s requests: the start config on every item, the searched label once more
    where it differs, each on ``heldout_draws`` draws."""
    stages.require_columns(label_check_items, ["task", "item_id", "changed"], stages.LABEL_CHECK_ITEMS.name)
    changed = label_check_items["changed"].map({True: 1, False: 0, "True": 1, "False": 0})
    if changed.isna().any():
        raise ValueError(f"{stages.LABEL_CHECK_ITEMS.name}: column 'changed' must hold True/False")
    return int((1 + changed).sum()) * heldout_draws


def adaptive_generations(adaptive_tuning: pd.DataFrame, items: Mapping[str, int], draws: int) -> dict[str, int]:
    """Per adaptive method: its settings tried per task (one row each) x that task's search items x draws."""
    stages.require_columns(adaptive_tuning, ["task", "method", "config"], stages.ADAPTIVE_TUNING.name)
    counts = adaptive_tuning.groupby(["method", "task"], sort=False)["config"].nunique()
    out: dict[str, int] = {}
    for (method, task), settings in counts.items():
        if task not in items:
            raise ValueError(f"{stages.ADAPTIVE_TUNING.name}: task {task!r} has no search items in {stages.LABEL_CHECK_ITEMS.name}")
        out[str(method)] = out.get(str(method), 0) + int(settings) * items[task] * draws
    return out


def oracle_rescoring(search_prune: pd.DataFrame, items: Mapping[str, int], draws: int) -> tuple[int, int]:
    """(task oracle, best single config) re-scoring requests: the ``top`` best pruning configs of each task
    (of those pruned on every task, for the single config) on every search item, ``draws`` each."""
    stages.require_columns(search_prune, ["task", "config"], stages.SEARCH_PRUNE.name)
    grids = {str(t): set(g) for t, g in search_prune.groupby("task", sort=False)["config"]}
    unknown = sorted(set(grids) - set(items))
    if unknown:
        raise ValueError(f"{stages.SEARCH_PRUNE.name}: task(s) {unknown} have no search items in {stages.LABEL_CHECK_ITEMS.name}")
    task = sum(min(TASK_ORACLE_TOP, len(g)) * items[t] * draws for t, g in grids.items())
    common = set.intersection(*grids.values()) if grids else set()
    single = min(SINGLE_CONFIG_TOP, len(common)) * sum(items[t] for t in grids) * draws
    return task, single


def answer_tokens(scores: pd.DataFrame) -> dict[str, float]:
    """Mean generated tokens per answer (score row), by method."""
    stages.require_columns(scores, ["method", "n_tokens"], stages.SCORES.name)
    return {str(m): float(v) for m, v in scores.groupby("method", sort=False)["n_tokens"].mean().items()}


def stage1_tokens(consistency: pd.DataFrame, members: Sequence[str]) -> float:
    """Mean stage-1 tokens on the original queries over ``members`` (NaN when the table has none of them)."""
    stages.require_columns(consistency, ["method", "variation", "n", "stage1_tokens"], stages.CONSISTENCY.name)
    sub = consistency[(consistency["variation"] == ORIGINAL) & consistency["method"].isin(list(members))]
    return float(np.average(sub["stage1_tokens"], weights=sub["n"])) if len(sub) else float("nan")


def overhead_table(
    *,
    search_budget: pd.DataFrame,
    label_check_items: pd.DataFrame,
    search_prune: pd.DataFrame,
    adaptive_tuning: pd.DataFrame,
    scores: pd.DataFrame,
    consistency: pd.DataFrame,
    trained: Mapping[str, Trained],
    draws: int,
    heldout_draws: int,
) -> pd.DataFrame:
    """One row per method: ``setup_generations``, ``setup_train_seconds``, ``per_query_passes`` and
    ``per_query_tokens`` (mean generated tokens per query: stage 1 plus the answer), with a ``note``.

    ``draws`` is the search's R (the oracles and adaptive samplers are tuned on it), ``heldout_draws``
    the held-out check's; ``trained`` maps each HAG adapter the study used to its training log.
    """
    stages.require_columns(search_budget, ["task", "requested", "prune_requested"], stages.SEARCH_BUDGET.name)
    items = search_items(label_check_items)
    answers = answer_tokens(scores)
    prune = int(search_budget["prune_requested"].sum())
    search = int(search_budget["requested"].sum())
    oracle, single = oracle_rescoring(search_prune, items, draws)
    adaptive = adaptive_generations(adaptive_tuning, items, draws)
    check = label_check_generations(label_check_items, heldout_draws)
    rows = []

    def row(method: str, setup: int | None, seconds: float, passes: int, stage1: float, note: str) -> None:
        tokens = answers.get(method, float("nan"))
        rows.append({"method": method, "setup_generations": setup, "setup_train_seconds": seconds,
                     "per_query_passes": passes, "per_query_tokens": stage1 + tokens, "note": note})

    for m in (registry.DEFAULT, registry.GREEDY):
        row(m.name, 0, 0.0, 1, 0.0, "a fixed config: nothing to set up")
    rescored = "re-scoring not logged: counted as its top pruning configs x search items x draws"
    row(registry.TASK_ORACLE.name, prune + oracle, 0.0, 1, 0.0,
        f"pruning {prune} ({stages.SEARCH_BUDGET.name}) + re-scoring {oracle} ({rescored}, top {TASK_ORACLE_TOP} per task)")
    row(registry.BEST_SINGLE_CONFIG.name, prune + single, 0.0, 1, 0.0,
        f"pruning {prune} + re-scoring {single} ({rescored}, top {SINGLE_CONFIG_TOP} over tasks); shares cells "
        "with task_oracle (same draws: served from the cache)")
    for m in registry.ADAPTIVE:
        row(m.name, adaptive.get(m.name), 0.0, 1, 0.0,
            f"tuning not logged: counted as the settings in {stages.ADAPTIVE_TUNING.name} x search items x draws")
    zs = registry.ZERO_SHOT_JSON.name
    row(zs, 0, 0.0, 2, stage1_tokens(consistency, [zs]),
        "untuned model: stage 1 (tokens on the consistency items) then the answer")
    members = sorted(trained)
    seconds = [float(trained[m].wall_seconds) for m in members]
    steps = [int(trained[m].steps) for m in members]
    row(registry.HAG.name, search + check, float(np.mean(seconds)) if seconds else float("nan"), 2,
        stage1_tokens(consistency, members),
        f"search {search} ({stages.SEARCH_BUDGET.name}) + held-out check {check} ({stages.LABEL_CHECK_ITEMS.name} x heldout draws); "
        f"LoRA training: mean of {len(members)} adapter(s) ({', '.join(map(str, steps))} steps; "
        f"{sum(seconds):.0f} s in all); the gate's and learning curve's stage-1 generations are not counted; "
        "stage-1 tokens on the consistency items, answer tokens on all test items")
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.astype({"setup_generations": "Int64"})  # a count: an integer, or empty when unknown


def lines(table: pd.DataFrame) -> list[str]:
    """Two sentences from the table: what HAG costs to set up, and per query against the default."""
    stages.require_columns(table, COLUMNS, stages.OVERHEAD.name)
    by = table.set_index("method")
    out = []
    if registry.HAG.name in by.index:
        h = by.loc[registry.HAG.name]
        out.append(f"HAG's set-up asked for {h.setup_generations:,.0f} generations and "
                   f"{h.setup_train_seconds:.0f} s of LoRA training per adapter; the task oracle's, "
                   f"{by.loc[registry.TASK_ORACLE.name, 'setup_generations']:,.0f} generations and no training.")
        if registry.DEFAULT.name in by.index:
            d = by.loc[registry.DEFAULT.name]
            out.append(f"Per query HAG runs {h.per_query_passes:.0f} passes and generates {h.per_query_tokens:.1f} "
                       f"tokens on average, the default {d.per_query_passes:.0f} pass and {d.per_query_tokens:.1f}.")
    return out
