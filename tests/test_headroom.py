"""The headroom table: a shown gain, a shown absence (TOST), a tie the data cannot resolve, its brackets."""

import numpy as np
import pandas as pd
import pytest

from hagstudy.report import headroom

SEEDS = (0, 1, 2)


def rows(task: str, method: str, scores: np.ndarray, config: str = "{}") -> pd.DataFrame:
    """One row per (item, seed); ``scores`` is items x seeds."""
    n, s = scores.shape
    return pd.DataFrame({"task": task, "method": method, "item_id": [f"{task}-{i:03d}" for i in range(n) for _ in range(s)],
                         "seed": [seed for _ in range(n) for seed in SEEDS[:s]], "score": scores.ravel(), "config": config,
                         "status": "ok", "n_tokens": 5})  # fmt: skip


def choices(task: str, n: int, best: float, ref: float, tied: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"task": task, "item_id": [f"{task}-{i:03d}" for i in range(n)], "in_sample_max": best,
                         "reference_selection_mean": ref, "n_tied": tied})  # fmt: skip


def case(task: str, io: np.ndarray, to: np.ndarray, static: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = pd.concat([rows(task, "task_oracle", to), rows(task, "greedy", to)], ignore_index=True)
    oracle = [rows(task, "item_oracle", io)] + ([rows(task, "static_hindsight", static)] if static is not None else [])
    return scores, pd.concat(oracle, ignore_index=True)


def test_a_real_gain_is_shown_and_the_brackets_sit_around_it() -> None:
    rng = np.random.default_rng(0)
    to = (rng.random((100, 3)) < 0.3).astype(float)
    io = np.maximum(to, (rng.random((100, 3)) < 0.3).astype(float))  # the oracle adds successes
    scores, oracle = case("t", io, to, static=to)
    out = headroom.headroom_table(scores, oracle, choices("t", 100, 0.9, 0.3, tied=2), margin=0.03, n_boot=4000)
    row = out.iloc[0]
    assert row["headroom"] == pytest.approx(io.mean() - to.mean()) and row["headroom_ci_low"] > 0
    assert row["verdict"] == "headroom shown" and row["p_holm"] < 0.05
    assert row["per_query_gain"] == pytest.approx(row["headroom"])  # static_hindsight = task oracle here
    assert row["in_sample_bracket"] == pytest.approx(0.6) and row["in_sample_bracket_ci_high"] >= 0.6
    assert row["mean_tied"] == 2 and list(out.columns) == list(headroom.COLUMNS)


def test_no_headroom_is_shown_only_when_the_tost_says_so() -> None:
    rng = np.random.default_rng(1)
    to = (rng.random((200, 3)) < 0.5).astype(float)
    scores, oracle = case("t", to.copy(), to)
    row = headroom.headroom_table(scores, oracle, choices("t", 200, 0.5, 0.5), margin=0.05, n_boot=4000).iloc[0]
    assert row["headroom"] == 0 and row["verdict"] == "below margin" and row["p_tost_holm"] < 0.05
    noisy = (rng.random((20, 3)) < 0.5).astype(float)
    scores, oracle = case("t", noisy, (rng.random((20, 3)) < 0.5).astype(float))
    row = headroom.headroom_table(scores, oracle, choices("t", 20, 0.5, 0.5), margin=0.02, n_boot=4000).iloc[0]
    assert row["verdict"] == "cannot tell"  # 20 noisy items: neither a gain nor its absence is shown


def test_a_worse_item_oracle_is_called_so_and_tests_are_corrected_across_tasks() -> None:
    to = np.ones((60, 3))
    scores_a, oracle_a = case("a", np.zeros((60, 3)), to)
    scores_b, oracle_b = case("b", to.copy(), to)
    out = headroom.headroom_table(pd.concat([scores_a, scores_b]), pd.concat([oracle_a, oracle_b]),
                                  pd.concat([choices("a", 60, 1, 1), choices("b", 60, 1, 1)]),
                                  margin={"a": 0.05, "b": 0.05}, n_boot=2000).set_index("task")  # fmt: skip
    assert out.loc["a", "verdict"] == "item oracle below" and out.loc["b", "verdict"] == "below margin"
    assert (out["p_holm"] >= out["p_value"]).all() and out.loc["a", "margin"] == 0.05


def test_the_table_refuses_unpaired_or_foreign_rows() -> None:
    to = np.ones((10, 3))
    scores, oracle = case("t", to, to)
    with pytest.raises(ValueError, match="only 'item_oracle' and 'static_hindsight' rows"):
        headroom.headroom_table(scores, pd.concat([oracle, oracle.assign(method="hag")]), choices("t", 10, 1, 1), 0.05)
    only_task_oracle = scores.loc[scores["method"] == "task_oracle"].iloc[15:]
    with pytest.raises(ValueError, match="task_oracle lacks 15 of the item oracle's"):
        headroom.headroom_table(only_task_oracle, oracle, choices("t", 10, 1, 1), 0.05)
    with pytest.raises(ValueError, match="no entry for task 't'"):
        headroom.headroom_table(scores, oracle, choices("t", 10, 1, 1), {"other": 0.05})
