"""strategyqa (commonsense reasoning): BIG-bench StrategyQA yes/no questions with implicit reasoning steps.

The 2,289 distinct questions are split once, seeded, into two halves: this task draws from the
first half and ``yes_no_black_white`` from the second, so the two tasks never share a question.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from hagstudy import data
from hagstudy.tasks.base import Item, Task, shuffled
from hagstudy.tasks.text import extract_yes_no, normalize

PARTITION_SEED = 20240217  # fixes which questions belong to strategyqa vs yes_no_black_white


def load_examples() -> list[dict[str, Any]]:
    """Distinct StrategyQA questions with their gold answer and explanation, in file order."""
    path = data.bigbench_file("strategyqa")
    raw = data.read_json(path)
    examples = raw.get("examples") if isinstance(raw, dict) else None
    if not isinstance(examples, list) or not examples:
        raise data.DataError(f"{path} has no 'examples' list: delete it and run `make data` again")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, ex in enumerate(examples):
        try:
            question = ex["input"].strip()
            scores = ex["target_scores"]
            answer = "yes" if scores["Yes"] > scores["No"] else "no"
        except (KeyError, TypeError, AttributeError) as err:
            raise data.DataError(
                f"{path}: example {index} lacks input/target_scores Yes/No ({err!r}): delete it and run `make data` again"
            ) from err
        key = normalize(question)
        if key in seen:  # the file has one duplicated question; keep its first copy
            continue
        seen.add(key)
        target = str(ex.get("target", ""))
        m = re.match(r"\s*(?:yes|no)\s*[.,:]\s*(.*)", target, re.IGNORECASE | re.DOTALL)
        explanation = (m.group(1) if m else target).strip()
        out.append({"index": index, "question": question, "answer": answer, "explanation": explanation})
    return out


def partition() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(strategyqa questions, yes_no_black_white questions): disjoint halves in a fixed seeded order."""
    examples = shuffled(load_examples(), PARTITION_SEED)
    half = len(examples) // 2
    return examples[:half], examples[half:]


def score_yes_no(items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
    """1.0 when the extracted yes/no equals the gold answer; a missing answer scores 0."""
    return [1.0 if extract_yes_no(out) == it.reference["answer"] else 0.0 for it, out in zip(items, outputs)]


YES_NO_SYSTEM = (
    "You answer yes/no questions. Reply with one line in exactly this format: "
    "'Answer: Yes' or 'Answer: No'."
)


class StrategyQA(Task):
    name = "strategyqa"
    capability = "commonsense reasoning"
    max_new_tokens = 16
    system = YES_NO_SYSTEM

    def _build(self) -> list[Item]:
        mine, _ = partition()
        return [
            Item(
                task=self.name,
                id=f"{self.name}-{ex['index']:04d}",
                query=f"{ex['question']}\nAnswer Yes or No.",
                reference={"answer": ex["answer"], "question": ex["question"]},
            )
            for ex in mine
        ]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        return score_yes_no(items, outputs)
