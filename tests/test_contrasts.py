"""The permutation test, the one paired-contrast path, merged duplicates, per-task margins, the confirmatory
family and its MDE, on tiny synthetic score tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_evaluation import make_scores

from hagstudy import methods
from hagstudy.report import contrasts
from hagstudy.report import evaluation as ev
from hagstudy.report import stats as st

# ---------------------------------------------------------------------------- sign-flip permutation test


def test_sign_flip_is_exact_when_every_sign_vector_fits() -> None:
    # 3 non-zero differences: 8 sign vectors, |sum| = 3 for all-plus and all-minus only
    assert st.sign_flip_p(np.array([1.0, 1.0, 1.0]), n_perm=8) == pytest.approx(2 / 8)
    assert st.sign_flip_p(np.array([1.0, 0.0, 1.0, 0.0, 1.0]), n_perm=8) == pytest.approx(2 / 8)  # zeros drop out
    assert st.sign_flip_p(np.array([0.5, -0.5]), n_perm=8) == 1.0  # every sign vector is as extreme
    assert st.sign_flip_p(np.zeros(10)) == 1.0  # identical methods


def test_sign_flip_reaches_its_resolution_and_is_order_free() -> None:
    d = np.full(100, 0.1)
    assert st.sign_flip_p(d, n_perm=20_000) == pytest.approx(1 / 20_001)  # no flip is as extreme
    rng = np.random.default_rng(1)
    d = rng.normal(0.05, 0.3, 60)
    assert st.sign_flip_p(d, rng_seed=3) == st.sign_flip_p(rng.permutation(d), rng_seed=3)
    assert st.sign_flip_p(d, n_perm=2000, rng_seed=0) != st.sign_flip_p(d, n_perm=2000, rng_seed=1)  # seeded draws


def test_sign_flip_null_is_calibrated() -> None:
    rng = np.random.default_rng(7)
    ps = np.array([st.sign_flip_p(rng.normal(0.0, 1.0, 40), n_perm=400, rng_seed=k) for k in range(300)])
    assert 0.02 < (ps < 0.05).mean() < 0.09
    assert 0.4 < np.median(ps) < 0.6


def test_sign_flip_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="n_perm"):
        st.sign_flip_p(np.ones(3), n_perm=0)
    with pytest.raises(ValueError, match="NaN"):
        st.sign_flip_p(np.array([1.0, math.nan]))


def test_upper_bound_and_mde() -> None:
    reps = np.linspace(-1.0, 1.0, 2001)
    assert st.upper_bound(reps, alpha=0.05) == pytest.approx(0.9)
    # (z_0.975 + z_0.8) * 1 / sqrt(100)
    assert st.mde(1.0, 100, alpha=0.05, power=0.8) == pytest.approx((1.959964 + 0.841621) / 10, rel=1e-5)
    assert st.mde(1.0, 100, alpha=0.001) > st.mde(1.0, 100, alpha=0.05)  # a stricter level needs a larger effect
    with pytest.raises(ValueError, match="power"):
        st.mde(1.0, 100, power=1.0)
    with pytest.raises(ValueError, match="n_items"):
        st.mde(1.0, 1)


# ---------------------------------------------------------------------------- margins, duplicates, resolution


def test_task_margins_scale_with_the_best_fixed_config() -> None:
    frame = pd.concat([
        make_scores({"default": 0.0, "greedy": 0.2, "hag": 0.4}, task="high", base_p=(0.4, 0.6)),
        make_scores({"default": 0.0, "hag": 0.5}, task="low", base_p=(0.0, 0.02), rng_seed=2),
    ], ignore_index=True)  # fmt: skip
    means = frame.groupby(["task", "method"])["score"].mean()
    margins = contrasts.task_margins(frame)
    assert margins["high"] == pytest.approx(0.1 * means["high"]["greedy"])  # the best fixed config, never hag
    assert margins["low"] == 0.01  # the floor: a task near 0 still gets a margin a test can show
    with pytest.raises(ValueError, match="task 'x' has none of the fixed configs"):
        contrasts.task_margins(make_scores({"hag": 0.0}, task="x"))


def duplicated_fixed(n_items: int = 60) -> pd.DataFrame:
    """greedy, and task_oracle and best_single_config with greedy's very scores (the same config)."""
    frame = make_scores({"default": 0.0, "greedy": 0.1, "hag": 0.1}, n_items=n_items, task="t")
    copies = [frame.loc[frame["method"] == "greedy"].assign(method=m) for m in ("task_oracle", "best_single_config")]
    return pd.concat([frame, *copies], ignore_index=True)


def test_same_scores_groups_identical_methods_in_registry_order() -> None:
    frame = duplicated_fixed()
    groups = contrasts.same_scores(frame, ["task_oracle", "best_single_config", "greedy", "default", "absent"])
    assert groups == {"default": [], "greedy": ["best_single_config", "task_oracle"]}


def test_relative_table_tests_identical_baselines_once() -> None:
    table = ev.relative_table(duplicated_fixed(), baselines=("default", "greedy", "task_oracle", "best_single_config"))
    assert list(table["baseline"]) == ["default", "greedy"]
    assert list(table["same_as"]) == ["", "best_single_config; task_oracle"]
    assert set(table["family"]) == {"exploratory"}


def test_check_resolution_names_the_replicates_needed() -> None:
    contrasts.check_resolution(42, 20_000, 0.05)  # 42 / 20,001 = 0.0021: fine
    with pytest.raises(ValueError, match=r"n_boot=2000 is too small for 120 .* use n_boot >= 2400"):
        contrasts.check_resolution(120, 2000, 0.05)


# ---------------------------------------------------------------------------- one code path


def test_paired_contrast_is_what_every_table_shows() -> None:
    frame = st.validate_scores(make_scores({"default": 0.0, "greedy": 0.05, "hag": 0.15}, n_items=80))
    c = contrasts.paired_contrast(frame, "hag", "default", "coinflip", margin=0.03, n_boot=4000)
    row = ev.relative_table(frame, baselines=("default",), margin=0.03, n_boot=4000).iloc[0]
    for key in ("diff", "diff_ci_low", "diff_ci_high", "largest_gain", "p_value", "p_tost", "target_mean"):
        assert row[key] == c[key]
    assert c["diff"] <= c["largest_gain"] <= c["diff_ci_high"]  # one-sided 95 % bound inside the two-sided 95 % CI
    assert c["n_items"] == 80 and c["sd_diff"] > 0
    with pytest.raises(ValueError, match="method 'nope' has no scores on task 'coinflip'"):
        contrasts.paired_contrast(frame, "nope", "default", "coinflip")


def adapters_frame() -> tuple[pd.DataFrame, list[str]]:
    """Three tasks, three adapters and their pooled 'hag', default and greedy."""
    parts = []
    for k, task in enumerate(("a", "b", "c")):
        f = make_scores({"default": 0.0, "greedy": 0.05, "hag_seed0": 0.1, "hag_seed1": 0.2, "hag_seed2": 0.0},
                        n_items=50, task=task, rng_seed=k)  # fmt: skip
        parts.append(f.assign(config="", status="", n_tokens=1))
    scores = pd.concat(parts, ignore_index=True)
    members = ["hag_seed0", "hag_seed1", "hag_seed2"]
    return pd.concat([scores, methods.pooled(scores, members)], ignore_index=True), members


def test_difficulty_and_relative_give_one_contrast_the_same_p() -> None:
    scores, members = adapters_frame()
    relative = ev.relative_table(scores, baselines=("default", "greedy"), members=members)
    alone = ev.difficulty_vs_improvement(scores, members=members)
    copied = ev.difficulty_vs_improvement(scores, members=members, relative=relative)
    rel = relative.loc[relative["baseline"] == "default"].set_index("task")
    np.testing.assert_array_equal(alone.set_index("task")["p_value"], rel["p_value"])
    np.testing.assert_array_equal(copied.set_index("task")["p_holm"], rel["p_holm"])  # the same family's Holm p too
    np.testing.assert_array_equal(copied.set_index("task")["improvement_ci_low"], rel["diff_ci_low"])


# ---------------------------------------------------------------------------- confirmatory family and MDE


def test_confirmatory_family_is_hag_vs_task_oracle_and_greedy_above_chance() -> None:
    scores, members = adapters_frame()
    oracle_is_greedy = scores.loc[(scores["method"] == "greedy") & (scores["task"] == "b")].assign(method="task_oracle")
    other = make_scores({"task_oracle": 0.1}, n_items=50, task="a", rng_seed=9).assign(config="", status="", n_tokens=1)
    scores = pd.concat([scores, oracle_is_greedy, other], ignore_index=True)
    chance = pd.DataFrame({"task": ["a", "b", "c"], "at_chance": ["False", "False", "True"]})  # as read from a CSV
    conf = ev.confirmatory_table(scores, chance, members=members)
    assert list(conf.columns) == list(ev.RELATIVE_COLUMNS)
    assert list(zip(conf["task"], conf["baseline"], conf["same_as"])) == [
        ("a", "greedy", ""), ("a", "task_oracle", ""), ("b", "greedy", "task_oracle")]  # c is at chance
    assert set(conf["family"]) == {"confirmatory"}
    np.testing.assert_allclose(conf["p_holm"], st.holm(conf["p_value"].to_numpy()))  # Holm within these 3 only
    margins = contrasts.task_margins(scores)
    assert list(conf["margin"]) == [margins["a"], margins["a"], margins["b"]]
    with pytest.raises(ValueError, match="lacks column"):
        ev.confirmatory_table(scores, chance.drop(columns=["at_chance"]))
    assert ev.confirmatory_table(scores, chance.assign(at_chance=True)).empty


def test_mde_table_uses_the_family_size_and_the_pooled_differences() -> None:
    scores, members = adapters_frame()
    chance = pd.DataFrame({"task": ["a", "b", "c"], "at_chance": [False, False, False]})
    conf = ev.confirmatory_table(scores, chance, members=members)
    table = ev.mde_table(scores, conf, members=members)
    assert list(table.columns) == list(ev.MDE_COLUMNS)
    assert len(table) == len(conf) == 3  # greedy only: no task oracle in these scores
    d = st.paired_differences(st.validate_scores(scores), "hag", "greedy", "a", members)
    row = table.iloc[0]
    assert row["alpha"] == pytest.approx(0.05 / 3) and row["n_items"] == 50
    assert row["sd_diff"] == pytest.approx(d.std(ddof=1))
    assert row["mde"] == pytest.approx(st.mde(d.std(ddof=1), 50, 0.05 / 3, 0.8))
    assert list(table["margin"]) == list(conf["margin"])
    with pytest.raises(ValueError, match="margin"):
        ev.mde_table(scores, conf.drop(columns=["margin"]))
