"""Yes/no question answering: the prompt and scorer shared by coinflip and strategyqa."""

from __future__ import annotations

from typing import Sequence

from hagstudy.tasks.base import Item, Task
from hagstudy.tasks.text import extract_yes_no

YES_NO_SYSTEM = (
    "You answer yes/no questions. Reply with one line in exactly this format: "
    "'Answer: Yes' or 'Answer: No'."
)


def score_yes_no(items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
    """1.0 when the extracted yes/no equals the gold answer; a missing answer scores 0."""
    return [1.0 if extract_yes_no(out) == it.reference["answer"] else 0.0 for it, out in zip(items, outputs)]


class YesNoTask(Task):
    """A task whose items have ``reference["answer"]`` in {"yes", "no"}, answered as 'Answer: Yes/No'."""

    max_new_tokens = 16
    system = YES_NO_SYSTEM

    def chance_answers(self, search_items: Sequence[Item]) -> list[str]:
        """Always yes, always no: the better one on the search split is its majority class."""
        return ["Answer: Yes", "Answer: No"]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        return score_yes_no(items, outputs)
