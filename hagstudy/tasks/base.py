"""Item and Task: what every study task provides, and the fixed, seeded, disjoint splits.

A task builds one *pool* of items in a fixed, seeded order and cuts it into consecutive blocks
(search, validation, test). ``items(split, n)`` is the first ``n`` of a block, so a smaller
profile's items are always a prefix of a larger one's and no item is ever in two splits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

SPLITS: tuple[str, ...] = ("search", "validation", "test")
ECHO = "{query}"  # a chance-answer template that echoes the item's query (see Task.chance_answers)


class TaskError(ValueError):
    """A bad split, an unknown task name, or a pool too small for the requested split sizes."""


@dataclass(frozen=True)
class Item:
    task: str
    id: str  # stable, unique within the task
    query: str  # the user turn text (also HAG's stage-1 input)
    reference: Any  # JSON-serialisable gold data


class Task:
    """Abstract base. Subclasses set the class attributes and implement ``_build`` and ``score``."""

    name: str = ""
    capability: str = ""
    metric: str = "score"  # what ``score`` measures, for axis labels (figures, README)
    max_new_tokens: int = 64
    system: str = ""  # the system prompt: role and the explicit answer format
    split_sizes: dict[str, int] = {"search": 100, "validation": 100, "test": 500}
    seed: int = 0  # the pool's shuffle/generation seed

    def __init__(self) -> None:
        self._pool: list[Item] | None = None

    # -- data ------------------------------------------------------------------------------
    def _build(self) -> list[Item]:
        """Every item the task may use, in a fixed seeded order, at least ``sum(split_sizes)`` long."""
        raise NotImplementedError

    def pool(self) -> list[Item]:
        if self._pool is None:
            pool = self._build()
            ids = [it.id for it in pool]
            queries = [it.query for it in pool]
            if len(set(ids)) != len(ids) or len(set(queries)) != len(queries):
                raise TaskError(f"{self.name}: pool has duplicate ids or queries")  # a bug, never data-dependent
            self._pool = pool
        return self._pool

    def split_bounds(self, split: str) -> tuple[int, int]:
        if split not in SPLITS:
            raise TaskError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        start = 0
        for name in SPLITS:
            if name == split:
                return start, start + self.split_sizes[name]
            start += self.split_sizes[name]
        raise AssertionError("unreachable")

    def items(self, split: str, n: int | None = None) -> list[Item]:
        """The first ``n`` items of ``split`` (all of it when ``n`` is None).

        A split holds at most ``split_sizes[split]`` items; asking for more returns the whole split
        (taboo has only 99 distinct targets, so its test split is smaller than the default profile's 100).
        """
        lo, hi = self.split_bounds(split)
        if n is not None and n < 0:
            raise TaskError(f"n must be >= 0, got {n}")
        block = self.pool()[lo:hi]
        return block if n is None else block[:n]

    # -- prompting -------------------------------------------------------------------------
    def messages(self, item: Item) -> list[dict[str, str]]:
        """[system, user] chat messages; the user turn is the item's query, verbatim."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": item.query}]

    # -- scoring ---------------------------------------------------------------------------
    def chance_answers(self, search_items: Sequence[Item]) -> list[str]:
        """Candidate model-free answers for the chance baseline, as templates; the best on the search split wins.

        A template is sent as the output of every item, with ``{query}`` replaced by the item's query:
        the same text for every item (a constant answer) or the query echoed back (a do-nothing
        answer). The base offers the empty answer and the echo; tasks with a closed answer set
        override it with their constant answers. ``search_items`` lets a task draw candidates from
        the search split (never the test split), e.g. its most common answer.
        """
        return ["", ECHO]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        """One score in [0, 1] per (item, output); pure and deterministic."""
        raise NotImplementedError

    def _check(self, items: Sequence[Item], outputs: Sequence[str]) -> None:
        if len(items) != len(outputs):
            raise TaskError(f"{self.name}: {len(items)} items but {len(outputs)} outputs")
        for it in items:
            if it.task != self.name:
                raise TaskError(f"{self.name}: got an item of task {it.task!r} ({it.id})")

    def __repr__(self) -> str:
        return f"<Task {self.name} ({self.capability}), max_new_tokens={self.max_new_tokens}>"


def chance_output(template: str, item: Item) -> str:
    """The output a chance-answer template gives for ``item`` (``{query}`` becomes the item's query)."""
    return template.replace(ECHO, item.query)


def shuffled(values: Sequence[Any], seed: int) -> list[Any]:
    """A copy of ``values`` in a seeded order that does not depend on Python's hash seed."""
    out = list(values)
    random.Random(seed).shuffle(out)
    return out
