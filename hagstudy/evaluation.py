"""Statistics and tables for the study: bootstrap CIs, paired comparisons, relative improvements.

Every function takes the per-generation score table (one row per scored generation) with columns
``task, method, item_id, seed, score`` (extra columns such as ``config`` or ``parse_status`` are
ignored). All methods of a task must be scored on exactly the same ``(item_id, seed)`` pairs, so that
comparisons are paired and no method is favoured by an easier subset; :func:`validate_scores`
enforces that and everything else the statistics assume.

The unit of analysis is the *item*: a method's score on a task is the mean over items of the item's
mean over seeds. Items are the random sample we want to generalise over; seeds only measure decoding
noise inside an item. Hence the two-level bootstrap (:func:`bootstrap_ci`) and the item-paired
comparison (:func:`paired_bootstrap`). Everything is seeded, and numbers do not depend on row order,
so a rerun gives identical numbers and byte-identical CSV files (:func:`write_table`).

Comparisons of one method against several baselines on several tasks are a family of tests:
:func:`relative_table` Holm-corrects their p-values (:func:`holm`), and calls two methods tied only
when an equivalence test (TOST, :func:`equivalence_p`) shows their difference lies within a stated
margin; otherwise a non-significant difference is reported as "not significant". Relative changes
are shown only above a floor on the baseline's mean (:data:`FLOOR`).

This module knows nothing upstream (no task registry): tasks appear in output tables in the order
they first appear in the score table (``task_order`` overrides it), which is the study's task order
because the notebooks build score tables task by task.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from hagstudy.files import atomic_write

REQUIRED_COLUMNS: tuple[str, ...] = ("task", "method", "item_id", "seed", "score")
METHOD_ORDER: tuple[str, ...] = (
    "chance", "default", "greedy", "random", "best_single_config", "task_oracle", "item_oracle",
    "zero_shot", "zero_shot_json", "hag",
)
MAIN_COLUMNS: tuple[str, ...] = ("task", "method", "mean", "ci_low", "ci_high", "n_items", "n_seeds")
VERDICTS: tuple[str, str, str, str] = ("better", "worse", "equivalent", "not significant")
EQUIVALENCE: tuple[str, str] = ("equivalent", "not shown")
RELATIVE_COLUMNS: tuple[str, ...] = (
    "task", "baseline", "target_mean", "base_mean", "rel_improvement", "diff", "diff_ci_low", "diff_ci_high",
    "p_value", "p_holm", "margin", "p_tost", "p_tost_holm", "equivalence", "verdict", "note",
)  # fmt: skip
AT_CHANCE_COLUMNS: tuple[str, ...] = (
    "task", "chance_mean", "best_method", "best_mean", "best_ci_low", "best_above_chance", "n_above_chance",
    "at_chance",
)  # fmt: skip

# Equivalence margin, absolute on the [0, 1] score scale every task uses. Two points of accuracy is
# smaller than every gain the study counts as a win (the smallest is +0.021, pig_latin vs default)
# and than the gains the paper reports, so a difference inside +-0.02 is one nobody would act on;
# and it is strict: with ~100 test items a tie can only be shown when the paired differences are
# small and consistent, never because the test had too little data. Pass a per-task mapping where a
# task's scale calls for another margin (e.g. scores that all sit near 0).
MARGIN = 0.02
# Below this baseline mean a relative change is not shown (NaN, with a note): under 0.05, i.e. fewer
# than 5 successes per 100 items, a single item moves the ratio by 20 % or more, so ratios such as
# "+590 %" measure the smallness of the base, not the size of the gain. The absolute diff is shown.
FLOOR = 0.05

# Upper bound on the number of array cells one bootstrap chunk materialises (~8 bytes each), so that
# memory stays small for any table while the work is still done in a few large numpy operations.
_CHUNK_CELLS = 2_000_000


class CI(NamedTuple):
    mean: float
    ci_low: float
    ci_high: float


class PairedResult(NamedTuple):
    diff_mean: float
    ci_low: float
    ci_high: float
    p_value: float


# ----------------------------------------------------------------------------------------------
# Validation and ordering


def validate_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Check a score table and return a copy with a float ``score`` column.

    Raises ValueError naming the problem: missing columns, an empty table, missing values, scores
    that are not numbers in [0, 1], duplicated (task, method, item_id, seed) rows, or methods of one
    task that were not scored on the same (item_id, seed) pairs (an unpaired comparison would be
    silently biased, so it is refused rather than patched).
    """
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            f"score table is missing column(s) {missing}; required: {list(REQUIRED_COLUMNS)}, "
            f"got: {list(scores.columns)}"
        )
    if len(scores) == 0:
        raise ValueError("score table is empty")
    frame = scores.copy()
    for col in ("task", "method", "item_id", "seed"):
        n_null = int(frame[col].isna().sum())
        if n_null:
            raise ValueError(f"column {col!r} has {n_null} missing value(s)")
    try:
        frame["score"] = pd.to_numeric(frame["score"], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column 'score' must be numeric: {exc}") from None
    nan = frame["score"].isna()
    if nan.any():
        where = _examples(frame.loc[nan])
        raise ValueError(f"{int(nan.sum())} NaN score(s), e.g. {where}; score every generation (a failure is 0)")
    bad = (frame["score"] < 0.0) | (frame["score"] > 1.0)
    if bad.any():
        where = _examples(frame.loc[bad], with_score=True)
        raise ValueError(f"{int(bad.sum())} score(s) outside [0, 1], e.g. {where}")
    dup = frame.duplicated(list(REQUIRED_COLUMNS[:4]), keep=False)
    if dup.any():
        where = _examples(frame.loc[dup])
        raise ValueError(
            f"{int(dup.sum())} rows share a (task, method, item_id, seed) key, e.g. {where}; "
            "each generation must appear once (encode variants in the method name)"
        )
    for task, group in frame.groupby("task", sort=True):
        pairs = {
            method: set(zip(g["item_id"], g["seed"])) for method, g in group.groupby("method", sort=True)
        }
        union = set().union(*pairs.values())
        problems = []
        for method, have in pairs.items():
            lacking = union - have
            if lacking:
                example = sorted(lacking, key=repr)[:3]
                problems.append(f"{method!r} lacks {len(lacking)} pair(s), e.g. {example}")
        if problems:
            raise ValueError(
                f"task {task!r}: methods are not scored on the same (item_id, seed) pairs: "
                + "; ".join(problems)
                + f" (the task has {len(union)} pairs over methods {sorted(pairs)})"
            )
    return frame


def _examples(rows: pd.DataFrame, with_score: bool = False, k: int = 3) -> list[tuple]:
    cols = list(REQUIRED_COLUMNS[:4]) + (["score"] if with_score else [])
    return [tuple(r) for r in rows[cols].head(k).itertuples(index=False, name=None)]


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
# Bootstrap primitives


def _item_matrix(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Scores as an (items x max_seeds) matrix padded with NaN, plus each item's seed count.

    Rows are sorted by item_id and columns by seed first, so the result (and every bootstrap drawn
    from it) does not depend on the row order of the input table.
    """
    ordered = frame.sort_values(["item_id", "seed"], kind="mergesort")
    codes, _ = pd.factorize(ordered["item_id"], sort=False)
    pos = ordered.groupby(codes, sort=False).cumcount().to_numpy()
    n_items = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_items)
    mat = np.full((n_items, int(counts.max())), np.nan)
    mat[codes, pos] = ordered["score"].to_numpy(dtype=float)
    return mat, counts


def _item_means(frame: pd.DataFrame) -> pd.Series:
    """Mean over seeds per item, indexed by item_id (sorted)."""
    return frame.groupby("item_id", sort=True)["score"].mean()


def _hierarchical_replicates(
    mat: np.ndarray, counts: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of the mean of item means, resampling items and then seeds per item."""
    n_items, width = mat.shape
    filled = np.where(np.isnan(mat), 0.0, mat)
    chunk = max(1, _CHUNK_CELLS // max(1, n_items * width))
    out = np.empty(n_boot)
    cols = np.arange(width)
    balanced = bool((counts == width).all())
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        items = rng.integers(0, n_items, size=(b, n_items))  # level 1: items with replacement
        if balanced:  # level 2, fast path: every item has `width` seeds
            seeds = rng.integers(0, width, size=(b, n_items, width))
            item_means = mat[items[..., None], seeds].mean(axis=-1)
        else:  # level 2: for each drawn item, draw as many seeds as it has, with replacement
            n_sel = counts[items]
            seeds = (rng.random((b, n_items, width)) * n_sel[..., None]).astype(np.intp)
            valid = cols < n_sel[..., None]
            drawn = filled[items[..., None], np.where(valid, seeds, 0)]
            item_means = np.where(valid, drawn, 0.0).sum(axis=-1) / n_sel
        out[start : start + b] = item_means.mean(axis=-1)
    return out


def _item_replicates(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean of a 1-D array (resampling its entries)."""
    n = len(values)
    chunk = max(1, _CHUNK_CELLS // max(1, n))
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        out[start : start + b] = values[rng.integers(0, n, size=(b, n))].mean(axis=-1)
    return out


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def bootstrap_ci(
    scores_frame: pd.DataFrame, n_boot: int = 2000, alpha: float = 0.05, rng_seed: int = 0
) -> CI:
    """Mean score and its (1 - alpha) percentile CI by a two-level (hierarchical) bootstrap.

    ``scores_frame`` holds one method on one task: columns ``item_id, seed, score`` (``task`` and
    ``method`` may be present but must then be single-valued). The estimate is the mean over items
    of each item's mean over its seeds. Each bootstrap replicate (1) draws ``n_items`` items with
    replacement, then (2) within every drawn item draws as many seeds as the item has, with
    replacement, from that item's seeds, and recomputes the mean of item means. Resampling both
    levels propagates item-to-item variation (the generalisation we care about) and decoding noise
    across seeds; resampling only generations would treat correlated seeds of one item as
    independent and give CIs that are too narrow. Fully vectorised (chunks of replicates, no Python
    loop per replicate), seeded with ``rng_seed``, and independent of row order.
    """
    _check_boot_args(n_boot, alpha)
    for col in ("task", "method"):
        if col in scores_frame.columns and scores_frame[col].nunique(dropna=False) > 1:
            raise ValueError(
                f"bootstrap_ci expects one task and one method; column {col!r} has values "
                f"{sorted(map(str, scores_frame[col].unique()))}"
            )
    missing = [c for c in ("item_id", "seed", "score") if c not in scores_frame.columns]
    if missing:
        raise ValueError(f"bootstrap_ci: missing column(s) {missing}")
    if len(scores_frame) == 0:
        raise ValueError("bootstrap_ci: no rows")
    frame = scores_frame.assign(score=pd.to_numeric(scores_frame["score"]).astype(float))
    if frame["score"].isna().any():
        raise ValueError("bootstrap_ci: NaN score(s)")
    mat, counts = _item_matrix(frame)
    estimate = float(np.nanmean(mat, axis=1).mean())
    reps = _hierarchical_replicates(mat, counts, n_boot, np.random.default_rng(rng_seed))
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return CI(estimate, float(lo), float(hi))


def _paired_diffs(frame: pd.DataFrame, method_a: str, method_b: str, task: str) -> np.ndarray:
    """Per-item differences (A's mean over seeds) - (B's mean over seeds) on one task, by sorted item_id."""
    sub = frame.loc[frame["task"] == task]
    if sub.empty:
        raise ValueError(f"task {task!r} not in scores; tasks: {sorted(map(str, frame['task'].unique()))}")
    have = sorted(map(str, sub["method"].unique()))
    for m in (method_a, method_b):
        if m not in set(sub["method"]):
            raise ValueError(f"method {m!r} has no scores on task {task!r}; methods there: {have}")
    a = _item_means(sub.loc[sub["method"] == method_a])
    b = _item_means(sub.loc[sub["method"] == method_b])
    return (a - b.reindex(a.index)).to_numpy(dtype=float)


def _difference_p(reps: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'mean difference = 0' (see :func:`paired_bootstrap`)."""
    below = int((reps <= 0.0).sum()) + 1
    above = int((reps >= 0.0).sum()) + 1
    return min(1.0, 2.0 * min(below, above) / (len(reps) + 1))


def _tost_p(reps: np.ndarray, margin: float) -> float:
    """Bootstrap TOST p-value of 'the mean difference lies outside (-margin, margin)' (see :func:`equivalence_p`)."""
    if not (isinstance(margin, (int, float, np.floating)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"equivalence margin must be a positive number, got {margin!r}")
    n = len(reps) + 1
    p_low = (int((reps <= -margin).sum()) + 1) / n  # H0: difference <= -margin
    p_high = (int((reps >= margin).sum()) + 1) / n  # H0: difference >= +margin
    return min(1.0, max(p_low, p_high))


def paired_bootstrap(
    scores: pd.DataFrame,
    method_a: str,
    method_b: str,
    task: str,
    n_boot: int = 2000,
    alpha: float = 0.05,
    rng_seed: int = 0,
    *,
    validated: bool = False,
) -> PairedResult:
    """Paired bootstrap of mean(A) - mean(B) on one task, paired over items.

    Each item contributes d_i = (A's mean over seeds) - (B's mean over seeds); seeds are paired
    because both methods share the same (item, seed) pairs. The CI is the percentile interval of
    the mean of d over ``n_boot`` resamples of items with replacement. The two-sided p-value
    inverts that percentile interval: p = min(1, 2 * min(#{d* <= 0} + 1, #{d* >= 0} + 1) / (B + 1)),
    i.e. twice the bootstrap mass on the far side of zero (with the usual +1 correction so p is never
    exactly 0). It therefore agrees with the CI: p < alpha iff 0 lies (up to quantile interpolation)
    outside the (1 - alpha) interval, so a table's verdict never contradicts its CI. Identical
    methods give p = 1. The p-value is not corrected for multiple comparisons (see :func:`holm`).
    """
    _check_boot_args(n_boot, alpha)
    frame = scores if validated else validate_scores(scores)
    d = _paired_diffs(frame, method_a, method_b, task)
    reps = _item_replicates(d, n_boot, np.random.default_rng(rng_seed))
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return PairedResult(float(d.mean()), float(lo), float(hi), _difference_p(reps))


def equivalence_p(
    scores: pd.DataFrame,
    method_a: str,
    method_b: str,
    task: str,
    margin: float = MARGIN,
    n_boot: int = 2000,
    rng_seed: int = 0,
    *,
    validated: bool = False,
) -> float:
    """TOST (two one-sided tests) p-value for |mean(A) - mean(B)| < ``margin`` on one task.

    Uses the same item-paired differences and bootstrap replicates as :func:`paired_bootstrap`
    (same ``rng_seed``). The null hypothesis is non-equivalence, "difference <= -margin or
    >= +margin"; each one-sided p is the bootstrap mass on the wrong side of its bound,
    p_low = (#{d* <= -margin} + 1) / (B + 1) and p_high = (#{d* >= margin} + 1) / (B + 1), and the TOST
    p is the larger of the two. p < alpha iff the (1 - 2 alpha) percentile interval of the difference
    lies inside (-margin, margin): equivalence is shown, not assumed from a failure to reject.
    ``margin`` is absolute, on the score scale (see :data:`MARGIN`).
    """
    _check_boot_args(n_boot, 0.05)
    frame = scores if validated else validate_scores(scores)
    d = _paired_diffs(frame, method_a, method_b, task)
    return _tost_p(_item_replicates(d, n_boot, np.random.default_rng(rng_seed)), margin)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input's order; NaN entries are left out and stay NaN.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of the i-th is
    max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting where the adjusted p < alpha controls the
    family-wise error rate at alpha under any dependence between the tests (unlike Benjamini-Hochberg,
    which controls the false discovery rate), and is uniformly more powerful than Bonferroni.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm expects a 1-D sequence of p-values, got shape {p.shape}")
    ok = ~np.isnan(p)
    if ((p[ok] < 0.0) | (p[ok] > 1.0)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)].tolist()}")
    out = np.full(p.shape, np.nan)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q, kind="mergesort")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    result = np.empty(m)
    result[order] = adjusted
    out[ok] = result
    return out


# ----------------------------------------------------------------------------------------------
# Tables


def main_table(
    scores: pd.DataFrame,
    n_boot: int = 2000,
    alpha: float = 0.05,
    rng_seed: int = 0,
    task_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (task, method): mean with hierarchical-bootstrap CI, number of items and seeds.

    Every group uses the same ``rng_seed``, so a group's CI does not change when other methods or
    tasks are added to the table. Rows are in task order (``task_order_of``), then method order.
    """
    frame = validate_scores(scores)
    rows = []
    for (task, method), group in frame.groupby(["task", "method"], sort=True):
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


def _margin_for(margin: float | Mapping[str, float], task: str) -> float:
    if isinstance(margin, Mapping):
        if task not in margin:
            raise ValueError(f"equivalence margin: no entry for task {task!r}; given for {sorted(margin)}")
        return float(margin[task])
    return float(margin)


def _check_resolution(m: int, n_boot: int, alpha: float) -> None:
    """Refuse a family that no bootstrap p could survive: the smallest p is 2 / (n_boot + 1), and Holm
    multiplies it by the family size m, so with m * 2 / (n_boot + 1) >= alpha every verdict would be
    "not significant" because of too few replicates, not because of the data."""
    if m and m * 2.0 / (n_boot + 1) >= alpha:
        need = math.ceil(2.0 * m / alpha)
        raise ValueError(
            f"n_boot={n_boot} is too small for {m} Holm-corrected comparisons at alpha={alpha}: the smallest "
            f"corrected p would be {m * 2.0 / (n_boot + 1):.3f}; use n_boot >= {need} (e.g. {max(need, 2000)})"
        )


def relative_table(
    scores: pd.DataFrame,
    target: str = "hag",
    baselines: Iterable[str] = ("default", "random"),
    n_boot: int = 2000,
    alpha: float = 0.05,
    rng_seed: int = 0,
    margin: float | Mapping[str, float] = MARGIN,
    floor: float = FLOOR,
    task_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per task and baseline: the paper's relative improvement (target - base) / base and paired tests.

    Columns (:data:`RELATIVE_COLUMNS`): task, baseline, target_mean, base_mean, rel_improvement, diff,
    diff_ci_low, diff_ci_high, p_value, p_holm, margin, p_tost, p_tost_holm, equivalence, verdict, note.

    - ``p_value``: the item-paired bootstrap test of "no difference" (:func:`paired_bootstrap`), raw.
    - ``p_holm``: ``p_value`` Holm-corrected across every comparison in this table (all tasks x
      baselines of this call: one family).
    - ``p_tost`` / ``p_tost_holm``: the TOST equivalence p-value for |diff| < ``margin``
      (:func:`equivalence_p`; ``margin`` absolute, one number or one per task), raw and Holm-corrected
      across the same family; ``equivalence`` is "equivalent" when ``p_tost_holm`` < ``alpha``, else
      "not shown".
    - ``verdict`` (:func:`verdict`): "better"/"worse" when ``p_holm`` < ``alpha``, else "equivalent"
      when shown, else "not significant".
    - ``rel_improvement`` is NaN, and ``note`` says why, when the baseline's mean is below ``floor``.

    Tasks lacking the target or a baseline are skipped.
    """
    _check_boot_args(n_boot, alpha)
    if not (isinstance(floor, (int, float)) and floor >= 0):
        raise ValueError(f"floor must be a number >= 0, got {floor!r}")
    frame = validate_scores(scores)
    baselines = tuple(baselines)
    rows = []
    for task, sub in frame.groupby("task", sort=True):
        methods = set(sub["method"])
        if target not in methods:
            continue
        t_mean = float(_item_means(sub.loc[sub["method"] == target]).mean())
        for base in baselines:
            if base not in methods or base == target:
                continue
            b_mean = float(_item_means(sub.loc[sub["method"] == base]).mean())
            res = paired_bootstrap(frame, target, base, task, n_boot, alpha, rng_seed, validated=True)
            m = _margin_for(margin, str(task))
            p_tost = equivalence_p(frame, target, base, task, m, n_boot, rng_seed, validated=True)
            rel, note = _relative(t_mean, b_mean, floor)
            rows.append(
                {
                    "task": task,
                    "baseline": base,
                    "target_mean": t_mean,
                    "base_mean": b_mean,
                    "rel_improvement": rel,
                    "diff": res.diff_mean,
                    "diff_ci_low": res.ci_low,
                    "diff_ci_high": res.ci_high,
                    "p_value": res.p_value,
                    "margin": m,
                    "p_tost": p_tost,
                    "note": note,
                }
            )
    _check_resolution(len(rows), n_boot, alpha)
    derived = ("p_holm", "p_tost_holm", "equivalence", "verdict")
    out = pd.DataFrame(rows, columns=[c for c in RELATIVE_COLUMNS if c not in derived])
    out["p_holm"] = holm(out["p_value"].to_numpy(dtype=float))
    out["p_tost_holm"] = holm(out["p_tost"].to_numpy(dtype=float))
    out["equivalence"] = [EQUIVALENCE[0] if p < alpha else EQUIVALENCE[1] for p in out["p_tost_holm"]]
    out["verdict"] = [verdict(d, p, q, alpha) for d, p, q in zip(out["diff"], out["p_holm"], out["p_tost_holm"])]
    return sort_canonical(out[list(RELATIVE_COLUMNS)], task_order_of(frame, task_order))


def difficulty_vs_improvement(
    scores: pd.DataFrame,
    target: str = "hag",
    base: str = "default",
    n_boot: int = 2000,
    alpha: float = 0.05,
    rng_seed: int = 0,
    floor: float = FLOOR,
) -> pd.DataFrame:
    """RQ4: per task, how hard it is for the baseline and how much the target improves on it.

    Columns: task, base_mean, difficulty (= 1 - base_mean), target_mean, improvement (target - base),
    improvement_ci_low, improvement_ci_high, rel_improvement (NaN below ``floor``), p_value (raw),
    p_holm (Holm across the tasks), n_items. Use :func:`difficulty_correlation` for a rank correlation
    across tasks (with few tasks, read it as descriptive).
    """
    rel = relative_table(scores, target, (base,), n_boot, alpha, rng_seed, floor=floor)
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


def at_chance(main: pd.DataFrame, chance: str = "chance") -> pd.DataFrame:
    """Per task with a ``chance`` row in a main table: is any method above the best constant answer?

    Columns (:data:`AT_CHANCE_COLUMNS`): task, chance_mean, best_method and best_mean (the highest
    mean among the other methods), best_ci_low, best_above_chance (its CI lower bound exceeds
    chance_mean), n_above_chance (methods whose CI lower bound exceeds chance_mean) and at_chance
    (no method does: on this task, for this model, no method is shown to beat a constant answer,
    so a "win" there may only have found a constant answer). Both are scored on the same test items.
    """
    missing = [c for c in ("task", "method", "mean", "ci_low") if c not in main.columns]
    if missing:
        raise ValueError(f"at_chance: main table lacks column(s) {missing}")
    rows = []
    for task in task_order_of(main):
        sub = main.loc[main["task"] == task]
        ref = sub.loc[sub["method"] == chance]
        others = sub.loc[sub["method"] != chance]
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


def _rounded(df: pd.DataFrame, decimals: int) -> pd.DataFrame:
    """Round float columns and turn -0.0 into 0.0, so equal numbers always print identically."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(decimals) + 0.0
    return out


def write_table(df: pd.DataFrame, path: str | os.PathLike, decimals: int = 4) -> Path:
    """Write ``df`` as CSV with fixed float formatting, atomically (temp file + os.replace).

    Same numbers give a byte-identical file (fixed decimals, no index, "\\n" line endings), and an
    interrupted run never leaves a half-written table behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _rounded(df, decimals).to_csv(index=False, float_format=f"%.{decimals}f", lineterminator="\n")
    atomic_write(path, text)
    return path


def _cell(value: object, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value) + 0.0:.{decimals}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, decimals: int = 4) -> str:
    """A GitHub-flavoured Markdown table (no dependency on ``tabulate``); numbers right-aligned."""
    df = _rounded(df, decimals)
    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell(v, decimals) for v in row) + " |")
    return "\n".join(lines) + "\n"
