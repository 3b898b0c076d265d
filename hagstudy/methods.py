"""The compared methods, as per-generation score rows on shared test items and shared seeds.

Every method answers the same items with the same generation seeds (common random numbers), so
differences between methods are paired and come from the decoding configs alone. A method is just a
config per (item, seed): ``default`` and ``greedy`` fix one, ``random`` draws one, ``task_oracle``
uses the best fixed config found on the search split, ``zero_shot`` and ``hag`` read one from stage 1.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import DecodingConfig, SearchSpace
from hagstudy.generation import Request
from hagstudy.search import stable_hash

SCORE_COLUMNS = ["task", "method", "item_id", "seed", "score", "config", "status", "n_tokens"]
GREEDY_SEED = 0  # greedy text does not depend on the seed: generate once, score once per seed


def generation_seed(task: str, item_id: str, seed: int) -> int:
    """The sampling seed of evaluation seed ``seed`` on one item: the same for every method."""
    return stable_hash(task, item_id, "eval", seed)


ConfigFor = Callable[[Any, int], DecodingConfig]


def run_configs(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    seeds: Sequence[int],
    config_for: ConfigFor | Mapping[tuple[str, int], DecodingConfig],
    method: str,
    status: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Answer every (item, seed) with its config in one engine call; return one score row each.

    ``config_for(item, seed)`` (or a mapping keyed by ``(item.id, seed)``) gives the config; its
    ``max_new_tokens`` is replaced by the task's. ``status`` maps item ids to a stage-1 parse status.
    """
    pick = config_for if callable(config_for) else (lambda item, s: config_for[(item.id, s)])
    requests: dict[str, Request] = {}
    plan: list[tuple[Any, int, DecodingConfig, str]] = []
    for item in items:
        prompt = engine.render(task.messages(item))
        for s in seeds:
            cfg = pick(item, s).with_(max_new_tokens=task.max_new_tokens)
            gen_seed = GREEDY_SEED if cfg.greedy else generation_seed(task.name, item.id, s)
            req = Request(prompt=prompt, config=cfg, seed=gen_seed)
            rkey = f"{cfg.key()}|{gen_seed}|{item.id}"
            requests.setdefault(rkey, req)
            plan.append((item, s, cfg, rkey))
    keys = list(requests)
    completions = dict(zip(keys, engine.generate([requests[k] for k in keys], desc=f"{task.name}/{method}")))
    scores = task.score([p[0] for p in plan], [completions[p[3]].text for p in plan])
    rows = [
        {
            "task": task.name,
            "method": method,
            "item_id": item.id,
            "seed": s,
            "score": float(score),
            "config": cfg.to_json(),
            "status": (status or {}).get(item.id, "fixed"),
            "n_tokens": completions[rkey].n_tokens,
        }
        for (item, s, cfg, rkey), score in zip(plan, scores)
    ]
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def fixed(engine: Any, task: Any, items: Sequence[Any], seeds: Sequence[int], config: DecodingConfig, method: str) -> pd.DataFrame:
    """One config for every item and seed (``default``, ``greedy``, ``task_oracle``)."""
    return run_configs(engine, task, items, seeds, lambda item, s: config, method)


def random_configs(
    engine: Any, task: Any, items: Sequence[Any], seeds: Sequence[int], space: SearchSpace | None = None, method: str = "random"
) -> pd.DataFrame:
    """A uniform draw from the search space per item and seed, seeded by (task, item, seed)."""
    space = space or SearchSpace()

    def draw(item: Any, s: int) -> DecodingConfig:
        rng = np.random.default_rng(stable_hash(task.name, item.id, "random", s))
        return space.sample(rng, task.max_new_tokens)

    return run_configs(engine, task, items, seeds, draw, method)


def per_item(
    engine: Any,
    task: Any,
    items: Sequence[Any],
    seeds: Sequence[int],
    configs: Mapping[str, DecodingConfig],
    method: str,
    status: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One config per item, the same for all its seeds (what stage 1 of HAG or zero-shot produced)."""
    return run_configs(engine, task, items, seeds, lambda item, s: configs[item.id], method, status=status)


def only(configs: Mapping[str, DecodingConfig], default: DecodingConfig, keep: Sequence[str]) -> dict[str, DecodingConfig]:
    """Keep only the hyperparameters in ``keep`` from each config; the rest take the default's values.

    The 'HAG controls temperature only' ablation: the same stage-1 output, fewer knobs obeyed.
    """
    out = {}
    for item_id, cfg in configs.items():
        values = {h: (getattr(cfg, h) if h in keep else getattr(default, h)) for h in cfg.hyperparameters()}
        out[item_id] = default.with_(**values)
    return out


def task_oracle(engine: Any, task: Any, items: Sequence[Any], pruned: Any, draws: int, top: int = 5) -> DecodingConfig:
    """The best fixed config for a task, chosen on the search split only.

    The ``top`` best pruning configs (scored on a few items) are re-scored on every given search item
    with the search's draws; the best mean wins, ties to the config nearest the default.
    """
    from hagstudy.search import config_from_json, evaluate

    ranked = sorted(pruned.table.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    default = config_from_json(pruned.default, task.max_new_tokens)
    candidates = [config_from_json(c, task.max_new_tokens) for c, _ in ranked]
    evals = evaluate(engine, task, items, candidates, draws, stage="oracle")
    means: dict[str, list[float]] = {}
    for ev in evals:
        means.setdefault(ev.config, []).append(ev.mean)
    scored = [(c, float(np.mean(means[c.to_json()]))) for c in candidates]
    best = max(scored, key=lambda cs: (round(cs[1], 9), -cs[0].distance(default)))
    return best[0]


def stage1_then_answer(
    stage1_engine: Any,
    stage2_engine: Any,
    task: Any,
    items: Sequence[Any],
    seeds: Sequence[int],
    default: DecodingConfig,
    method: str,
    keep: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two-stage generation (``hag`` with the tuned engine, ``zero_shot`` with the untuned one).

    Stage 1 proposes a config per item (greedy); a failed parse uses ``default`` and is counted in the
    ``status`` column. ``keep`` restricts which proposed hyperparameters are obeyed (ablation). Returns
    the score rows and one row per item with the proposal (for distributions and parse rates).
    """
    from hagstudy import hag

    proposals = hag.propose(stage1_engine, [it.query for it in items], fallback=default, desc=f"{method} stage 1 ({task.name})")
    resolution = hag.resolve([pr.parse for pr in proposals], default, task.max_new_tokens)
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
