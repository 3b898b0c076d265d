"""Self-BLEU and distinct-n on hand-made sample sets."""

from __future__ import annotations

import pytest

from hagstudy.report.diversity import distinct_n, self_bleu, tokens


def test_self_bleu_bounds_and_order() -> None:
    same = ["the cat sat on the mat"] * 4
    close = ["the cat sat on the mat", "the cat sat on a mat", "the cat lay on the mat", "a cat sat on the mat"]
    far = ["the cat sat on the mat", "quantum flux capacitors hum", "buy three apples today", "rivers run north"]
    s_same, s_close, s_far = self_bleu(same), self_bleu(close), self_bleu(far)
    assert s_same == 1.0
    assert 0.0 <= s_far < s_close < s_same
    assert s_far < 0.1
    assert self_bleu(close) == s_close  # deterministic
    assert self_bleu(list(reversed(close))) == pytest.approx(s_close)  # order of samples does not matter


def test_self_bleu_edge_cases() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        self_bleu(["only one"])
    assert self_bleu(["", ""]) == 0.0  # empty samples carry no n-grams
    assert 0.0 <= self_bleu(["日本語 🚀", "日本語 🚀 ∑", "x" * 10_000]) <= 1.0


def test_distinct_n() -> None:
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b c", "a b c"], 2) == 0.5
    assert distinct_n(["a b c", "d e f"], 2) == 1.0
    assert distinct_n(["The cat.", "the CAT."], 1) == 0.5  # case-folded; punctuation is a token
    assert distinct_n([], 2) == 0.0 and distinct_n(["x"], 2) == 0.0 and distinct_n([""], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)


def test_distinct_n_decreases_with_repetition() -> None:
    varied = ["one two three four", "five six seven eight"]
    repeated = ["one two three four", "one two three four"]
    assert distinct_n(repeated, 2) < distinct_n(varied, 2)
    assert tokens("Hello, world!") == ["hello", ",", "world", "!"]
