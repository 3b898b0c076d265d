"""Statistics sanity: CI coverage and width, paired-test power and calibration, validation, stable CSV."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from hagstudy import evaluation as ev


def make_scores(
    effects: dict[str, float],
    n_items: int = 60,
    seeds: int = 3,
    task: str = "coinflip",
    rng_seed: int = 0,
    base_p: tuple[float, float] = (0.2, 0.7),
) -> pd.DataFrame:
    """Binary scores: each item has a difficulty p_i; method m succeeds with prob clip(p_i + effect)."""
    rng = np.random.default_rng(rng_seed)
    p = rng.uniform(*base_p, size=n_items)
    rows = []
    for method, effect in effects.items():
        prob = np.clip(p + effect, 0, 1)
        hits = rng.random((n_items, seeds)) < prob[:, None]
        for i in range(n_items):
            for s in range(seeds):
                rows.append((task, method, f"{task}-{i:04d}", s, float(hits[i, s])))
    return pd.DataFrame(rows, columns=list(ev.REQUIRED_COLUMNS))


# ---------------------------------------------------------------------------- bootstrap_ci


def test_ci_contains_known_mean_for_large_sample() -> None:
    # continuous scores with a known population mean of 0.5: item effect + seed noise
    rng = np.random.default_rng(3)
    n_items, seeds = 2000, 3
    item = rng.uniform(0.2, 0.8, n_items)
    scores = np.clip(item[:, None] + rng.uniform(-0.2, 0.2, (n_items, seeds)), 0, 1)
    frame = pd.DataFrame(
        {
            "item_id": np.repeat(np.arange(n_items), seeds),
            "seed": np.tile(np.arange(seeds), n_items),
            "score": scores.ravel(),
        }
    )
    ci = ev.bootstrap_ci(frame)
    assert ci.ci_low < 0.5 < ci.ci_high
    assert ci.ci_low <= ci.mean <= ci.ci_high
    assert ci.ci_high - ci.ci_low < 0.03


def test_ci_coverage_is_roughly_nominal() -> None:
    # repeated experiments from one population: the 95% CI should cover the true mean most times
    true_mean = 0.45  # uniform(0.2, 0.7)
    covered = 0
    runs = 60
    for r in range(runs):
        sub = make_scores({"default": 0.0}, n_items=40, rng_seed=100 + r)
        ci = ev.bootstrap_ci(sub.drop(columns=["task", "method"]), n_boot=500)
        covered += ci.ci_low <= true_mean <= ci.ci_high
    assert covered / runs >= 0.85


def test_ci_narrows_with_more_items() -> None:
    small = ev.bootstrap_ci(make_scores({"default": 0.0}, n_items=30))
    large = ev.bootstrap_ci(make_scores({"default": 0.0}, n_items=480))
    assert (large.ci_high - large.ci_low) < 0.5 * (small.ci_high - small.ci_low)


def test_ci_deterministic_and_row_order_invariant() -> None:
    frame = make_scores({"default": 0.0})
    a = ev.bootstrap_ci(frame, rng_seed=7)
    b = ev.bootstrap_ci(frame.sample(frac=1.0, random_state=1), rng_seed=7)
    assert a == b
    assert ev.bootstrap_ci(frame, rng_seed=8) != a


def test_ci_handles_unequal_seed_counts() -> None:
    frame = make_scores({"default": 0.0}, seeds=3).iloc[:-2]  # last item has one seed
    ci = ev.bootstrap_ci(frame)
    item_means = frame.groupby("item_id")["score"].mean()
    assert ci.mean == pytest.approx(item_means.mean())
    assert ci.ci_low < ci.mean < ci.ci_high


def test_ci_is_fast() -> None:
    frame = make_scores({"default": 0.0}, n_items=600, seeds=3)
    ev.bootstrap_ci(frame, n_boot=50)  # warm-up
    start = time.perf_counter()
    ev.bootstrap_ci(frame, n_boot=2000)
    assert time.perf_counter() - start < 1.0


def test_ci_rejects_mixed_groups() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1})
    with pytest.raises(ValueError, match="method"):
        ev.bootstrap_ci(frame)


# ---------------------------------------------------------------------------- paired bootstrap


def test_paired_small_p_for_big_difference() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.25}, n_items=80)
    res = ev.paired_bootstrap(frame, "hag", "default", "coinflip")
    assert res.diff_mean > 0.15
    assert res.ci_low > 0
    assert res.p_value < 0.01


def test_paired_identical_methods_p_one() -> None:
    frame = make_scores({"default": 0.0})
    twin = frame.assign(method="hag")
    res = ev.paired_bootstrap(pd.concat([frame, twin]), "hag", "default", "coinflip")
    assert res.diff_mean == 0.0 and res.p_value == 1.0


def test_paired_null_is_calibrated() -> None:
    # no true difference: p is large on a typical run and rejections happen about alpha of the time
    ps = []
    for r in range(200):
        frame = make_scores({"default": 0.0, "hag": 0.0}, n_items=60, rng_seed=500 + r)
        ps.append(ev.paired_bootstrap(frame, "hag", "default", "coinflip", n_boot=500, rng_seed=r).p_value)
    ps = np.array(ps)
    assert np.median(ps) > 0.3
    # nominal 0.05; 200 runs give a binomial sd of ~0.015, so 0.10 is a >3 sd margin
    assert 0.01 <= np.mean(ps < 0.05) <= 0.10


def test_paired_unknown_method_or_task() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1})
    with pytest.raises(ValueError, match="'nope'"):
        ev.paired_bootstrap(frame, "nope", "default", "coinflip")
    with pytest.raises(ValueError, match="task 'taboo'"):
        ev.paired_bootstrap(frame, "hag", "default", "taboo")


# ---------------------------------------------------------------------------- tables


def study_frame() -> pd.DataFrame:
    parts = [
        make_scores({"hag": 0.2, "default": 0.0, "random": 0.0, "greedy": 0.05}, task="taboo", rng_seed=1),
        make_scores({"default": 0.0, "hag": 0.0}, task="coinflip", rng_seed=2),
        make_scores({"default": 0.0, "hag": -0.3, "random": 0.0}, task="strategyqa", rng_seed=3, base_p=(0.5, 0.9)),
    ]
    return pd.concat(parts, ignore_index=True)


def test_main_table_columns_order_and_counts() -> None:
    table = ev.main_table(study_frame(), n_boot=300)
    assert list(table.columns) == list(ev.MAIN_COLUMNS)
    assert list(table["task"].drop_duplicates()) == ["coinflip", "strategyqa", "taboo"]
    assert list(table.loc[table["task"] == "taboo", "method"]) == ["default", "greedy", "random", "hag"]
    assert (table["n_items"] == 60).all() and (table["n_seeds"] == 3).all()
    assert ((table["ci_low"] <= table["mean"]) & (table["mean"] <= table["ci_high"])).all()
    again = ev.main_table(study_frame().sample(frac=1.0, random_state=0), n_boot=300)
    pd.testing.assert_frame_equal(table, again)


def test_unknown_names_sort_after_known() -> None:
    frame = make_scores({"hag_no_search": 0.0, "hag": 0.0, "default": 0.0}, task="zz_task")
    frame = pd.concat([frame, make_scores({"default": 0.0}, task="arithmetic")])
    table = ev.main_table(frame, n_boot=50)
    assert list(table["task"].drop_duplicates()) == ["arithmetic", "zz_task"]
    assert list(table.loc[table["task"] == "zz_task", "method"]) == ["default", "hag", "hag_no_search"]


def test_relative_table_verdicts() -> None:
    table = ev.relative_table(study_frame(), n_boot=1000)
    cols = ["task", "baseline", "target_mean", "base_mean", "rel_improvement", "diff",
            "diff_ci_low", "diff_ci_high", "p_value", "verdict"]  # fmt: skip
    assert all(c in table.columns for c in cols)
    got = {(r.task, r.baseline): r.verdict for r in table.itertuples()}
    assert got[("taboo", "default")] == "better"
    assert got[("taboo", "random")] == "better"
    assert got[("strategyqa", "default")] == "worse"
    assert ("coinflip", "random") not in got  # baseline not run there
    row = table.loc[(table["task"] == "taboo") & (table["baseline"] == "default")].iloc[0]
    assert row["rel_improvement"] == pytest.approx((row["target_mean"] - row["base_mean"]) / row["base_mean"])
    assert row["diff"] == pytest.approx(row["target_mean"] - row["base_mean"])


def test_relative_table_zero_baseline_is_nan_with_note() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.0})
    frame.loc[frame["method"] == "default", "score"] = 0.0
    table = ev.relative_table(frame, baselines=("default",), n_boot=100)
    assert math.isnan(table["rel_improvement"].iloc[0])
    assert "undefined" in table["note"].iloc[0]


def test_difficulty_vs_improvement() -> None:
    out = ev.difficulty_vs_improvement(study_frame(), n_boot=200)
    assert list(out["task"]) == ["coinflip", "strategyqa", "taboo"]
    assert np.allclose(out["difficulty"], 1 - out["base_mean"])
    assert np.allclose(out["improvement"], out["target_mean"] - out["base_mean"])
    rho, p = ev.difficulty_correlation(out)
    assert -1 <= rho <= 1 and 0 <= p <= 1
    assert all(math.isnan(v) for v in ev.difficulty_correlation(out.head(2)))


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.drop(columns=["seed"]), "missing column"),
        (lambda f: f.assign(score=f["score"].where(f.index != 3, np.nan)), "NaN score"),
        (lambda f: f.assign(score=f["score"].where(f.index != 3, 1.5)), r"outside \[0, 1\]"),
        (lambda f: f.assign(score=f["score"].where(f.index != 3, -0.1)), r"outside \[0, 1\]"),
        (lambda f: f.drop(index=[5]), "same \\(item_id, seed\\) pairs"),
        (lambda f: pd.concat([f, f.iloc[[0]]]), "share a"),
        (lambda f: f.iloc[0:0], "empty"),
        (lambda f: f.assign(score="x"), "numeric"),
    ],
)
def test_validation_errors(mutate, message) -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1}, n_items=5)
    with pytest.raises(ValueError, match=message):
        ev.main_table(mutate(frame), n_boot=10)


def test_validation_names_the_method_lacking_pairs() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1}, n_items=5)
    frame = frame.drop(index=frame.index[(frame["method"] == "hag") & (frame["seed"] == 2)])
    with pytest.raises(ValueError, match="task 'coinflip'.*'hag' lacks 5 pair"):
        ev.validate_scores(frame)


def test_extra_columns_are_ignored() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1}, n_items=5).assign(config="{}", parse_status="ok")
    assert len(ev.main_table(frame, n_boot=10)) == 2


# ---------------------------------------------------------------------------- output


def test_write_table_byte_identical(tmp_path) -> None:
    table = ev.relative_table(study_frame(), n_boot=200)
    a = ev.write_table(table, tmp_path / "a" / "rel.csv")
    b = ev.write_table(ev.relative_table(study_frame(), n_boot=200), tmp_path / "b" / "rel.csv")
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "\r" not in text and text.endswith("\n")
    assert "-0.0000" not in ev.write_table(pd.DataFrame({"x": [-1e-9]}), tmp_path / "z.csv").read_text()
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temp files left behind
    header = text.splitlines()[0].split(",")
    assert header[:3] == ["task", "baseline", "target_mean"]
    assert all(len(v.split(".")[1]) == 4 for v in text.splitlines()[1].split(",")[2:4])


def test_to_markdown() -> None:
    df = pd.DataFrame({"task": ["a|b"], "mean": [0.123456], "n": [3], "rel": [float("nan")]})
    md = ev.to_markdown(df)
    lines = md.strip().splitlines()
    assert lines[0] == "| task | mean | n | rel |"
    assert lines[1] == "|:---|---:|---:|---:|"
    assert lines[2] == "| a\\|b | 0.1235 | 3 |  |"
