"""Diversity of several samples of one prompt, for the preliminary study (does decoding change variety?).

- ``self_bleu`` (Zhu et al. 2018, Texygen): each sample scored by sentence BLEU against all the
  others as references, averaged; in [0, 1], higher = more alike (1.0 when all samples are equal).
- ``distinct_n`` (Li et al. 2016): distinct n-grams / all n-grams over the samples pooled; in [0, 1],
  higher = more varied.
BLEU settings are sacrebleu's sentence defaults (13a tokens, mixed case, exp smoothing, effective order).
distinct-n uses lower-cased 13a-style tokens (words and punctuation).
"""

from __future__ import annotations

import re
from typing import Sequence

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def self_bleu(samples: Sequence[str]) -> float:
    """Mean sentence BLEU (/100) of each sample against the others. Needs at least two samples."""
    import sacrebleu

    if len(samples) < 2:
        raise ValueError(f"self_bleu needs at least 2 samples, got {len(samples)}")
    scores = []
    for i, hyp in enumerate(samples):
        refs = [s for j, s in enumerate(samples) if j != i]
        scores.append(sacrebleu.sentence_bleu(hyp, refs).score / 100.0)
    return round(sum(scores) / len(scores), 6)


def distinct_n(samples: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the pooled samples; 0.0 when there are no n-grams."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(toks[i : i + n]) for s in samples for toks in [tokens(s)] for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
