"""The six study tasks: registry, ``Item`` and ``Task``.

``get(name)`` returns one shared instance per task (its item pool is built once, on first use).
Importing this package loads no model: MiniLM loads on the first creativity-task score, and
reasoning-gym on the first arithmetic items.

| name               | capability                         | data                                 | per-item score               |
|--------------------|------------------------------------|--------------------------------------|------------------------------|
| coinflip           | symbolic reasoning                 | generated (Wei et al. 2022), seeded  | yes/no correct               |
| strategyqa         | commonsense reasoning              | BIG-bench strategyqa, half A         | yes/no correct               |
| yes_no_black_white | creativity (constrained answering) | BIG-bench strategyqa, half B         | compliance x MiniLM relevance|
| taboo              | creativity (word game)             | data/taboo/cards.json (generated)    | compliance x MiniLM relevance|
| number_words       | translation (number words)         | generated, seeded                    | number correct               |
| arithmetic         | mathematics                        | reasoning-gym basic_arithmetic       | final number correct         |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hagstudy.config import ProfileError
from hagstudy.tasks.arithmetic import Arithmetic
from hagstudy.tasks.base import SPLITS, Item, Task, TaskError
from hagstudy.tasks.coinflip import CoinFlip
from hagstudy.tasks.number_words import NumberWords
from hagstudy.tasks.strategyqa import StrategyQA
from hagstudy.tasks.taboo import Taboo
from hagstudy.tasks.yes_no_black_white import YesNoBlackWhite

if TYPE_CHECKING:
    from hagstudy.config import Profile

__all__ = ["SPLITS", "Item", "Task", "TaskError", "UnknownTaskError", "get", "names", "all_tasks", "selected"]

_CLASSES: dict[str, type[Task]] = {
    cls.name: cls for cls in (CoinFlip, StrategyQA, YesNoBlackWhite, Taboo, NumberWords, Arithmetic)
}
_INSTANCES: dict[str, Task] = {}


class UnknownTaskError(KeyError, TaskError):
    """An unknown task name; the message lists the six tasks."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def names() -> list[str]:
    return list(_CLASSES)


def get(name: str) -> Task:
    """The shared instance of a task, by registry name."""
    if name not in _CLASSES:
        raise UnknownTaskError(f"unknown task {name!r}; tasks: {', '.join(names())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _CLASSES[name]()
    return _INSTANCES[name]


def all_tasks() -> list[Task]:
    return [get(n) for n in names()]


def selected(profile: "Profile") -> tuple[str, ...]:
    """The profile's task names, checked against the registry; an empty ``tasks`` means every task.

    Resolved here rather than in ``hagstudy.config`` so the profile stays a plain frozen value and
    config imports nothing from the registry. ``study.start`` calls it, so a typo fails at once.
    """
    if not profile.tasks:
        return tuple(names())
    unknown = [t for t in profile.tasks if t not in _CLASSES]
    if unknown:
        detail = f"unknown task(s) {unknown}; known: {names()}"
        raise ProfileError(f"profile {profile.name!r}: tasks: {detail}", "tasks", detail)
    return tuple(profile.tasks)
