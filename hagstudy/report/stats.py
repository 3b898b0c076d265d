"""The study's statistics: a two-level bootstrap CI, item-paired tests, TOST equivalence, Holm, the MDE.

The unit of analysis is the *item*: a method's score on a task is the mean over items of the item's
mean over seeds. Items are the random sample we generalise over; seeds only measure decoding noise
inside an item. Hence the two-level bootstrap (:func:`bootstrap_ci`: items, then seeds within items)
and the item-paired comparison (:func:`paired_bootstrap` for the CI). A difference is tested against
zero by a sign-flip permutation test over items (:func:`sign_flip_p`), equivalence (:func:`tost_p`,
TOST) against a stated margin; a family of tests is corrected with Holm's step-down method
(:func:`holm`), and :func:`mde` says how large a difference a test could detect. Everything is seeded
and independent of row order. ``hagstudy.report.evaluation`` builds the study's tables from these.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("task", "method", "item_id", "seed", "score")

# Equivalence margin, per task and relative to the task's scale, declared before the run: a tie with
# the best fixed config is claimed only within margin_t = max(MIN_MARGIN, REL_MARGIN * best fixed mean).
# One absolute number cannot fit every task: +-0.02 is 4 % of a coin flip's 0.5 but 41 % of a task
# where the best fixed config scores 0.05. A tenth of what the best fixed config scores is a change
# nobody would act on; the floor keeps a task scored near 0 from getting a margin no test can show.
REL_MARGIN = 0.10
MIN_MARGIN = 0.01

# Replicates (bootstrap draws and random sign vectors) per test. The smallest p a resampling test can
# give is about 1 / (B + 1), and Holm multiplies the smallest p by the family size m: with B = 20,000
# a family of 42 tests can still reach 0.0021, so a clear effect is never "not significant" for lack of
# replicates (B = 2,000 gave 0.021 at best, and 0.042 after Holm over 42).
N_BOOT = 20_000
# Replicates for a method's own CI (a table's mean +- CI, the headroom's CI): no p-value is read from
# them and none is Holm-corrected, and 2,000 percentile replicates pin a 95 % bound to well under the
# CI's own width, at a tenth of the time.
CI_BOOT = 2_000

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
# The score table


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


def item_means(frame: pd.DataFrame) -> pd.Series:
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


def paired_bootstrap_replicates(d: np.ndarray, n_boot: int = N_BOOT, rng_seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the mean of per-item differences ``d`` (items resampled), seeded: the
    replicates :func:`paired_bootstrap` and :func:`equivalence_p` draw with the same ``rng_seed``."""
    return _item_replicates(np.asarray(d, dtype=float), n_boot, np.random.default_rng(rng_seed))


def check_boot_args(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def bootstrap_ci(
    scores_frame: pd.DataFrame, n_boot: int = CI_BOOT, alpha: float = 0.05, rng_seed: int = 0
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
    check_boot_args(n_boot, alpha)
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
        if m not in have:
            raise ValueError(f"method {m!r} has no scores on task {task!r}; methods there: {have}")
    a = item_means(sub.loc[sub["method"] == method_a])
    b = item_means(sub.loc[sub["method"] == method_b])
    return (a - b.reindex(a.index)).to_numpy(dtype=float)


def sign_flip_p(d: np.ndarray, n_perm: int = N_BOOT, rng_seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of "the mean paired difference is 0", over items.

    Under the null that the two methods are exchangeable on each item, every per-item difference d_i
    is as likely to be -d_i, so the observed |mean(d)| is compared with |mean(s * d)| for random sign
    vectors s: p = (#{|mean(s* d)| >= |mean(d)|} + 1) / (B + 1) over B = ``n_perm`` seeded draws, or
    the exact share over all 2^n sign vectors when 2^n <= ``n_perm`` (items with d_i = 0 are left out
    of n: flipping them changes nothing). Unlike a bootstrap p, it does not invert a percentile
    interval and needs no assumption about the shape of the differences' distribution; its smallest
    value, 1 / (B + 1), is what the Holm correction must leave below alpha (see evaluation). Identical
    methods give p = 1. Vectorised in chunks of sign vectors, seeded, independent of the order of d.
    """
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm!r}")
    d = np.asarray(d, dtype=float)
    if d.ndim != 1 or len(d) == 0 or np.isnan(d).any():
        raise ValueError(f"sign_flip_p expects a non-empty 1-D array of differences without NaN, got shape {d.shape}")
    d = np.sort(d[np.abs(d) > 1e-12])  # sorted: the draws then do not depend on the items' order; a
    # difference within float noise of 0 (a mean over adapters of equal scores) counts as 0
    n = len(d)
    if n == 0:
        return 1.0
    observed = abs(d.sum()) * (1.0 - 1e-12)  # sums, not means (same n); a relative tolerance for float noise
    if 2**n <= n_perm:  # exact: every sign vector once
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
        return float((np.abs(signs @ d) >= observed).mean())
    rng = np.random.default_rng(rng_seed)
    chunk = max(1, _CHUNK_CELLS // n)
    width = (n + 7) // 8  # random bytes per sign vector: one fair bit per item
    hits = 0
    for start in range(0, n_perm, chunk):
        b = min(chunk, n_perm - start)
        bits = np.unpackbits(np.frombuffer(rng.bytes(b * width), dtype=np.uint8).reshape(b, width), axis=1)[:, :n]
        hits += int((np.abs((1.0 - 2.0 * bits) @ d) >= observed).sum())  # bit 1 flips the sign
    return (hits + 1) / (n_perm + 1)


def upper_bound(reps: np.ndarray, alpha: float = 0.05) -> float:
    """The one-sided (1 - alpha) upper confidence bound of a difference: the largest gain compatible with
    the data (the bootstrap replicates' 1 - alpha quantile). A gain above it is ruled out at level alpha."""
    check_boot_args(len(reps), alpha)
    return float(np.quantile(reps, 1.0 - alpha))


def mde(sd_diff: float, n_items: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided paired test at level ``alpha`` with the given power:
    (z_{1 - alpha/2} + z_power) * sd_diff / sqrt(n_items), the normal approximation for a mean of n_items
    per-item differences with standard deviation ``sd_diff``. A true difference smaller than this would
    usually be missed, so "not significant" then says little; pass the per-test alpha (e.g. alpha / m)."""
    from scipy.stats import norm

    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"mde: alpha and power must be in (0, 1), got alpha={alpha!r}, power={power!r}")
    if n_items < 2 or not sd_diff >= 0:
        raise ValueError(f"mde: need n_items >= 2 and sd_diff >= 0, got n_items={n_items!r}, sd_diff={sd_diff!r}")
    return float((norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * sd_diff / math.sqrt(n_items))


def tost_p(reps: np.ndarray, margin: float) -> float:
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
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng_seed: int = 0,
    *,
    validated: bool = False,
) -> PairedResult:
    """Paired comparison of mean(A) - mean(B) on one task, paired over items: bootstrap CI, permutation p.

    Each item contributes d_i = (A's mean over seeds) - (B's mean over seeds); seeds are paired
    because both methods share the same (item, seed) pairs. The CI is the percentile interval of
    the mean of d over ``n_boot`` resamples of items with replacement. The two-sided p-value is the
    sign-flip permutation test over items (:func:`sign_flip_p`, ``n_boot`` sign vectors, same seed).
    The two answer nearly the same question by different resampling, so at the boundary a p just
    under alpha can meet a CI that just touches 0 (or the reverse). Identical methods give p = 1. The
    p-value is not corrected for multiple comparisons (see :func:`holm`).
    """
    check_boot_args(n_boot, alpha)
    frame = scores if validated else validate_scores(scores)
    d = _paired_diffs(frame, method_a, method_b, task)
    reps = _item_replicates(d, n_boot, np.random.default_rng(rng_seed))
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return PairedResult(float(d.mean()), float(lo), float(hi), sign_flip_p(d, n_boot, rng_seed))


def equivalence_p(
    scores: pd.DataFrame,
    method_a: str,
    method_b: str,
    task: str,
    margin: float,
    n_boot: int = N_BOOT,
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
    ``margin`` is absolute, on the score scale (the study's is per task: :data:`REL_MARGIN`).
    """
    check_boot_args(n_boot, 0.05)
    frame = scores if validated else validate_scores(scores)
    d = _paired_diffs(frame, method_a, method_b, task)
    return tost_p(_item_replicates(d, n_boot, np.random.default_rng(rng_seed)), margin)


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


def wilson_interval(rate: float | Sequence[float], n: int | Sequence[int], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval(s) for binomial proportions ``rate`` out of ``n`` trials (vectorised).

    For a share of n rows (stage 1's exact match on the validation rows), where a bootstrap has no items
    to resample and the normal interval leaves [0, 1] near 0 and 1; the Wilson interval stays inside
    it and contains the rate. ``n`` = 0 gives NaN bounds.
    """
    p, m = np.broadcast_arrays(np.asarray(rate, dtype=float), np.asarray(n, dtype=float))
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"wilson_interval: rates must lie in [0, 1], got {p[(p < 0) | (p > 1)].tolist()}")
    if (m < 0).any():
        raise ValueError(f"wilson_interval: n must be >= 0, got {m[m < 0].tolist()}")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (p + z * z / (2 * m)) / (1 + z * z / m)
        half = z / (1 + z * z / m) * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    low = np.minimum(np.clip(centre - half, 0.0, 1.0), p)  # rounding must not leave the rate outside
    high = np.maximum(np.clip(centre + half, 0.0, 1.0), p)
    return np.where(m > 0, low, np.nan), np.where(m > 0, high, np.nan)


# ----------------------------------------------------------------------------------------------
# Pooled methods: several trained adapters of one method


def _member_matrix(frame: pd.DataFrame, members: Sequence[str], task: str | None = None) -> np.ndarray:
    """Per-item means (mean over seeds) of each member method: an (adapters x items) matrix, items sorted."""
    sub = frame if task is None else frame.loc[frame["task"] == task]
    rows = []
    index = None
    for m in members:
        got = sub.loc[sub["method"] == m]
        if got.empty:
            raise ValueError(f"pooled method member {m!r} has no scores" + (f" on task {task!r}" if task else ""))
        means = item_means(got)
        index = means.index if index is None else index
        if not means.index.equals(index):
            raise ValueError(f"pooled members are not scored on the same items: {m!r} differs from {members[0]!r}")
        rows.append(means.to_numpy(dtype=float))
    return np.vstack(rows)


def _pooled_replicates(mat: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates of the mean over members of the mean over items, resampling members, then items.

    ``mat`` is (members x items): entry (a, i) is member a's mean on item i (or a paired difference).
    The same item draw is used for every drawn member, since the members answer the same items.
    """
    k, n = mat.shape
    chunk = max(1, _CHUNK_CELLS // max(1, k * n))
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        members = rng.integers(0, k, size=(b, k))
        items = rng.integers(0, n, size=(b, n))
        drawn = mat[members].mean(axis=1)  # (b x items): each replicate's mean over its drawn members
        out[start : start + b] = np.take_along_axis(drawn, items, axis=1).mean(axis=1)
    return out


def pooled_ci(
    scores: pd.DataFrame, members: Sequence[str], n_boot: int = CI_BOOT, alpha: float = 0.05, rng_seed: int = 0
) -> CI:
    """Mean and CI of a method trained several times (one member method per adapter) on one task.

    The estimate is the mean over members of each member's mean of item means. Each replicate draws
    the members with replacement (the spread across training seeds), then the items with replacement
    (shared by the drawn members). Seeds are averaged within an item first: with a few adapters, the
    adapter level and the item level carry the variation that matters for "would HAG help again?".
    """
    check_boot_args(n_boot, alpha)
    if not members:
        raise ValueError("pooled_ci: no member methods")
    mat = _member_matrix(scores, members)
    reps = _pooled_replicates(mat, n_boot, np.random.default_rng(rng_seed))
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return CI(float(mat.mean()), float(lo), float(hi))


def _member_differences(scores: pd.DataFrame, members: Sequence[str], baseline: str, task: str) -> np.ndarray:
    """(members x items): each member's item mean minus the baseline's, on one task, items sorted."""
    sub = scores.loc[scores["task"] == task]
    mat = _member_matrix(sub, members)
    base = item_means(sub.loc[sub["method"] == baseline])
    if base.empty:
        raise ValueError(f"method {baseline!r} has no scores on task {task!r}")
    index = item_means(sub.loc[sub["method"] == members[0]]).index
    d = mat - base.reindex(index).to_numpy(dtype=float)[None, :]
    if np.isnan(d).any():
        raise ValueError(f"task {task!r}: {baseline!r} is not scored on every item of the pooled method")
    return d


def paired_differences(
    scores: pd.DataFrame, target: str, baseline: str, task: str, members: Sequence[str] | None = None
) -> np.ndarray:
    """Per-item differences target - baseline on one task (items sorted by item_id), each item's mean over seeds.

    With ``members`` (the per-adapter methods a pooled target averages), d_i is the mean over members of
    (member's item mean - baseline's item mean): the pooled method's per-item difference.
    """
    if members:
        return _member_differences(scores, members, baseline, task).mean(axis=0)
    return _paired_diffs(scores, target, baseline, task)


def pooled_paired_replicates(
    scores: pd.DataFrame, members: Sequence[str], baseline: str, task: str, n_boot: int = N_BOOT, rng_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled method minus ``baseline`` on one task: its per-item differences and their bootstrap replicates.

    Differences are paired per item (each member's item mean minus the baseline's); the first array is
    their mean over members per item (:func:`paired_differences`), the second the replicates of the mean
    difference, resampled like :func:`pooled_ci`: members, then items, so the CI and the TOST
    (:func:`tost_p`) include the spread across training seeds. The permutation p (:func:`sign_flip_p`)
    takes the per-item differences instead: it is conditional on the trained adapters.
    """
    d = _member_differences(scores, members, baseline, task)
    return d.mean(axis=0), _pooled_replicates(d, n_boot, np.random.default_rng(rng_seed))
