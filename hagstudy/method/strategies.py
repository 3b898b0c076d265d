"""The alternatives to greedy search, compared with it at an equal generation budget (notebook 05).

Random search draws uniform configs per item; Optuna's TPE proposes them per item in batched rounds.
Both score through the search's own rounds (``search.run_round``: one engine call per round, all items
batched, the search's draw seeds) and choose with ``scoring.pick_best``, so they differ from greedy only
in which configs they try.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from hagstudy.decoding import HYPERPARAMETERS, DecodingConfig, SearchSpace
from hagstudy.method.search import Budget, ItemLabel, ItemState, run_round
from hagstudy.scoring import Engine, Task, pick_best
from hagstudy.seeds import stable_hash

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item


def random_search(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    default: DecodingConfig,
    draws: int,
    generations: int,
    seed: int = 0,
    space: SearchSpace | None = None,
    *,
    budget: Budget | None = None,
) -> list[ItemLabel]:
    """Uniform random configs per item (``generations // draws`` of them), best one wins; one engine call."""
    space = space or SearchSpace()
    default = default.effective()
    n = max(1, generations // draws)
    states = [ItemState(item) for item in items]
    wanted = []
    for state in states:
        rng = np.random.default_rng(stable_hash(task.name, state.item.id, "random", seed))
        configs = [space.sample(rng).effective() for _ in range(n)]
        state.considered.update(c.identity() for c in configs)
        wanted.append([default, *configs])
    run_round(engine, task, states, wanted, draws, 0, "random", budget)
    labels = []
    for state, configs in zip(states, wanted):
        options = [(c, state.mean(c)) for c in configs[1:]]
        best, _ = options[pick_best(options, default)]
        labels.append(state.label(task, best, default, "random"))
    return labels


def tpe_search(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    default: DecodingConfig,
    draws: int,
    generations: int,
    seed: int = 0,
    space: SearchSpace | None = None,
    *,
    batch: int = 4,
    n_startup: int | None = None,
    budget: Budget | None = None,
) -> list[ItemLabel]:
    """Optuna TPE per item (``generations // draws`` trials), asked in rounds of ``batch`` trials per item.

    Each round asks every item's study for ``batch`` trials and evaluates them all in one engine
    call, so TPE gets the same batching as greedy. Samplers are seeded per item.
    """
    import optuna

    space = space or SearchSpace()
    bounds = space.bounds()
    default = default.effective()
    n_trials = max(1, generations // draws)
    startup = n_startup if n_startup is not None else max(1, min(10, n_trials // 2))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        states = [ItemState(item) for item in items]
        studies = [
            optuna.create_study(
                direction="maximize",
                sampler=optuna.samplers.TPESampler(
                    seed=stable_hash(task.name, s.item.id, "tpe", seed), n_startup_trials=startup
                ),
            )
            for s in states
        ]
        tried: list[list[DecodingConfig]] = [[] for _ in states]
        run_round(engine, task, states, [[default]] * len(states), draws, 0, "tpe", budget)
        done = 0
        while done < n_trials:
            k = min(batch, n_trials - done)
            asked = []
            for study in studies:
                trials = [study.ask() for _ in range(k)]
                configs = [_suggest(t, bounds) for t in trials]
                asked.append((trials, configs))
            run_round(engine, task, states, [c for _, c in asked], draws, 0, "tpe", budget)
            for i, (study, (trials, configs)) in enumerate(zip(studies, asked)):
                for trial, config in zip(trials, configs):
                    states[i].considered.add(config.identity())
                    tried[i].append(config)
                    study.tell(trial, states[i].mean(config))
            done += k
    finally:
        optuna.logging.set_verbosity(verbosity)
    labels = []
    for state, configs in zip(states, tried):
        options = [(c, state.mean(c)) for c in configs]
        best, _ = options[pick_best(options, default)]
        labels.append(state.label(task, best, default, "tpe"))
    return labels


def _suggest(trial: Any, bounds: Mapping[str, tuple[float, float]]) -> DecodingConfig:
    values: dict[str, Any] = {}
    for name in HYPERPARAMETERS:
        lo, hi = bounds[name]
        if name == "top_k":
            values[name] = trial.suggest_int(name, int(lo), int(hi))
        else:
            values[name] = trial.suggest_float(name, float(lo), float(hi))
    return DecodingConfig(**values).effective()
