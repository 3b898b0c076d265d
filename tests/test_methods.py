"""The compared methods share items and seeds; two-stage rows count parse failures; ablation helpers; chance."""

import json

import pandas as pd
import pytest
from conftest import FakeEngine, FakeItem, FakeTask, noise, target_score

from hagstudy import methods
from hagstudy.decoding import GREEDY, TRANSFORMERS_DEFAULT, DecodingConfig
from hagstudy.method import ablations, oracles
from hagstudy.tasks.base import ECHO
from hagstudy.tasks.yes_no import score_yes_no

SEEDS = [0, 1, 2]


@pytest.fixture()
def setup():
    return FakeEngine(), FakeTask(noise, n_items=5)


def test_every_method_scores_the_same_item_seed_pairs(setup):
    engine, task = setup
    items = task.items("test", 5)
    frames = [
        methods.fixed(engine, task, items, SEEDS, TRANSFORMERS_DEFAULT, "default"),
        methods.fixed(engine, task, items, SEEDS, GREEDY, "greedy"),
        methods.random_configs(engine, task, items, SEEDS),
    ]
    pairs = [set(zip(f.item_id, f.seed)) for f in frames]
    assert pairs[0] == pairs[1] == pairs[2] and len(pairs[0]) == 15
    assert list(frames[0].columns) == methods.SCORE_COLUMNS


def test_greedy_is_generated_once_per_item(setup):
    engine, task = setup
    methods.fixed(engine, task, task.items("test", 5), SEEDS, GREEDY, "greedy")
    assert engine.calls[-1] == 5  # not 15: the text does not depend on the seed


def test_random_configs_are_seeded_per_item_and_seed(setup):
    engine, task = setup
    items = task.items("test", 5)
    a = methods.random_configs(engine, task, items, SEEDS)
    b = methods.random_configs(FakeEngine(), task, items, SEEDS)
    assert a.config.tolist() == b.config.tolist()
    assert a.config.nunique() > 5


def test_task_oracle_file_round_trips(tmp_path):
    oracle = {"a": GREEDY, "b": DecodingConfig(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1)}
    single = DecodingConfig(temperature=0.5)
    oracles.write_oracles(tmp_path / "oracles.json", oracle, single)
    assert oracles.read_oracles(tmp_path / "oracles.json") == (oracle, single)
    with pytest.raises(FileNotFoundError, match="01_search"):
        oracles.read_oracles(tmp_path / "missing.json")
    (tmp_path / "old.json").write_text(json.dumps({"a": GREEDY.to_json()}))
    with pytest.raises(ValueError, match="best single config"):
        oracles.read_oracles(tmp_path / "old.json")


def test_task_oracle_picks_the_best_candidate_on_all_items(setup):
    from hagstudy.method import search

    engine, task = setup
    items = task.items("search", 4)
    pruned = search.prune(engine, task, items[:2], TRANSFORMERS_DEFAULT, draws=1)
    best = oracles.task_oracle(engine, task, items, pruned, draws=2, top=3)
    ranked = sorted(pruned.table.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert best.to_json() in [c for c, _ in ranked]


def test_only_keeps_the_chosen_hyperparameters():
    cfg = DecodingConfig(temperature=0.3, top_p=0.5, top_k=5, repetition_penalty=1.3)
    out = methods.only({"x": cfg}, TRANSFORMERS_DEFAULT, ("temperature",))["x"]
    assert out == TRANSFORMERS_DEFAULT.with_(temperature=0.3)


def test_first_fraction_is_a_prefix_per_task():
    labels = pd.DataFrame({"task": ["a"] * 8 + ["b"] * 4, "item_id": [f"a{i}" for i in range(8)] + [f"b{i}" for i in range(4)]})
    quarter, half = ablations.first_fraction(labels, 0.25), ablations.first_fraction(labels, 0.5)
    assert quarter.item_id.tolist() == ["a0", "a1", "b0"]
    assert set(quarter.item_id) <= set(half.item_id)
    with pytest.raises(ValueError, match="fraction"):
        ablations.first_fraction(labels, 0)


def test_best_single_config_is_one_config_chosen_on_every_task(setup):
    from hagstudy.method import search

    engine, _ = setup
    good = DecodingConfig(temperature=0.5, top_p=0.9, top_k=10, repetition_penalty=1.1)
    tasks = [FakeTask(target_score(good), name=n, n_items=4) for n in ("a", "b")]
    searched = []
    for t in tasks:
        items = t.items("search", 4)
        searched.append((t, items, search.prune(engine, t, items[:2], TRANSFORMERS_DEFAULT, draws=1)))
    best = oracles.best_single_config(engine, searched, draws=2, top=3)
    assert best == good  # every task's score peaks at the same config: the pooled choice finds it
    with pytest.raises(ValueError):
        oracles.best_single_config(engine, [], draws=2)


def test_item_oracle_selects_on_other_draws_than_it_is_scored_on(setup):
    engine, task = setup
    items = task.items("test", 5)
    sent = []
    generate = engine.generate
    engine.generate = lambda requests, desc="": sent.append(list(requests)) or generate(requests, desc)
    candidates = oracles.candidates_for(GREEDY)
    assert len(candidates) >= 12 and sum(c.greedy for c in candidates) == 2  # greedy is already a candidate
    run = oracles.item_oracle(engine, task, items, SEEDS, candidates, 2, GREEDY)
    selection, scoring_call, static_call = sent
    sampled = lambda reqs: {r.seed for r in reqs if not r.config.greedy}  # noqa: E731
    assert sampled(selection).isdisjoint(sampled(scoring_call) | sampled(static_call))
    assert set(run.scores.method) == {"item_oracle"} and len(run.scores) == 5 * len(SEEDS)
    assert set(run.static.method) == {"static_hindsight"} and len(run.static) == 5 * len(SEEDS)
    assert run.static.config.nunique() == 1  # one config for the whole task
    chosen = run.choices
    assert chosen.n_candidates.eq(len(candidates)).all() and len(chosen) == 5
    assert (chosen.in_sample_max >= chosen.selection_mean).all() and (chosen.in_sample_max >= chosen.reference_selection_mean).all()
    assert (chosen.selection_mean == chosen.in_sample_max).all() and (chosen.n_tied >= 1).all()
    by_item = dict(zip(chosen.item_id, chosen.config))
    assert all(by_item[r.item_id] == r.config for r in run.scores.itertuples())
    extra = oracles.candidates_for(DecodingConfig(temperature=0.9, top_p=0.8, top_k=5, repetition_penalty=1.2))
    assert len(extra) == len(candidates) + 1


def test_item_oracle_breaks_ties_at_random_not_toward_the_reference():
    """Every candidate scores the same: a tie-to-reference rule would pick the reference on every item and
    report exactly zero headroom by construction; the seeded random rule spreads the picks."""
    engine, task = FakeEngine(), FakeTask(lambda text: 1.0, n_items=40)
    candidates = oracles.candidates_for(GREEDY)
    run = oracles.item_oracle(engine, task, task.items("test", 40), SEEDS, candidates, 2, GREEDY)
    assert run.choices.n_tied.eq(len(candidates)).all()
    assert run.choices.config.nunique() > 5 and (run.choices.config != GREEDY.to_json()).sum() > 30
    again = oracles.item_oracle(FakeEngine(), task, task.items("test", 40), SEEDS, candidates, 2, GREEDY)
    assert list(again.choices.config) == list(run.choices.config)  # seeded: the same picks every run
    assert oracles.tie_break("t", "i", [7]) == 7
    with pytest.raises(ValueError, match="at least one"):
        oracles.tie_break("t", "i", [])


def test_item_oracle_needs_the_reference_among_its_candidates(setup):
    engine, task = setup
    with pytest.raises(ValueError, match="reference config .* is not among the candidates"):
        oracles.item_oracle(engine, task, task.items("test", 2), SEEDS, [GREEDY], 2, TRANSFORMERS_DEFAULT)


class YesNoFake:
    """A yes/no task whose search split is mostly 'yes' and whose test split is mostly 'no'."""

    name = "yn"

    def __init__(self) -> None:
        self.search = [FakeItem("yn", f"yn-s{i}", f"search {i}?", {"answer": "yes" if i < 7 else "no"}) for i in range(10)]
        self.test = [FakeItem("yn", f"yn-t{i}", f"test {i}?", {"answer": "yes" if i < 2 else "no"}) for i in range(10)]
        self.scored: list[list[str]] = []

    def chance_answers(self, search_items):
        return ["Answer: No", "Answer: Yes", "Answer: No"]  # a duplicate is scored once

    def score(self, items, outputs):
        self.scored.append([it.id for it in items])
        return score_yes_no(items, outputs)


def test_chance_picks_its_answer_on_the_search_split_only():
    task = YesNoFake()
    rows = methods.chance(task, task.test, SEEDS, task.search)
    assert list(rows.columns) == methods.SCORE_COLUMNS
    assert len(rows) == 30 and set(rows.method) == {"chance"} and set(rows.status) == {"constant"}
    # "yes" wins on search (0.7); on test it scores the 2 yes items: 0.2 (the test's majority "no" would give 0.8)
    assert rows.score.mean() == pytest.approx(0.2)
    assert json.loads(rows.config.iloc[0]) == {"chance_answer": "Answer: Yes", "search_mean": 0.7}
    # two candidates scored on the search items, then only the winner on the test items
    assert [len(ids) for ids in task.scored] == [10, 10, 10]
    assert all(i.startswith("yn-s") for ids in task.scored[:2] for i in ids)
    assert all(i.startswith("yn-t") for i in task.scored[2])
    assert (rows.groupby("item_id").score.nunique() == 1).all()  # nothing sampled: the same on every seed


def test_chance_rows_pair_with_the_other_methods():
    engine, task = FakeEngine(), FakeTask(lambda text: 1.0 if text.startswith("search") or "|" in text else 0.0, n_items=5)
    items = task.items("test", 5)
    task.chance_answers = lambda search_items: ["", ECHO]
    greedy = methods.fixed(engine, task, items, SEEDS, GREEDY, "greedy")
    search = [FakeItem(task.name, f"s{i}", f"search {i}?") for i in range(3)]
    rows = methods.chance(task, items, SEEDS, search)
    assert set(zip(rows.item_id, rows.seed)) == set(zip(greedy.item_id, greedy.seed))
    assert json.loads(rows.config.iloc[0])["chance_answer"] == ECHO  # the echo wins on search (1.0 vs 0.0)


def test_chance_refuses_test_items_in_the_search_split_and_no_candidates():
    task = YesNoFake()
    with pytest.raises(ValueError, match="also scored items"):
        methods.chance(task, task.test, SEEDS, task.search + task.test[:1])
    with pytest.raises(ValueError, match="no search items"):
        methods.chance(task, task.test, SEEDS, [])
    task.chance_answers = lambda search_items: []
    with pytest.raises(ValueError, match="no chance answers"):
        methods.chance(task, task.test, SEEDS, task.search)


def test_pooled_averages_the_members_per_item_and_seed():
    rows = []
    for m, value in (("hag_seed0", 0.0), ("hag_seed1", 1.0), ("other", 0.5)):
        for item in ("a", "b"):
            for seed in (0, 1):
                rows.append({"task": "t", "method": m, "item_id": item, "seed": seed, "score": value,
                             "config": "{}", "status": "ok", "n_tokens": 2})
    scores = pd.DataFrame(rows, columns=methods.SCORE_COLUMNS)
    out = methods.pooled(scores, ["hag_seed0", "hag_seed1"])
    assert list(out.columns) == methods.SCORE_COLUMNS and len(out) == 4
    assert set(out["method"]) == {"hag"} and (out["score"] == 0.5).all() and (out["status"] == "pooled").all()
    with pytest.raises(ValueError, match="no scores"):
        methods.pooled(scores, ["hag_seed0", "hag_seed7"])
    with pytest.raises(ValueError, match="same"):
        methods.pooled(scores.drop(index=0), ["hag_seed0", "hag_seed1"])
    with pytest.raises(ValueError, match="no member"):
        methods.pooled(scores, [])


def test_arms_that_did_not_learn_are_listed_without_a_score():
    from hagstudy.method import gate

    q = {"n": 4, "parse_rate": 0.0, "exact_all": 0.0, "mean_distance": float("nan")}
    maj = {"n": 4, "parse_rate": 1.0, "exact_all": 0.75, "mean_distance": 0.2}
    gates = {"hag_train25": gate.judge("hag_train25", 0, 3, q, maj, 0.99),
             "hag_train50": gate.judge("hag_train50", 0, 3, {**q, "parse_rate": 1.0, "exact_all": 0.8, "mean_distance": 0.1}, maj, 0.99)}
    table = pd.DataFrame([{"task": "t", "method": "hag_train50", "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                           "n_items": 4, "n_seeds": 1}])
    out = ablations.with_unlearned(table, gates)
    assert list(out["method"]) == ["hag_train50", "hag_train25"]
    assert pd.isna(out.iloc[1]["mean"]) and out.iloc[1]["note"].startswith("did not learn: parse rate 0.000")
    frame = ablations.gate_table(gates)
    assert list(frame["status"]) == ["did not learn", "learned"] and list(frame["method"]) == list(gates)


def test_ablation_arms_train_as_many_steps_as_the_reference_adapter(tmp_path):
    import dataclasses
    from types import SimpleNamespace

    from hagstudy import stages
    from hagstudy.config import load_profile
    from hagstudy.method import gate

    profile = load_profile("smoke")
    q = {"n": 4, "parse_rate": 1.0, "exact_all": 0.8, "mean_distance": 0.1}
    paths = dataclasses.replace(profile.paths, artifacts=tmp_path)
    gate.write([gate.judge("hag_seed0", 0, 11, {**q, "parse_rate": 0.5}, q, 0.99),
                gate.judge("hag_seed1", 1, 7, q, q, 0.99)], stages.GATES.path(paths))
    run = SimpleNamespace(profile=profile, paths=paths, hag_adapters=lambda: [("hag_seed0", 0), ("hag_seed1", 1)])
    assert ablations.reference_adapter(run) == "hag_seed1"  # the first that passed
    assert ablations.arm_settings(run).max_steps == 7
    same_epochs = SimpleNamespace(**{**vars(run), "profile": load_profile("smoke", ablation={"equal_steps": False})})
    assert ablations.arm_settings(same_epochs) == profile.train


def test_top_nsigma_settings_run_mild_to_strong_so_a_tie_keeps_the_mildest():
    """Five settings as min-p and EDT have, plain sampling at T = 1, n from 3 (keeps most) down to 0.5."""
    settings = oracles.ADAPTIVE["top_nsigma"]
    assert [c.top_nsigma for c in settings] == [3.0, 2.0, 1.5, 1.0, 0.5]
    assert {len(c) for c in oracles.ADAPTIVE.values()} == {5}
    assert all(c.with_(top_nsigma=0.0) == DecodingConfig(1.0, 1.0, 0, 1.0) for c in settings)
    engine, task = FakeEngine(), FakeTask(lambda text: 0.5, n_items=2)
    chosen, _ = oracles.tune_adaptive(engine, task, task.items("search", 2), draws=1,
                                      methods={"top_nsigma": settings})
    assert chosen["top_nsigma"].top_nsigma == 3.0


def test_adaptive_samplers_are_tuned_per_task_on_the_given_items_and_round_trip(tmp_path):
    def closeness(text: str) -> float:  # best: min_p 0.1, EDT theta 2.0, top-nσ n = 1 (the text ends with the config)
        cfg = json.loads(text.split("|", 1)[1])
        return (1.0 - abs(cfg.get("min_p", 0.0) - 0.1) - abs(cfg.get("edt_theta", 0.0) - 2.0) / 10
                - abs(cfg.get("top_nsigma", 0.0) - 1.0) / 10)

    engine, task = FakeEngine(), FakeTask(closeness, n_items=3)
    chosen, table = oracles.tune_adaptive(engine, task, task.items("search", 3), draws=2)
    assert chosen["min_p"].min_p == 0.1 and chosen["edt"].edt_theta == 2.0 and chosen["top_nsigma"].top_nsigma == 1.0
    assert set(table["method"]) == {"min_p", "edt", "top_nsigma"}
    assert table.groupby("method")["chosen"].sum().tolist() == [1, 1, 1]
    assert len(table) == sum(len(c) for c in oracles.ADAPTIVE.values())
    # Each setting was scored on every item with the search's draws, as the task oracle's candidates are.
    assert sum(engine.calls) == 3 * 2 * len(table)
    oracles.write_adaptive(tmp_path / "adaptive.json", {m: {task.name: c} for m, c in chosen.items()})
    assert oracles.read_adaptive(tmp_path / "adaptive.json") == {m: {task.name: c} for m, c in chosen.items()}
    with pytest.raises(FileNotFoundError, match="01_search"):
        oracles.read_adaptive(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"min_p": {"t": "{\\"min_p\\": 2}"}}')
    with pytest.raises(ValueError, match="not a tuned adaptive-decoding file"):
        oracles.read_adaptive(tmp_path / "bad.json")
