"""strategyqa (commonsense reasoning): BIG-bench StrategyQA yes/no questions with implicit reasoning steps.

The 2,289 distinct questions are split once, seeded, into two halves: this task draws from the
first half and ``yes_no_black_white`` from the second, so the two tasks never share a question.
"""

from __future__ import annotations

import re
from typing import Any

from hagstudy import data
from hagstudy.tasks.base import Item, shuffled
from hagstudy.tasks.text import normalize
from hagstudy.tasks.yes_no import YesNoTask

PARTITION_SEED = 20240217  # fixes which questions belong to strategyqa vs yes_no_black_white


def load_examples() -> list[dict[str, Any]]:
    """Distinct StrategyQA questions with their gold answer and explanation, in file order."""
    path, examples = data.records("strategyqa", "examples")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, ex in enumerate(examples):
        try:
            question = ex["input"].strip()
            scores = ex["target_scores"]
            answer = "yes" if scores["Yes"] > scores["No"] else "no"
        except (KeyError, TypeError, AttributeError) as err:
            raise data.DataError(
                f"{path}: example {index} lacks input/target_scores Yes/No ({err!r}): {data.restore_hint(path)}"
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


class StrategyQA(YesNoTask):
    name = "strategyqa"
    capability = "commonsense reasoning"
    metric = "accuracy"

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
