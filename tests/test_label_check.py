"""The held-out label check: an item keeps its searched label only if it beats the start config on fresh draws."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import FakeEngine, FakeTask, target_score

from hagstudy.decoding import DecodingConfig
from hagstudy.method import label_check
from hagstudy.method.search import ItemLabel

TARGET = DecodingConfig(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1)
START = DecodingConfig(temperature=1.5, top_p=0.5, top_k=0, repetition_penalty=1.5)
FAR = DecodingConfig(temperature=2.0, top_p=0.1, top_k=0, repetition_penalty=2.0)


def label(task: FakeTask, i: int, config: DecodingConfig, score: float = 0.9) -> ItemLabel:
    item = task.items("search")[i]
    return ItemLabel(task.name, item.id, item.query, config, score, 0.5, 3, 3)


def test_a_label_is_kept_only_if_it_beats_the_start_config_by_the_margin():
    task = FakeTask(target_score(TARGET))  # a config's score is its closeness to TARGET
    labels = [label(task, 0, TARGET), label(task, 1, FAR), label(task, 2, START)]
    checked = label_check.check(FakeEngine(), task, task.items("search"), labels, START, draws=2, margin=0.1)
    better, worse, same = checked
    assert better.kept and better.changed and better.config == TARGET.effective()
    assert better.heldout_searched > better.heldout_start + 0.1
    assert not worse.kept and worse.changed and worse.config == START.effective()  # falls back to the task's config
    assert not same.kept and not same.changed and same.config == START.effective()
    assert math.isnan(better.search_start)  # these labels carry no evaluations of the start config
    # a margin larger than the gain keeps nothing
    strict = label_check.check(FakeEngine(), task, task.items("search"), labels, START, draws=2, margin=0.99)
    assert [c.kept for c in strict] == [False, False, False]


def test_summary_counts_changed_and_kept_per_task():
    task = FakeTask(target_score(TARGET))
    labels = [label(task, 0, TARGET), label(task, 1, FAR), label(task, 2, START)]
    checked = label_check.check(FakeEngine(), task, task.items("search"), labels, START, draws=2, margin=0.1)
    row = label_check.summary(checked).iloc[0]
    assert (row["items"], row["changed"], row["kept"]) == (3, 2, 1)
    assert row["kept_share"] == pytest.approx(1 / 3)
    assert row["heldout_after"] >= row["heldout_start"]


def test_write_and_read_round_trip(tmp_path):
    task = FakeTask(target_score(TARGET))
    labels = [label(task, 0, TARGET), label(task, 1, FAR)]
    checked = label_check.check(FakeEngine(), task, task.items("search"), labels, START, draws=2, margin=0.1)
    label_check.write(checked, tmp_path)
    back = label_check.read(tmp_path, [task.name])
    assert list(back["kept"]) == [True, False] and back["kept"].dtype == bool
    assert list(back["config"]) == [TARGET.effective().to_json(), START.effective().to_json()]
    pd.testing.assert_frame_equal(back, label_check.frame_of(checked), check_dtype=False)


def test_bad_input_fails_clearly(tmp_path):
    task = FakeTask(target_score(TARGET))
    with pytest.raises(ValueError, match="margin"):
        label_check.check(FakeEngine(), task, task.items("search"), [], START, draws=2, margin=1.5)
    with pytest.raises(ValueError, match="not given"):
        label_check.check(FakeEngine(), task, task.items("search")[:1], [label(task, 3, TARGET)], START, 2, 0.1)
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        label_check.read(tmp_path, ["fake"])
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / label_check.FILE).write_text("task,item_id\nfake,a\n")
    with pytest.raises(ValueError, match="missing column"):
        label_check.read(tmp_path, ["fake"])
