"""Statistics and tables for the study: bootstrap CIs, paired comparisons, relative improvements.

Every function takes the per-generation score table (one row per scored generation) with columns
``task, method, item_id, seed, score`` (extra columns such as ``config`` or ``parse_status`` are
ignored). All methods of a task must be scored on exactly the same ``(item_id, seed)`` pairs, so that
comparisons are paired and no method is favoured by an easier subset; :func:`validate_scores`
enforces that and everything else the statistics assume.

The unit of analysis is the *item*: a method's score on a task is the mean over items of the item's
mean over seeds. Items are the random sample we want to generalise over; seeds only measure decoding
noise inside an item. Hence the two-level bootstrap (:func:`bootstrap_ci`) and the item-paired
comparison (``contrasts.paired_contrast``: bootstrap CI, sign-flip permutation p over items). Everything
is seeded, and numbers do not depend on row order, so a rerun gives identical numbers and
byte-identical CSV files (``stages.write_table``).

Comparisons of one method against several baselines on several tasks are a family of tests:
:func:`relative_table` Holm-corrects their p-values (:func:`holm`) within its table, and calls two
methods tied only when an equivalence test (TOST) shows their difference lies within the task's
margin (``contrasts.task_margins``); otherwise a non-significant difference is reported as "not
significant". One family is declared before the run, the confirmatory one (:func:`confirmatory_table`,
with :func:`mde_table` saying what it could detect); every other table is exploratory. Methods with
identical scores on a task are compared once (``same_as``). Relative changes are shown only above a
floor on the baseline's mean (:data:`FLOOR`).

This module knows nothing upstream (no task registry): tasks appear in output tables in the order
they first appear in the score table (``task_order`` overrides it), which is the study's task order
because the notebooks build score tables task by task.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy import registry
from hagstudy.report.contrasts import check_resolution, margin_for, paired_contrast, same_scores, task_margins
from hagstudy.report.stats import (
    CI_BOOT,
    N_BOOT,
    bootstrap_ci,
    check_boot_args,
    holm,
    mde,
    paired_differences,
    pooled_ci,
    validate_scores,
)
from hagstudy.stages import require_columns, rounded

METHOD_ORDER: tuple[str, ...] = registry.ORDER  # the registry's ranked methods; the rest sort by name after them
MAIN_COLUMNS: tuple[str, ...] = ("task", "method", "mean", "ci_low", "ci_high", "n_items", "n_seeds")
VERDICTS: tuple[str, str, str, str] = ("better", "worse", "equivalent", "not significant")
EQUIVALENCE: tuple[str, str] = ("equivalent", "not shown")
RELATIVE_COLUMNS: tuple[str, ...] = (
    "task", "baseline", "same_as", "target_mean", "base_mean", "rel_improvement", "diff", "diff_ci_low",
    "diff_ci_high", "largest_gain", "p_value", "p_holm", "margin", "p_tost", "p_tost_holm", "equivalence", "verdict",
    "family", "note",
)  # fmt: skip
FAMILIES: tuple[str, str] = ("confirmatory", "exploratory")
# The confirmatory family, declared before the run: HAG against the task oracle and greedy (the best
# fixed configs a per-query choice must beat) on every task that is above chance. Every other table is
# exploratory: Holm-corrected within itself, read as a description.
CONFIRMATORY_BASELINES: tuple[str, ...] = registry.names((registry.TASK_ORACLE, registry.GREEDY))
MDE_COLUMNS: tuple[str, ...] = ("task", "baseline", "n_items", "sd_diff", "alpha", "power", "mde", "margin")
AT_CHANCE_COLUMNS: tuple[str, ...] = (
    "task", "chance_mean", "best_method", "best_mean", "best_ci_low", "best_above_chance", "n_above_chance",
    "at_chance",
)  # fmt: skip

# Below this baseline mean a relative change is not shown (NaN, with a note): under 0.05, i.e. fewer
# than 5 successes per 100 items, a single item moves the ratio by 20 % or more, so ratios such as
# "+590 %" measure the smallness of the base, not the size of the gain. The absolute diff is shown.
FLOOR = 0.05

# ----------------------------------------------------------------------------------------------
# Validation and ordering


def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    """Known names in canonical order, then unknown ones alphabetically (e.g. ablations)."""
    return (order.index(value), "") if value in order else (len(order), str(value))


def method_key(method: str) -> tuple[int, str]:
    return _rank(method, METHOD_ORDER)


def task_order_of(scores: pd.DataFrame, task_order: Sequence[str] | None = None) -> list[str]:
    """``task_order`` if given, else the tasks in the order they first appear in ``scores``.

    Tasks missing from ``task_order`` follow it, in order of first appearance.
    """
    seen = [str(t) for t in pd.unique(scores["task"])] if "task" in scores.columns else []
    given = [str(t) for t in (task_order or ())]
    return given + [t for t in seen if t not in given]


def sort_canonical(df: pd.DataFrame, task_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Sort rows by task order (``task_order_of``), then method (or baseline) order, keeping other order stable."""
    keys: list[list[tuple[int, str]]] = []
    if "task" in df.columns:
        order = task_order_of(df, task_order)
        keys.append([_rank(str(v), order) for v in df["task"]])
    for col in ("method", "baseline"):
        if col in df.columns:
            keys.append([method_key(v) for v in df[col]])
            break
    if not keys:
        return df.reset_index(drop=True)
    order = sorted(range(len(df)), key=lambda i: tuple(k[i] for k in keys))
    return df.iloc[order].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Tables


def main_table(
    scores: pd.DataFrame,
    n_boot: int = CI_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
    task_order: Sequence[str] | None = None,
    pooled: Mapping[str, Sequence[str]] | None = None,
    subset: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (task, method): mean with hierarchical-bootstrap CI, number of items and seeds.

    Every group uses the same ``rng_seed``, so a group's CI does not change when other methods or
    tasks are added to the table. Rows are in task order (``task_order_of``), then method order.
    ``pooled`` maps a method trained several times (e.g. "hag") to its member methods (one per
    adapter): its CI comes from :func:`stats.pooled_ci`, which resamples adapters, then items.
    ``subset`` holds methods scored on only some of the test items (the item oracle, on a prefix):
    they cannot enter ``scores``, whose methods must share every (item, seed) pair, so they are
    tabled on their own and their rows added; their ``n_items`` shows the smaller sample, and their
    mean is not comparable with the other rows' (it is over other items).
    """
    if subset is not None and len(subset):
        clash = sorted(set(map(str, subset["method"])) & set(map(str, scores["method"])))
        if clash:
            raise ValueError(f"main_table: method(s) {clash} are in both scores and subset; keep each in one")
        own = main_table(scores, n_boot, alpha, rng_seed, task_order, pooled)
        extra = main_table(subset, n_boot, alpha, rng_seed)
        order = task_order_of(scores, task_order)
        return sort_canonical(pd.concat([own, extra], ignore_index=True), task_order_of(extra, order))
    frame = validate_scores(scores)
    pooled = dict(pooled or {})
    rows = []
    for (task, method), group in frame.groupby(["task", "method"], sort=True):
        if method in pooled:
            ci = pooled_ci(frame.loc[frame["task"] == task], pooled[method], n_boot, alpha, rng_seed)
        else:
            ci = bootstrap_ci(group, n_boot=n_boot, alpha=alpha, rng_seed=rng_seed)
        rows.append(
            {
                "task": task,
                "method": method,
                "mean": ci.mean,
                "ci_low": ci.ci_low,
                "ci_high": ci.ci_high,
                "n_items": int(group["item_id"].nunique()),
                "n_seeds": int(group["seed"].nunique()),
            }
        )
    return sort_canonical(pd.DataFrame(rows, columns=list(MAIN_COLUMNS)), task_order_of(frame, task_order))


def verdict(diff: float, p_holm: float, p_tost_holm: float, alpha: float = 0.05) -> str:
    """Plain-language outcome of target minus baseline, from Holm-corrected p-values.

    "better"/"worse" when the difference test rejects; else "equivalent" when TOST shows the
    difference lies within the margin; else "not significant" (never "equal" or "tie").
    """
    if p_holm < alpha and diff > 0:
        return VERDICTS[0]
    if p_holm < alpha and diff < 0:
        return VERDICTS[1]
    if p_tost_holm < alpha:
        return VERDICTS[2]
    return VERDICTS[3]


def _relative(target_mean: float, base_mean: float, floor: float) -> tuple[float, str]:
    if base_mean == 0.0:
        return math.nan, "baseline mean is 0: relative improvement undefined; read diff"
    if base_mean < floor:
        return math.nan, f"baseline mean {base_mean:.4f} below floor {floor:g}: relative change not shown; read diff"
    return (target_mean - base_mean) / base_mean, ""


def relative_table(
    scores: pd.DataFrame,
    target: str = registry.HAG.name,
    baselines: Iterable[str] = registry.names(registry.WEAK),
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
    margin: float | Mapping[str, float] | None = None,
    floor: float = FLOOR,
    task_order: Sequence[str] | None = None,
    members: Sequence[str] | None = None,
    family: str = FAMILIES[1],
) -> pd.DataFrame:
    """Per task and baseline: the paper's relative improvement (target - base) / base and paired tests.

    Every row is one :func:`contrasts.paired_contrast` (the one code path of every paired comparison).
    With ``members`` (the per-adapter methods a pooled ``target`` averages), the CI, ``largest_gain`` and
    the TOST also resample adapters; the permutation p is conditional on the trained adapters.

    Columns (:data:`RELATIVE_COLUMNS`): task, baseline, same_as, target_mean, base_mean,
    rel_improvement, diff, diff_ci_low, diff_ci_high, largest_gain, p_value, p_holm, margin, p_tost,
    p_tost_holm, equivalence, verdict, family, note.

    - ``same_as``: baselines with scores identical to this row's on every (item, seed) of the task (the
      same config): one comparison, tested once under the first name in registry order.
    - ``largest_gain``: the one-sided (1 - alpha) upper confidence bound of target - baseline.
    - ``p_value``: the sign-flip permutation test over items of "no difference", raw; ``p_holm``: Holm
      across every row of this table (one family, named in ``family``: "exploratory" unless the caller
      declared it, as :func:`confirmatory_table` does).
    - ``p_tost`` / ``p_tost_holm``: TOST for |diff| < ``margin``, raw and Holm-corrected in the same
      family; ``equivalence`` is "equivalent" when ``p_tost_holm`` < ``alpha``. ``margin`` defaults to
      the per-task margin :func:`contrasts.task_margins` (10 % of the best fixed config's mean, at least
      0.01); a number or a per-task mapping overrides it.
    - ``verdict`` (:func:`verdict`): "better"/"worse" when ``p_holm`` < ``alpha``, else "equivalent"
      when shown, else "not significant".
    - ``rel_improvement`` is NaN, and ``note`` says why, when the baseline's mean is below ``floor``.

    Tasks lacking the target or a baseline are skipped. Raises ValueError when ``n_boot`` is too small
    for the family (:func:`contrasts.check_resolution`).
    """
    check_boot_args(n_boot, alpha)
    if not (isinstance(floor, (int, float)) and floor >= 0):
        raise ValueError(f"floor must be a number >= 0, got {floor!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    frame = validate_scores(scores)
    baselines = tuple(b for b in baselines if b != target)
    rows = []
    for task, sub in frame.groupby("task", sort=True):
        if target not in set(sub["method"]):
            continue
        m = margin_for(task_margins(sub) if margin is None else margin, str(task))
        for base, dups in same_scores(sub, baselines).items():
            c = paired_contrast(sub, target, base, str(task), members, m, n_boot, alpha, rng_seed)
            rel, note = _relative(c["target_mean"], c["base_mean"], floor)
            keep = {k: v for k, v in c.items() if k in RELATIVE_COLUMNS}
            rows.append({"task": task, "baseline": base, "same_as": "; ".join(dups), **keep,
                         "rel_improvement": rel, "family": family, "note": note})
    check_resolution(len(rows), n_boot, alpha)
    derived = ("p_holm", "p_tost_holm", "equivalence", "verdict")
    out = pd.DataFrame(rows, columns=[c for c in RELATIVE_COLUMNS if c not in derived])
    out["p_holm"] = holm(out["p_value"].to_numpy(dtype=float))
    out["p_tost_holm"] = holm(out["p_tost"].to_numpy(dtype=float))
    out["equivalence"] = [EQUIVALENCE[0] if p < alpha else EQUIVALENCE[1] for p in out["p_tost_holm"]]
    out["verdict"] = [verdict(d, p, q, alpha) for d, p, q in zip(out["diff"], out["p_holm"], out["p_tost_holm"])]
    return sort_canonical(out[list(RELATIVE_COLUMNS)], task_order_of(frame, task_order))


def confirmatory_table(
    scores: pd.DataFrame,
    at_chance: pd.DataFrame,
    members: Sequence[str] | None = None,
    target: str = registry.HAG.name,
    baselines: Sequence[str] = CONFIRMATORY_BASELINES,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
    task_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The confirmatory family, declared before the run: ``target`` against :data:`CONFIRMATORY_BASELINES`
    (task oracle and greedy) on every task above chance (``at_chance``'s at_chance is False).

    The same columns as :func:`relative_table` with ``family`` = "confirmatory", Holm within this
    family only; baselines identical to each other on a task (``same_as``) count as one test, so the
    family size is the number of rows. Margins are the per-task ones (:func:`contrasts.task_margins`).
    """
    require_columns(at_chance, ("task", "at_chance"), "confirmatory_table: the at_chance table")
    informative = set(at_chance.loc[~flags(at_chance["at_chance"]), "task"].astype(str))
    chosen = scores.loc[scores["task"].astype(str).isin(informative)]
    if chosen.empty:
        return pd.DataFrame(columns=list(RELATIVE_COLUMNS))
    return relative_table(chosen, target, baselines, n_boot, alpha, rng_seed, task_order=task_order or task_order_of(scores),
                          members=members, family=FAMILIES[0])


def mde_table(
    scores: pd.DataFrame,
    family_rows: pd.DataFrame,
    members: Sequence[str] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    target: str = registry.HAG.name,
) -> pd.DataFrame:
    """Per test of a family (``family_rows``: e.g. :func:`confirmatory_table`), the minimum detectable effect.

    Columns (:data:`MDE_COLUMNS`): task, baseline, n_items, sd_diff (the SD of the per-item differences
    target - baseline, pooled over ``members``), alpha (the per-test level alpha / m, Bonferroni over the
    family's m tests: conservative for Holm), power, mde = (z_{1 - alpha/2} + z_power) * sd_diff /
    sqrt(n_items) (``stats.mde``) and margin (the row's equivalence margin). A true difference below the
    mde would usually go undetected: a "not significant" there is a test that could not tell.
    """
    require_columns(family_rows, ("task", "baseline", "margin"), "mde_table: the family table")
    frame = validate_scores(scores)
    per_test = alpha / max(1, len(family_rows))
    rows = []
    for r in family_rows.itertuples(index=False):
        d = paired_differences(frame, target, str(r.baseline), str(r.task), members)
        sd = float(d.std(ddof=1))
        rows.append({"task": r.task, "baseline": r.baseline, "n_items": len(d), "sd_diff": sd, "alpha": per_test,
                     "power": power, "mde": mde(sd, len(d), per_test, power), "margin": float(r.margin)})
    return pd.DataFrame(rows, columns=list(MDE_COLUMNS))


def difficulty_vs_improvement(
    scores: pd.DataFrame,
    target: str = registry.HAG.name,
    base: str = registry.DEFAULT.name,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
    floor: float = FLOOR,
    members: Sequence[str] | None = None,
    relative: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """RQ4: per task, how hard it is for the baseline and how much the target improves on it.

    Columns: task, base_mean, difficulty (= 1 - base_mean), target_mean, improvement (target - base),
    improvement_ci_low, improvement_ci_high, rel_improvement (NaN below ``floor``), p_value (raw),
    p_holm, n_items. The numbers are :func:`relative_table`'s for the same contrast: pass the
    ``relative`` table that holds target vs ``base`` and its rows are copied (same p, same Holm p, in
    that table's family); without it the contrasts are computed by the same path (same ``members``)
    with Holm across the tasks. Use :func:`difficulty_correlation` for a rank correlation across tasks
    (with few tasks, read it as descriptive).
    """
    if relative is None:
        rel = relative_table(scores, target, (base,), n_boot, alpha, rng_seed, floor=floor, members=members)
    else:
        named = relative["baseline"].astype(str) == base
        merged = relative["same_as"].fillna("").astype(str).str.split("; ").map(lambda names: base in names)
        rel = relative.loc[named | merged].reset_index(drop=True)
    frame = validate_scores(scores)
    n_items = frame.loc[frame["method"] == base].groupby("task")["item_id"].nunique()
    out = pd.DataFrame(
        {
            "task": rel["task"],
            "base_mean": rel["base_mean"],
            "difficulty": 1.0 - rel["base_mean"],
            "target_mean": rel["target_mean"],
            "improvement": rel["diff"],
            "improvement_ci_low": rel["diff_ci_low"],
            "improvement_ci_high": rel["diff_ci_high"],
            "rel_improvement": rel["rel_improvement"],
            "p_value": rel["p_value"],
            "p_holm": rel["p_holm"],
            "n_items": rel["task"].map(n_items).astype("int64"),
        }
    )
    return out


def at_chance(main: pd.DataFrame, chance: str = registry.CHANCE.name) -> pd.DataFrame:
    """Per task with a ``chance`` row in a main table: is any method above the best constant answer?

    Columns (:data:`AT_CHANCE_COLUMNS`): task, chance_mean, best_method and best_mean (the highest
    mean among the other methods), best_ci_low, best_above_chance (its CI lower bound exceeds
    chance_mean), n_above_chance (methods whose CI lower bound exceeds chance_mean) and at_chance
    (no method does: on this task, for this model, no method is shown to beat a constant answer,
    so a "win" there may only have found a constant answer). Only methods scored on as many items as
    chance are compared (with an ``n_items`` column): a subset's row, such as the item oracle's, is
    over other items than chance's and is left out.
    """
    require_columns(main, ("task", "method", "mean", "ci_low"), "at_chance: main table")
    rows = []
    for task in task_order_of(main):
        sub = main.loc[main["task"] == task]
        ref = sub.loc[sub["method"] == chance]
        others = sub.loc[sub["method"] != chance]
        if "n_items" in sub.columns and not ref.empty:
            others = others.loc[others["n_items"] == ref["n_items"].iloc[0]]
        if ref.empty or others.empty:
            continue
        level = float(ref["mean"].iloc[0])
        best = others.iloc[int(np.argmax(others["mean"].to_numpy(dtype=float)))]
        above = int((others["ci_low"].to_numpy(dtype=float) > level).sum())
        rows.append(
            {
                "task": task,
                "chance_mean": level,
                "best_method": best["method"],
                "best_mean": float(best["mean"]),
                "best_ci_low": float(best["ci_low"]),
                "best_above_chance": bool(best["ci_low"] > level),
                "n_above_chance": above,
                "at_chance": above == 0,
            }
        )
    return pd.DataFrame(rows, columns=list(AT_CHANCE_COLUMNS))


def difficulty_correlation(frame: pd.DataFrame) -> tuple[float, float]:
    """Spearman rank correlation (rho, p) between difficulty and improvement across tasks.

    Returns (nan, nan) with fewer than three tasks, where a rank correlation is meaningless.
    """
    from scipy.stats import spearmanr

    if len(frame) < 3:
        return math.nan, math.nan
    res = spearmanr(frame["difficulty"], frame["improvement"])
    return float(res.statistic), float(res.pvalue)


# ----------------------------------------------------------------------------------------------
# Output


def flags(values: pd.Series) -> pd.Series:
    """A boolean column as written by ``stages.write_table`` and read back: bools, or "True"/"False" strings where a
    column mixed in other values (pandas then keeps it as text)."""
    return values.astype(str).str.lower() == "true"


def _cell(value: object, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value) + 0.0:.{decimals}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, decimals: int = 4) -> str:
    """A GitHub-flavoured Markdown table (no dependency on ``tabulate``); numbers right-aligned."""
    df = rounded(df, decimals)
    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell(v, decimals) for v in row) + " |")
    return "\n".join(lines) + "\n"
