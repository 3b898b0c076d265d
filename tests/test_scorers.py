"""Scorers and answer extraction, on hand-written outputs: formats, edge cases, the reference itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hagstudy import tasks
from hagstudy.tasks import Item, embed
from hagstudy.tasks.taboo import stems, violations
from hagstudy.tasks.text import extract_number, extract_yes_no, strip_label, words
from hagstudy.tasks.yes_no_black_white import compliant

LONG = "blah " * 5000
EDGE = ["", "   \n ", "asdf qwer zxcv ;;;", LONG, "日本語のテキスト 🚀 ∑"]


# -- extraction ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Answer: Yes", "yes"), ("Yes.", "yes"), ("**No.**", "no"), ("YES!", "yes"), ("no", "no"),
        ("The coin was flipped once, so the answer is no.", "no"),
        ("I know it is snowy, but the answer: yes", "yes"),  # 'know'/'snowy' are not 'no'
        ("Answer: No. Yes, I am sure.", "no"),  # an explicit answer wins over a later yes
        ("Well... yes, because two flips cancel.", "yes"),
        ("Ｙｅｓ", "yes"),  # full-width letters
        ("", None), ("nothing here", None), ("Nobody knows; yesterday", None), (LONG, None),
    ],
)
def test_extract_yes_no(text: str, want: str | None) -> None:
    assert extract_yes_no(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Answer: 42", 42), ("42.", 42), ("The result is 1,234.", 1234), ("Answer: -1,234", -1234),
        ("12 - 89 = -77", -77), ("10-5=5", 5), ("The answer is −12", -12),  # unicode minus
        ("Answer: **-7**.", -7), ("3 + 4 = 7\nAnswer: 7", 7), ("answer = 1,000,000 dollars", 1_000_000),
        ("Answer: 8, then I checked 3 + 5", 8), ("x is 2.5", 2.5), ("$\\boxed{-4}$", -4),
        ("", None), ("no numbers", None),
    ],
)
def test_extract_number(text: str, want: float | None) -> None:
    assert extract_number(text) == want


def test_strip_label_and_words() -> None:
    assert strip_label("Pig Latin: Omtay isyay.", ("pig latin",)) == "Omtay isyay."
    assert strip_label("Here is the translation:\n\"Omtay isyay.\"", ("pig latin",)) == "Omtay isyay."  # a lead-in line
    assert strip_label("**Clue:** It floats.", ("clue",)) == "It floats."
    assert strip_label("", ("clue",)) == ""
    assert words("No-one said YES! Ｗｈｉｔｅ snowy") == ["no", "one", "said", "yes", "white", "snowy"]


# -- exact-answer tasks --------------------------------------------------------------------------
def _item(task: str, reference: Any) -> Item:
    return Item(task=task, id=f"{task}-t", query="q", reference=reference)


@pytest.mark.parametrize("task", ["coinflip", "strategyqa"])
def test_yes_no_scorers(task: str) -> None:
    yes = _item(task, {"answer": "yes"})
    outs = ["Answer: Yes", "yes.", "Yes, because both flipped.", "Answer: No", "no", *EDGE]
    got = tasks.get(task).score([yes] * len(outs), outs)
    assert got == [1.0, 1.0, 1.0, 0.0, 0.0] + [0.0] * len(EDGE)


def test_arithmetic_scorer() -> None:
    item = _item("arithmetic", {"answer": -1234, "expression": "-"})
    outs = ["Answer: -1,234", "-1234", "The result is -1234.", "1234", "Answer: -1,235", *EDGE]
    assert tasks.get("arithmetic").score([item] * len(outs), outs) == [1.0, 1.0, 1.0] + [0.0] * (2 + len(EDGE))


def test_arithmetic_reference_scores_one() -> None:
    task = tasks.get("arithmetic")
    items = task.items("search", 10)
    assert task.score(items, [f"Answer: {it.reference['answer']}" for it in items]) == [1.0] * 10


# -- number words ----------------------------------------------------------------------------------
def test_number_words_answers_score_one_and_edges_zero() -> None:
    task = tasks.get("number_words")
    items = task.items("validation")
    assert task.score(items, [f"Answer: {it.reference['answer']}" for it in items]) == [1.0] * len(items)
    assert task.score(items, [it.query for it in items]) == [0.0] * len(items)  # echoing the words earns nothing
    item = items[0]
    assert all(g == 0.0 for g in task.score([item] * len(EDGE), list(EDGE)))


# -- word constraints (no MiniLM) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("I know the snowy mountains well.", True), ("Nobody saw a whiteboard, blackish or not.", True),
        ("No.", False), ("YES!", False), ("It is black.", False), ("no-one", False), ("White", False),
        ("Ｎｏ", False), ("", True), ("日本語 🚀", True),
    ],
)
def test_yes_no_black_white_compliance(text: str, ok: bool) -> None:
    assert compliant(text) is ok


def test_taboo_inflections() -> None:
    forbidden = ["boat", "sail", "ship", "star", "high-rise", "party"]
    assert violations("Boats!", forbidden) == ["boat"]
    assert violations("We went sailing.", forbidden) == ["sail"]
    assert violations("It was shipped", forbidden) == ["ship"]
    assert violations("The parties ended", forbidden) == ["party"]
    assert violations("a row of high-rises", forbidden) == ["high-rise"]
    assert violations("a starfish will start to swim", forbidden) == []  # substrings are allowed
    assert violations("", forbidden) == [] and violations(LONG, forbidden) == []
    assert {"run", "running"} <= stems("running") and "bake" in stems("baking") and "fly" in stems("flies")


# -- MiniLM scorers --------------------------------------------------------------------------------
class _CountingEncoder:
    """Stands in for MiniLM: counts encode calls, embeds by a hash so the math stays real."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        self.calls += 1
        out = np.array([[(hash(t) >> s) % 7 + 1.0 for s in range(8)] for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_the_vector_cache_embeds_each_text_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _CountingEncoder()
    monkeypatch.setattr(embed, "_encoder", fake)
    monkeypatch.setattr(embed, "_vectors", None)
    embed.use_cache(tmp_path / "v.sqlite")
    try:
        first = embed.similarities([("a", "b"), ("c", "d")])
        assert fake.calls == 1 and len(embed._vectors) == 4
        assert embed.similarities([("a", "b"), ("c", "d")]) == first and fake.calls == 1  # all from the cache
        embed.similarities([("a", "e")])
        assert fake.calls == 2 and len(embed._vectors) == 5  # only "e" was embedded
        embed.use_cache(tmp_path / "v.sqlite")  # a new process: the vectors are on disk
        assert embed.similarities([("c", "d")]) == first[1:] and fake.calls == 2
    finally:
        embed.use_cache(None)


def test_a_scored_pair_keeps_its_cosine_and_is_not_embedded_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The cosine cache serves the exact float ``round`` gave, on its own (no vectors): what shipped cosines rely on."""
    fake = _CountingEncoder()
    monkeypatch.setattr(embed, "_encoder", fake)
    pairs = [("a", "b"), ("c", "d"), ("a", ""), ("a", "b")]
    embed.use_cache(None)
    plain = embed.similarities(pairs)
    embed.use_cache(tmp_path / "v.sqlite", tmp_path / "c.sqlite")
    try:
        assert embed.similarities(pairs) == plain and fake.calls == 2
        assert len(embed._cosines) == 2  # the blank pair is 0.0 and not stored; the repeat is one pair
        embed.use_cache(None, tmp_path / "c.sqlite")  # no vectors at all: a clone with shipped cosines only
        assert embed.similarities(pairs) == plain and fake.calls == 2
        assert [repr(x) for x in embed.similarities(pairs)] == [repr(x) for x in plain]
        embed.similarities([("a", "z")])  # a new pair is embedded and stored
        assert fake.calls == 3 and len(embed._cosines) == 3
    finally:
        embed.use_cache(None)


def test_similarities_is_one_encode_call(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _CountingEncoder()
    monkeypatch.setattr(embed, "_encoder", fake)
    sims = embed.similarities([("a", "b"), ("a", "a"), ("c", ""), ("x", "y")])
    assert fake.calls == 1
    assert sims[1] == 1.0 and sims[2] == 0.0
    task = tasks.get("taboo")
    items = task.items("search", 8)
    task.score(items, ["Clue: something harmless"] * 8)
    assert fake.calls == 2  # one batched call for eight outputs
    task.score(items, [it.reference["target"] for it in items])
    assert fake.calls == 2  # nothing compliant: no encoding at all
    assert embed.rescale(0.1, 0.2, 0.4) == 0.0 and embed.rescale(0.3, 0.2, 0.4) == pytest.approx(0.5)
    assert embed.rescale(0.9, 0.2, 0.4) == 1.0


@pytest.fixture(scope="module")
def minilm() -> Any:
    return embed.encoder()  # loaded once for the module (a few seconds, offline)


def test_encoder_is_a_singleton(minilm: Any) -> None:
    assert embed.encoder() is minilm and embed.loaded()


def test_taboo_scores(minilm: Any) -> None:
    task = tasks.get("taboo")
    boat = _item("taboo", {"target": "boat", "taboo": ["boat", "boats", "ship", "vessel", "sail", "ferry"]})
    outs = ["Clue: You ride it across a lake or a river.", "Clue: It floats on water and carries fishermen out to sea.",
            "Clue: I like cheese and pizza.", "Clue: A small ship.", "Clue: boats!", *EDGE]
    got = task.score([boat] * len(outs), outs)
    assert got[0] > 0.8 and got[1] > 0.8  # good compliant clues reach the top of the scale
    assert got[2] < 0.1  # compliant but about something else
    assert got[3] == got[4] == 0.0  # taboo word (inflected too)
    assert all(0.0 <= g <= 0.4 for g in got[5:]) and got[5] == got[6] == 0.0
    assert task.score([boat] * len(outs), outs) == got


def test_yes_no_black_white_scores(minilm: Any) -> None:
    task = tasks.get("yes_no_black_white")
    items = [it for it in task.items("search") if compliant(it.reference["explanation"])][:6]
    ref_scores = task.score(items, [it.reference["explanation"] for it in items])
    assert min(ref_scores) >= 0.7 and sum(ref_scores) / len(ref_scores) >= 0.9  # the reference explanation
    item = items[0]
    outs = ["I like turtles.", "It depends.", "No, never.", "Yes.", *EDGE]
    got = task.score([item] * len(outs), outs)
    assert got[0] < 0.1 and got[1] < 0.1  # compliant but off-topic / evasive
    assert got[2] == got[3] == 0.0
    assert all(0.0 <= g <= 1.0 for g in got) and got[4] == got[5] == 0.0
