"""The task registry, splits (fixed, seeded, disjoint, prefix-stable), prompts and data errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hagstudy import data, tasks
from hagstudy.config import load_profile
from hagstudy.tasks import SPLITS, Item, Task, TaskError
from hagstudy.tasks.arithmetic import Arithmetic
from hagstudy.tasks.coinflip import CoinFlip
from hagstudy.tasks.number_words import NumberWords, spell
from hagstudy.tasks.strategyqa import StrategyQA
from hagstudy.tasks.taboo import Taboo
from hagstudy.tasks.yes_no_black_white import YesNoBlackWhite

NAMES = ["coinflip", "strategyqa", "yes_no_black_white", "taboo", "number_words", "arithmetic"]
ALL = NAMES  # every task's data ships with the repository: none is skipped
# Splits smaller than the default profile asks for (the task returns the whole split): documented in docs/tasks.md.
SMALL_SPLITS = {("taboo", "test"), ("number_words", "search"), ("number_words", "validation"), ("number_words", "test")}


def test_names_and_registry() -> None:
    assert tasks.names() == NAMES
    for name in NAMES:
        task = tasks.get(name)
        assert isinstance(task, Task) and task.name == name and task.capability
        assert tasks.get(name) is task  # one shared instance: the pool is built once
    assert list(tasks.selected(load_profile("default"))) == NAMES  # an empty profile list means every task


def test_unknown_task_lists_the_six() -> None:
    with pytest.raises(KeyError) as err:
        tasks.get("coin_flip")
    message = str(err.value)
    assert "coin_flip" in message
    for name in NAMES:
        assert name in message
    assert isinstance(err.value, TaskError)


def test_max_new_tokens_fit_the_answers() -> None:
    budget = {n: tasks.get(n).max_new_tokens for n in NAMES}
    assert budget["coinflip"] <= 16 and budget["strategyqa"] <= 16 and budget["arithmetic"] <= 32
    assert 24 <= budget["taboo"] <= 48
    assert budget["number_words"] >= 16  # "Answer: 6874" plus a lead-in
    assert all(8 <= b <= 64 for b in budget.values())


@pytest.mark.parametrize("name", ALL)
def test_splits_disjoint_and_sized(name: str) -> None:
    task = tasks.get(name)
    profile = load_profile("default")
    wanted = {"search": profile.n_search, "validation": profile.n_validation, "test": profile.n_test}
    seen_ids: set[str] = set()
    seen_queries: set[str] = set()
    for split in SPLITS:
        items = task.items(split)
        assert len(items) == task.split_sizes[split]
        if (name, split) not in SMALL_SPLITS:
            assert len(items) >= wanted[split], f"{name}/{split} smaller than the default profile asks"
        ids = {it.id for it in items}
        queries = {it.query for it in items}
        assert len(ids) == len(items) and len(queries) == len(items)
        assert not ids & seen_ids and not queries & seen_queries, f"{name}: {split} overlaps an earlier split"
        seen_ids |= ids
        seen_queries |= queries
        for it in items:
            assert it.task == name and it.id.startswith(name)
            json.dumps(it.reference)  # JSON-serialisable gold data


@pytest.mark.parametrize("name", ALL)
def test_prefix_property_and_n(name: str) -> None:
    task = tasks.get(name)
    for split in SPLITS:
        assert task.items(split, 4) == task.items(split)[:4]  # smoke items are a prefix of default's
        assert task.items(split, 0) == []
    assert len(task.items("test", 10_000)) == task.split_sizes["test"]  # more than there is: the whole split
    with pytest.raises(TaskError, match="unknown split"):
        task.items("train")
    with pytest.raises(TaskError):
        task.items("search", -1)


@pytest.mark.parametrize("name", ALL)
def test_fresh_instance_builds_the_same_items(name: str) -> None:
    cls = type(tasks.get(name))
    a, b = cls(), cls()
    assert a.pool() == b.pool() == tasks.get(name).pool()


def test_strategyqa_and_ynbw_use_disjoint_questions() -> None:
    sqa = {it.reference["question"].casefold() for it in StrategyQA().pool()}
    ynbw = {it.reference["question"].casefold() for it in YesNoBlackWhite().pool()}
    assert len(sqa) >= 700 and len(ynbw) >= 700
    assert not sqa & ynbw


def test_taboo_has_distinct_targets_and_documented_split() -> None:
    task = tasks.get("taboo")
    assert task.split_sizes == {"search": 80, "validation": 40, "test": 161}
    targets = [it.reference["target"] for it in task.pool()]
    assert len(targets) == len(set(targets)) == 281
    ferry = next(it for it in task.pool() if it.reference["target"] == "ferry")
    assert ferry.reference["taboo"] == ["ferry", "boat", "harbor", "hull"]  # the target leads its own list
    assert "Forbidden words: ferry, boat, harbor, hull" in ferry.query


def test_number_words_spelling_and_items() -> None:
    assert spell(6874) == "six thousand eight hundred seventy-four"
    assert spell(40) == "forty" and spell(1000) == "one thousand" and spell(305) == "three hundred five"
    assert spell(12011) == "twelve thousand eleven"
    with pytest.raises(ValueError, match="outside"):
        spell(-1)
    pool = NumberWords().pool()
    assert sorted(it.reference["answer"] for it in pool) == list(range(100))
    assert not any(ch.isdigit() for it in pool for ch in it.query)
    assert NumberWords().split_sizes == {"search": 30, "validation": 15, "test": 55}


def test_number_words_scores_the_number() -> None:
    task = tasks.get("number_words")
    item = Item(task="number_words", id="number_words-74", query="Write in digits: seventy-four", reference={"answer": 74})
    outs = ["Answer: 74", "The answer is 74.", "Answer: 47", "seventy-four", ""]
    assert task.score([item] * 5, outs) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_coinflip_answers_follow_the_parity_rule() -> None:
    for it in tasks.get("coinflip").items("search"):
        flips = it.query.count(" flips the coin.")
        assert it.reference["answer"] == ("yes" if flips % 2 == 0 else "no")
        assert it.query.startswith("A coin is heads up.") and "Is the coin still heads up?" in it.query


def test_arithmetic_answers_are_the_expression_values() -> None:
    for it in tasks.get("arithmetic").items("validation"):
        expr = it.reference["expression"]
        assert set(expr) <= set("0123456789+- ")
        assert eval(expr) == it.reference["answer"]  # + and - only: left to right is exact
        assert expr in it.query


@pytest.mark.parametrize("name", ALL)
def test_messages_are_system_then_user(name: str) -> None:
    task = tasks.get(name)
    item = task.items("search", 1)[0]
    msgs = task.messages(item)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"] == item.query
    assert len(msgs[0]["content"]) > 40
    assert any(w in (msgs[0]["content"] + item.query) for w in ("format", "starts with", "Answer"))


def test_score_checks_lengths_and_task() -> None:
    coin = tasks.get("coinflip")
    items = coin.items("search", 2)
    with pytest.raises(TaskError):
        coin.score(items, ["yes"])
    with pytest.raises(TaskError):
        tasks.get("arithmetic").score(items, ["1", "2"])


def _point_data_at(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    (root / "configs").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HAGSTUDY_ROOT", str(root))


@pytest.mark.parametrize("cls", [StrategyQA, YesNoBlackWhite, Taboo])
def test_missing_data_names_file_and_fix(cls: type[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_data_at(monkeypatch, tmp_path)
    with pytest.raises(data.DataError) as err:
        cls().items("search")
    assert "git checkout --" in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("cls", "content"),
    [(StrategyQA, "{not json"), (Taboo, '{"cards": 3}'), (Taboo, '{"cards": [{"target": "x"}]}'),
     (YesNoBlackWhite, '{"examples": [{"input": "Q?", "target_scores": {"Maybe": 1}}]}')],
)
def test_malformed_data_names_file(cls: type[Task], content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_data_at(monkeypatch, tmp_path)
    for rel in data.FILES.values():
        path = tmp_path / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    # A manifest that vouches for these files, so the task's own reading is what fails.
    files = {n: {"path": rel, "sha256": data.sha256(tmp_path / "data" / rel)} for n, rel in data.FILES.items()}
    (tmp_path / "data" / "MANIFEST.json").write_text(json.dumps({"files": files}))
    with pytest.raises(data.DataError) as err:
        cls().items("search")
    assert str(tmp_path / "data") in str(err.value) and "git checkout --" in str(err.value)


def test_item_is_frozen() -> None:
    item = Item(task="coinflip", id="coinflip-x", query="q", reference={"answer": "yes"})
    with pytest.raises(AttributeError):
        item.query = "other"  # type: ignore[misc]


def test_import_is_light_and_pools_do_not_depend_on_hash_seed() -> None:
    """A fresh interpreter (other hash seed) imports without torch/MiniLM and builds the same coinflip/arithmetic items."""
    code = (
        "import sys, json, hagstudy.tasks as T\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'reasoning_gym') if m in sys.modules]\n"
        "items = [[it.id, it.query, it.reference] for n in ('coinflip', 'arithmetic') for it in T.get(n).items('test', 20)]\n"
        "print(json.dumps({'heavy': heavy, 'items': items}))\n"
    )
    env = {**__import__("os").environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    here = [[it.id, it.query, it.reference] for n in ("coinflip", "arithmetic") for it in tasks.get(n).items("test", 20)]
    assert result["items"] == here


def test_constructing_arithmetic_pool_needs_no_data_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_data_at(monkeypatch, tmp_path)
    assert len(Arithmetic().items("search", 3)) == 3
    assert len(CoinFlip().items("search", 3)) == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_prompts_fit_the_training_length(name: str) -> None:
    """Rendered [system, user] plus the answer budget fits train.max_length (real tokenizer, chat template)."""
    from hagstudy.engine import models

    tok = models.load_tokenizer()
    task = tasks.get(name)
    limit = load_profile("default").train.max_length
    longest = 0
    for it in task.items("search") + task.items("validation"):
        text = tok.apply_chat_template(task.messages(it), tokenize=False, add_generation_prompt=True)
        longest = max(longest, len(tok(text, add_special_tokens=False)["input_ids"]))
    assert longest + task.max_new_tokens <= limit, f"{name}: {longest} prompt tokens + {task.max_new_tokens}"


# -- chance answers --------------------------------------------------------------------------------


def test_yes_no_chance_is_the_search_splits_majority_class() -> None:
    import json

    from hagstudy import methods

    task = tasks.get("coinflip")
    search, test = task.items("search"), task.items("test", 100)
    assert task.chance_answers(search) == ["Answer: Yes", "Answer: No"]
    rows = methods.chance(task, test, [0, 1], search)
    share_yes = sum(it.reference["answer"] == "yes" for it in search) / len(search)
    chosen = "Answer: Yes" if share_yes >= 0.5 else "Answer: No"
    config = json.loads(rows.config.iloc[0])
    assert config["chance_answer"] == chosen and config["search_mean"] == pytest.approx(max(share_yes, 1 - share_yes))
    gold = chosen.split()[-1].lower()
    assert rows.score.mean() == pytest.approx(sum(it.reference["answer"] == gold for it in test) / len(test))


def test_arithmetic_chance_is_the_most_common_search_answer() -> None:
    from collections import Counter

    task = tasks.get("arithmetic")
    search = task.items("search")
    candidates = task.chance_answers(search)
    counts = Counter(it.reference["answer"] for it in search)
    assert len(candidates) == len(counts)
    top = max(counts.values())
    assert candidates[0] == f"Answer: {min(n for n, c in counts.items() if c == top)}"
    assert sum(task.score(search, [candidates[0]] * len(search))) == top


def test_default_chance_answers_are_empty_and_echo() -> None:
    from hagstudy.tasks.base import ECHO, chance_output

    item = Item(task="x", id="x-1", query="Translate into Pig Latin: I am", reference=None)
    assert Task().chance_answers([item]) == ["", ECHO]
    assert chance_output(ECHO, item) == item.query and chance_output("Answer: 3", item) == "Answer: 3"


@pytest.mark.parametrize("name", ["taboo", "yes_no_black_white"])
def test_echoing_the_query_breaks_the_creativity_rules(name: str) -> None:
    from hagstudy.tasks.base import ECHO, chance_output

    task = tasks.get(name)
    items = task.items("search", 10)
    assert ECHO in task.chance_answers(items)  # the query names the forbidden words: no MiniLM call needed
    assert task.score(items, [chance_output(ECHO, it) for it in items]) == [0.0] * len(items)
