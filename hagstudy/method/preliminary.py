"""The preliminary study (RQ1/RQ2): how much each hyperparameter moves score and diversity.

``sensitivity`` moves each hyperparameter alone from the default and scores every setting through
``scoring.score`` (one row per hyperparameter, value and item, with the sampled texts); the other
helpers turn that into a table with bootstrap CIs and Self-BLEU, name, per task, the hyperparameter
whose setting moves the score most, and tabulate whether the untuned model can write a config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import HYPERPARAMETERS, DecodingConfig, ParseResult
from hagstudy.report.diversity import distinct_n, self_bleu
from hagstudy.report.evaluation import bootstrap_ci
from hagstudy.scoring import Engine, Task, evaluate

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item

# Each hyperparameter moved alone from the default over these values (the default's own value included).
SENSITIVITY_GRIDS: dict[str, tuple[float, ...]] = {
    "temperature": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    "top_p": (0.2, 0.4, 0.6, 0.8, 0.9, 1.0),
    "top_k": (1, 5, 10, 20, 50, 0),
    "repetition_penalty": (1.0, 1.1, 1.2, 1.3, 1.5),
}


def sensitivity(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    default: DecodingConfig,
    grids: Mapping[str, Sequence[float]],
    draws: int,
) -> pd.DataFrame:
    """Move each hyperparameter alone from the default over its grid; one engine call for everything.

    Returns one row per (hyperparameter, value, item): mean score, the draw scores and the sampled
    texts (for Self-BLEU diversity). Aggregate with ``groupby(["hyperparameter", "value"])``.
    """
    plan: list[tuple[str, float, DecodingConfig]] = []
    configs: dict[str, DecodingConfig] = {}
    for name, values in grids.items():
        if name not in HYPERPARAMETERS:
            raise ValueError(f"unknown hyperparameter {name!r}; known: {list(HYPERPARAMETERS)}")
        for v in values:
            c = default.with_(**{name: v})
            plan.append((name, v, c))
            configs.setdefault(c.to_json(), c)
    pairs = [(item, c) for item in items for c in configs.values()]
    evals, _ = evaluate(engine, task, pairs, draws, stage="sensitivity")
    by = {(ev.item_id, ev.config.to_json()): ev for ev in evals}
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
                    "config": ev.config.to_json(),
                    "item_id": item.id,
                    "mean": ev.mean,
                    "scores": list(ev.scores),
                    "samples": list(ev.texts),
                    "tokens": ev.tokens,
                }
            )
    return pd.DataFrame(rows)


def sensitivity_summary(rows: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per (task, hyperparameter, value): mean score with a bootstrap CI over items and draws,
    mean Self-BLEU and distinct-2 over each item's samples (higher Self-BLEU = less diverse)."""
    out = []
    for (task, hp, value), g in rows.groupby(["task", "hyperparameter", "value"], sort=False):
        long = pd.DataFrame(
            [{"item_id": r.item_id, "seed": i, "score": s} for r in g.itertuples() for i, s in enumerate(r.scores)]
        )
        ci = bootstrap_ci(long, n_boot=n_boot)
        samples = [list(s) for s in g["samples"]]
        multi = [s for s in samples if len(s) > 1]
        out.append(
            {
                "task": task,
                "hyperparameter": hp,
                "value": float(value),
                "is_default": bool(g["is_default"].iloc[0]),
                "score_mean": ci.mean,
                "score_ci_low": ci.ci_low,
                "score_ci_high": ci.ci_high,
                "self_bleu": float(np.mean([self_bleu(s) for s in multi])) if multi else float("nan"),
                "distinct_2": float(np.mean([distinct_n(s, 2) for s in multi])) if multi else float("nan"),
                "mean_tokens": float(np.mean([t / max(len(s), 1) for t, s in zip(g["tokens"], samples)])),
                "n_items": int(g["item_id"].nunique()),
            }
        )
    return pd.DataFrame(out)


def influence(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task and hyperparameter: the spread (max - min) of mean score across its values.

    The hyperparameter with the largest spread is the one whose setting matters most for that task
    (on these items; the CIs in the summary say how much of the spread is noise).
    """
    g = summary.groupby(["task", "hyperparameter"], sort=False)
    frame = g.agg(score_min=("score_mean", "min"), score_max=("score_mean", "max"),
                  self_bleu_min=("self_bleu", "min"), self_bleu_max=("self_bleu", "max")).reset_index()
    frame["score_spread"] = frame["score_max"] - frame["score_min"]
    frame["self_bleu_spread"] = frame["self_bleu_max"] - frame["self_bleu_min"]
    frame["most_influential"] = frame.groupby("task")["score_spread"].transform("max") == frame["score_spread"]
    return frame


def config_table(task: str, item_ids: Sequence[str], results: Sequence[ParseResult], source: str) -> pd.DataFrame:
    """Stage-1 outputs as rows: parse status and the (parsed) hyperparameters, for distributions."""
    rows: list[dict[str, Any]] = []
    for item_id, res in zip(item_ids, results):
        row: dict[str, Any] = {"task": task, "item_id": item_id, "source": source, "status": res.status}
        for h in HYPERPARAMETERS:
            row[h] = getattr(res.config, h) if res.config is not None else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def parse_rates(configs: pd.DataFrame) -> pd.DataFrame:
    """Per task and source: share of stage-1 outputs that parsed, fully (ok) or after repair."""
    g = configs.groupby(["task", "source"], sort=False)["status"]
    return pd.DataFrame(
        {
            "n": g.size(),
            "parsed": g.apply(lambda s: float((s != "failed").mean())),
            "ok": g.apply(lambda s: float((s == "ok").mean())),
            "clamped": g.apply(lambda s: float((s == "clamped").mean())),
            "partial": g.apply(lambda s: float((s == "partial").mean())),
        }
    ).reset_index()
