"""The stage-1 gate: an adapter is used only if it parses and is not worse than the per-task majority label."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import ReplyEngine

from hagstudy.decoding import DecodingConfig
from hagstudy.method import dataset, gate

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


def curve_of(*points: tuple[int, float, float, float]) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, "parse_rate": p, "exact_match": e, "distance": d} for s, p, e, d in points])


def test_best_validation_picks_the_best_exact_match_then_distance_then_the_later_step():
    # The committed run's hag_seed2 curve: the final step (0.708) is below the majority, step 48 (0.75) above.
    curve = curve_of((0, 0.0, 0.0, float("nan")), (12, 1.0, 0.42, 0.60), (36, 1.0, 0.60, 0.46), (48, 1.0, 0.75, 0.17),
                     (60, 1.0, 0.67, 0.22), (72, 1.0, 0.71, 0.23))
    assert gate.select_step(curve, "best_validation", 0.99) == 48
    assert gate.select_step(curve, "final", 0.99) == 72
    tied = curve_of((12, 1.0, 0.73, 0.21), (36, 1.0, 0.73, 0.16), (48, 1.0, 0.73, 0.16), (72, 1.0, 0.73, 0.21))
    assert gate.select_step(tied, "best_validation", 0.99) == 48  # same exact and distance: the later step
    # A snapshot that does not parse often enough is never chosen, however exact its parsed rows are.
    unparsed = curve_of((12, 0.5, 0.9, 0.05), (24, 1.0, 0.6, 0.3))
    assert gate.select_step(unparsed, "best_validation", 0.99) == 24
    assert gate.select_step(curve_of((12, 0.5, 0.9, 0.05), (24, 0.4, 0.6, 0.3)), "best_validation", 0.99) == 24
    with pytest.raises(ValueError, match="no snapshot"):
        gate.select_step(curve_of((0, 0.0, 0.0, float("nan"))), "best_validation", 0.99)
    with pytest.raises(ValueError, match="train.select"):
        gate.select_step(curve, "best", 0.99)


def test_adapter_path_is_the_folder_for_the_final_step_and_a_checkpoint_otherwise(tmp_path):
    folder = tmp_path / "hag_seed0"
    (folder / "checkpoints" / "step-0036").mkdir(parents=True)
    q = quality(1.0, 0.8, 0.1)
    final = gate.judge("hag_seed0", 0, 72, q, q, 0.99)
    assert final.selected_step == 72 and gate.adapter_path(folder, final) == folder
    early = gate.judge("hag_seed0", 0, 72, q, q, 0.99, selected_step=36)
    assert gate.adapter_path(folder, early) == folder / "checkpoints" / "step-0036"
    with pytest.raises(FileNotFoundError, match="step 48"):
        gate.adapter_path(folder, gate.judge("hag_seed0", 0, 72, q, q, 0.99, selected_step=48))
