"""Stage-1 consistency: the query variations, one batched stage-1 call per model, and the summary table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import FakeItem, ReplyEngine

from hagstudy.decoding import TRANSFORMERS_DEFAULT, DecodingConfig
from hagstudy.method import consistency, dataset, hag

A = DecodingConfig(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1)
B = DecodingConfig(temperature=0.2, top_p=1.0, top_k=0, repetition_penalty=1.0)


def test_variations_keep_the_words_and_change_only_the_form():
    q = "Is the coin heads up?\nAnswer Yes or No."
    assert consistency.whitespace(q) == "Is  the  coin  heads  up?\nAnswer  Yes  or  No.\n"
    assert consistency.casing(q) == "is the coin heads up?\nanswer yes or no."
    assert consistency.paraphrase(q) == "Here is a question for you: " + q
    assert consistency.options(q) == "Is the coin heads up?\nAnswer No or Yes."


def test_options_apply_only_to_queries_that_list_answer_options():
    taboo = "You are: cat\nForbidden words: pet, meow, fur\nDescribe yourself in one sentence that starts with 'I'."
    assert consistency.options(taboo) is None
    assert consistency.options("Write in digits: forty-two") is None
    assert list(consistency.variants(taboo)) == ["original", "whitespace", "casing", "paraphrase"]
    assert list(consistency.variants("Answer Yes or No."))[-1] == "options"


def test_config_key_treats_every_failure_as_one_outcome():
    assert consistency.config_key("failed", None) == consistency.config_key("failed", A) == "failed"
    assert consistency.config_key("clamped", A) == A.to_json() != consistency.config_key("ok", B)


def items(task: str, queries: list[str]) -> list[FakeItem]:
    return [FakeItem(task, f"{task}-{i}", q) for i, q in enumerate(queries)]


def test_one_stage1_call_per_model_through_the_instruction_sets_prompt():
    engine = ReplyEngine({"x?": A.to_json(), "X?": B.to_json()})
    models = {"hag_seed0": consistency.Stage1(engine), "zero_shot_json": consistency.Stage1(ReplyEngine(), hag.JSON_PREFILL)}
    got = consistency.proposals(models, {"t": items("t", ["x?"]), "u": items("u", ["y?"])}, TRANSFORMERS_DEFAULT,
                                {"casing": str.upper})
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 4  # 2 items x (original + casing)
    assert engine.calls[0][1].prompt == engine.render(dataset.stage1_messages("X?"))
    assert engine.calls[0][0].config.greedy
    prefilled = models["zero_shot_json"].engine.calls[0][0].prompt
    assert prefilled.endswith(hag.JSON_PREFILL)
    own = got[got.method == "hag_seed0"].set_index(["item_id", "variation"])
    assert own.loc[("t-0", "original"), "config"] == A.to_json()
    assert own.loc[("t-0", "casing"), "config"] == B.to_json()
    assert own.loc[("u-0", "casing"), "status"] == "failed"
    assert own.loc[("t-0", "original"), "n_tokens"] == len(A.to_json().split())


def rows(spec: list[tuple[str, str, str, str]], method: str = "m") -> pd.DataFrame:
    """(task, item, variation, config key) -> the rows ``proposals`` returns."""
    return pd.DataFrame([
        {"task": t, "method": method, "item_id": i, "variation": v, "query": "", "config": c,
         "status": "failed" if c == "failed" else "ok", "n_tokens": 10 if v == "original" else 20}
        for t, i, v, c in spec
    ])


def test_summary_counts_changes_against_each_items_original():
    frame = rows([
        ("t", "1", "original", "a"), ("t", "2", "original", "b"),
        ("t", "1", "casing", "a"), ("t", "2", "casing", "a"),  # item 2 changed
        ("t", "1", "options", "failed"),  # only item 1 lists options; it failed
        ("u", "1", "original", "a"), ("u", "2", "original", "a"), ("u", "1", "casing", "a"), ("u", "2", "casing", "a"),
    ])
    table = consistency.summary(frame).set_index(["task", "variation"])
    assert table.loc[("t", "casing"), "changed"] == 0.5 and table.loc[("t", "casing"), "n"] == 2
    assert table.loc[("t", "options"), "changed"] == 1.0 and table.loc[("t", "options"), "parse_rate"] == 0.0
    assert math.isnan(table.loc[("t", "original"), "changed"])
    assert table.loc[("t", "original"), "stage1_tokens"] == 10 and table.loc[("t", "casing"), "stage1_tokens"] == 20
    assert table.loc[("t", "casing"), "distinct_configs"] == 2 and table.loc[("t", "casing"), "reading"] == "query-dependent"
    assert table.loc[("u", "casing"), "reading"] == "task only" and table.loc[("u", "casing"), "changed"] == 0.0
    assert list(consistency.summary(frame).columns) == consistency.COLUMNS


def test_summary_names_what_is_wrong():
    with pytest.raises(ValueError, match="original"):
        consistency.summary(rows([("t", "1", "original", "a"), ("t", "2", "casing", "a")]))
    with pytest.raises(ValueError, match="n_tokens"):
        consistency.summary(rows([("t", "1", "original", "a")]).drop(columns="n_tokens"))


def test_lines_read_the_table():
    frame = rows([("t", "1", "original", "a"), ("t", "2", "original", "a"), ("t", "1", "casing", "a"),
                  ("t", "2", "casing", "b")])
    (line,) = consistency.lines(consistency.summary(frame))
    assert line.startswith("m: a meaning-preserving variation changed the stage-1 config on 50%")
    assert "casing on t, 50%" in line and "1 of 1 tasks" in line and "(t)" in line


def test_failures_are_not_a_config():
    """A model whose stage 1 never parses does not write "one config per task": it writes none."""
    frame = rows([("t", "1", "original", "failed"), ("t", "2", "original", "failed"), ("t", "1", "casing", "a"),
                  ("t", "2", "casing", "failed")])
    table = consistency.summary(frame).set_index("variation")
    assert table.loc["casing", "distinct_configs"] == 0 and table.loc["casing", "reading"] == "no config parsed"
    assert table.loc["casing", "changed"] == 0.5
    (line,) = consistency.lines(consistency.summary(frame))
    assert line.endswith("0 of 1 tasks get one config for every original query, and on 1 no original query's config parsed.")
    unchanged = consistency.summary(rows([("t", "1", "original", "a"), ("t", "1", "casing", "a")]))
    assert "most:" not in consistency.lines(unchanged)[0]
