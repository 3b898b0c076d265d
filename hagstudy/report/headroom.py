"""Headroom: how much *any* per-query choice of config could gain over the best per-task config.

The item oracle (``oracles.item_oracle``) picks, per test item, the best of a fixed candidate set on
selection draws and is scored on the evaluation seeds. Three numbers bracket what per-query choice can win:

* ``headroom`` = item oracle - task oracle (the per-task config chosen on the search split), paired per
  item and seed: the estimate the study's question rests on, with a CI, a test of "no headroom" and a
  TOST of "headroom within the task's margin" (so "no headroom" can be *shown*, not just not found);
* ``per_query_gain`` = item oracle - the best fixed candidate chosen on the same test-item draws
  (``static_hindsight``): what choosing per query adds once the per-task config is tuned in hindsight;
* ``in_sample_bracket`` = the best candidate per item minus the task oracle, both on the *selection*
  draws (chosen and scored on the same texts): biased upward, an upper bracket on the headroom.

Both tests are Holm-corrected across the table's tasks (one family); every contrast goes through
``contrasts.paired_contrast``, the study's one paired path (sign-flip permutation p, bootstrap CI and TOST).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy import registry
from hagstudy.report.contrasts import margin_for, paired_contrast
from hagstudy.report.evaluation import sort_canonical, task_order_of
from hagstudy.report.stats import (
    N_BOOT,
    check_boot_args,
    holm,
    paired_bootstrap_replicates,
    upper_bound,
    validate_scores,
)

COLUMNS: tuple[str, ...] = (
    "task", "n_items", "n_seeds", "item_oracle_mean", "task_oracle_mean", "static_hindsight_mean",
    "headroom", "headroom_ci_low", "headroom_ci_high", "margin", "p_value", "p_holm", "p_tost", "p_tost_holm",
    "verdict", "per_query_gain", "per_query_gain_ci_low", "per_query_gain_ci_high", "in_sample_bracket",
    "in_sample_bracket_ci_high", "mean_tied",
)  # fmt: skip
VERDICTS: tuple[str, ...] = ("headroom shown", "item oracle below", "below margin", "cannot tell")


def verdict(diff: float, p_holm: float, p_tost_holm: float, alpha: float) -> str:
    """Shown above zero / shown below zero / shown within the margin (TOST) / the data cannot tell."""
    if p_holm < alpha:
        return VERDICTS[0] if diff > 0 else VERDICTS[1]
    return VERDICTS[2] if p_tost_holm < alpha else VERDICTS[3]


def _paired(frame: pd.DataFrame, ref: pd.DataFrame, what: str, task: str) -> pd.DataFrame:
    """``frame`` plus ``ref``'s rows on the same (item_id, seed) pairs; every pair must be in ``ref``."""
    keys = pd.MultiIndex.from_frame(frame[["item_id", "seed"]])
    have = pd.MultiIndex.from_frame(ref[["item_id", "seed"]])
    lacking = keys.difference(have)
    if len(lacking):
        raise ValueError(f"headroom_table: task {task!r}: {what} lacks {len(lacking)} of the item oracle's "
                         f"(item_id, seed) pairs, e.g. {list(lacking[:3])}; score both on the same items and seeds")
    return pd.concat([frame, ref.loc[have.isin(keys)]], ignore_index=True)


def _bracket(choices: pd.DataFrame, n_boot: int, alpha: float, rng_seed: int) -> tuple[float, float, float]:
    """(mean in-sample bracket, its one-sided (1 - alpha) upper bound over items, mean ties per item)."""
    d = (choices["in_sample_max"] - choices["reference_selection_mean"]).to_numpy(dtype=float)
    reps = paired_bootstrap_replicates(d, n_boot, rng_seed)
    return float(d.mean()), upper_bound(reps, alpha), float(choices["n_tied"].mean())


def headroom_table(
    scores: pd.DataFrame,
    oracle_scores: pd.DataFrame,
    choices: pd.DataFrame,
    margin: float | Mapping[str, float],
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
    task_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per task the item oracle ran on: headroom over the task oracle, with CI, tests and its two brackets.

    ``scores``: the main score table (its ``task_oracle`` rows are cut to the item oracle's items and
    seeds). ``oracle_scores``: the ``item_oracle`` and ``static_hindsight`` rows. ``choices``: the item
    oracle's per-item rows (``oracles.ItemOracleRun.choices``). ``margin``: the TOST margin, one number or
    one per task. Columns: :data:`COLUMNS`; ``verdict`` one of :data:`VERDICTS`.
    """
    check_boot_args(n_boot, alpha)
    target, base, static = registry.ITEM_ORACLE.name, registry.TASK_ORACLE.name, registry.STATIC_HINDSIGHT.name
    oracle = validate_scores(oracle_scores)
    unknown = sorted(set(map(str, oracle["method"])) - {target, static})
    if unknown:
        raise ValueError(f"headroom_table: oracle_scores must hold only {target!r} and {static!r} rows, got also {unknown}")
    frame = validate_scores(scores)
    rows = []
    for task, mine in oracle.groupby("task", sort=True):
        task = str(task)
        io = mine.loc[mine["method"] == target]
        ref = frame.loc[(frame["task"] == task) & (frame["method"] == base)]
        if io.empty or ref.empty:
            raise ValueError(f"headroom_table: task {task!r} needs {target!r} rows and {base!r} scores")
        m = margin_for(margin, task)
        paired = _paired(io, ref, base, task)
        res = paired_contrast(paired, target, base, task, margin=m, n_boot=n_boot, alpha=alpha, rng_seed=rng_seed)
        st = mine.loc[mine["method"] == static]
        gain = (paired_contrast(pd.concat([io, st], ignore_index=True), target, static, task, margin=m, n_boot=n_boot,
                                alpha=alpha, rng_seed=rng_seed) if not st.empty else None)
        mine_choices = choices.loc[choices["task"] == task]
        bracket, bracket_hi, tied = _bracket(mine_choices, n_boot, alpha, rng_seed) if len(mine_choices) else (np.nan,) * 3
        rows.append({
            "task": task, "n_items": int(io["item_id"].nunique()), "n_seeds": int(io["seed"].nunique()),
            "item_oracle_mean": res["target_mean"], "task_oracle_mean": res["base_mean"],
            "static_hindsight_mean": gain["base_mean"] if gain else np.nan,
            "headroom": res["diff"], "headroom_ci_low": res["diff_ci_low"], "headroom_ci_high": res["diff_ci_high"],
            "margin": m, "p_value": res["p_value"], "p_tost": res["p_tost"],
            "per_query_gain": gain["diff"] if gain else np.nan,
            "per_query_gain_ci_low": gain["diff_ci_low"] if gain else np.nan,
            "per_query_gain_ci_high": gain["diff_ci_high"] if gain else np.nan,
            "in_sample_bracket": bracket, "in_sample_bracket_ci_high": bracket_hi, "mean_tied": tied,
        })  # fmt: skip
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_holm", "p_tost_holm", "verdict")])
    out["p_holm"] = holm(out["p_value"].to_numpy(dtype=float))
    out["p_tost_holm"] = holm(out["p_tost"].to_numpy(dtype=float))
    out["verdict"] = [verdict(d, p, q, alpha) for d, p, q in zip(out["headroom"], out["p_holm"], out["p_tost_holm"])]
    return sort_canonical(out[list(COLUMNS)], task_order_of(frame, task_order))
