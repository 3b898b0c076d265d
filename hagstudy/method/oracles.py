"""Configs chosen with more knowledge than HAG has: the references a per-query method is read against.

* ``task_oracle``: the best fixed config per task, chosen on the search split (what a practitioner
  tuning one config per task would deploy).
* ``best_single_config``: one config for every task, chosen on the search split under the same
  budget rule (the strongest "no adaptation at all" baseline).
* ``min_p``, ``edt`` and ``top_nsigma``: training-free adaptive decoding (min-p sampling; entropy-dependent
  temperature; top-nσ), their settings tuned per task on the search split with the task oracle's final budget
  (``tune_adaptive``).
* ``item_oracle``: for each test item, the best of a fixed candidate set chosen on one set of draws
  of that very item (ties broken at random) and scored on a disjoint set (``seeds.OFFSET_ORACLE`` for
  selection, the evaluation seeds for scoring). It estimates the ceiling of any per-query choice among
  those candidates; ``item_oracle - task_oracle`` is the headroom a per-query method could win.
* ``static_hindsight``: the best single candidate for a task chosen on those same test-item draws (the
  best fixed config in hindsight), so ``item_oracle - static_hindsight`` is what choosing per query adds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import GREEDY, TRANSFORMERS_DEFAULT, DecodingConfig
from hagstudy.engine.pool import map_pooled
from hagstudy.files import atomic_write
from hagstudy.methods import fixed, per_item
from hagstudy.registry import EDT, ITEM_ORACLE, MIN_P, STATIC_HINDSIGHT, TOP_NSIGMA
from hagstudy.scoring import EPS, Engine, Task, evaluate, pick_best
from hagstudy.seeds import OFFSET_ORACLE, stable_hash

if TYPE_CHECKING:
    from hagstudy.method.search import PruneResult
    from hagstudy.tasks.base import Item

# The item oracle's candidates: greedy, the transformers default, and ten configs spread over the
# search space (low/mid/high temperature, nucleus and top-k truncation, repetition penalty). The
# task oracle is added per task when it is not among them.
CANDIDATES: tuple[DecodingConfig, ...] = (
    GREEDY,
    TRANSFORMERS_DEFAULT,
    GREEDY.with_(repetition_penalty=1.3),
    DecodingConfig(temperature=0.3, top_p=0.9, top_k=0, repetition_penalty=1.0),
    DecodingConfig(temperature=0.5, top_p=0.9, top_k=50, repetition_penalty=1.0),
    DecodingConfig(temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.0),
    DecodingConfig(temperature=0.7, top_p=1.0, top_k=0, repetition_penalty=1.1),
    DecodingConfig(temperature=1.0, top_p=0.9, top_k=0, repetition_penalty=1.0),
    DecodingConfig(temperature=1.0, top_p=0.5, top_k=50, repetition_penalty=1.0),
    DecodingConfig(temperature=1.0, top_p=1.0, top_k=10, repetition_penalty=1.3),
    DecodingConfig(temperature=1.3, top_p=0.9, top_k=50, repetition_penalty=1.1),
    DecodingConfig(temperature=1.5, top_p=0.9, top_k=50, repetition_penalty=1.3),
)


# Training-free adaptive decoding, as it is used: plain sampling (no top-k/top-p, no penalty) plus the method's
# own control. Five settings each, as many as the task oracle re-scores (``task_oracle``'s ``top``), on the same
# search items and draws; ties go to the earlier (milder) setting. min-p: Nguyen et al. 2024 recommend 0.05-0.1
# at T = 1. EDT: T = T0 * N^(theta / H) with N = decoding.EDT_N (Zhang et al. 2024). top-nσ (Tang et al. 2024)
# recommend n = 1 at T = 1; a larger n keeps more tokens (milder), so its settings run from n = 3 down to 0.5: as
# for min-p, a tie goes to the setting that truncates least (n = 1 is not favoured over the data).
_PLAIN = DecodingConfig(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0)
ADAPTIVE: dict[str, tuple[DecodingConfig, ...]] = {
    MIN_P.name: tuple(_PLAIN.with_(min_p=v) for v in (0.02, 0.05, 0.1, 0.2, 0.3)),
    EDT.name: tuple(_PLAIN.with_(temperature=t0, edt_theta=theta) for t0, theta in
                 ((1.0, 0.5), (1.0, 1.0), (1.0, 2.0), (0.7, 1.0), (1.5, 1.0))),
    TOP_NSIGMA.name: tuple(_PLAIN.with_(top_nsigma=n) for n in (3.0, 2.0, 1.5, 1.0, 0.5)),
}


def _mean_item_means(evals: Sequence, config: DecodingConfig) -> float:
    return float(np.mean([ev.mean for ev in evals if ev.config == config]))


def task_oracle(engine: Engine, task: Task, items: Sequence[Item], pruned: PruneResult, draws: int, top: int = 5) -> DecodingConfig:
    """The best fixed config for a task, chosen on the search split only.

    The ``top`` best pruning configs (scored on a few items) are re-scored on every given search item
    with the search's draws; the best mean wins (``scoring.pick_best``).
    """
    ranked = sorted(pruned.table.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    candidates = [DecodingConfig.from_json(c) for c, _ in ranked]
    evals, _ = evaluate(engine, task, [(item, c) for item in items for c in candidates], draws, stage="oracle")
    options = [(c, _mean_item_means(evals, c)) for c in candidates]
    return options[pick_best(options, pruned.default)][0]


def best_single_config(
    engine: Engine, searched: Sequence[tuple[Task, Sequence[Item], PruneResult]], draws: int, top: int = 5
) -> DecodingConfig:
    """One config for every task, chosen on the search split with ``task_oracle``'s budget rule.

    The grid configs are ranked by their pruning mean averaged over tasks; the ``top`` best are
    re-scored on every task's search items with the search's draws (the same seeds as the task
    oracle, so shared candidates come from the cache), and the best unweighted mean over tasks wins.
    """
    if not searched:
        raise ValueError("best_single_config needs at least one searched task")
    common = set.intersection(*(set(p.table) for _, _, p in searched))
    pooled = {c: float(np.mean([p.table[c] for _, _, p in searched])) for c in common}
    ranked = sorted(pooled.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    candidates = [DecodingConfig.from_json(c) for c, _ in ranked]

    def one(s: tuple[Task, Sequence[Item], PruneResult]) -> list[float]:
        evals, _ = evaluate(engine, s[0], [(item, c) for item in s[1] for c in candidates], draws, stage="oracle")
        return [_mean_item_means(evals, c) for c in candidates]

    per_task = map_pooled(engine, one, searched)  # the tasks' calls decoded as one
    options = [(c, float(np.mean([means[i] for means in per_task]))) for i, c in enumerate(candidates)]
    return options[pick_best(options, searched[0][2].default)][0]


def tune_adaptive(
    engine: Engine, task: Task, items: Sequence[Item], draws: int, methods: Mapping[str, Sequence[DecodingConfig]] | None = None
) -> tuple[dict[str, DecodingConfig], pd.DataFrame]:
    """Each adaptive method's best setting for ``task`` on the search ``items`` (the search's ``draws``).

    Returns method -> chosen config, and one row per (method, setting) with its search mean and whether
    it was chosen (the tuning table notebook 01 commits).
    """
    methods = ADAPTIVE if methods is None else methods
    chosen: dict[str, DecodingConfig] = {}
    rows = []
    for method, candidates in methods.items():
        evals, _ = evaluate(engine, task, [(item, c) for item in items for c in candidates], draws, stage=method)
        options = [(c, _mean_item_means(evals, c)) for c in candidates]
        best = pick_best(options, candidates[0])
        chosen[method] = options[best][0]
        rows += [{"task": task.name, "method": method, "config": c.to_json(), "search_mean": m, "chosen": i == best}
                 for i, (c, m) in enumerate(options)]
    return chosen, pd.DataFrame(rows)


def write_adaptive(path: Path, chosen: Mapping[str, Mapping[str, DecodingConfig]]) -> None:
    """method -> task -> tuned config as canonical JSON (notebook 01 writes it, 04 reads it), atomically."""
    configs = {m: {t: c.to_json() for t, c in by_task.items()} for m, by_task in chosen.items()}
    atomic_write(path, json.dumps(configs, indent=2) + "\n")


def read_adaptive(path: Path) -> dict[str, dict[str, DecodingConfig]]:
    """What ``write_adaptive`` wrote (run notebook 01 first)."""
    if not path.is_file():
        raise FileNotFoundError(f"no tuned adaptive-decoding file at {path}: run notebook 01_search first")
    try:
        return {m: {t: DecodingConfig.from_json(c) for t, c in by_task.items()} for m, by_task in json.loads(path.read_text()).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a tuned adaptive-decoding file ({exc}): run notebook 01_search again") from None


@dataclass(frozen=True)
class ItemOracleRun:
    """What ``item_oracle`` measured on one task's test items.

    ``scores``: the item oracle's rows on the evaluation seeds (method ``item_oracle``). ``static``: the
    best fixed candidate in hindsight, chosen on the same selection draws of the same test items and scored
    on the evaluation seeds (method ``static_hindsight``): what a per-task config tuned on the test split
    itself would get, so ``item_oracle - static_hindsight`` isolates what choosing *per query* adds.
    ``choices``: one row per item (chosen config, its selection mean, how many candidates tied for it, the
    in-sample maximum and the reference config's selection mean on the same draws).
    """

    scores: pd.DataFrame
    static: pd.DataFrame
    choices: pd.DataFrame


def tie_break(task: str, item_id: str, tied: Sequence[int]) -> int:
    """One of the ``tied`` option indices, picked by a seeded hash of (task, item): ties are broken at random,
    never toward the reference config, so an item oracle that cannot tell candidates apart is not pulled
    toward the per-task config it is compared against (which would bias the headroom toward zero)."""
    if not tied:
        raise ValueError("tie_break needs at least one tied option")
    return int(tied[stable_hash(task, item_id, "item_oracle_tie") % len(tied)])


def item_oracle(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    seeds: Sequence[int],
    candidates: Sequence[DecodingConfig],
    selection_draws: int,
    reference: DecodingConfig,
) -> ItemOracleRun:
    """Per item, the candidate with the best mean on ``selection_draws`` draws, scored on the evaluation seeds.

    Selection and scoring never share a sampled draw (selection uses ``seeds.OFFSET_ORACLE``; a greedy
    candidate is one text either way). Ties at the best selection mean are broken at random per item
    (``tie_break``). ``reference`` (the task oracle) must be a candidate: its selection mean on the same
    draws gives the in-sample bracket (the best candidate per item, chosen *and* scored on the same
    draws, is an upper bound on what per-query choice among these candidates could gain).
    """
    unique = list({c.identity(): c.effective() for c in candidates}.values())
    ref = reference.effective()
    if ref.identity() not in {c.identity() for c in unique}:
        raise ValueError(f"item_oracle: the reference config {reference.to_json()} is not among the candidates")
    pairs = [(item, c) for item in items for c in unique]
    evals, _ = evaluate(engine, task, pairs, selection_draws, OFFSET_ORACLE, stage=ITEM_ORACLE.name)
    means = np.array([ev.mean for ev in evals], dtype=float).reshape(len(items), len(unique))
    ref_col = [c.identity() for c in unique].index(ref.identity())
    chosen: dict[str, DecodingConfig] = {}
    rows = []
    for k, item in enumerate(items):
        best = float(means[k].max())
        tied = [i for i in range(len(unique)) if means[k, i] >= best - EPS]
        pick = tie_break(task.name, item.id, tied)
        chosen[item.id] = unique[pick]
        rows.append({"task": task.name, "item_id": item.id, "config": unique[pick].to_json(),
                     "selection_mean": float(means[k, pick]), "n_candidates": len(unique), "n_tied": len(tied),
                     "in_sample_max": best, "reference_selection_mean": float(means[k, ref_col])})
    static_pick = pick_best([(c, float(means[:, i].mean())) for i, c in enumerate(unique)], ref)
    scores = per_item(engine, task, items, seeds, chosen, ITEM_ORACLE.name)
    static = fixed(engine, task, items, seeds, unique[static_pick], STATIC_HINDSIGHT.name)
    return ItemOracleRun(scores, static, pd.DataFrame(rows))


def candidates_for(task_oracle_config: DecodingConfig) -> list[DecodingConfig]:
    """``CANDIDATES`` plus the task's oracle config when it is not already one of them."""
    keys = {c.identity() for c in CANDIDATES}
    extra = [] if task_oracle_config.identity() in keys else [task_oracle_config]
    return [*CANDIDATES, *extra]


ALL_TASKS = "*"  # the key of best_single_config in the oracle file


def write_oracles(path: Path, task_oracle: Mapping[str, DecodingConfig], single: DecodingConfig) -> None:
    """The oracles.json file notebook 01 writes: task name -> its task oracle, and ``"*"`` -> the best
    single config, each as canonical config JSON (atomically)."""
    configs = {**{t: c.to_json() for t, c in task_oracle.items()}, ALL_TASKS: single.to_json()}
    atomic_write(path, json.dumps(configs, indent=2) + "\n")


def read_oracles(path: Path) -> tuple[dict[str, DecodingConfig], DecodingConfig]:
    """(task oracle by task, best single config) as ``write_oracles`` wrote them (run notebook 01 first)."""
    if not path.is_file():
        raise FileNotFoundError(f"no oracle file at {path}: run notebook 01_search first")
    configs = {t: DecodingConfig.from_json(c) for t, c in json.loads(path.read_text()).items()}
    if ALL_TASKS not in configs:
        raise ValueError(f"{path} has no best single config ({ALL_TASKS!r}): run notebook 01_search again")
    single = configs.pop(ALL_TASKS)
    return configs, single
