"""HAG's two stages against a fake engine: stage-1 requests and parsing, failures counted, stage-2 requests,
the config-quality helper, and one real stage-1 pass through a tiny-random Engine."""

from __future__ import annotations

import logging

import pytest
from conftest import FakeItem, FakeTask
from conftest import ReplyEngine as FakeEngine

from hagstudy.decoding import (
    GREEDY,
    TRANSFORMERS_DEFAULT,
    DecodingConfig,
    ParseResult,
    parse_config,
)
from hagstudy.engine.engine import Engine
from hagstudy.method import hag

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def messages(query: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Pick a config."}, {"role": "user", "content": query}]


GOOD = DecodingConfig(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1)
REPLIES = {
    "a": GOOD.to_json(),
    "b": "I think temperature: 3.5 would be fun",  # prose before the key  # clamped to 2.0, the rest from the fallback
    "c": '{"temperature": 0.2}',  # partial
    "d": "no idea, sorry",  # failed
}


def test_stage1_is_one_greedy_batched_call():
    engine = FakeEngine(REPLIES)
    proposals = hag.propose(engine, list("abcd"), messages_fn=messages)
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 4
    for r, q in zip(engine.calls[0], "abcd"):
        assert r.prompt == engine.render(messages(q))
        assert r.config == GREEDY.with_(max_new_tokens=48) and r.config.greedy and r.seed == 0
    assert [p.parse.status for p in proposals] == ["ok", "clamped", "partial", "failed"]
    assert proposals[0].parse.config.hyperparameters() == GOOD.hyperparameters()
    assert [p.parse for p in proposals] == hag.propose_configs(engine, list("abcd"), messages_fn=messages)


def test_stage1_uses_the_instruction_sets_prompt():
    """The default prompt is dataset.stage1_messages: the one the model was trained on."""
    from hagstudy.method import dataset

    engine = FakeEngine()
    (request,) = hag.stage1_requests(engine, ["is the sky blue?"])
    assert request.prompt == engine.render(dataset.stage1_messages("is the sky blue?"))


def test_resolve_counts_failures_and_names_the_method(caplog):
    parses = [parse_config(REPLIES[q]) for q in "abcd"]
    default = TRANSFORMERS_DEFAULT
    with caplog.at_level(logging.WARNING, logger="hagstudy.method.hag"):
        res = hag.resolve(parses, default, label="zero_shot (coinflip)")
    configs, status = res  # unpacks as a pair
    assert status == ["ok", "clamped", "partial", "failed"]
    assert res.n_failed == 1 and res.parse_rate == 0.75
    assert res.counts() == {"ok": 1, "clamped": 1, "partial": 1, "failed": 1}
    assert configs[0].hyperparameters() == GOOD.hyperparameters()
    assert configs[1].temperature == 2.0
    assert configs[3] == TRANSFORMERS_DEFAULT
    assert "zero_shot (coinflip): 1 of 4" in caplog.text


def test_resolve_without_failures_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="hagstudy.method.hag"):
        res = hag.resolve([ParseResult(GOOD, "ok")], TRANSFORMERS_DEFAULT)
    assert res.parse_rate == 1.0 and res.n_failed == 0 and not caplog.text
    assert hag.resolve([], TRANSFORMERS_DEFAULT).parse_rate == 1.0


def test_two_stage_answers_use_stage1_configs_and_count_failures():
    """methods.stage1_then_answer: stage 1 on the tuned engine, stage 2 on the base engine."""
    from hagstudy import methods

    tuned = FakeEngine({"x": GOOD.to_json(), "y": "garbage"})
    base = FakeEngine()
    items = [FakeItem("fake", "fake-0", "x"), FakeItem("fake", "fake-1", "y")]
    scores, proposed = methods.stage1_then_answer(tuned, base, FakeTask(lambda text: 0.5, max_new_tokens=17), items, [0, 1], TRANSFORMERS_DEFAULT, "hag")
    assert len(tuned.calls) == 1 and len(base.calls) == 1
    assert proposed.status.tolist() == ["ok", "failed"]
    assert proposed.temperature.tolist() == [0.7, TRANSFORMERS_DEFAULT.temperature]
    assert len(scores) == 4 and scores.status.tolist() == ["ok", "ok", "failed", "failed"]
    assert set(scores.config) == {GOOD.with_(max_new_tokens=17).to_json(), TRANSFORMERS_DEFAULT.to_json()}


def test_config_quality():
    labels = [GOOD, GREEDY, GOOD, GOOD]
    proposed = [
        ParseResult(GOOD, "ok"),
        ParseResult(GREEDY.with_(top_p=0.5, top_k=10), "ok"),  # greedy: top_p/top_k do not matter
        ParseResult(GOOD.with_(temperature=1.7), "clamped"),
        ParseResult(None, "failed"),
    ]
    q = hag.config_quality(proposed, labels)
    assert q["n"] == 4 and q["parse_rate"] == 0.75 and q["valid_rate"] == 0.5 and q["n_failed"] == 1
    assert q["exact_all"] == 0.5 and q["exact_temperature"] == 0.5 and q["exact_top_p"] == 0.75
    assert q["mean_distance"] == pytest.approx((0 + 0 + 0.5) / 3)
    with pytest.raises(ValueError):
        hag.config_quality(proposed, labels[:2])


def test_stage1_through_a_real_engine():
    """tiny-random writes nonsense; the point is that the real Engine, template and parser fit together."""
    from hagstudy.engine import models

    model, tok = models.load("tiny-random")
    engine = Engine(model, tok, None, progress=False)
    proposals = hag.propose(engine, ["is the sky blue?", "2+2?"], max_new_tokens=8, messages_fn=messages)
    assert len(proposals) == 2 and all(p.parse.status in hag.STATUSES for p in proposals)
    res = hag.resolve([p.parse for p in proposals], TRANSFORMERS_DEFAULT, 4)
    assert len(res.configs) == 2


def test_a_prefilled_reply_is_continued_and_parsed_whole():
    """zero_shot_json: the prompt ends inside the JSON object; the parse sees prefill + continuation."""
    engine = FakeEngine()
    engine.replies = {}
    sent = []
    generate = engine.generate

    def continue_json(requests, desc=""):
        sent.extend(requests)
        out = generate(requests, desc)
        return [type(c)(text="0.3, \"top_p\": 0.8}", n_tokens=5, finished=True, cached=False) for c in out]

    engine.generate = continue_json
    (proposal,) = hag.propose(engine, ["2+2?"], messages_fn=messages, prefill=hag.JSON_PREFILL)
    assert sent[0].prompt.endswith("<assistant>" + hag.JSON_PREFILL)
    assert proposal.text == hag.JSON_PREFILL + "0.3, \"top_p\": 0.8}"
    assert proposal.parse.status == "partial" and proposal.parse.config.temperature == 0.3
    assert proposal.parse.config.top_p == 0.8
    assert proposal.n_tokens == 5  # the continuation's tokens: the prefill is not generated
