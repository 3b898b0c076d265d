"""One paired contrast, computed one way: every table that compares two methods on a task calls this.

:func:`paired_contrast` gives target - baseline on one task: the item-paired difference, its bootstrap
CI and one-sided upper bound (adapters resampled too for a pooled target), the sign-flip permutation
p over items and the TOST p against the task's margin. ``evaluation.relative_table`` (and through it
the confirmatory, difficulty and ablation tables) only arranges these numbers, so the same contrast
always has the same numbers, whatever table it appears in.

Also here, the rules a contrast is read under, each declared before any score is seen: the per-task
equivalence margin (:func:`task_margins`), methods that are one method on a task (:func:`same_scores`:
the same config gives the same texts, so testing both would count one comparison twice), and the
refusal of a family too large for its number of replicates (:func:`check_resolution`).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy import registry
from hagstudy.report.stats import (
    MIN_MARGIN,
    N_BOOT,
    REL_MARGIN,
    check_boot_args,
    item_means,
    paired_bootstrap_replicates,
    paired_differences,
    pooled_paired_replicates,
    sign_flip_p,
    tost_p,
    upper_bound,
)

# The fixed configs whose best mean on a task sets its equivalence margin (:func:`task_margins`).
FIXED_FOR_MARGIN: tuple[str, ...] = registry.names(
    (registry.GREEDY, registry.DEFAULT, registry.TASK_ORACLE, registry.BEST_SINGLE_CONFIG)
)


def task_margins(
    scores: pd.DataFrame, fixed: Sequence[str] = FIXED_FOR_MARGIN, rel: float = REL_MARGIN, floor: float = MIN_MARGIN
) -> dict[str, float]:
    """Per task, the equivalence margin max(``floor``, ``rel`` * the best mean among the ``fixed`` configs).

    The margin scales with what the task's best fixed config reaches (see ``stats.REL_MARGIN``), and is
    computed from the fixed configs only, never from the method under test. Raises ValueError naming a
    task on which none of ``fixed`` was scored.
    """
    out = {}
    for task in pd.unique(scores["task"]):
        sub = scores.loc[(scores["task"] == task) & scores["method"].isin(fixed)]
        if sub.empty:
            raise ValueError(
                f"task_margins: task {task!r} has none of the fixed configs {list(fixed)}; pass margin= explicitly"
            )
        best = max(float(item_means(g).mean()) for _, g in sub.groupby("method"))
        out[str(task)] = max(floor, rel * best)
    return out


def margin_for(margin: float | Mapping[str, float], task: str) -> float:
    """One task's margin from a number (every task) or a mapping (per task); a missing task is an error."""
    if isinstance(margin, Mapping):
        if task not in margin:
            raise ValueError(f"equivalence margin: no entry for task {task!r}; given for {sorted(margin)}")
        return float(margin[task])
    return float(margin)


def same_scores(task_frame: pd.DataFrame, methods: Sequence[str]) -> dict[str, list[str]]:
    """Group methods whose scores are identical on every (item_id, seed) of one task.

    Returns {kept: [its duplicates]} for every method of ``methods`` present, the kept one first in
    registry order (``registry.ORDER``, then by name). Identical scores mean one config and one set of
    texts (e.g. the task oracle chose greedy), so the duplicates are not tested again.
    """
    have = set(task_frame["method"].unique())
    present = [m for m in methods if m in have]
    ranked = sorted(present, key=lambda m: (registry.ORDER.index(m), "") if m in registry.ORDER else (len(registry.ORDER), m))
    keyed: dict[bytes, str] = {}
    out: dict[str, list[str]] = {}
    for m in ranked:  # a validated table scores every method of a task on the same (item_id, seed) pairs
        rows = task_frame.loc[task_frame["method"] == m].sort_values(["item_id", "seed"], kind="mergesort")
        key = rows["score"].to_numpy(dtype=float).tobytes()
        if key in keyed:
            out[keyed[key]].append(m)
        else:
            keyed[key] = m
            out[m] = []
    return out


def check_resolution(m: int, n_boot: int, alpha: float) -> None:
    """Refuse a family that no resampling p could survive: the smallest permutation or TOST p is
    1 / (n_boot + 1), and Holm multiplies it by the family size m, so with m / (n_boot + 1) >= alpha
    every verdict would be "not significant" because of too few replicates, not because of the data."""
    if m and m / (n_boot + 1) >= alpha:
        need = math.ceil(m / alpha)
        raise ValueError(
            f"n_boot={n_boot} is too small for {m} Holm-corrected comparisons at alpha={alpha}: the smallest "
            f"corrected p would be {m / (n_boot + 1):.3f}; use n_boot >= {need} (e.g. {max(need, N_BOOT)})"
        )


def paired_contrast(
    frame: pd.DataFrame,
    target: str,
    base: str,
    task: str,
    members: Sequence[str] | None = None,
    margin: float = MIN_MARGIN,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
) -> dict[str, float]:
    """target - base on one task of a validated score table: every number a comparison table shows.

    Keys: target_mean, base_mean, diff, diff_ci_low, diff_ci_high (the (1 - alpha) percentile CI of
    the item-paired bootstrap), largest_gain (the one-sided 1 - alpha upper bound: no larger gain is
    compatible with the data), p_value (sign-flip permutation test over items, ``n_boot`` sign
    vectors), margin, p_tost (TOST against ``margin`` on the same bootstrap replicates), n_items and
    sd_diff (the SD of the per-item differences, for the MDE).

    With ``members`` (the per-adapter methods a pooled ``target`` averages) the CI, largest_gain and
    p_tost resample adapters, then items (``stats.pooled_paired_replicates``), so they include the
    spread across training seeds; the permutation p is computed on the pooled per-item differences and
    is therefore conditional on the trained adapters ("would these adapters beat the baseline on new
    items?"), not on retraining. Raw p-values: the caller corrects them within its family (Holm).
    """
    check_boot_args(n_boot, alpha)
    sub = frame.loc[frame["task"] == task]
    have = set(sub["method"].unique())
    for m in (target, base):
        if m not in have:
            raise ValueError(f"paired_contrast: method {m!r} has no scores on task {task!r}")
    if members:
        d, reps = pooled_paired_replicates(sub, members, base, task, n_boot, rng_seed)
    else:
        d = paired_differences(sub, target, base, task)
        reps = paired_bootstrap_replicates(d, n_boot, rng_seed)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return {
        "target_mean": float(item_means(sub.loc[sub["method"] == target]).mean()),
        "base_mean": float(item_means(sub.loc[sub["method"] == base]).mean()),
        "diff": float(d.mean()),
        "diff_ci_low": float(lo),
        "diff_ci_high": float(hi),
        "largest_gain": upper_bound(reps, alpha),
        "p_value": sign_flip_p(d, n_boot, rng_seed),
        "margin": float(margin),
        "p_tost": tost_p(reps, margin),
        "n_items": len(d),
        "sd_diff": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
    }
