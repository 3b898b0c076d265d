"""yes_no_black_white (creativity, constrained answering): answer a StrategyQA question without the
words yes, no, black or white, and still address the question.

Score = compliance x relevance.
- compliance: 1 when none of the four words occurs as a whole word, in any case or width ("know",
  "snowy", "nobody", "whiteboard" are fine; "No.", "YES!", "no-one" are not), else 0.
- relevance: MiniLM cosine of question and answer, mapped linearly from [LO, HI] onto [0, 1].
  LO = 0.15 is about the 90th percentile of a question against an *unrelated* StrategyQA explanation
  and the median against generic evasions ("It depends.", "I don't know."), so an off-topic or evasive
  answer earns ~0; HI = 0.55 is about the 10th percentile of a question against its *own* BIG-bench
  explanation, so an on-topic explanatory answer earns ~1 (numbers in docs/tasks.md).
Questions come from the half of StrategyQA that ``strategyqa`` does not use.
"""

from __future__ import annotations

from typing import Sequence

from hagstudy.tasks import embed
from hagstudy.tasks.base import ECHO, Item, Task
from hagstudy.tasks.strategyqa import partition
from hagstudy.tasks.text import words

FORBIDDEN: frozenset[str] = frozenset({"yes", "no", "black", "white"})
LO, HI = 0.15, 0.55


def compliant(text: str) -> bool:
    """No forbidden word as a whole word (substrings inside other words are allowed)."""
    return not FORBIDDEN.intersection(words(text))


class YesNoBlackWhite(Task):
    name = "yes_no_black_white"
    capability = "creativity (constrained answering)"
    metric = "compliance x relevance"
    max_new_tokens = 48
    system = (
        "You are playing a word game. Answer the question in one or two short sentences, but never use "
        "the words 'yes', 'no', 'black' or 'white'. Say what is true instead."
    )

    def _build(self) -> list[Item]:
        _, mine = partition()
        return [
            Item(
                task=self.name,
                id=f"{self.name}-{ex['index']:04d}",
                query=f"{ex['question']}\nDo not use the words yes, no, black or white.",
                reference={"question": ex["question"], "answer": ex["answer"], "explanation": ex["explanation"]},
            )
            for ex in mine
        ]

    def chance_answers(self, search_items: Sequence[Item]) -> list[str]:
        """The empty answer, the echoed query (it names the forbidden words, so it scores 0) and a
        generic evasion, the kind of answer LO was calibrated against (so it scores about 0)."""
        return ["", ECHO, "It depends."]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        ok = [compliant(out) for out in outputs]
        # Only compliant answers need a similarity; non-compliant ones score 0 regardless.
        pairs = [(it.reference["question"], out if c else "") for it, out, c in zip(items, outputs, ok)]
        sims = embed.similarities(pairs) if any(ok) else [0.0] * len(pairs)
        return [embed.rescale(s, LO, HI) if c else 0.0 for s, c in zip(sims, ok)]
