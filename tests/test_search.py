"""hagstudy.method.search on a fake engine and fake tasks (fast), plus one integration test on tiny-random."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import FakeEngine, FakeItem, FakeTask, noise, target_score

from hagstudy.config import Profile, SearchSettings
from hagstudy.decoding import (
    GREEDY,
    HYPERPARAMETERS,
    TRANSFORMERS_DEFAULT,
    DecodingConfig,
    SearchSpace,
)
from hagstudy.method import ablations, preliminary, search, strategies
from hagstudy.scoring import EPS, Cost
from hagstudy.seeds import OFFSET_REPEAT, draw_seeds

DEFAULT = TRANSFORMERS_DEFAULT


# ---------------------------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------------------------


def test_the_saved_budget_row_does_not_depend_on_the_cache() -> None:
    cold, warm = search.Budget(), search.Budget()
    cold.add("prune", Cost(requested=10, generated=10, tokens=50, new_tokens=50, seconds=3.0))
    warm.add("prune", Cost(requested=10, generated=0, tokens=50, new_tokens=0, seconds=0.1))
    assert cold.row() == warm.row() == {"requested": 10, "tokens": 50, "prune_requested": 10, "prune_tokens": 50}
    assert cold.row(this_run=True)["prune_generated"] == 10 and warm.row(this_run=True)["prune_generated"] == 0


# ---------------------------------------------------------------------------------------------
# Pruning and greedy
# ---------------------------------------------------------------------------------------------


def test_prune_keeps_configs_at_least_as_good_as_default() -> None:
    engine, task = FakeEngine(), FakeTask(target_score(DecodingConfig(0.5, 0.9, 10, 1.1), noise_weight=0.5))
    items = task.items("search", 3)
    p = search.prune(engine, task, items, DEFAULT, draws=2)
    grid = SearchSpace().grid()
    n_greedy = sum(c.greedy for c in grid)
    assert engine.calls == [(len(grid) - n_greedy) * 3 * 2 + n_greedy * 3]
    assert len(p.table) == len(grid)
    assert p.threshold == p.table[DEFAULT.to_json()]
    assert DEFAULT.to_json() in p.survivors
    for config, mean in p.table.items():
        assert (config in p.survivors) == (mean >= p.threshold - EPS)
    for h in HYPERPARAMETERS:
        assert set(p.candidates[h]) == {json.loads(c)[h] for c in p.survivors}
    assert p.best().to_json() in p.survivors and p.table[p.best().to_json()] == max(p.table.values())
    frame = search.prune_frame(p)
    assert len(frame) == len(grid) and frame["is_default"].sum() == 1 and frame["is_start"].sum() == 1
    assert set(HYPERPARAMETERS) <= set(frame.columns)


def test_prune_adds_a_default_that_is_not_on_the_grid() -> None:
    engine, task = FakeEngine(), FakeTask(noise)
    default = DecodingConfig(0.7, 0.95, 40, 1.0)
    p = search.prune(engine, task, task.items("search", 2), default, draws=1)
    assert default.to_json() in p.table and default.to_json() in p.survivors
    assert 0.7 in p.candidates["temperature"]


def test_greedy_finds_the_target_when_scores_are_noiseless() -> None:
    target = DecodingConfig(0.5, 0.9, 10, 1.1)
    engine, task = FakeEngine(), FakeTask(target_score(target))
    items = task.items("search", 3)
    p = search.prune(engine, task, items[:2], DEFAULT, draws=1)
    labels = search.greedy(engine, task, items, p, DEFAULT, draws=2)
    for lab in labels:
        assert lab.config == target
        assert lab.score == pytest.approx(1.0) and lab.score > lab.default_score
        assert lab.n_evals == len(lab.evaluations) and lab.search_evals <= lab.n_evals + 1


def test_greedy_ties_keep_the_config_nearest_the_default() -> None:
    engine, task = FakeEngine(), FakeTask(lambda text: 0.5)
    items = task.items("search", 2)
    p = search.prune(engine, task, items, DEFAULT, draws=1)
    assert len(p.survivors) == len(p.table)  # everything ties with the default
    assert p.best() == DEFAULT
    labels = search.greedy(engine, task, items, p, DEFAULT, draws=2)
    assert all(lab.config == DEFAULT for lab in labels)


def test_greedy_moves_only_on_strict_improvement_and_one_call_per_step() -> None:
    engine, task = FakeEngine(), FakeTask(target_score(DecodingConfig(0.0, 1.0, 0, 1.3), noise_weight=0.6))
    items = task.items("search", 5)
    p = search.prune(engine, task, items[:2], DEFAULT, draws=2)
    engine.calls.clear()
    labels = search.greedy(engine, task, items, p, DEFAULT, draws=2)
    assert len(engine.calls) == 1 + len(HYPERPARAMETERS)
    start = p.best().to_json()
    for lab in labels:
        by_config = {e.config.to_json(): e.mean for e in lab.evaluations}
        assert lab.score == by_config[lab.config.to_json()]
        assert lab.score >= by_config[start]
        if lab.config.to_json() != start:
            assert lab.score > by_config[start] + EPS
        assert lab.default_score == by_config[DEFAULT.to_json()]
        assert len(by_config) == len(lab.evaluations)  # each config evaluated once per item
        assert all(e.seeds == draw_seeds(task.name, lab.item_id, 2) for e in lab.evaluations)


def test_greedy_batched_equals_one_item_at_a_time() -> None:
    task = FakeTask(target_score(DecodingConfig(1.0, 0.5, 10, 1.0), noise_weight=0.7))
    items = task.items("search", 6)
    engine = FakeEngine()
    p = search.prune(engine, task, items[:3], DEFAULT, draws=2)
    order = ("top_k", "temperature", "repetition_penalty", "top_p")
    batched = search.greedy(FakeEngine(), task, items, p, DEFAULT, 2, order)
    single = [search.greedy(FakeEngine(), task, [item], p, DEFAULT, 2, order)[0] for item in items]
    assert batched == single
    assert [lab.evaluations for lab in batched] == [lab.evaluations for lab in single]


# ---------------------------------------------------------------------------------------------
# Random search, TPE, reliability
# ---------------------------------------------------------------------------------------------


def test_random_search_is_seeded_and_within_budget() -> None:
    task = FakeTask(target_score(DecodingConfig(0.5, 0.9, 10, 1.1), noise_weight=0.3))
    items = task.items("search", 3)
    engine = FakeEngine()
    a = strategies.random_search(engine, task, items, DEFAULT, draws=2, generations=12, seed=3)
    assert engine.calls and len(engine.calls) == 1
    b = strategies.random_search(FakeEngine(), task, items, DEFAULT, draws=2, generations=12, seed=3)
    c = strategies.random_search(FakeEngine(), task, items, DEFAULT, draws=2, generations=12, seed=4)
    assert a == b and a != c
    for lab in a:
        assert lab.method == "random" and lab.search_evals <= 6
        assert lab.score == max(e.mean for e in lab.evaluations if e.config != DEFAULT)
    assert search.generations_per_item(a, 2) <= 12


def test_tpe_is_seeded_batched_and_within_budget() -> None:
    task = FakeTask(target_score(DecodingConfig(0.5, 0.9, 10, 1.1), noise_weight=0.2))
    items = task.items("search", 2)
    engine = FakeEngine()
    a = strategies.tpe_search(engine, task, items, DEFAULT, draws=1, generations=10, seed=0, batch=4, n_startup=4)
    assert len(engine.calls) == 1 + math.ceil(10 / 4)  # default round + ask rounds, all items per call
    b = strategies.tpe_search(FakeEngine(), task, items, DEFAULT, draws=1, generations=10, seed=0, batch=4, n_startup=4)
    assert a == b
    for lab in a:
        assert lab.method == "tpe" and 1 <= lab.search_evals <= 10
        assert lab.score >= max(e.mean for e in lab.evaluations if e.config != DEFAULT) - 1e-12


def test_reliability_on_noiseless_scores_agrees_fully() -> None:
    target = DecodingConfig(0.5, 0.9, 10, 1.1)
    engine, task = FakeEngine(), FakeTask(target_score(target))
    items = task.items("search", 3)
    p = search.prune(engine, task, items[:2], DEFAULT, draws=1)
    rel = ablations.reliability(engine, task, items, p, DEFAULT, 2, HYPERPARAMETERS, heldout_draws=3)
    s = rel.summary()
    assert s["n_items"] == 3 and s["agree_exact"] == 1.0
    assert all(s[f"agree_{h}"] == 1.0 for h in HYPERPARAMETERS)
    assert s["gap_ab"] == 0.0 and s["gain_a_vs_default"] > 0
    assert len(rel.rows) == 3


def test_reliability_on_pure_noise_reuses_given_labels_and_uses_fresh_seeds() -> None:
    engine, task = FakeEngine(), FakeTask(noise)
    items = task.items("search", 4)
    p = search.prune(engine, task, items[:2], DEFAULT, draws=1)
    labels = search.greedy(engine, task, items, p, DEFAULT, 2, HYPERPARAMETERS)
    rel = ablations.reliability(engine, task, items[:3], p, DEFAULT, 2, HYPERPARAMETERS, 2, labels_a=labels)
    assert [lab.item_id for lab in rel.labels_a] == [i.id for i in items[:3]]
    for lab in rel.labels_b:
        for ev in lab.evaluations:
            assert ev.stage == "repeat"
            assert ev.seeds == draw_seeds(task.name, lab.item_id, 2, OFFSET_REPEAT)
    assert 0.0 <= rel.summary()["agree_exact"] <= 1.0


# ---------------------------------------------------------------------------------------------
# run_search files, frames, sensitivity
# ---------------------------------------------------------------------------------------------


def _profile() -> Profile:
    return Profile(name="unit", n_search=4, search=SearchSettings(prune_items=2, draws=2))


def test_run_search_writes_deterministic_files_and_resumes(tmp_path: Path) -> None:
    task = FakeTask(target_score(DecodingConfig(0.5, 0.9, 10, 1.1), noise_weight=0.5), name="fk")
    task._items[1] = FakeItem("fk", "fk-001", 'a "quoted", multi-line\nquery, with commas')
    engine = FakeEngine()
    result = search.run_search(engine, task, _profile(), tmp_path, default=DEFAULT)
    folder = tmp_path / "fk"
    names = ("evaluations.jsonl", "labels.csv", "prune.json", "budget.json")
    assert all((folder / n).is_file() for n in names)
    first = {n: (folder / n).read_bytes() for n in names}
    budget = json.loads(first["budget.json"])
    assert 0 < budget["generated"] <= budget["requested"] and budget["seconds"] >= 0
    assert budget["requested"] == sum(len(e["seeds"]) for e in map(json.loads, first["evaluations.jsonl"].splitlines()))

    again = search.run_search(engine, task, _profile(), tmp_path, default=DEFAULT)  # resume: all cached
    for n in ("evaluations.jsonl", "labels.csv", "prune.json"):
        assert (folder / n).read_bytes() == first[n]
    assert again.budget.generated == 0 and again.budget.requested == result.budget.requested
    assert not list(folder.glob(".*tmp"))  # no temporary files left behind

    frame = search.read_labels(tmp_path)
    assert list(frame["item_id"]) == [i.id for i in task.items("search", 4)]
    assert frame.loc[1, "query"] == task._items[1].query
    assert list(frame["score"]) == [lab.score for lab in result.labels]  # floats round-trip exactly
    evals = search.read_evaluations(tmp_path, "fk")
    assert len(evals) == len(result.evaluations())
    assert {e["stage"] for e in evals} == {"prune", "greedy"}

    back = search.read_prune(tmp_path, "fk")
    assert back.best() == result.prune.best() and back.candidates == result.prune.candidates
    assert back.table == result.prune.table and back.threshold == result.prune.threshold
    read = search.read_item_labels(tmp_path, "fk")
    assert [(r.item_id, r.config, r.score, r.search_evals) for r in read] == [
        (r.item_id, r.config, r.score, r.search_evals) for r in result.labels
    ]

    lf = search.labels_frame(result)
    assert set(search.LABEL_COLUMNS) <= set(lf.columns) and set(HYPERPARAMETERS) <= set(lf.columns)
    assert (lf["gain"] == lf["score"] - lf["default_score"]).all()


def test_sensitivity_moves_one_hyperparameter_at_a_time() -> None:
    engine, task = FakeEngine(), FakeTask(noise)
    items = task.items("search", 2)
    grids = {"temperature": [0.0, 0.5, 1.0], "top_p": [0.5, 1.0]}
    frame = preliminary.sensitivity(engine, task, items, DEFAULT, grids, draws=2)
    assert len(engine.calls) == 1
    # 4 distinct configs (the default is shared by both sweeps); T=0 is greedy: one request per item
    assert engine.calls[0] == 2 * 3 * 2 + 2 * 1
    assert len(frame) == (3 + 2) * 2
    assert frame.groupby(["hyperparameter", "value"]).size().eq(2).all()
    assert frame["is_default"].sum() == 2 * 2
    row = frame[(frame.hyperparameter == "temperature") & (frame.value == 0.5)].iloc[0]
    assert json.loads(row["config"]) == {**DEFAULT.hyperparameters(), "temperature": 0.5}
    assert len(row["samples"]) == 2
    with pytest.raises(ValueError):
        preliminary.sensitivity(engine, task, items, DEFAULT, {"beam": [1]}, draws=1)


# ---------------------------------------------------------------------------------------------
# Integration: the real engine and a real task (only once they exist)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_search_on_tiny_random_and_a_real_task(tmp_path: Path) -> None:
    from hagstudy import tasks
    from hagstudy.engine import models
    from hagstudy.engine.cache import CompletionCache
    from hagstudy.engine.engine import Engine
    from hagstudy.engine.requests import Request

    model, tokenizer = models.load("tiny-random")
    engine = Engine(model, tokenizer, CompletionCache(tmp_path / "cache.sqlite"), progress=False)
    task = tasks.get("coinflip")
    space = SearchSpace(
        coarse={"temperature": (0.0, 1.0), "top_p": (0.9, 1.0), "top_k": (0, 50), "repetition_penalty": (1.0,)}
    )
    profile = Profile(name="unit", n_search=2, search=SearchSettings(prune_items=1, draws=2))
    result = search.run_search(engine, task, profile, tmp_path / "search", default=DEFAULT, space=space)
    labels_csv = tmp_path / "search" / task.name / "labels.csv"
    first = labels_csv.read_bytes()
    assert len(result.labels) == 2 and result.budget.generated > 0
    assert all(0.0 <= e.mean <= 1.0 for e in result.evaluations())
    again = search.run_search(engine, task, profile, tmp_path / "search", default=DEFAULT, space=space)
    assert again.budget.generated == 0  # resumed from the cache
    assert labels_csv.read_bytes() == first

    # scoring.score sends one request for a greedy config's draws: check the engine agrees
    item = task.items("search", 1)[0]
    prompt = engine.render(task.messages(item))
    greedy = GREEDY.with_(max_new_tokens=8)
    texts = {c.text for c in engine.generate([Request(prompt, greedy, seed) for seed in (1, 2, 3)])}
    assert len(texts) == 1
