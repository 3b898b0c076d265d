"""The stage-1 gate: an adapter is used only if it parses and is not worse than the per-task majority label."""

from __future__ import annotations

import pytest
from conftest import ReplyEngine

from hagstudy import dataset, gate
from hagstudy.decoding import DecodingConfig

A = DecodingConfig(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.0)
B = DecodingConfig(temperature=1.5, top_p=1.0, top_k=0, repetition_penalty=1.3)


def rows(task: str, configs: list[DecodingConfig]) -> list[dict]:
    return [dataset.example(f"{task} question {i}", c, task, f"{task}-{i}") for i, c in enumerate(configs)]


TRAIN = rows("t1", [A, A, A, B]) + rows("t2", [B, B, A])
VAL = rows("t1", [A, B]) + rows("t2", [B, B])


def quality(parse: float, exact: float, dist: float) -> dict:
    return {"n": 4, "parse_rate": parse, "exact_all": exact, "mean_distance": dist}


def test_the_majority_comes_from_the_training_rows_only():
    assert gate.majority(TRAIN) == {"t1": A.effective(), "t2": B.effective()}
    q = gate.majority_quality(TRAIN, VAL)
    assert q["exact_all"] == pytest.approx(3 / 4) and q["parse_rate"] == 1.0
    with pytest.raises(ValueError, match="no training rows"):
        gate.majority_quality(TRAIN, rows("t3", [A]))


def test_judge_passes_only_when_not_worse_on_both_and_parsing():
    maj = quality(1.0, 0.75, 0.2)
    ok = gate.judge("a", 1, 10, quality(1.0, 0.75, 0.2), maj, 0.99)
    assert ok.passed and not ok.beats_majority and ok.reason == "learned its labels"
    better = gate.judge("a", 1, 10, quality(1.0, 0.8, 0.1), maj, 0.99)
    assert better.passed and better.beats_majority
    for q, why in [(quality(0.98, 0.9, 0.1), "parse rate"), (quality(1.0, 0.7, 0.1), "exact match"),
                   (quality(1.0, 0.9, 0.3), "config distance"), (quality(0.0, 0.0, float("nan")), "parse rate")]:
        verdict = gate.judge("a", 1, 10, q, maj, 0.99)
        assert not verdict.passed and not verdict.beats_majority and why in verdict.reason


def test_learning_curve_scores_step_zero_and_each_snapshot(tmp_path):
    replies = {dataset.query_of(r): dataset.label_of(r).to_json() for r in VAL}
    good, bad = ReplyEngine(replies), ReplyEngine({})
    snaps = {5: tmp_path / "step-0005", 10: tmp_path / "step-0010"}
    curve = gate.learning_curve(lambda path: bad if path is None or path.name.endswith("5") else good, snaps, VAL)
    assert list(curve["step"]) == [0, 5, 10]
    assert list(curve["parse_rate"]) == [0.0, 0.0, 1.0] and curve["exact_match"].iloc[-1] == 1.0


def test_write_and_read_round_trip_and_clear_errors(tmp_path):
    verdict = gate.judge("hag_seed0", 1234, 48, quality(1.0, 0.8, 0.1), quality(1.0, 0.75, 0.2), 0.99)
    path = gate.write([verdict], tmp_path / gate.FILE)
    assert gate.read(path) == {"hag_seed0": verdict}
    assert list(gate.frame([verdict])["adapter"]) == ["hag_seed0"]
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        gate.read(tmp_path / "missing.json")
    path.write_text('[{"adapter": 1}]')
    with pytest.raises(ValueError, match="not a gate file"):
        gate.read(path)


def test_per_task_quality_splits_the_validation_rows_by_task():
    frame = gate.per_task({"majority": gate.majority_proposals(TRAIN, VAL)}, VAL)
    assert list(frame["task"]) == ["t1", "t2"] and list(frame["exact_match"]) == [0.5, 1.0]
    with pytest.raises(ValueError, match="proposals for"):
        gate.per_task({"m": []}, VAL)
