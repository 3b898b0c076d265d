"""Notebook 05's label arms: shuffled within a task, denoised on fresh draws, unchecked (no margin), their
label mix and the sentences that read their comparisons with HAG."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import FakeEngine, FakeTask, target_score

from hagstudy import registry, stages
from hagstudy.config import load_profile
from hagstudy.decoding import DecodingConfig
from hagstudy.method import label_arms, label_check
from hagstudy.seeds import OFFSET_DENOISE, draw_seeds

START = DecodingConfig(temperature=1.0, top_p=1.0, top_k=50, repetition_penalty=1.0)
A = DecodingConfig(temperature=0.5, top_p=0.9, top_k=50, repetition_penalty=1.0)
B = DecodingConfig(temperature=1.5, top_p=0.5, top_k=10, repetition_penalty=1.1)
C = DecodingConfig(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.3)
SHUFFLED, DENOISED, UNCHECKED = (m.name for m in registry.LABEL_ARMS)


def labels_frame(configs_by_task: dict[str, list[DecodingConfig]]) -> pd.DataFrame:
    rows = [{"task": t, "item_id": f"{t}-{i:03d}", "query": f"q{i}", "config": c.to_json()}
            for t, configs in configs_by_task.items() for i, c in enumerate(configs)]
    return pd.DataFrame(rows)


def checked_row(item: str, searched: DecodingConfig, h_searched: float, h_start: float, task: str = "t") -> dict:
    kept = label_check.keeps(searched.to_json() != START.to_json(), h_searched, h_start, 0.1)
    return {"task": task, "item_id": item, "query": item, "config": (searched if kept else START).to_json(),
            "searched": searched.to_json(), "start": START.to_json(), "changed": searched != START, "kept": kept,
            "search_searched": 1.0, "search_start": 0.5, "heldout_searched": h_searched, "heldout_start": h_start}


# ------------------------------------------------------------------------------------------- shuffled


def test_shuffling_keeps_each_tasks_label_counts_and_moves_labels_between_items():
    frame = labels_frame({"x": [A] * 6 + [B] * 4 + [C] * 2, "y": [START] * 5})
    out = label_arms.shuffled(frame, seed=7)
    for task in ("x", "y"):
        assert sorted(out[out.task == task]["config"]) == sorted(frame[frame.task == task]["config"])
    assert (out["config"] != frame["config"]).any()  # some item got another item's label
    assert list(out["item_id"]) == list(frame["item_id"]) and list(out["query"]) == list(frame["query"])
    assert (out[out.task == "y"]["config"] == START.to_json()).all()  # one label per task: nothing to move


def test_shuffling_is_seeded_and_does_not_depend_on_row_order():
    frame = labels_frame({"x": [A, B, C, START, A, B, C, START]})
    one = label_arms.shuffled(frame, seed=1)
    again = label_arms.shuffled(frame.iloc[::-1], seed=1).set_index("item_id").loc[one["item_id"]]
    assert list(again["config"]) == list(one["config"])
    other = label_arms.shuffled(frame, seed=2)
    assert list(other["config"]) != list(one["config"])


def test_shuffling_names_a_missing_column():
    with pytest.raises(ValueError, match=r"\['config'\]"):
        label_arms.shuffled(pd.DataFrame({"task": ["x"], "item_id": ["1"]}), seed=0)


# ------------------------------------------------------------------------------------------ unchecked


def test_the_margin_rule_keeps_a_tie_only_without_a_margin():
    assert label_check.keeps(True, 0.5, 0.5, 0.0) and not label_check.keeps(True, 0.5, 0.5, 0.1)
    assert label_check.keeps(True, 0.6, 0.5, 0.1) and not label_check.keeps(False, 1.0, 0.0, 0.0)
    assert not label_check.keeps(True, 0.49, 0.5, 0.0)


def test_unchecked_keeps_every_changed_label_at_least_as_good_as_the_start_on_the_recorded_draws():
    checked = pd.DataFrame([
        checked_row("i0", A, 0.75, 0.5),  # kept by the check too
        checked_row("i1", B, 0.55, 0.5),  # better, but by less than the margin: only unchecked keeps it
        checked_row("i2", C, 0.5, 0.5),  # a tie: unchecked keeps it
        checked_row("i3", A, 0.25, 0.5),  # worse: nobody keeps it
        checked_row("i4", START, 1.0, 1.0),  # never changed
    ])
    out = label_arms.unchecked(checked)
    assert list(checked["kept"]) == [True, False, False, False, False]
    assert list(out["kept"]) == [True, True, True, False, False]
    assert list(out["config"]) == [A.to_json(), B.to_json(), C.to_json(), START.to_json(), START.to_json()]
    assert list(checked["config"])[1] == START.to_json()  # the input is not modified


def test_unchecked_names_the_missing_held_out_column():
    with pytest.raises(ValueError, match="heldout_start"):
        label_arms.unchecked(pd.DataFrame([checked_row("i0", A, 0.7, 0.5)]).drop(columns="heldout_start"))


# ------------------------------------------------------------------------------------------- denoised


def log_row(item: str, config: DecodingConfig, mean: float, stage: str = "greedy") -> dict:
    return {"task": "t", "item_id": item, "stage": stage, "config": config.to_json(), "mean": mean}


def test_candidates_are_the_items_top_greedy_configs_with_ties_to_the_start():
    log = [log_row("i0", C, 1.0, stage="prune"),  # pruning rows do not count
           log_row("i0", START, 0.5), log_row("i0", A, 0.75), log_row("i0", B, 0.5), log_row("i0", A, 0.75),
           log_row("i1", C, 1.0)]
    assert label_arms.candidates(log, "i0", START, top=3) == [A, START, B]  # B ties START: START first
    assert label_arms.candidates(log, "i0", START, top=1) == [A]
    assert label_arms.candidates(log, "i0", START, top=5) == [A, START, B]  # only 3 distinct configs
    assert label_arms.candidates(log, "i1", START, top=3) == [C.effective()]
    with pytest.raises(ValueError, match="'i9'"):
        label_arms.candidates(log, "i9", START, top=3)
    with pytest.raises(ValueError, match="top"):
        label_arms.candidates(log, "i0", START, top=0)


def test_denoise_rescoring_picks_the_best_candidate_on_fresh_draws_within_budget():
    task = FakeTask(target_score(B), name="t", n_items=4)  # B is truly the best, whatever the search said
    items = task.items("search")
    log = [row for it in items for row in (log_row(it.id, START, 0.9), log_row(it.id, A, 0.8),
                                            log_row(it.id, B, 0.2), log_row(it.id, C, 0.1))]
    labels = pd.DataFrame({"task": "t", "item_id": [it.id for it in items], "query": [it.query for it in items]})
    engine = FakeEngine()
    out = label_arms.denoise(engine, task, items, labels, log, START, top=3, draws=5)
    assert list(out.columns) == list(label_arms.DENOISE_COLUMNS)
    assert (out["config"] == B.to_json()).all() and (out["n_candidates"] == 3).all()
    assert sum(engine.calls) <= len(items) * 3 * 5 and len(engine.calls) == 1  # one batched call, in budget
    assert engine.calls == [len(items) * 3 * 5]  # no greedy candidate here: every draw is a generation
    again = FakeEngine()
    label_arms.denoise(again, task, items, labels, log, START, top=2, draws=5)  # B is not among the top 2
    assert again.calls == [len(items) * 2 * 5]


def test_denoise_uses_its_own_fresh_draws_and_ties_go_to_the_start():
    task = FakeTask(lambda text: 0.5, name="t", n_items=2)  # every config scores the same: all tie
    items = task.items("search")
    log = [row for it in items for row in (log_row(it.id, A, 0.9), log_row(it.id, START, 0.8), log_row(it.id, B, 0.7))]
    labels = pd.DataFrame({"task": "t", "item_id": [it.id for it in items], "query": [it.query for it in items]})
    seen = []

    class Recording(FakeEngine):
        def generate(self, requests, desc="generate"):
            seen.extend(r.seed for r in requests)
            return super().generate(requests, desc)

    out = label_arms.denoise(Recording(), task, items, labels, log, START, top=3, draws=2)
    assert (out["config"] == START.to_json()).all()
    fresh = {s for it in items for s in draw_seeds("t", it.id, 2, OFFSET_DENOISE)}
    assert set(seen) == fresh and not fresh & {s for it in items for s in draw_seeds("t", it.id, 2)}
    with pytest.raises(ValueError, match="not given"):
        label_arms.denoise(FakeEngine(), task, items[:1], labels, log, START, top=3, draws=2)


def test_denoised_reads_each_tasks_search_log_and_start(tmp_path):
    task = FakeTask(target_score(A), name="t", n_items=3)
    profile = load_profile("smoke", ablation={"denoise_top": 2, "denoise_draws": 3})
    paths = dataclasses.replace(profile.paths, artifacts=tmp_path)
    folder = stages.SEARCH.path(paths) / "t"
    folder.mkdir(parents=True)
    log = [row for it in task.items("search") for row in (log_row(it.id, START, 0.9), log_row(it.id, A, 0.8))]
    (folder / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    checked = pd.DataFrame([checked_row(it.id, START, 0.5, 0.5) for it in task.items("search")])
    engine = FakeEngine()
    run = SimpleNamespace(profile=profile, paths=paths, engine=lambda: engine, tasks=lambda: [task])
    out = label_arms.denoised(run, checked)
    assert (out["config"] == A.to_json()).all() and engine.calls == [3 * 2 * 3]
    arms = label_arms.arm_labels(run, checked)
    assert list(arms) == list(label_arms.ADAPTERS) == [SHUFFLED, DENOISED, UNCHECKED]
    two_starts = pd.concat([checked, checked.assign(item_id="other", start=A.to_json())], ignore_index=True)
    with pytest.raises(ValueError, match="2 start configs"):
        label_arms.denoised(run, two_starts)


# ---------------------------------------------------------------------------------------- label mix


def test_label_mix_counts_items_off_the_tasks_most_common_label_and_off_hags():
    hag = labels_frame({"x": [A, A, A, B], "y": [C, C]})
    other = labels_frame({"x": [A, B, B, B], "y": [C, C]})
    mix = label_arms.label_mix({"hag": hag, "arm": other})
    assert list(mix.columns) == list(label_arms.MIX_COLUMNS)
    row = mix.set_index(["method", "task"])
    assert row.loc[("hag", "x"), "label_mix"] == 0.25 and row.loc[("hag", "x"), "majority_label"] == A.to_json()
    assert row.loc[("arm", "x"), "label_mix"] == 0.25 and row.loc[("arm", "x"), "majority_label"] == B.to_json()
    assert row.loc[("arm", "x"), "differs_from_reference"] == 0.5 and row.loc[("hag", "x"), "differs_from_reference"] == 0
    assert row.loc[("arm", "y"), "label_mix"] == 0 and row.loc[("arm", "y"), "distinct_labels"] == 1
    no_ref = label_arms.label_mix({"arm": other})
    assert no_ref["differs_from_reference"].isna().all()


# ----------------------------------------------------------------------------------------- sentences


def vs_row(variant: str, task: str, verdict: str, diff: float = 0.0) -> dict:
    return {"variant": variant, "task": task, "baseline": "hag", "target_mean": 0.5 + diff, "base_mean": 0.5,
            "diff": diff, "diff_ci_low": diff - 0.1, "diff_ci_high": diff + 0.1, "p_holm": 0.01, "margin": 0.02,
            "verdict": verdict}


def mix_row(method: str, task: str, mix: float, differs: float) -> dict:
    return {"method": method, "task": task, "label_mix": mix, "differs_from_reference": differs}


def test_verdict_lines_say_what_each_outcome_means():
    vs = pd.DataFrame([vs_row(SHUFFLED, "x", "equivalent"), vs_row(SHUFFLED, "y", "worse", -0.2),
                       vs_row(DENOISED, "x", "better", 0.1), vs_row(UNCHECKED, "x", "not significant", 0.01),
                       vs_row("hag_train25", "x", "worse", -0.3)])
    mix = pd.DataFrame([mix_row("hag", "x", 0.2, 0.0), mix_row("hag", "y", 0.3, 0.0), mix_row(SHUFFLED, "x", 0.2, 0.3),
                        mix_row(SHUFFLED, "y", 0.3, 0.4), mix_row(DENOISED, "x", 0.5, 0.4),
                        mix_row(UNCHECKED, "x", 0.3, 0.1)])
    lines = label_arms.verdict_lines(vs, mix)
    assert len(lines) == 4 and not any("hag_train25" in line for line in lines)
    assert "no sign that HAG uses per-query signal" in lines[0] and "within ±0.02" in lines[0]
    assert lines[1].startswith(f"y: {SHUFFLED} worse") and "HAG uses per-query information" in lines[1]
    assert "throwing per-query signal away" in lines[2] and "label mix 50% (HAG's 20%)" in lines[2]
    assert "no evidence either way" in lines[3] and "not significantly different" in lines[3]


def test_verdict_lines_flag_comparisons_that_test_nothing_and_unlearned_arms():
    vs = pd.DataFrame([vs_row(SHUFFLED, "x", "equivalent"), vs_row(UNCHECKED, "x", "equivalent")])
    mix = pd.DataFrame([mix_row("hag", "x", 0.0, 0.0), mix_row(SHUFFLED, "x", 0.0, float("nan")),
                        mix_row(UNCHECKED, "x", 0.1, 0.0)])
    gates = pd.DataFrame([{"method": DENOISED, "status": "did not learn", "reason": "parse rate 0.50 < 0.99"},
                          {"method": "hag_train25", "status": "did not learn", "reason": "other"}])
    lines = label_arms.verdict_lines(vs, mix, gates)
    assert lines[0] == f"{DENOISED} did not learn its labels (parse rate 0.50 < 0.99): no verdict."
    assert "shuffling cannot show per-query signal" in lines[1]
    assert "its labels are HAG's own on this task, so this tests nothing" in lines[2]
    assert label_arms.verdict_lines(pd.DataFrame(), mix) == ["No label arm was compared with HAG."]
    with pytest.raises(ValueError, match="verdict"):
        label_arms.verdict_lines(vs.drop(columns="verdict"), mix)



def test_every_arms_labels_make_a_training_set_split_like_hags():
    from hagstudy.method import dataset

    task = FakeTask(target_score(B), name="t", n_items=8)
    items = task.items("search")
    checked = pd.DataFrame([checked_row(it.id, [A, B, C, START][k % 4], 0.6, 0.5) for k, it in enumerate(items)])
    log = [log_row(it.id, c, m) for it in items for c, m in ((START, 0.9), (B, 0.8))]
    frames = {"hag": checked, SHUFFLED: label_arms.shuffled(checked, 0), UNCHECKED: label_arms.unchecked(checked),
              DENOISED: label_arms.denoise(FakeEngine(), task, items, checked, log, START, top=2, draws=2)}
    validation = set()
    for frame in frames.values():
        train, val = dataset.build(frame, 0.25, seed=3)
        by_id = dict(zip(frame["item_id"], frame["config"]))
        assert [dataset.label_of(r).to_json() for r in train + val] == [by_id[r["item_id"]] for r in train + val]
        validation.add(tuple(sorted(r["item_id"] for r in val)))
    assert len(validation) == 1  # every arm is judged on the same validation items as HAG
    assert (frames[DENOISED]["config"] == B.to_json()).all()
