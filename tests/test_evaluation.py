"""Statistics sanity: CI coverage and width, paired-test power and calibration, validation, stable CSV."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hagstudy import methods, stages
from hagstudy.report import evaluation as ev
from hagstudy.report import stats as st


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
    return pd.DataFrame(rows, columns=list(st.REQUIRED_COLUMNS))


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
    ci = st.bootstrap_ci(frame)
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
        ci = st.bootstrap_ci(sub.drop(columns=["task", "method"]), n_boot=500)
        covered += ci.ci_low <= true_mean <= ci.ci_high
    assert covered / runs >= 0.85


def test_ci_narrows_with_more_items() -> None:
    small = st.bootstrap_ci(make_scores({"default": 0.0}, n_items=30))
    large = st.bootstrap_ci(make_scores({"default": 0.0}, n_items=480))
    assert (large.ci_high - large.ci_low) < 0.5 * (small.ci_high - small.ci_low)


def test_ci_deterministic_and_row_order_invariant() -> None:
    frame = make_scores({"default": 0.0})
    a = st.bootstrap_ci(frame, rng_seed=7)
    b = st.bootstrap_ci(frame.sample(frac=1.0, random_state=1), rng_seed=7)
    assert a == b
    assert st.bootstrap_ci(frame, rng_seed=8) != a


def test_ci_handles_unequal_seed_counts() -> None:
    frame = make_scores({"default": 0.0}, seeds=3).iloc[:-2]  # last item has one seed
    ci = st.bootstrap_ci(frame)
    item_means = frame.groupby("item_id")["score"].mean()
    assert ci.mean == pytest.approx(item_means.mean())
    assert ci.ci_low < ci.mean < ci.ci_high


def test_ci_rejects_mixed_groups() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1})
    with pytest.raises(ValueError, match="method"):
        st.bootstrap_ci(frame)


# ---------------------------------------------------------------------------- paired bootstrap


def test_paired_small_p_for_big_difference() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.25}, n_items=80)
    res = st.paired_bootstrap(frame, "hag", "default", "coinflip")
    assert res.diff_mean > 0.15
    assert res.ci_low > 0
    assert res.p_value < 0.01


def test_paired_identical_methods_p_one() -> None:
    frame = make_scores({"default": 0.0})
    twin = frame.assign(method="hag")
    res = st.paired_bootstrap(pd.concat([frame, twin]), "hag", "default", "coinflip")
    assert res.diff_mean == 0.0 and res.p_value == 1.0


def test_paired_null_is_calibrated() -> None:
    # no true difference: p is large on a typical run and rejections happen about alpha of the time
    ps = []
    for r in range(200):
        frame = make_scores({"default": 0.0, "hag": 0.0}, n_items=60, rng_seed=500 + r)
        ps.append(st.paired_bootstrap(frame, "hag", "default", "coinflip", n_boot=500, rng_seed=r).p_value)
    ps = np.array(ps)
    assert np.median(ps) > 0.3
    # nominal 0.05; 200 runs give a binomial sd of ~0.015, so 0.10 is a >3 sd margin
    assert 0.01 <= np.mean(ps < 0.05) <= 0.10


def test_paired_unknown_method_or_task() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1})
    with pytest.raises(ValueError, match="'nope'"):
        st.paired_bootstrap(frame, "nope", "default", "coinflip")
    with pytest.raises(ValueError, match="task 'taboo'"):
        st.paired_bootstrap(frame, "hag", "default", "taboo")


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
    assert list(table["task"].drop_duplicates()) == ["taboo", "coinflip", "strategyqa"]  # first appearance
    assert list(table.loc[table["task"] == "taboo", "method"]) == ["default", "greedy", "random", "hag"]
    assert (table["n_items"] == 60).all() and (table["n_seeds"] == 3).all()
    assert ((table["ci_low"] <= table["mean"]) & (table["mean"] <= table["ci_high"])).all()
    # numbers never depend on row order; the task order does only through first appearance
    again = ev.main_table(study_frame().sample(frac=1.0, random_state=0), n_boot=300, task_order=["taboo", "coinflip"])
    pd.testing.assert_frame_equal(table, again)


def test_task_order_and_unknown_methods() -> None:
    frame = make_scores({"hag_no_search": 0.0, "hag": 0.0, "default": 0.0, "chance": 0.0}, task="zz_task")
    frame = pd.concat([frame, make_scores({"default": 0.0}, task="arithmetic")])
    table = ev.main_table(frame, n_boot=50)
    assert list(table["task"].drop_duplicates()) == ["zz_task", "arithmetic"]
    assert list(table.loc[table["task"] == "zz_task", "method"]) == ["chance", "default", "hag", "hag_no_search"]
    given = ev.main_table(frame, n_boot=50, task_order=["arithmetic"])
    assert list(given["task"].drop_duplicates()) == ["arithmetic", "zz_task"]


def test_evaluation_imports_nothing_upstream() -> None:
    import subprocess
    import sys

    code = "import hagstudy.report.evaluation, sys; assert not [m for m in sys.modules if m.startswith('hagstudy.tasks')]"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_relative_table_verdicts() -> None:
    table = ev.relative_table(study_frame(), n_boot=1000)
    assert list(table.columns) == list(ev.RELATIVE_COLUMNS)
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


# ---------------------------------------------------------------------------- multiple comparisons


def test_holm_matches_a_hand_computed_example() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    got = st.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])
    # capped at 1, NaN left out of the family (m = 2) and kept NaN
    got = st.holm([0.5, float("nan"), 0.6])
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == 1.0
    assert st.holm([]).shape == (0,)


def test_holm_on_the_committed_hag_vs_default_p_values() -> None:
    # results/tables/relative.csv (HAG vs default, six tasks): raw p < 0.05 on four tasks
    raw = [0.0180, 0.0130, 0.1309, 0.3228, 0.0010, 0.0010]
    adj = st.holm(raw)
    np.testing.assert_allclose(adj, [0.054, 0.052, 0.2618, 0.3228, 0.006, 0.006])
    assert int((adj < 0.05).sum()) == 2  # only two of the four "better" survive


def test_relative_table_refuses_too_few_replicates_for_its_family() -> None:
    # 6 comparisons: the smallest corrected p would be 6 / 120 = 0.05 >= 0.05, whatever the data
    with pytest.raises(ValueError, match=r"n_boot=119 is too small for 6 Holm-corrected comparisons"):
        ev.relative_table(holm_frame(), baselines=("default",), n_boot=119)
    assert len(ev.relative_table(holm_frame(), baselines=("default",), n_boot=120)) == 6  # 6 / 121 = 0.0496


def test_holm_rejects_bad_p_values() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        st.holm([0.2, 1.5])


def holm_frame() -> pd.DataFrame:
    """Six tasks: one modest true effect (raw p just under 0.05) among five nulls."""
    parts = [make_scores({"default": 0.0, "hag": 0.12}, task="t0", n_items=60, rng_seed=11)]
    parts += [make_scores({"default": 0.0, "hag": 0.0}, task=f"t{i}", n_items=60, rng_seed=20 + i) for i in range(1, 6)]
    return pd.concat(parts, ignore_index=True)


def test_relative_table_verdict_uses_the_holm_corrected_p() -> None:
    table = ev.relative_table(holm_frame(), baselines=("default",), n_boot=2000)
    np.testing.assert_allclose(table["p_holm"], st.holm(table["p_value"].to_numpy()))
    np.testing.assert_allclose(table["p_tost_holm"], st.holm(table["p_tost"].to_numpy()))
    row = table.loc[table["task"] == "t0"].iloc[0]
    assert row["p_value"] < 0.05 <= row["p_holm"]  # significant alone, not across the family of six
    assert row["verdict"] == "not significant"
    for r in table.itertuples():
        assert r.verdict == ev.verdict(r.diff, r.p_holm, r.p_tost_holm)
    alone = ev.relative_table(holm_frame().query("task == 't0'"), baselines=("default",), n_boot=2000)
    assert alone["verdict"].iloc[0] == "better"  # a family of one: no correction


# ---------------------------------------------------------------------------- equivalence (TOST)


def twins(n_items: int, flips: int, seeds: int = 3, rng_seed: int = 0) -> pd.DataFrame:
    """default and hag with identical scores except ``flips`` generations flipped 0 -> 1 for hag."""
    base = make_scores({"default": 0.0}, n_items=n_items, seeds=seeds, rng_seed=rng_seed)
    hag = base.assign(method="hag")
    zeros = hag.index[hag["score"] == 0.0][:flips]
    hag.loc[zeros, "score"] = 1.0
    return pd.concat([base, hag], ignore_index=True)


def test_tost_shows_equivalence_of_nearly_identical_methods() -> None:
    frame = twins(n_items=200, flips=3)  # diff = 3 / 600 = 0.005, tightly estimated
    p = st.equivalence_p(frame, "hag", "default", "coinflip", margin=0.02)
    assert p < 0.05
    table = ev.relative_table(frame, baselines=("default",), n_boot=2000, margin=0.02)
    assert table["equivalence"].iloc[0] == "equivalent" and table["verdict"].iloc[0] == "equivalent"
    assert table["margin"].iloc[0] == 0.02


def test_tost_does_not_call_a_noisy_null_a_tie() -> None:
    # no true difference, but 40 independent noisy items: the CI is far wider than +-0.02
    frame = make_scores({"default": 0.0, "hag": 0.0}, n_items=40, rng_seed=4)
    p = st.equivalence_p(frame, "hag", "default", "coinflip", margin=0.02)
    assert p > 0.2
    table = ev.relative_table(frame, baselines=("default",), n_boot=2000, margin=0.02)
    assert table["p_value"].iloc[0] > 0.05
    assert table["equivalence"].iloc[0] == "not shown" and table["verdict"].iloc[0] == "not significant"
    # a wide enough margin makes the same data equivalent: the margin is what the claim is about
    wide = ev.relative_table(frame, baselines=("default",), n_boot=2000, margin={"coinflip": 0.3})
    assert wide["verdict"].iloc[0] == "equivalent" and wide["margin"].iloc[0] == 0.3


def test_tost_rejects_a_real_difference_of_twice_the_margin() -> None:
    frame = twins(n_items=200, flips=24)  # diff = 24 / 600 = 0.04
    assert st.equivalence_p(frame, "hag", "default", "coinflip", margin=0.02) > 0.5


@pytest.mark.parametrize("flips", [3, 8, 12, 20])
def test_tost_agrees_with_the_90_percent_interval(flips: int) -> None:
    frame = twins(n_items=200, flips=flips)
    p = st.equivalence_p(frame, "hag", "default", "coinflip", margin=0.02, rng_seed=5)
    ci = st.paired_bootstrap(frame, "hag", "default", "coinflip", alpha=0.10, rng_seed=5)
    inside = -0.02 < ci.ci_low and ci.ci_high < 0.02
    assert (p < 0.05) == inside


def test_margin_is_checked() -> None:
    frame = twins(n_items=20, flips=1)
    with pytest.raises(ValueError, match="positive"):
        st.equivalence_p(frame, "hag", "default", "coinflip", margin=0.0)
    with pytest.raises(ValueError, match="no entry for task 'coinflip'"):
        ev.relative_table(frame, baselines=("default",), n_boot=50, margin={"taboo": 0.02})


# ---------------------------------------------------------------------------- relative vs absolute


def test_relative_change_only_above_the_floor() -> None:
    frame = twins(n_items=100, flips=6)
    base_mean = frame.loc[frame["method"] == "default", "score"].mean()
    low = frame.assign(score=frame["score"] * (0.04 / base_mean))  # base mean 0.04 < 0.05
    high = frame.assign(score=frame["score"] * (0.06 / base_mean))  # base mean 0.06 >= 0.05
    below = ev.relative_table(low, baselines=("default",), n_boot=100).iloc[0]
    above = ev.relative_table(high, baselines=("default",), n_boot=100).iloc[0]
    assert below["base_mean"] == pytest.approx(0.04) and math.isnan(below["rel_improvement"])
    assert "below floor 0.05" in below["note"] and below["diff"] > 0  # the absolute difference stays
    assert above["rel_improvement"] == pytest.approx(above["diff"] / 0.06) and above["note"] == ""
    lowered = ev.relative_table(low, baselines=("default",), n_boot=100, floor=0.01).iloc[0]
    assert lowered["rel_improvement"] == pytest.approx(lowered["diff"] / 0.04)
    with pytest.raises(ValueError, match="floor"):
        ev.relative_table(low, baselines=("default",), n_boot=100, floor=-1)


# ---------------------------------------------------------------------------- chance


def chance_main() -> pd.DataFrame:
    rows = [
        ("coinflip", "chance", 0.53, 0.53, 0.53), ("coinflip", "greedy", 0.47, 0.37, 0.57),
        ("coinflip", "hag", 0.55, 0.45, 0.65),
        ("arithmetic", "chance", 0.03, 0.03, 0.03), ("arithmetic", "greedy", 0.26, 0.17, 0.35),
        ("arithmetic", "hag", 0.23, 0.15, 0.32),
        ("taboo", "hag", 0.02, 0.0, 0.04),  # no chance row: skipped
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["task", "method", "mean", "ci_low", "ci_high"])


def test_at_chance_flags_tasks_where_no_method_beats_a_constant() -> None:
    out = ev.at_chance(chance_main())
    assert list(out.columns) == list(ev.AT_CHANCE_COLUMNS)
    assert list(out["task"]) == ["coinflip", "arithmetic"]
    coin, arith = out.iloc[0], out.iloc[1]
    assert coin["at_chance"] and coin["n_above_chance"] == 0 and coin["best_method"] == "hag"
    assert not coin["best_above_chance"] and coin["chance_mean"] == 0.53
    assert not arith["at_chance"] and arith["n_above_chance"] == 2 and arith["best_method"] == "greedy"
    with pytest.raises(ValueError, match="ci_low"):
        ev.at_chance(chance_main().drop(columns=["ci_low"]))


def test_difficulty_vs_improvement() -> None:
    out = ev.difficulty_vs_improvement(study_frame(), n_boot=200)
    assert list(out["task"]) == ["taboo", "coinflip", "strategyqa"]  # first appearance in the scores
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
        st.validate_scores(frame)


def test_extra_columns_are_ignored() -> None:
    frame = make_scores({"default": 0.0, "hag": 0.1}, n_items=5).assign(config="{}", parse_status="ok")
    assert len(ev.main_table(frame, n_boot=10)) == 2


# ---------------------------------------------------------------------------- output


def test_write_table_byte_identical(tmp_path) -> None:
    table = ev.relative_table(study_frame(), n_boot=200)
    a = stages.write_table(table, tmp_path / "a" / "rel.csv")
    b = stages.write_table(ev.relative_table(study_frame(), n_boot=200), tmp_path / "b" / "rel.csv")
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "\r" not in text and text.endswith("\n")
    assert "-0.0000" not in stages.write_table(pd.DataFrame({"x": [-1e-9]}), tmp_path / "z.csv").read_text()
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temp files left behind
    header = text.splitlines()[0].split(",")
    assert header[:4] == ["task", "baseline", "same_as", "target_mean"]
    assert all(len(v.split(".")[1]) == 4 for v in text.splitlines()[1].split(",")[3:5])


def test_to_markdown() -> None:
    df = pd.DataFrame({"task": ["a|b"], "mean": [0.123456], "n": [3], "rel": [float("nan")]})
    md = ev.to_markdown(df)
    lines = md.strip().splitlines()
    assert lines[0] == "| task | mean | n | rel |"
    assert lines[1] == "|:---|---:|---:|---:|"
    assert lines[2] == "| a\\|b | 0.1235 | 3 |  |"


# ---------------------------------------------------------------------------- pooled adapters


def _adapters(effects: tuple[float, ...], n_items: int = 80) -> pd.DataFrame:
    """One member method per adapter, on the same items and seeds, shifted by each adapter's effect."""
    frame = make_scores({"default": 0.0, **{f"hag_seed{k}": e for k, e in enumerate(effects)}}, n_items=n_items)
    return frame


def test_pooled_ci_includes_the_spread_across_adapters() -> None:
    scores = _adapters((0.0, 0.3, -0.1))
    members = ["hag_seed0", "hag_seed1", "hag_seed2"]
    pooled_rows = methods.pooled(scores.assign(config="", status="", n_tokens=1), members)
    plain = st.bootstrap_ci(pooled_rows[["item_id", "seed", "score"]])
    ci = st.pooled_ci(scores, members)
    assert ci.mean == pytest.approx(plain.mean)  # the same point estimate: the mean over adapters
    # adapters that disagree widen the interval beyond what items and seeds alone give
    assert (ci.ci_high - ci.ci_low) > 1.5 * (plain.ci_high - plain.ci_low)
    same = _adapters((0.1, 0.1, 0.1))
    # with one member the pooled bootstrap is an item bootstrap of that member
    one = st.pooled_ci(same, ["hag_seed0"])
    assert one.mean == pytest.approx(st.bootstrap_ci(same[same.method == "hag_seed0"]).mean)
    with pytest.raises(ValueError, match="no scores"):
        st.pooled_ci(scores, ["hag_seed9"])


def test_main_and_relative_tables_use_the_pooled_bootstrap() -> None:
    scores = _adapters((0.0, 0.3, -0.1)).assign(config="", status="", n_tokens=1)
    members = ["hag_seed0", "hag_seed1", "hag_seed2"]
    scores = pd.concat([scores, methods.pooled(scores, members)], ignore_index=True)
    plain = ev.main_table(scores).set_index("method").loc["hag"]
    pooled = ev.main_table(scores, pooled={"hag": members}).set_index("method").loc["hag"]
    assert pooled["mean"] == pytest.approx(plain["mean"]) and pooled["ci_high"] - pooled["ci_low"] > plain["ci_high"] - plain["ci_low"]
    rel_plain = ev.relative_table(scores, target="hag", baselines=("default",)).iloc[0]
    rel = ev.relative_table(scores, target="hag", baselines=("default",), members=members).iloc[0]
    assert rel["diff"] == pytest.approx(rel_plain["diff"])
    assert rel["diff_ci_high"] - rel["diff_ci_low"] > rel_plain["diff_ci_high"] - rel_plain["diff_ci_low"]
    # the permutation p is on the pooled per-item differences (conditional on the adapters): the same p
    assert rel["p_value"] == pytest.approx(rel_plain["p_value"])


# ---------------------------------------------------------------------------- the item oracle's rows (headroom: test_headroom.py)


def oracle_case(n_items: int = 80, subset: int = 40, task: str = "coinflip", rng_seed: int = 5):
    """The main scores (task_oracle and default on every item) and item oracle rows on the first ``subset``
    items that copy task_oracle's (the oracle chose the task oracle everywhere: headroom exactly 0)."""
    scores = make_scores({"default": 0.0, "task_oracle": 0.0}, n_items=n_items, task=task, rng_seed=rng_seed,
                         base_p=(0.2, 0.6))  # fmt: skip
    ids = sorted(scores["item_id"].unique())[:subset]
    oracle = scores.loc[(scores["method"] == "task_oracle") & scores["item_id"].isin(ids)].assign(method="item_oracle")
    return scores, oracle.reset_index(drop=True)


def test_main_table_adds_a_subset_method_with_its_own_n_items() -> None:
    scores, oracle = oracle_case()
    main = ev.main_table(scores, n_boot=200, subset=oracle)
    assert list(main["method"]) == ["default", "task_oracle", "item_oracle"]
    assert list(main["n_items"]) == [80, 80, 40]
    with pytest.raises(ValueError, match="not scored on the same"):  # why it cannot simply join the scores
        ev.main_table(pd.concat([scores, oracle]), n_boot=200)
    with pytest.raises(ValueError, match=r"\['task_oracle'\] are in both"):
        ev.main_table(scores, n_boot=200, subset=oracle.assign(method="task_oracle"))


def test_at_chance_leaves_out_rows_over_fewer_items() -> None:
    main = chance_main().assign(n_items=100)
    main = pd.concat([main, pd.DataFrame([("arithmetic", "item_oracle", 0.9, 0.8, 0.95, 30)], columns=main.columns)])
    out = ev.at_chance(main).set_index("task")
    assert out.loc["arithmetic", "best_method"] == "greedy" and out.loc["arithmetic", "n_above_chance"] == 2


def test_flags_reads_bools_back_from_csv_in_either_form(tmp_path):
    path = stages.write_table(pd.DataFrame({"a": [True, False], "b": ["True", "x"]}), tmp_path / "t.csv")
    back = pd.read_csv(path)
    assert ev.flags(back["a"]).tolist() == [True, False]
    assert ev.flags(back["b"]).tolist() == [True, False]
