"""The overhead table: every count from tiny run tables, each rule checked by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import pytest

from hagstudy.report import overhead


@dataclass
class Log:
    steps: int
    wall_seconds: float


BUDGET = pd.DataFrame({"task": ["t", "u"], "requested": [100, 60], "prune_requested": [40, 20]})
CHECK = pd.DataFrame({"task": ["t", "t", "t", "u", "u"], "item_id": ["t1", "t2", "t3", "u1", "u2"],
                      "changed": [True, False, True, False, False]})
PRUNE = pd.DataFrame({"task": ["t"] * 7 + ["u"] * 3, "config": [f"c{i}" for i in range(7)] + ["c0", "c1", "x"]})
TUNING = pd.DataFrame({"task": ["t", "t", "u", "t"], "method": ["min_p", "min_p", "min_p", "edt"],
                       "config": ["a", "b", "a", "e"]})
SCORES = pd.DataFrame({"method": ["default", "default", "hag", "hag", "zero_shot_json"], "n_tokens": [10, 20, 30, 50, 7]})
CONSISTENCY = pd.DataFrame({"method": ["hag_seed0", "hag_seed1", "hag_seed0", "zero_shot_json"],
                            "variation": ["original", "original", "casing", "original"],
                            "n": [1, 3, 3, 2], "stage1_tokens": [10.0, 30.0, 99.0, 40.0]})


def table() -> pd.DataFrame:
    return overhead.overhead_table(search_budget=BUDGET, label_check_items=CHECK, search_prune=PRUNE,
                                   adaptive_tuning=TUNING, scores=SCORES, consistency=CONSISTENCY,
                                   trained={"hag_seed0": Log(10, 100.0), "hag_seed1": Log(12, 200.0)},
                                   draws=2, heldout_draws=4).set_index("method")


def test_counts_follow_the_code_rules():
    assert overhead.search_items(CHECK) == {"t": 3, "u": 2}
    assert overhead.label_check_generations(CHECK, 4) == (5 + 2) * 4  # start on every item, changed labels once more
    assert overhead.adaptive_generations(TUNING, {"t": 3, "u": 2}, 2) == {"min_p": 2 * 3 * 2 + 1 * 2 * 2, "edt": 3 * 2}
    top = overhead.TASK_ORACLE_TOP
    assert top == 5 and overhead.SINGLE_CONFIG_TOP == 5
    # t re-scores its 5 best of 7, u all 3 of its 3; the single config the 2 configs pruned on both tasks
    assert overhead.oracle_rescoring(PRUNE, {"t": 3, "u": 2}, 2) == (5 * 3 * 2 + 3 * 2 * 2, 2 * 5 * 2)


def test_rows_add_stage1_to_the_answer_and_the_search_to_hags_setup():
    t = table()
    assert list(t.reset_index().columns) == overhead.COLUMNS
    assert t.loc["default", "setup_generations"] == 0 and t.loc["default", "per_query_tokens"] == 15
    assert t.loc["task_oracle", "setup_generations"] == 60 + 42
    assert t.loc["best_single_config", "setup_generations"] == 60 + 20
    assert t.loc["min_p", "setup_generations"] == 16 and t.loc["edt", "setup_generations"] == 6
    assert t.loc["hag", "setup_generations"] == 160 + 28
    assert t.loc["hag", "setup_train_seconds"] == 150.0 and "10, 12 steps" in t.loc["hag", "note"]
    assert t.loc["hag", "per_query_passes"] == 2 and t.loc["hag", "per_query_tokens"] == (10 + 3 * 30) / 4 + 40
    assert t.loc["zero_shot_json", "per_query_tokens"] == 40 + 7
    assert math.isnan(t.loc["greedy", "per_query_tokens"])  # no score rows: left empty, never guessed


def test_unknown_counts_stay_empty():
    t = overhead.overhead_table(search_budget=BUDGET, label_check_items=CHECK, search_prune=PRUNE,
                                adaptive_tuning=TUNING[TUNING.method == "min_p"], scores=SCORES,
                                consistency=CONSISTENCY.iloc[:0], trained={}, draws=2, heldout_draws=4).set_index("method")
    assert pd.isna(t.loc["edt", "setup_generations"]) and pd.isna(t.loc["hag", "setup_train_seconds"])
    assert math.isnan(t.loc["hag", "per_query_tokens"])


def test_bad_tables_are_named():
    with pytest.raises(ValueError, match="search_prune.csv"):
        overhead.oracle_rescoring(PRUNE.rename(columns={"config": "cfg"}), {"t": 3}, 2)
    with pytest.raises(ValueError, match=r"task\(s\) \['u'\]"):
        overhead.oracle_rescoring(PRUNE, {"t": 3}, 2)
    with pytest.raises(ValueError, match="changed"):
        overhead.label_check_generations(CHECK.assign(changed="maybe"), 4)
    with pytest.raises(ValueError, match="adaptive_tuning.csv"):
        overhead.adaptive_generations(TUNING, {"t": 3}, 2)


def test_lines_read_the_table():
    first, second = overhead.lines(table().reset_index())
    assert first == ("HAG's set-up asked for 188 generations and 150 s of LoRA training per adapter; "
                     "the task oracle's, 102 generations and no training.")
    assert second == "Per query HAG runs 2 passes and generates 65.0 tokens on average, the default 1 pass and 15.0."
