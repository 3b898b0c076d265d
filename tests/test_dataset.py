"""hagstudy.method.dataset: the SFT rows, the split, the files and the label helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hagstudy.decoding import (
    HYPERPARAMETERS,
    TRANSFORMERS_DEFAULT,
    DecodingConfig,
    parse_config,
)
from hagstudy.method import dataset


def _labels(n_per_task: dict[str, int]) -> pd.DataFrame:
    rows = []
    configs = [
        DecodingConfig(0.0, 1.0, 0, 1.0),
        DecodingConfig(0.5, 0.9, 10, 1.1),
        DecodingConfig(1.0, 1.0, 50, 1.0),
    ]
    for task, n in n_per_task.items():
        for i in range(n):
            cfg = configs[(i * 7 + len(task)) % len(configs)]
            rows.append({"task": task, "item_id": f"{task}-{i:04d}", "query": f"{task} question {i}",
                         "config": cfg.to_json(), "score": 0.5, "default_score": 0.25, "n_evals": 9})
    return pd.DataFrame(rows)


def test_system_prompt_names_every_hyperparameter_and_holds_no_config_to_copy() -> None:
    for h in HYPERPARAMETERS:
        assert h in dataset.SYSTEM_PROMPT
    assert "JSON" in dataset.SYSTEM_PROMPT
    # round 1's tuned model copied the example config in the prompt: there must be none
    assert parse_config(dataset.SYSTEM_PROMPT).status == "failed"
    assert len(dataset.SYSTEM_PROMPT) < 160


def test_label_text_is_compact_canonical_json() -> None:
    cfg = DecodingConfig(0.7, 0.95, 40, 1.05)
    assert dataset.label_text(cfg) == '{"temperature":0.7,"top_p":0.95,"top_k":40,"repetition_penalty":1.05}'
    assert dataset.label_text(cfg.to_json()) == dataset.label_text(cfg)
    assert parse_config(dataset.label_text(cfg)).config == cfg


def test_example_is_stage1_prompt_plus_canonical_config() -> None:
    cfg = DecodingConfig(0.7, 0.95, 40, 1.05)
    row = dataset.example("What is 2+2?", cfg, task="arithmetic", item_id="arithmetic-0001")
    assert row["messages"][:2] == dataset.stage1_messages("What is 2+2?")
    assert row["messages"][2] == {"role": "assistant", "content": dataset.label_text(cfg)}
    assert (row["task"], row["item_id"]) == ("arithmetic", "arithmetic-0001")
    parsed = parse_config(row["messages"][2]["content"])
    assert parsed.status == "ok" and parsed.config == cfg
    # a non-canonical JSON string is canonicalised
    loose = json.dumps({"top_k": 40, "temperature": 0.7, "top_p": 0.95, "repetition_penalty": 1.05})
    assert dataset.example("q", loose)["messages"][2]["content"] == dataset.label_text(cfg)


def test_build_is_stratified_seeded_and_disjoint() -> None:
    labels = _labels({"coinflip": 20, "taboo": 10, "solo": 1, "pair": 2})
    train, val = dataset.build(labels, 0.1, seed=1234)
    key = lambda r: (r["task"], r["item_id"])  # noqa: E731
    assert len(train) + len(val) == len(labels)
    assert not {key(r) for r in train} & {key(r) for r in val}
    val_tasks = pd.Series([r["task"] for r in val]).value_counts().to_dict()
    assert val_tasks == {"coinflip": 2, "taboo": 1, "pair": 1}  # at least one, never all, none from a singleton
    again = dataset.build(labels, 0.1, seed=1234)
    assert (train, val) == again
    shuffled = labels.sample(frac=1.0, random_state=0)
    assert {key(r) for r in dataset.build(shuffled, 0.1, seed=1234)[1]} == {key(r) for r in val}
    other = dataset.build(_labels({"coinflip": 20}), 0.25, seed=99)[1]
    base = dataset.build(_labels({"coinflip": 20}), 0.25, seed=1234)[1]
    assert {key(r) for r in other} != {key(r) for r in base}
    row = train[0]
    assert row["messages"][1]["content"] == labels.set_index("item_id").loc[row["item_id"], "query"]
    with pytest.raises(ValueError):
        dataset.build(labels, 1.0, seed=0)


def test_jsonl_round_trip_and_load(tmp_path: Path) -> None:
    train, _ = dataset.build(_labels({"coinflip": 5, "taboo": 4}), 0.2, seed=0)
    path = dataset.write_jsonl(train, tmp_path / "sft" / "train.jsonl")
    assert dataset.read_jsonl(path) == train
    ds = dataset.load(path)
    assert len(ds) == len(train) and set(ds.column_names) == {"messages", "task", "item_id"}
    assert ds[0]["messages"] == train[0]["messages"]
    assert not list(path.parent.glob(".*tmp"))


def test_training_prompt_matches_inference_prompt() -> None:
    """Under the real chat template, the stage-1 prompt is exactly the prefix the model is trained after."""
    from hagstudy.engine.models import load_tokenizer

    tok = load_tokenizer("tiny-random")
    row = dataset.example("Flip a coin twice.", TRANSFORMERS_DEFAULT)
    full = tok.apply_chat_template(row["messages"], tokenize=False)
    prompt = tok.apply_chat_template(dataset.stage1_messages("Flip a coin twice."), tokenize=False,
                                     add_generation_prompt=True)
    assert full.startswith(prompt)
    assert full[len(prompt):].startswith(dataset.label_text(TRANSFORMERS_DEFAULT))


def test_per_task_labels_majority_with_ties_to_default() -> None:
    a, b = DecodingConfig(0.5, 0.9, 10, 1.1), DecodingConfig(1.0, 1.0, 50, 1.1)
    rows = [{"task": "t", "item_id": f"t-{i}", "query": "q", "config": c.to_json()} for i, c in enumerate([a, a, b])]
    rows += [{"task": "u", "item_id": f"u-{i}", "query": "q", "config": c.to_json()} for i, c in enumerate([a, b])]
    frame = pd.DataFrame(rows)
    chosen = dataset.per_task_labels(frame, TRANSFORMERS_DEFAULT)
    assert chosen["t"] == a  # majority
    assert chosen["u"] == b  # tie: b is nearer the default (1.0, 1.0, 50, 1.0)
    relabelled = dataset.with_per_task_labels(frame)
    assert set(relabelled.loc[relabelled.task == "u", "config"]) == {b.to_json()}
    assert list(frame["config"])[0] == a.to_json()  # the input frame is untouched


def test_label_distributions() -> None:
    labels = _labels({"coinflip": 9, "taboo": 4})
    dist = dataset.label_distribution(labels)
    sums = dist.groupby(["task", "hyperparameter"])["fraction"].sum()
    assert sums.round(12).eq(1.0).all() and len(sums) == 2 * len(HYPERPARAMETERS)
    assert dist.groupby(["task", "hyperparameter"])["count"].sum().eq(
        dist["task"].map({"coinflip": 9, "taboo": 4}).groupby([dist["task"], dist["hyperparameter"]]).first()
    ).all()
    configs = dataset.config_distribution(labels)
    assert configs.groupby("task")["count"].sum().to_dict() == {"coinflip": 9, "taboo": 4}
    first = configs[configs.task == "coinflip"].iloc[0]
    assert first["count"] == configs[configs.task == "coinflip"]["count"].max()
