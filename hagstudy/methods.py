"""The compared methods' scoring: how each one's score rows are made.

Every method answers the same items with the same generation seeds (common random numbers), so
differences between methods are paired and come from the decoding configs alone. A method is just a
config per (item, seed): ``default`` and ``greedy`` fix one, ``random`` draws one, ``task_oracle``
uses the best fixed config found on the search split (``hagstudy.method.oracles``), ``zero_shot`` and ``hag``
read one from stage 1. ``chance`` generates nothing: it is the task's best model-free answer (:func:`chance`).

Each method's name, kind, colour and order are in ``hagstudy.registry`` (adding a method: one entry
there and, if no function here fits, one scoring function here).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import DecodingConfig, SearchSpace
from hagstudy.method import hag
from hagstudy.registry import CHANCE, HAG, RANDOM
from hagstudy.scoring import Engine, Task, eval_cell, score
from hagstudy.seeds import stable_hash
from hagstudy.tasks.base import chance_output

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item

SCORE_COLUMNS = ["task", "method", "item_id", "seed", "score", "config", "status", "n_tokens"]

ConfigFor = Callable[["Item", int], DecodingConfig]


class ChanceTask(Protocol):
    """What the chance baseline needs from a task (``tasks.base.Task`` is one)."""

    name: str

    def chance_answers(self, search_items: Sequence[Item]) -> list[str]: ...

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]: ...


def run_configs(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    seeds: Sequence[int],
    config_for: ConfigFor | Mapping[tuple[str, int], DecodingConfig],
    method: str,
    status: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Answer every (item, seed) with its config through ``scoring.score``; one score row each.

    ``config_for(item, seed)`` (or a mapping keyed by ``(item.id, seed)``) gives the config.
    ``status`` maps item ids to a stage-1 parse status (``fixed`` where absent).
    """
    pick = config_for if callable(config_for) else (lambda item, s: config_for[(item.id, s)])
    plan = [(item, s) for item in items for s in seeds]
    cells = [eval_cell(task.name, item, pick(item, s), s) for item, s in plan]
    evals, _ = score(engine, task, cells, stage="eval", desc=f"{task.name}/{method}")
    rows = [
        {
            "task": task.name,
            "method": method,
            "item_id": item.id,
            "seed": s,
            "score": ev.scores[0],
            "config": ev.config.to_json(),
            "status": (status or {}).get(item.id, "fixed"),
            "n_tokens": ev.tokens,
        }
        for (item, s), ev in zip(plan, evals)
    ]
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def fixed(engine: Engine, task: Task, items: Sequence[Item], seeds: Sequence[int], config: DecodingConfig, method: str) -> pd.DataFrame:
    """One config for every item and seed (``default``, ``greedy``, ``task_oracle``)."""
    return run_configs(engine, task, items, seeds, lambda item, s: config, method)


def random_configs(
    engine: Engine, task: Task, items: Sequence[Item], seeds: Sequence[int], space: SearchSpace | None = None, method: str = RANDOM.name
) -> pd.DataFrame:
    """A uniform draw from the search space per item and seed, seeded by (task, item, seed)."""
    space = space or SearchSpace()

    def draw(item: Item, s: int) -> DecodingConfig:
        rng = np.random.default_rng(stable_hash(task.name, item.id, RANDOM.name, s))
        return space.sample(rng)

    return run_configs(engine, task, items, seeds, draw, method)


def per_item(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    seeds: Sequence[int],
    configs: Mapping[str, DecodingConfig],
    method: str,
    status: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One config per item, the same for all its seeds (what stage 1 of HAG or zero-shot produced)."""
    return run_configs(engine, task, items, seeds, lambda item, s: configs[item.id], method, status=status)


def chance(task: ChanceTask, items: Sequence[Item], seeds: Sequence[int], search_items: Sequence[Item], method: str = CHANCE.name) -> pd.DataFrame:
    """The chance baseline: the task's best model-free answer, chosen on the search split, scored on ``items``.

    The candidates are the task's ``chance_answers(search_items)`` (always yes / always no, the
    most common number, the empty answer, the echoed query...). Each is scored with the task's own
    metric on ``search_items`` only; the highest mean wins (ties: the earlier candidate). The winner
    is then scored on ``items`` and gives one row per (item, seed), in ``SCORE_COLUMNS``, with the
    same score for every seed (nothing is sampled), so it enters the tables like any method.
    ``config`` holds the chosen answer and its search-split mean, ``status`` is ``constant``.
    """
    if not search_items:
        raise ValueError(f"chance ({task.name}): no search items to choose the constant answer on")
    test_ids = {it.id for it in items}
    leaked = [it.id for it in search_items if it.id in test_ids]
    if leaked:
        raise ValueError(f"chance ({task.name}): {len(leaked)} search item(s) are also scored items, e.g. {leaked[:3]}")
    candidates = list(dict.fromkeys(task.chance_answers(search_items)))
    if not candidates:
        raise ValueError(f"chance ({task.name}): the task offers no chance answers")
    means = []
    for template in candidates:
        values = task.score(search_items, [chance_output(template, it) for it in search_items])
        means.append(float(np.mean(values)))
    best = int(np.argmax(means))  # the first of equal means
    template = candidates[best]
    values = task.score(items, [chance_output(template, it) for it in items])
    config = json.dumps({"chance_answer": template, "search_mean": round(means[best], 6)}, ensure_ascii=False)
    rows = [
        {"task": task.name, "method": method, "item_id": it.id, "seed": s, "score": float(v),
         "config": config, "status": "constant", "n_tokens": 0}
        for it, v in zip(items, values)
        for s in seeds
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def only(configs: Mapping[str, DecodingConfig], default: DecodingConfig, keep: Sequence[str]) -> dict[str, DecodingConfig]:
    """Keep only the hyperparameters in ``keep`` from each config; the rest take the default's values.

    The 'HAG controls temperature only' ablation: the same stage-1 output, fewer knobs obeyed.
    """
    out = {}
    for item_id, cfg in configs.items():
        values = {h: (getattr(cfg, h) if h in keep else getattr(default, h)) for h in cfg.hyperparameters()}
        out[item_id] = default.with_(**values)
    return out


def stage1_then_answer(
    stage1_engine: Engine,
    stage2_engine: Engine,
    task: Task,
    items: Sequence[Item],
    seeds: Sequence[int],
    default: DecodingConfig,
    method: str,
    keep: Sequence[str] | None = None,
    prefill: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two-stage generation (``hag`` with the tuned engine, ``zero_shot`` with the untuned one).

    Stage 1 proposes a config per item (greedy); a failed parse uses ``default`` and is counted in the
    ``status`` column. ``keep`` restricts which proposed hyperparameters are obeyed (ablation). Returns
    the score rows and one row per item with the proposal (for distributions and parse rates).
    """
    proposals = hag.propose(
        stage1_engine, [it.query for it in items], fallback=default, desc=f"{method} stage 1 ({task.name})", prefill=prefill
    )
    resolution = hag.resolve([pr.parse for pr in proposals], default, label=f"{method} ({task.name})")
    configs = {it.id: cfg for it, cfg in zip(items, resolution.configs)}
    if keep is not None:
        configs = only(configs, default, keep)
    status = {it.id: st for it, st in zip(items, resolution.status)}
    scores = per_item(stage2_engine, task, items, seeds, configs, method, status=status)
    proposed = pd.DataFrame(
        [
            {"task": task.name, "method": method, "item_id": it.id, "status": status[it.id],
             "stage1_text": pr.text, **configs[it.id].hyperparameters()}
            for it, pr in zip(items, proposals)
        ]
    )
    return scores, proposed


def pooled(scores: pd.DataFrame, members: Sequence[str], method: str = HAG.name) -> pd.DataFrame:
    """A method trained several times (one member method per adapter) as one method: per (task, item,
    seed), the mean score over its members, and their mean token count.

    The point estimate of the pooled method is then the mean over adapters; its CI is computed by
    ``evaluation.main_table(..., pooled=...)``, which resamples the adapters too. ``config`` and
    ``status`` are per adapter and do not pool: they are left empty (read them per member).
    """
    if not members:
        raise ValueError(f"pooled {method!r}: no member methods")
    sub = scores[scores["method"].isin(list(members))]
    missing = sorted(set(members) - set(sub["method"]))
    if missing:
        raise ValueError(f"pooled {method!r}: member method(s) {missing} have no scores")
    counts = sub.groupby(["task", "item_id", "seed"])["method"].nunique()
    if (counts != len(set(members))).any():
        raise ValueError(f"pooled {method!r}: members are not scored on the same (task, item, seed) cells")
    out = sub.groupby(["task", "item_id", "seed"], sort=False).agg(score=("score", "mean"), n_tokens=("n_tokens", "mean"))
    out = out.reset_index().assign(method=method, config="", status="pooled")
    return out[SCORE_COLUMNS]
