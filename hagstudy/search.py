"""Per-item search for decoding configs: the labels HAG is trained on, and the ablations around them.

The pipeline per task is (1) *pruning*: the coarse grid is scored on a few search items and every
config that does worse than the default is dropped; the survivors define a few candidate values per
hyperparameter; then (2) *greedy* search per item: one hyperparameter at a time, keep a change only
when the mean score over R seeded draws strictly improves.

Two properties make this cheap and trustworthy:

* **Common random numbers.** Draw ``r`` of item ``i`` always uses seed ``stable_hash(task, i, r)``,
  whatever the config, so two configs of one item are compared on the same seeds (less noise), and a
  rerun asks the engine for exactly the same generations (the cache makes them free: resumable).
* **Batching.** Every step builds all its requests (items x configs x draws) and calls
  ``engine.generate`` once; the engine's text depends only on (prompt, config, seed), so batching
  across items gives exactly the result of running them one by one.

Random search and Optuna TPE run through the same ``evaluate`` at an equal generation budget (the
search-method ablation); ``reliability`` repeats greedy with fresh seeds to ask whether per-item
labels carry signal or mostly noise; ``sensitivity`` is the one-at-a-time sweep of the preliminary
notebook.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hagstudy.decoding import (
    HYPERPARAMETERS,
    DecodingConfig,
    SearchSpace,
    default_config,
)
from hagstudy.files import atomic_write

log = logging.getLogger(__name__)

EPS = 1e-9  # means closer than this are ties (float sums in a different order must not flip a choice)
OFFSET_REPEAT = 1_000_000  # seed_offset of the repeated greedy search (label reliability)
OFFSET_HELDOUT = 2_000_000  # seed_offset of the held-out draws that score two labels against each other
LABEL_COLUMNS = ("task", "item_id", "query", "config", "score", "default_score", "n_evals", "search_evals")


# ---------------------------------------------------------------------------------------------
# Seeds and configs
# ---------------------------------------------------------------------------------------------


def stable_hash(*parts: Any) -> int:
    """A 31-bit integer from the parts' JSON text: the same on every machine and Python run.

    Python's ``hash()`` is salted per process for strings, so it would change every seed on restart.
    """
    text = json.dumps([p if isinstance(p, (int, float, str, bool)) or p is None else str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") & 0x7FFF_FFFF


def draw_seeds(task: str, item_id: str, draws: int, seed_offset: int = 0) -> tuple[int, ...]:
    """Seeds of an item's draws; every config of the item gets these same seeds (common random numbers)."""
    return tuple(stable_hash(task, item_id, seed_offset + r) for r in range(draws))


def config_from_json(text: str, max_new_tokens: int = 64) -> DecodingConfig:
    """The inverse of ``DecodingConfig.to_json`` (the token budget is not part of the JSON)."""
    return DecodingConfig(**json.loads(text), max_new_tokens=max_new_tokens)


def _key(config: DecodingConfig) -> str:
    """Identity of a config for the search: greedy's ignored top_p/top_k do not make a new config."""
    return config.effective().to_json()


def _pick(options: Sequence[tuple[DecodingConfig, float]], default: DecodingConfig) -> int:
    """Index of the best option: highest mean; ties to the config nearer the default, then the first."""
    best = max(mean for _, mean in options)
    tied = [i for i, (_, mean) in enumerate(options) if mean >= best - EPS]
    return min(tied, key=lambda i: (round(options[i][0].distance(default), 12), i))


# ---------------------------------------------------------------------------------------------
# Evaluation and budget
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """One config on one item: R seeded draws, their scores and mean. ``texts`` stay in memory only."""

    task: str
    item_id: str
    config: str  # canonical JSON (DecodingConfig.to_json)
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    mean: float
    tokens: int  # tokens generated over the draws (cached or not: the cost of a cold run)
    stage: str = ""  # prune | greedy | repeat | heldout | random | tpe | sensitivity
    texts: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def decoding(self, max_new_tokens: int = 64) -> DecodingConfig:
        return config_from_json(self.config, max_new_tokens)

    def to_dict(self, texts: bool = False) -> dict[str, Any]:
        row = {
            "task": self.task,
            "item_id": self.item_id,
            "stage": self.stage,
            "config": self.config,
            "seeds": list(self.seeds),
            "scores": list(self.scores),
            "mean": self.mean,
            "tokens": self.tokens,
        }
        if texts:
            row["texts"] = list(self.texts)
        return row


@dataclass
class Budget:
    """What a search cost: generations asked for, generated (cache misses), tokens and wall time.

    ``requested`` and ``tokens`` are deterministic; ``generated``, ``new_tokens`` and ``seconds``
    depend on what the cache already held (a resumed run generates less).
    """

    requested: int = 0
    generated: int = 0
    tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, stage: str, requested: int, generated: int, tokens: int, new_tokens: int, seconds: float) -> None:
        row = self.stages.setdefault(
            stage, {"requested": 0, "generated": 0, "tokens": 0, "new_tokens": 0, "seconds": 0.0}
        )
        for name, value in (
            ("requested", requested),
            ("generated", generated),
            ("tokens", tokens),
            ("new_tokens", new_tokens),
            ("seconds", seconds),
        ):
            row[name] += value
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, this_run: bool = False) -> dict[str, float]:
        """Flat columns per stage: ``requested`` and ``tokens`` always (the same on every rerun), and
        with ``this_run`` also what this run decoded and its seconds (zero when served from the cache)."""
        fields = ("requested", "tokens", "generated", "new_tokens", "seconds") if this_run else ("requested", "tokens")
        out = {name: getattr(self, name) for name in fields}
        for stage, values in self.stages.items():
            out.update({f"{stage}_{name}": values[name] for name in fields})
        return out


@dataclass(frozen=True)
class _Request:
    """Stand-in with ``generation.Request``'s fields, used only while that module does not exist yet."""

    prompt: str
    config: DecodingConfig
    seed: int = 0


def _request_class() -> type:
    try:
        from hagstudy.generation import (
            Request,  # local: the engine module imports torch
        )
    except ModuleNotFoundError as err:
        if err.name != "hagstudy.generation":
            raise
        return _Request
    return Request


def evaluate_pairs(
    engine: Any,
    task: Any,
    pairs: Sequence[tuple[Any, DecodingConfig]],
    draws: int,
    seed_offset: int = 0,
    *,
    stage: str = "",
    budget: Budget | None = None,
) -> list[Evaluation]:
    """Evaluate (item, config) pairs with ``draws`` seeded draws each: one generate and one score call.

    Identical requests (same prompt, effective config and seed) are sent once, and a greedy config's
    draws are one request (greedy decoding ignores the seed); the token budget is always the task's
    ``max_new_tokens``. ``Evaluation.seeds`` still lists the draw seeds, for the record.
    """
    Request = _request_class()
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if not pairs:
        return []
    prompts: dict[str, str] = {}
    unique: dict[tuple[str, str, int], int] = {}
    requests: list[Any] = []
    request_items: list[Any] = []
    plan: list[tuple[Any, DecodingConfig, tuple[int, ...], list[int]]] = []
    for item, config in pairs:
        config = config.with_(max_new_tokens=task.max_new_tokens)
        if item.id not in prompts:
            prompts[item.id] = engine.render(task.messages(item))
        prompt = prompts[item.id]
        seeds = draw_seeds(task.name, item.id, draws, seed_offset)
        slots = []
        for seed in seeds:
            # Greedy decoding ignores the seed: its R draws are one generation (scored R times).
            sent = seeds[0] if config.greedy else seed
            k = (prompt, config.key(), sent)
            if k not in unique:
                unique[k] = len(requests)
                requests.append(Request(prompt=prompt, config=config, seed=sent))
                request_items.append(item)
            slots.append(unique[k])
        plan.append((item, config, seeds, slots))

    start = time.perf_counter()
    completions = engine.generate(requests, desc=f"{task.name} {stage}".strip())
    if len(completions) != len(requests):
        raise RuntimeError(f"engine returned {len(completions)} completions for {len(requests)} requests")
    scores = [float(s) for s in task.score(request_items, [c.text for c in completions])]
    seconds = time.perf_counter() - start

    out = []
    tokens_total = 0
    for item, config, seeds, slots in plan:
        item_scores = tuple(scores[j] for j in slots)
        tokens = sum(int(completions[j].n_tokens) for j in slots)
        tokens_total += tokens
        out.append(
            Evaluation(
                task=task.name,
                item_id=item.id,
                config=config.to_json(),
                seeds=seeds,
                scores=item_scores,
                mean=math.fsum(item_scores) / len(item_scores),
                tokens=tokens,
                stage=stage,
                texts=tuple(completions[j].text for j in slots),
            )
        )
    if budget is not None:
        misses = [c for c in completions if not c.cached]
        budget.add(
            stage or "evaluate",
            requested=len(pairs) * draws,
            generated=len(misses),
            tokens=tokens_total,
            new_tokens=sum(int(c.n_tokens) for c in misses),
            seconds=seconds,
        )
    return out


def evaluate(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    configs: Sequence[DecodingConfig],
    draws: int,
    seed_offset: int = 0,
    *,
    stage: str = "",
    budget: Budget | None = None,
) -> list[Evaluation]:
    """Every config on every item (item-major order), all in one engine call."""
    pairs = [(item, config) for item in items for config in configs]
    return evaluate_pairs(engine, task, pairs, draws, seed_offset, stage=stage, budget=budget)


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """The coarse grid on a few items: config mean scores, the default's threshold, the survivors."""

    task: str
    default: str  # JSON
    item_ids: tuple[str, ...]
    draws: int
    threshold: float
    table: dict[str, float]  # config JSON -> mean over items and draws, in grid order
    survivors: tuple[str, ...]  # grid order
    candidates: dict[str, tuple[float, ...]]  # hyperparameter -> sorted values among survivors
    evaluations: tuple[Evaluation, ...] = field(default=(), repr=False)

    def best(self) -> str:
        """The best survivor (ties to the config nearer the default): greedy's starting point."""
        default = config_from_json(self.default)
        options = [(config_from_json(c), self.table[c]) for c in self.survivors]
        return self.survivors[_pick(options, default)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "default": self.default,
            "item_ids": list(self.item_ids),
            "draws": self.draws,
            "threshold": self.threshold,
            "table": self.table,
            "survivors": list(self.survivors),
            "candidates": {h: list(v) for h, v in self.candidates.items()},
            "best": self.best(),
        }


def prune(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    default: DecodingConfig,
    draws: int,
    space: SearchSpace | None = None,
    *,
    budget: Budget | None = None,
) -> PruneResult:
    """Score the coarse grid (plus the default if the grid lacks it); keep configs at least as good as the default."""
    space = space or SearchSpace()
    grid = [c.effective() for c in space.grid(task.max_new_tokens)]
    keys = [_key(c) for c in grid]
    default = default.effective()
    if _key(default) not in keys:
        grid.append(default)
        keys.append(_key(default))
    evals = evaluate(engine, task, items, grid, draws, stage="prune", budget=budget)
    per_config: dict[str, list[float]] = {k: [] for k in keys}
    for ev in evals:
        per_config[ev.config].extend(ev.scores)
    table = {k: math.fsum(v) / len(v) for k, v in per_config.items()}
    threshold = table[_key(default)]
    survivors = tuple(k for k in keys if table[k] >= threshold - EPS)
    configs = {k: c for k, c in zip(keys, grid)}
    candidates = {h: tuple(sorted({getattr(configs[k], h) for k in survivors})) for h in HYPERPARAMETERS}
    return PruneResult(
        task=task.name,
        default=_key(default),
        item_ids=tuple(item.id for item in items),
        draws=draws,
        threshold=threshold,
        table=table,
        survivors=survivors,
        candidates=candidates,
        evaluations=tuple(evals),
    )


# ---------------------------------------------------------------------------------------------
# Per-item searches: greedy, random, TPE
# ---------------------------------------------------------------------------------------------


@dataclass
class ItemLabel:
    """A search's choice for one item. ``score`` is on the search seeds (so optimistic by selection)."""

    task: str
    item_id: str
    query: str
    config: str  # JSON of the chosen config
    score: float  # its mean over the search draws
    default_score: float  # the default's mean on the same seeds
    n_evals: int  # distinct configs evaluated on this item (the default reference included)
    search_evals: int  # configs the search method itself considered (its budget, in configs)
    method: str = "greedy"
    evaluations: tuple[Evaluation, ...] = field(default=(), repr=False)

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LABEL_COLUMNS}


class _ItemState:
    """One item's memo of evaluations (by effective config) and the order they were made in."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.memo: dict[str, Evaluation] = {}
        self.order: list[Evaluation] = []
        self.considered: set[str] = set()

    def missing(self, configs: Iterable[DecodingConfig]) -> list[DecodingConfig]:
        out: dict[str, DecodingConfig] = {}
        for c in configs:
            k = _key(c)
            if k not in self.memo and k not in out:
                out[k] = c.effective()
        return list(out.values())

    def record(self, evals: Iterable[Evaluation]) -> None:
        for ev in evals:
            if ev.config not in self.memo:
                self.memo[ev.config] = ev
                self.order.append(ev)

    def mean(self, config: DecodingConfig) -> float:
        return self.memo[_key(config)].mean

    def label(self, task: Any, config: DecodingConfig, default: DecodingConfig, method: str) -> ItemLabel:
        return ItemLabel(
            task=task.name,
            item_id=self.item.id,
            query=self.item.query,
            config=_key(config),
            score=self.mean(config),
            default_score=self.mean(default),
            n_evals=len(self.order),
            search_evals=len(self.considered),
            method=method,
            evaluations=tuple(self.order),
        )


def _run_round(
    engine: Any,
    task: Any,
    states: Sequence[_ItemState],
    wanted: Sequence[Sequence[DecodingConfig]],
    draws: int,
    seed_offset: int,
    stage: str,
    budget: Budget | None,
) -> None:
    """Evaluate every state's wanted configs it has not seen yet, for all items in one engine call."""
    pairs = []
    owners = []
    for state, configs in zip(states, wanted):
        for c in state.missing(configs):
            pairs.append((state.item, c))
            owners.append(state)
    evals = evaluate_pairs(engine, task, pairs, draws, seed_offset, stage=stage, budget=budget)
    for state, ev in zip(owners, evals):
        state.record([ev])


def greedy(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    pruned: PruneResult,
    default: DecodingConfig,
    draws: int,
    order: Sequence[str] = HYPERPARAMETERS,
    seed_offset: int = 0,
    *,
    stage: str = "greedy",
    budget: Budget | None = None,
) -> list[ItemLabel]:
    """Greedy one-hyperparameter-at-a-time search per item, batched across items per step.

    Starts from the best surviving config; for each hyperparameter in ``order`` tries its candidate
    values (the others fixed) and moves only on a strict improvement of the mean; among equally good
    improvements the one nearer the default wins.
    """
    default = default.effective()
    start = config_from_json(pruned.best(), task.max_new_tokens)
    states = [_ItemState(item) for item in items]
    current = [start for _ in items]
    _run_round(engine, task, states, [[default, start]] * len(states), draws, seed_offset, stage, budget)
    for state in states:
        state.considered.add(_key(start))
    for name in order:
        values = pruned.candidates[name]
        trials = [[c.with_(**{name: v}).effective() for v in values] for c in current]
        _run_round(engine, task, states, trials, draws, seed_offset, stage, budget)
        for i, state in enumerate(states):
            options = []
            seen: set[str] = set()
            for c in trials[i]:
                k = _key(c)
                state.considered.add(k)
                if k not in seen:
                    seen.add(k)
                    options.append((c, state.mean(c)))
            best, best_mean = options[_pick(options, default)]
            if best_mean > state.mean(current[i]) + EPS:
                current[i] = best
    return [state.label(task, current[i], default, "greedy") for i, state in enumerate(states)]


def random_search(
    engine: Any,
    task: Any,
    items: Sequence[Any],
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
    states = [_ItemState(item) for item in items]
    wanted = []
    for state in states:
        rng = np.random.default_rng(stable_hash(task.name, state.item.id, "random", seed))
        configs = [space.sample(rng, task.max_new_tokens).effective() for _ in range(n)]
        state.considered.update(_key(c) for c in configs)
        wanted.append([default, *configs])
    _run_round(engine, task, states, wanted, draws, 0, "random", budget)
    labels = []
    for state, configs in zip(states, wanted):
        options = [(c, state.mean(c)) for c in configs[1:]]
        best, _ = options[_pick(options, default)]
        labels.append(state.label(task, best, default, "random"))
    return labels


def tpe_search(
    engine: Any,
    task: Any,
    items: Sequence[Any],
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
        states = [_ItemState(item) for item in items]
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
        _run_round(engine, task, states, [[default]] * len(states), draws, 0, "tpe", budget)
        done = 0
        while done < n_trials:
            k = min(batch, n_trials - done)
            asked = []
            for study in studies:
                trials = [study.ask() for _ in range(k)]
                configs = [_suggest(t, bounds, task.max_new_tokens) for t in trials]
                asked.append((trials, configs))
            _run_round(engine, task, states, [c for _, c in asked], draws, 0, "tpe", budget)
            for i, (study, (trials, configs)) in enumerate(zip(studies, asked)):
                for trial, config in zip(trials, configs):
                    states[i].considered.add(_key(config))
                    tried[i].append(config)
                    study.tell(trial, states[i].mean(config))
            done += k
    finally:
        optuna.logging.set_verbosity(verbosity)
    labels = []
    for state, configs in zip(states, tried):
        options = [(c, state.mean(c)) for c in configs]
        best, _ = options[_pick(options, default)]
        labels.append(state.label(task, best, default, "tpe"))
    return labels


def _suggest(trial: Any, bounds: Mapping[str, tuple[float, float]], max_new_tokens: int) -> DecodingConfig:
    values: dict[str, Any] = {}
    for name in HYPERPARAMETERS:
        lo, hi = bounds[name]
        if name == "top_k":
            values[name] = trial.suggest_int(name, int(lo), int(hi))
        else:
            values[name] = trial.suggest_float(name, float(lo), float(hi))
    return DecodingConfig(**values, max_new_tokens=max_new_tokens).effective()


def generations_per_item(labels: Sequence[ItemLabel], draws: int) -> float:
    """Mean search budget per item in generations (configs the method considered x draws)."""
    return float(np.mean([lab.search_evals for lab in labels])) * draws if labels else 0.0


# ---------------------------------------------------------------------------------------------
# Label reliability
# ---------------------------------------------------------------------------------------------


@dataclass
class Reliability:
    """Two greedy searches with independent seeds on the same items, and their labels on fresh draws."""

    task: str
    rows: list[dict[str, Any]]
    labels_a: list[ItemLabel] = field(repr=False)
    labels_b: list[ItemLabel] = field(repr=False)

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def summary(self) -> dict[str, Any]:
        """Agreement rates and held-out means; ``gap_ab`` near 0 with low agreement means noisy labels."""
        n = len(self.rows)
        out: dict[str, Any] = {"task": self.task, "n_items": n}
        if not n:
            return out
        out["agree_exact"] = float(np.mean([r["agree"] for r in self.rows]))
        for h in HYPERPARAMETERS:
            out[f"agree_{h}"] = float(np.mean([r[f"agree_{h}"] for r in self.rows]))
        for col in ("heldout_a", "heldout_b", "heldout_default", "search_a", "search_b"):
            out[col] = float(np.mean([r[col] for r in self.rows]))
        out["gap_ab"] = out["heldout_a"] - out["heldout_b"]
        out["abs_gap_ab"] = float(np.mean([abs(r["heldout_a"] - r["heldout_b"]) for r in self.rows]))
        out["gain_a_vs_default"] = out["heldout_a"] - out["heldout_default"]
        out["gain_b_vs_default"] = out["heldout_b"] - out["heldout_default"]
        out["optimism_a"] = out["search_a"] - out["heldout_a"]  # selection bias of the search score
        return out


def reliability(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    pruned: PruneResult,
    default: DecodingConfig,
    draws: int,
    order: Sequence[str],
    heldout_draws: int,
    labels_a: Sequence[ItemLabel] | None = None,
    *,
    budget: Budget | None = None,
) -> Reliability:
    """Repeat greedy with fresh seeds; compare the two labels (exact and per hyperparameter) and score
    both, and the default, on ``heldout_draws`` further fresh draws.

    ``labels_a`` are the original labels (from ``run_search``); without them greedy is rerun on the
    original seeds (free from the cache).
    """
    default = default.effective()
    if labels_a is None:
        labels_a = greedy(engine, task, items, pruned, default, draws, order, budget=budget)
    else:
        by_id = {lab.item_id: lab for lab in labels_a}
        labels_a = [by_id[item.id] for item in items]
    labels_b = greedy(engine, task, items, pruned, default, draws, order, OFFSET_REPEAT, stage="repeat", budget=budget)
    mnt = task.max_new_tokens
    pairs = []
    for item, a, b in zip(items, labels_a, labels_b):
        seen = []
        for c in (config_from_json(a.config, mnt), config_from_json(b.config, mnt), default):
            if _key(c) not in seen:
                seen.append(_key(c))
                pairs.append((item, c))
    evals = evaluate_pairs(engine, task, pairs, heldout_draws, OFFSET_HELDOUT, stage="heldout", budget=budget)
    held = {(ev.item_id, ev.config): ev.mean for ev in evals}
    rows = []
    for item, a, b in zip(items, labels_a, labels_b):
        ca, cb = config_from_json(a.config), config_from_json(b.config)
        row: dict[str, Any] = {
            "task": task.name,
            "item_id": item.id,
            "config_a": a.config,
            "config_b": b.config,
            "agree": a.config == b.config,
        }
        for h in HYPERPARAMETERS:
            row[f"agree_{h}"] = getattr(ca, h) == getattr(cb, h)
        row.update(
            search_a=a.score,
            search_b=b.score,
            heldout_a=held[(item.id, a.config)],
            heldout_b=held[(item.id, b.config)],
            heldout_default=held[(item.id, _key(default))],
        )
        rows.append(row)
    return Reliability(task=task.name, rows=rows, labels_a=list(labels_a), labels_b=list(labels_b))


# ---------------------------------------------------------------------------------------------
# The per-task driver and its files
# ---------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    task: str
    default: str
    prune: PruneResult
    labels: list[ItemLabel]
    budget: Budget
    draws: int

    def evaluations(self) -> list[Evaluation]:
        """Every evaluation, in a fixed order: pruning (grid order per item), then each item's search."""
        out = list(self.prune.evaluations)
        for lab in self.labels:
            out.extend(lab.evaluations)
        return out


def engine_default(engine: Any, max_new_tokens: int = 64) -> DecodingConfig:
    """The study's default config for the engine's model (its generation_config, else transformers')."""
    model = getattr(engine, "model", None)
    cfg, _ = default_config(getattr(model, "generation_config", None), max_new_tokens)
    return cfg


def run_search(
    engine: Any,
    task: Any,
    profile: Any,
    out_dir: Path | str,
    default: DecodingConfig | None = None,
    space: SearchSpace | None = None,
) -> SearchResult:
    """Prune + greedy on the task's first ``profile.n_search`` search items; write the task's files.

    Writes ``out_dir/<task>/evaluations.jsonl``, ``labels.csv`` and ``budget.json`` atomically. Only
    ``budget.json`` holds run-dependent values (wall time, cache misses); rerunning is cheap (cache).
    """
    s = profile.search
    default = (default or engine_default(engine, task.max_new_tokens)).with_(max_new_tokens=task.max_new_tokens)
    items = task.items("search", profile.n_search)
    budget = Budget()
    start = time.perf_counter()
    pruned = prune(engine, task, items[: s.prune_items], default, s.draws, space, budget=budget)
    labels = greedy(engine, task, items, pruned, default, s.draws, s.greedy_order, budget=budget)
    budget.seconds = time.perf_counter() - start  # wall time, including scoring and rendering
    result = SearchResult(task=task.name, default=_key(default), prune=pruned, labels=labels, budget=budget, draws=s.draws)
    write_result(result, Path(out_dir), profile=getattr(profile, "name", None))
    return result


def write_result(result: SearchResult, out_dir: Path, profile: str | None = None) -> Path:
    folder = Path(out_dir) / result.task
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(ev.to_dict(), sort_keys=True) for ev in result.evaluations()]
    atomic_write(folder / "evaluations.jsonl", "".join(line + "\n" for line in lines))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LABEL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for lab in result.labels:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in lab.row().items()})
    atomic_write(folder / "labels.csv", buf.getvalue())
    atomic_write(folder / "prune.json", json.dumps(result.prune.to_dict(), indent=2, sort_keys=True) + "\n")
    meta = {
        "task": result.task,
        "profile": profile,
        "default": result.default,
        "draws": result.draws,
        "n_items": len(result.labels),
        "generations_per_item": generations_per_item(result.labels, result.draws),
        **result.budget.to_dict(),
    }
    atomic_write(folder / "budget.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def read_labels(out_dir: Path | str, tasks: Sequence[str] | None = None) -> Any:
    """The labels of ``run_search`` as one DataFrame (strings kept as strings, task order kept)."""
    import pandas as pd

    out_dir = Path(out_dir)
    if tasks is None:
        tasks = sorted(p.parent.name for p in out_dir.glob("*/labels.csv"))
    frames = []
    for name in tasks:
        path = out_dir / name / "labels.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no labels for task {name!r}: {path} (run the search notebook first)")
        frames.append(
            pd.read_csv(path, dtype={"task": str, "item_id": str, "query": str, "config": str}, keep_default_na=False)
        )
    if not frames:
        return pd.DataFrame(columns=list(LABEL_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def read_prune(out_dir: Path | str, task: str) -> PruneResult:
    """The pruning result ``run_search`` wrote (without its evaluations), for later notebooks."""
    raw = json.loads((Path(out_dir) / task / "prune.json").read_text())
    return PruneResult(
        task=raw["task"],
        default=raw["default"],
        item_ids=tuple(raw["item_ids"]),
        draws=raw["draws"],
        threshold=raw["threshold"],
        table=dict(raw["table"]),
        survivors=tuple(raw["survivors"]),
        candidates={h: tuple(raw["candidates"][h]) for h in HYPERPARAMETERS},
    )


def read_item_labels(out_dir: Path | str, task: str) -> list[ItemLabel]:
    """The labels ``run_search`` wrote, as ItemLabels (without their evaluations)."""
    frame = read_labels(out_dir, [task])
    return [
        ItemLabel(
            task=r["task"],
            item_id=r["item_id"],
            query=r["query"],
            config=r["config"],
            score=float(r["score"]),
            default_score=float(r["default_score"]),
            n_evals=int(r["n_evals"]),
            search_evals=int(r["search_evals"]),
        )
        for r in frame.to_dict("records")
    ]


def read_evaluations(out_dir: Path | str, task: str) -> list[dict[str, Any]]:
    path = Path(out_dir) / task / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Frames for the notebooks
# ---------------------------------------------------------------------------------------------


def expand_configs(frame: Any, column: str = "config") -> Any:
    """Add one column per hyperparameter from a JSON config column (in place; returns the frame)."""
    parsed = [json.loads(c) for c in frame[column]]
    for h in HYPERPARAMETERS:
        frame[h] = [p[h] for p in parsed]
    return frame


_expand = expand_configs  # the name notebooks/02_dataset used first


def budget_frame(results: Sequence[SearchResult], this_run: bool = False) -> Any:
    """One row per task: generations and tokens the search asked for, per stage (see ``Budget.row``)."""
    import pandas as pd

    return pd.DataFrame([{"task": r.task, **r.budget.row(this_run)} for r in results])


def labels_frame(results: SearchResult | Sequence[SearchResult] | Sequence[ItemLabel]) -> Any:
    """Labels as a DataFrame: the labels.csv columns, plus one column per hyperparameter and ``gain``."""
    import pandas as pd

    if isinstance(results, SearchResult):
        results = [results]
    labels: list[ItemLabel] = []
    for r in results:
        labels.extend(r.labels if isinstance(r, SearchResult) else [r])
    frame = pd.DataFrame([{**lab.row(), "method": lab.method} for lab in labels], columns=[*LABEL_COLUMNS, "method"])
    frame = expand_configs(frame)
    frame["gain"] = frame["score"] - frame["default_score"]
    return frame


def prune_frame(pruned: PruneResult | Sequence[PruneResult]) -> Any:
    """The pruning table: one row per grid config with its mean, and whether it survived / is the default."""
    import pandas as pd

    if isinstance(pruned, PruneResult):
        pruned = [pruned]
    rows = []
    for p in pruned:
        survivors = set(p.survivors)
        best = p.best()
        for config, mean in p.table.items():
            rows.append(
                {
                    "task": p.task,
                    "config": config,
                    "mean": mean,
                    "threshold": p.threshold,
                    "survived": config in survivors,
                    "is_default": config == p.default,
                    "is_start": config == best,
                }
            )
    frame = pd.DataFrame(rows, columns=["task", "config", "mean", "threshold", "survived", "is_default", "is_start"])
    return expand_configs(frame)


def evaluations_frame(evals: Iterable[Evaluation]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(
        [ev.to_dict() for ev in evals],
        columns=["task", "item_id", "stage", "config", "seeds", "scores", "mean", "tokens"],
    )
    return expand_configs(frame)


# ---------------------------------------------------------------------------------------------
# One-at-a-time sensitivity (preliminary notebook)
# ---------------------------------------------------------------------------------------------


def sensitivity(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    default: DecodingConfig,
    grids: Mapping[str, Sequence[float]],
    draws: int,
    seed_offset: int = 0,
    *,
    budget: Budget | None = None,
) -> Any:
    """Move each hyperparameter alone from the default over its grid; one engine call for everything.

    Returns one row per (hyperparameter, value, item): mean score, the draw scores and the sampled
    texts (for Self-BLEU diversity). Aggregate with ``groupby(["hyperparameter", "value"])``.
    """
    import pandas as pd

    plan: list[tuple[str, float, DecodingConfig]] = []
    configs: dict[str, DecodingConfig] = {}
    for name, values in grids.items():
        if name not in HYPERPARAMETERS:
            raise ValueError(f"unknown hyperparameter {name!r}; known: {list(HYPERPARAMETERS)}")
        for v in values:
            c = default.with_(**{name: v}, max_new_tokens=task.max_new_tokens)
            plan.append((name, v, c))
            configs.setdefault(c.to_json(), c)
    evals = evaluate(engine, task, items, list(configs.values()), draws, seed_offset, stage="sensitivity", budget=budget)
    by = {(ev.item_id, ev.config): ev for ev in evals}
    rows = []
    for name, v, c in plan:
        for item in items:
            ev = by[(item.id, c.to_json())]
            rows.append(
                {
                    "task": task.name,
                    "hyperparameter": name,
                    "value": v,
                    "is_default": getattr(c, name) == getattr(default, name),
                    "config": ev.config,
                    "item_id": item.id,
                    "mean": ev.mean,
                    "scores": list(ev.scores),
                    "samples": list(ev.texts),
                    "tokens": ev.tokens,
                }
            )
    return pd.DataFrame(rows)
