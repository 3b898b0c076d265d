"""arithmetic (mathematics): integer expressions from reasoning-gym's ``basic_arithmetic`` generator, seeded.

Operators are + and - only: reasoning-gym's parenthesis-free generator evaluates left to right, which
is wrong for mixed * and + ("6 + 10 * 0" -> 0), and + / - are where left-to-right is exact. Operand
size and term count are the difficulty knobs (chosen by measurement, see docs/tasks.md). Expressions
with a zero operand are skipped: there an answer that merely echoes the question ("0 + 7") would score.
Score: 1 when the final number in the output (after 'Answer:' if present) equals the result.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from hagstudy.tasks.base import Item, Task
from hagstudy.tasks.text import number_score

TERMS: tuple[int, int] = (2, 2)
DIGITS: tuple[int, int] = (1, 2)
OPERATORS: tuple[str, ...] = ("+", "-")
POOL = 2000


def generator_config(seed: int, size: int) -> dict[str, Any]:
    return {
        "min_terms": TERMS[0], "max_terms": TERMS[1], "min_digits": DIGITS[0], "max_digits": DIGITS[1],
        "operators": OPERATORS, "allow_parentheses": False, "allow_negation": False,
        "format_style": "simple", "whitespace": "single", "seed": seed, "size": size,
    }


class Arithmetic(Task):
    name = "arithmetic"
    capability = "mathematics"
    metric = "exact match"
    max_new_tokens = 32  # "Answer: 163" is short, but the model often writes "98 + 65 = 163" or a lead-in first
    seed = 17
    system = (
        "You are a careful calculator. Compute the result and reply with one line in exactly this format: "
        "'Answer: <number>'."
    )

    def _build(self) -> list[Item]:
        import reasoning_gym  # ~1 s import; only when arithmetic items are needed

        ds = reasoning_gym.create_dataset("basic_arithmetic", **generator_config(self.seed, 3 * POOL))
        items: list[Item] = []
        seen: set[str] = set()
        for row in ds:
            question = row["question"]
            expression = row["metadata"]["expression"]
            if question in seen:  # repeated expressions are skipped, so splits stay disjoint
                continue
            if "0" in expression.split():  # "0 + 7" / "7 - 0": echoing the question would score
                continue
            seen.add(question)
            items.append(Item(task=self.name, id=f"{self.name}-{len(items):04d}", query=question,
                              reference={"answer": int(row["answer"]), "expression": expression}))
            if len(items) == POOL:
                break
        if len(items) < sum(self.split_sizes.values()):
            raise RuntimeError(f"arithmetic: only {len(items)} distinct expressions for the configured sizes")
        return items

    def chance_answers(self, search_items: Sequence[Item]) -> list[str]:
        """One constant number per distinct answer of the search split, most common first.

        The best of them on the search split is its most common answer (ties: the smaller number).
        """
        counts = Counter(int(it.reference["answer"]) for it in search_items)
        return [f"Answer: {n}" for n, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        return [number_score(text, it.reference["answer"]) for it, text in zip(items, outputs)]
