"""The hyperparameter-aware instruction set: search labels turned into chat examples for SFT.

Each example is ``[system, user=query, assistant=config JSON]``. ``stage1_messages`` builds the same
``[system, user]`` prefix that HAG inference and the zero-shot baseline send, so the prompt the model
is trained on and the prompt it is asked at test time are identical by construction.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from hagstudy.decoding import (
    HYPERPARAMETERS,
    TRANSFORMERS_DEFAULT,
    DecodingConfig,
)
from hagstudy.files import atomic_write
from hagstudy.scoring import pick_best
from hagstudy.seeds import stable_hash

SYSTEM_PROMPT = (
    # Short, and without an example config: it is in every training row (training cost scales with row
    # length), and round 1's example config was copied verbatim by the tuned model.
    "Choose decoding hyperparameters for this request. Reply with JSON: temperature, top_p, top_k, repetition_penalty."
)


def stage1_messages(query: str) -> list[dict[str, str]]:
    """HAG's stage-1 prompt (training, HAG inference and the zero-shot baseline all use this)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query}]


def _canonical(config: DecodingConfig | str) -> str:
    return config.to_json() if isinstance(config, DecodingConfig) else DecodingConfig.from_json(config).to_json()


def label_text(config: DecodingConfig | str) -> str:
    """The assistant turn: the config's canonical JSON without spaces (fewer tokens to learn and to write)."""
    return json.dumps(json.loads(_canonical(config)), separators=(",", ":"))


def example(item_query: str, config: DecodingConfig | str, task: str = "", item_id: str = "") -> dict[str, Any]:
    """One SFT row: the stage-1 messages plus the config's compact canonical JSON as the assistant turn."""
    return {
        "messages": [*stage1_messages(item_query), {"role": "assistant", "content": label_text(config)}],
        "task": task,
        "item_id": item_id,
    }


def query_of(row: Mapping[str, Any]) -> str:
    """The query (user turn) of an SFT row built by ``example``."""
    return str(row["messages"][1]["content"])


def label_of(row: Mapping[str, Any]) -> DecodingConfig:
    """The config label (assistant turn) of an SFT row built by ``example``."""
    return DecodingConfig.from_json(row["messages"][2]["content"])


def _records(labels: Any) -> list[dict[str, Any]]:
    """Rows of a labels DataFrame (or an iterable of dicts) as plain dicts."""
    if hasattr(labels, "to_dict"):
        return labels.to_dict("records")
    return [dict(r) for r in labels]


def build(labels: Any, validation_fraction: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split labels into train/validation rows, stratified by task and seeded.

    Each task with at least two items gives ``round(fraction * n)`` items to validation, but at least
    one and never all (so tiny smoke runs still have a validation set). Rows keep the labels' order.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    records = _records(labels)
    by_task: dict[str, list[str]] = {}
    for r in records:
        by_task.setdefault(str(r["task"]), []).append(str(r["item_id"]))
    validation: set[tuple[str, str]] = set()
    for task, ids in by_task.items():
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate item ids in the labels of task {task!r}")
        n = len(ids)
        if n < 2:
            continue
        n_val = min(max(1, round(validation_fraction * n)), n - 1)
        order = sorted(ids)  # independent of the frame's row order
        random.Random(stable_hash("split", seed, task)).shuffle(order)
        validation.update((task, i) for i in order[:n_val])
    train, val = [], []
    for r in records:
        row = example(str(r["query"]), str(r["config"]), str(r["task"]), str(r["item_id"]))
        (val if (str(r["task"]), str(r["item_id"])) in validation else train).append(row)
    return train, val


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path | str) -> Path:
    """Write rows as JSON lines, atomically (a reader never sees half a file)."""
    path = Path(path)
    atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def load(path: Path | str) -> Any:
    """A JSONL file as a ``datasets.Dataset`` (built in memory: no Hugging Face cache folder involved)."""
    from datasets import Dataset

    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------
# Label distributions and the per-task-label ablation
# ---------------------------------------------------------------------------------------------


def per_task_labels(labels: Any, default: DecodingConfig = TRANSFORMERS_DEFAULT) -> dict[str, DecodingConfig]:
    """One config per task: the one chosen for most items (``scoring.pick_best`` on the counts)."""
    counts: dict[str, Counter[str]] = {}
    for r in _records(labels):
        counts.setdefault(str(r["task"]), Counter())[_canonical(str(r["config"]))] += 1
    out = {}
    for task, counter in counts.items():
        options = [(DecodingConfig.from_json(c), float(k)) for c, k in sorted(counter.items())]
        out[task] = options[pick_best(options, default)][0]  # ties: nearer the default, then JSON order
    return out


def with_per_task_labels(labels: pd.DataFrame, default: DecodingConfig = TRANSFORMERS_DEFAULT) -> pd.DataFrame:
    """A copy of a labels DataFrame whose config column holds each task's single per-task label."""
    chosen = per_task_labels(labels, default)
    frame = labels.copy()
    frame["config"] = [chosen[str(t)].to_json() for t in frame["task"]]
    return frame


def config_distribution(labels: Any) -> pd.DataFrame:
    """How often each whole config was chosen, per task (most frequent first)."""
    counts: dict[tuple[str, str], int] = Counter(
        (str(r["task"]), _canonical(str(r["config"]))) for r in _records(labels)
    )
    frame = pd.DataFrame(
        [{"task": t, "config": c, "count": k} for (t, c), k in counts.items()], columns=["task", "config", "count"]
    )
    frame["fraction"] = frame["count"] / frame.groupby("task")["count"].transform("sum")
    return frame.sort_values(["task", "count", "config"], ascending=[True, False, True], ignore_index=True)


def label_distribution(labels: Any) -> pd.DataFrame:
    """Per task and hyperparameter, how often each value was chosen (long format, for bar plots)."""
    counts: Counter[tuple[str, str, float]] = Counter()
    for r in _records(labels):
        cfg = json.loads(_canonical(str(r["config"])))
        for h in HYPERPARAMETERS:
            counts[(str(r["task"]), h, cfg[h])] += 1
    frame = pd.DataFrame(
        [{"task": t, "hyperparameter": h, "value": v, "count": k} for (t, h, v), k in counts.items()],
        columns=["task", "hyperparameter", "value", "count"],
    )
    frame["fraction"] = frame["count"] / frame.groupby(["task", "hyperparameter"])["count"].transform("sum")
    return frame.sort_values(["task", "hyperparameter", "value"], ignore_index=True)
