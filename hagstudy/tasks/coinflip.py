"""coinflip (symbolic reasoning): the coin-flip state-tracking task of Wei et al. (2022), generated.

"A coin is heads up. Ana flips the coin. Raj does not flip the coin. Is the coin still heads up?"
The answer is yes exactly when an even number of people flip. Items are generated from a fixed
seed; the number of people per question (``PEOPLE``) is the difficulty knob (see docs/tasks.md).
"""

from __future__ import annotations

import random

from hagstudy.tasks.base import Item
from hagstudy.tasks.yes_no import YesNoTask

NAMES: tuple[str, ...] = (
    "Ana", "Raj", "Mei", "Tom", "Sofia", "Kwame", "Lena", "Omar", "Yuki", "Pedro", "Amara", "Jonas", "Priya",
    "Diego", "Hana", "Ivan", "Zoe", "Tariq", "Elif", "Marco", "Nia", "Sven", "Leila", "Chen", "Fatima", "Liam",
    "Aiko", "Bruno", "Carmen", "Dev", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jack", "Kira", "Luca", "Maya",
    "Noah", "Olga", "Paulo", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wen", "Ximena", "Yusuf",
)
PEOPLE: tuple[int, int] = (2, 4)  # min and max number of people per question, inclusive
POOL = 2000


def make_question(rng: random.Random) -> tuple[str, str, list[bool]]:
    """One question, its answer ('yes'/'no') and who flipped."""
    k = rng.randint(*PEOPLE)
    people = rng.sample(NAMES, k)
    flips = [rng.random() < 0.5 for _ in people]
    steps = " ".join(f"{p} flips the coin." if f else f"{p} does not flip the coin." for p, f in zip(people, flips))
    question = f"A coin is heads up. {steps} Is the coin still heads up?"
    return question, ("yes" if sum(flips) % 2 == 0 else "no"), flips


class CoinFlip(YesNoTask):
    name = "coinflip"
    capability = "symbolic reasoning"
    metric = "accuracy"
    seed = 7

    def _build(self) -> list[Item]:
        rng = random.Random(self.seed)
        items: list[Item] = []
        seen: set[str] = set()
        while len(items) < POOL:  # the question space is large; duplicates are skipped, so splits stay disjoint
            question, answer, flips = make_question(rng)
            if question in seen:
                continue
            seen.add(question)
            items.append(
                Item(
                    task=self.name,
                    id=f"{self.name}-{len(items):04d}",
                    query=f"{question}\nAnswer Yes or No.",
                    reference={"answer": answer, "flips": sum(flips), "people": len(flips)},
                )
            )
        return items
