"""The one seeded path from (items, configs) to scores, and the one rule that picks the best config.

Search, the compared methods, the ablations and the preliminary sweep all ask the same question:
"how well does this config answer this item, on these seeds?". ``score`` answers it for many
``Cell``s at once: it renders each item's prompt, attaches the task's token budget to each request
(the only place that happens), sends every distinct request to the engine in ONE call (cell order,
then seed order: the engine's batches, and so bf16 texts, depend on it), scores every distinct
completion in ONE ``task.score`` call, and returns one ``Evaluation`` per cell.

A greedy config ignores the seed, so all of a greedy cell's draws are one generation, sent with the
cell's ``greedy_seed`` and scored once per draw. Which seeds a cell gets is the caller's seed rule
(``hagstudy.seeds``): ``search_cell`` for the search's draws, ``eval_cell`` for evaluation seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from hagstudy.decoding import DecodingConfig
from hagstudy.engine.protocol import Engine, Messages
from hagstudy.seeds import GREEDY_SEED, draw_seeds, eval_seed

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item

EPS = 1e-9  # means closer than this are ties (float sums in another order must not flip a choice)


class Completion(Protocol):
    text: str
    n_tokens: int
    finished: bool
    cached: bool


class Task(Protocol):
    """What scoring needs from a study task (``tasks.base.Task`` is one)."""

    name: str
    max_new_tokens: int

    def messages(self, item: Item) -> Messages: ...

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class Cell:
    """One config on one item, scored on ``seeds``; a greedy config sends ``greedy_seed`` once."""

    item: Item
    config: DecodingConfig
    seeds: tuple[int, ...]
    greedy_seed: int


def search_cell(task: str, item: Item, config: DecodingConfig, draws: int, seed_offset: int = 0) -> Cell:
    """A cell on the search's draws (common random numbers across configs); greedy sends the first."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    seeds = draw_seeds(task, item.id, draws, seed_offset)
    return Cell(item, config, seeds, greedy_seed=seeds[0])


def eval_cell(task: str, item: Item, config: DecodingConfig, seed: int) -> Cell:
    """A cell for evaluation seed ``seed`` (one draw, the same sampling seed for every method)."""
    return Cell(item, config, (eval_seed(task, item.id, seed),), greedy_seed=GREEDY_SEED)


@dataclass(frozen=True)
class Evaluation:
    """One cell's result: its draws' scores and mean. ``texts`` stay in memory only."""

    task: str
    item_id: str
    config: DecodingConfig
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    mean: float
    tokens: int  # tokens generated over the draws (cached or not: the cost of a cold run)
    stage: str = ""  # prune | greedy | repeat | heldout | random | tpe | sensitivity | eval | ...
    texts: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The row written to a search's evaluations.jsonl (the config as canonical JSON)."""
        return {
            "task": self.task,
            "item_id": self.item_id,
            "stage": self.stage,
            "config": self.config.to_json(),
            "seeds": list(self.seeds),
            "scores": list(self.scores),
            "mean": self.mean,
            "tokens": self.tokens,
        }


@dataclass(frozen=True)
class Cost:
    """What one ``score`` call cost. ``requested`` and ``tokens`` are deterministic; ``generated``
    (cache misses), ``new_tokens`` and ``seconds`` depend on what the cache already held."""

    requested: int = 0
    generated: int = 0
    tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


def score(engine: Engine, task: Task, cells: Sequence[Cell], *, stage: str = "", desc: str | None = None) -> tuple[list[Evaluation], Cost]:
    """Every cell in one engine call and one scoring call; one ``Evaluation`` per cell, in order."""
    from hagstudy.engine.requests import Request

    if not cells:
        return [], Cost()
    prompts: dict[str, str] = {}
    unique: dict[tuple[str, str, int], int] = {}
    requests: list[Any] = []
    request_items: list[Item] = []
    slots: list[list[int]] = []
    for cell in cells:
        config = cell.config.with_(max_new_tokens=task.max_new_tokens)  # the one place the budget is attached
        if cell.item.id not in prompts:
            prompts[cell.item.id] = engine.render(task.messages(cell.item))
        prompt = prompts[cell.item.id]
        cell_slots = []
        for seed in cell.seeds:
            sent = cell.greedy_seed if config.greedy else seed
            key = (prompt, config.key(), sent)
            if key not in unique:
                unique[key] = len(requests)
                requests.append(Request(prompt=prompt, config=config, seed=sent))
                request_items.append(cell.item)
            cell_slots.append(unique[key])
        slots.append(cell_slots)

    start = time.perf_counter()
    completions = engine.generate(requests, desc=desc or f"{task.name} {stage}".strip())
    if len(completions) != len(requests):
        raise RuntimeError(f"engine returned {len(completions)} completions for {len(requests)} requests")
    scores = [float(s) for s in task.score(request_items, [c.text for c in completions])]
    seconds = time.perf_counter() - start

    out = []
    for cell, cell_slots in zip(cells, slots):
        cell_scores = tuple(scores[j] for j in cell_slots)
        out.append(
            Evaluation(
                task=task.name,
                item_id=cell.item.id,
                config=cell.config,
                seeds=cell.seeds,
                scores=cell_scores,
                mean=math.fsum(cell_scores) / len(cell_scores),
                tokens=sum(int(completions[j].n_tokens) for j in cell_slots),
                stage=stage,
                texts=tuple(completions[j].text for j in cell_slots),
            )
        )
    misses = [c for c in completions if not c.cached]
    cost = Cost(
        requested=sum(len(cell.seeds) for cell in cells),
        generated=len(misses),
        tokens=sum(ev.tokens for ev in out),
        new_tokens=sum(int(c.n_tokens) for c in misses),
        seconds=seconds,
    )
    return out, cost


def evaluate(
    engine: Engine,
    task: Task,
    pairs: Sequence[tuple[Item, DecodingConfig]],
    draws: int,
    seed_offset: int = 0,
    *,
    stage: str = "",
) -> tuple[list[Evaluation], Cost]:
    """(item, config) pairs on the search's ``draws`` seeded draws (``seed_offset`` picks fresh ones)."""
    cells = [search_cell(task.name, item, config, draws, seed_offset) for item, config in pairs]
    return score(engine, task, cells, stage=stage)


def pick_best(options: Sequence[tuple[DecodingConfig, float]], default: DecodingConfig) -> int:
    """Index of the best option: the highest mean; ties (within ``EPS``) go to the config nearer
    ``default``, then to the earlier option. The study's one tie rule."""
    if not options:
        raise ValueError("pick_best needs at least one option")
    best = max(mean for _, mean in options)
    tied = [i for i, (_, mean) in enumerate(options) if mean >= best - EPS]
    return min(tied, key=lambda i: (round(options[i][0].distance(default), 12), i))
