"""Summaries for the preliminary study (RQ1/RQ2): how much each hyperparameter moves score and diversity.

``search.sensitivity`` produces one row per (hyperparameter, value, item) with the sampled texts;
these helpers turn that into a table with bootstrap CIs and Self-BLEU, and name, per task, the
hyperparameter whose setting moves the score most.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import HYPERPARAMETERS, ParseResult
from hagstudy.diversity import distinct_n, self_bleu
from hagstudy.evaluation import bootstrap_ci

# Each hyperparameter moved alone from the default over these values (the default's own value included).
SENSITIVITY_GRIDS: dict[str, tuple[float, ...]] = {
    "temperature": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    "top_p": (0.2, 0.4, 0.6, 0.8, 0.9, 1.0),
    "top_k": (1, 5, 10, 20, 50, 0),
    "repetition_penalty": (1.0, 1.1, 1.2, 1.3, 1.5),
}


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
