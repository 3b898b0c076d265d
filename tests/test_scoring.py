"""hagstudy.seeds and hagstudy.scoring: stable seeds, the one scoring path, the one tie rule."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import FakeEngine, FakeTask, noise

from hagstudy import scoring
from hagstudy.decoding import GREEDY, TRANSFORMERS_DEFAULT, DecodingConfig
from hagstudy.seeds import GREEDY_SEED, OFFSET_REPEAT, draw_seeds, eval_seed, stable_hash

DEFAULT = TRANSFORMERS_DEFAULT


def test_stable_hash_is_stable_across_processes() -> None:
    code = "from hagstudy.seeds import stable_hash; print(stable_hash('taboo', 'taboo-0001', 3))"
    values = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        values.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert values == {f"{stable_hash('taboo', 'taboo-0001', 3)}\n"}
    assert 0 <= stable_hash("x") < 2**31


def test_draw_seeds_are_common_per_item_and_fresh_with_offset() -> None:
    a = draw_seeds("t", "t-1", 3)
    assert len(set(a)) == 3
    assert a != draw_seeds("t", "t-2", 3)
    assert a != draw_seeds("u", "t-1", 3)
    assert set(a).isdisjoint(draw_seeds("t", "t-1", 3, seed_offset=OFFSET_REPEAT))
    assert draw_seeds("t", "t-1", 2) == a[:2]


def test_eval_seeds_are_shared_across_methods_and_differ_by_seed_and_item() -> None:
    assert eval_seed("t", "i", 0) == eval_seed("t", "i", 0)
    assert eval_seed("t", "i", 0) != eval_seed("t", "i", 1)
    assert eval_seed("t", "i", 0) != eval_seed("t", "j", 0)
    assert eval_seed("t", "i", 0) not in draw_seeds("t", "i", 8)  # evaluation never reuses search draws


def test_evaluate_batches_everything_in_one_call() -> None:
    engine, task = FakeEngine(), FakeTask(noise)
    items = task.items("search", 3)
    configs = [DEFAULT, DEFAULT.with_(temperature=0.5), DEFAULT.with_(top_k=10)]
    evals, cost = scoring.evaluate(engine, task, [(i, c) for i in items for c in configs], draws=2, stage="x")
    assert engine.calls == [3 * 3 * 2] and task.score_calls == 1
    assert [(e.item_id, e.config) for e in evals] == [(i.id, c) for i in items for c in configs]
    for ev in evals:
        assert ev.seeds == draw_seeds(task.name, ev.item_id, 2)  # same seeds for every config
        assert ev.mean == pytest.approx(sum(ev.scores) / 2)
        assert len(ev.texts) == 2 and ev.stage == "x"
        assert all(t.endswith(ev.config.to_json()) for t in ev.texts)
    assert cost.requested == 18 and cost.generated == 18 and cost.tokens == sum(e.tokens for e in evals)
    _, again = scoring.evaluate(engine, task, [(i, c) for i in items for c in configs], draws=2, stage="x")
    assert again.requested == 18 and again.generated == 0  # the second time is all cache hits


def test_the_task_budget_is_attached_to_every_request() -> None:
    engine, task = FakeEngine(), FakeTask(noise, max_new_tokens=7)
    sent = []
    generate = engine.generate
    engine.generate = lambda requests, desc="": sent.extend(requests) or generate(requests, desc)
    scoring.evaluate(engine, task, [(task.items("search", 1)[0], DEFAULT.with_(max_new_tokens=500))], draws=2)
    assert {r.config.max_new_tokens for r in sent} == {7}


def test_identical_requests_are_sent_once() -> None:
    engine, task = FakeEngine(), FakeTask(noise)
    items = task.items("search", 2)
    # greedy ignores top_p/top_k: these two configs decode identically
    configs = [GREEDY, GREEDY.with_(top_p=0.5, top_k=10)]
    evals, _ = scoring.evaluate(engine, task, [(i, c) for i in items for c in configs], draws=2)
    assert engine.calls == [2]  # one request per item: same effective config, and greedy ignores the seed
    assert evals[0].scores == evals[1].scores
    assert evals[0].seeds == draw_seeds(task.name, items[0].id, 2)  # the draw seeds are still recorded
    assert scoring.evaluate(engine, task, [], 2) == ([], scoring.Cost())


def test_eval_cells_send_the_greedy_seed_once_and_sampled_seeds_per_seed() -> None:
    engine, task = FakeEngine(), FakeTask(noise)
    item = task.items("test", 1)[0]
    sent = []
    generate = engine.generate
    engine.generate = lambda requests, desc="": sent.extend(requests) or generate(requests, desc)
    cells = [scoring.eval_cell(task.name, item, c, s) for c in (GREEDY, DEFAULT) for s in (0, 1, 2)]
    evals, _ = scoring.score(engine, task, cells)
    assert [r.seed for r in sent] == [GREEDY_SEED] + [eval_seed(task.name, item.id, s) for s in (0, 1, 2)]
    assert len({ev.scores for ev in evals[:3]}) == 1  # greedy: one text, scored for every seed
    with pytest.raises(ValueError, match="draws"):
        scoring.search_cell(task.name, item, DEFAULT, 0)


def test_pick_best_takes_the_highest_mean_then_the_config_nearest_the_default() -> None:
    near, far = DEFAULT.with_(temperature=0.9), DEFAULT.with_(temperature=0.2)
    assert scoring.pick_best([(far, 0.5), (near, 0.6)], DEFAULT) == 1
    assert scoring.pick_best([(far, 0.6), (near, 0.6)], DEFAULT) == 1  # a tie: nearer the default
    assert scoring.pick_best([(far, 0.6), (near, 0.6 - 1e-12)], DEFAULT) == 1  # float noise is a tie
    assert scoring.pick_best([(far, 0.6), (near, 0.6 - 1e-6)], DEFAULT) == 0  # a real difference is not
    twin = DEFAULT.with_(temperature=1.1)  # as far from the default as ``near``: the earlier one wins
    assert scoring.pick_best([(twin, 0.6), (near, 0.6)], DEFAULT) == 0
    assert scoring.pick_best([(near, 0.6), (twin, 0.6)], DEFAULT) == 0
    with pytest.raises(ValueError):
        scoring.pick_best([], DEFAULT)


def test_pick_best_is_the_rule_of_search_methods_and_dataset() -> None:
    """The three places that used to break ties their own way now agree on one case."""
    import pandas as pd

    from hagstudy.method import dataset

    a, b = DecodingConfig(temperature=0.5), DecodingConfig(temperature=1.5)  # equally far from T=1
    labels = pd.DataFrame({"task": ["t"] * 4, "item_id": list("wxyz"), "query": list("wxyz"),
                           "config": [b.to_json(), a.to_json(), b.to_json(), a.to_json()]})
    assert dataset.per_task_labels(labels, DEFAULT)["t"] == a  # tie on counts and distance: JSON order
