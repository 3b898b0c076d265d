"""Labels that carry signal: an item keeps its searched config only if it wins on fresh draws.

A greedy label is the maximum of many noisy means, so its search score is optimistic (a winner's
curse), and with few draws many "improvements" are noise. The check here scores each item's searched
config and the task's start config (the best pruning survivor, where greedy began) on
``heldout_draws`` fresh draws (``seeds.OFFSET_HELDOUT``, never the search's). An item keeps its own
label only if it beats the start config by at least ``margin``; otherwise it is labelled with the
start config, the task-level choice. What a model is trained on is then either the task-level config
or an item-level change that survived a test it was not selected on.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from hagstudy.decoding import DecodingConfig
from hagstudy.files import atomic_write
from hagstudy.method.search import ItemLabel
from hagstudy.scoring import Engine, Task, evaluate
from hagstudy.seeds import OFFSET_HELDOUT

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item

FILE = "checked_labels.csv"
COLUMNS = (
    "task", "item_id", "query", "config", "searched", "start", "changed", "kept",
    "search_searched", "search_start", "heldout_searched", "heldout_start",
)


@dataclass(frozen=True)
class CheckedLabel:
    """One item's label after the check: ``config`` is ``searched`` if kept, else ``start``."""

    task: str
    item_id: str
    query: str
    searched: DecodingConfig
    start: DecodingConfig
    search_searched: float  # the searched config's mean on the search draws (optimistic)
    search_start: float  # the start config's mean on the same draws (NaN when the search never scored it)
    heldout_searched: float  # means on the fresh held-out draws
    heldout_start: float
    kept: bool

    @property
    def changed(self) -> bool:
        """Whether the search moved away from the start config at all."""
        return self.searched.to_json() != self.start.to_json()

    @property
    def config(self) -> DecodingConfig:
        return self.searched if self.kept else self.start

    def row(self) -> dict[str, Any]:
        return {
            "task": self.task, "item_id": self.item_id, "query": self.query, "config": self.config.to_json(),
            "searched": self.searched.to_json(), "start": self.start.to_json(), "changed": self.changed,
            "kept": self.kept, "search_searched": self.search_searched, "search_start": self.search_start,
            "heldout_searched": self.heldout_searched, "heldout_start": self.heldout_start,
        }


def heldout_means(
    engine: Engine, task: Task, wanted: Sequence[tuple[Item, Sequence[DecodingConfig]]], draws: int, stage: str
) -> dict[tuple[str, str], float]:
    """Mean score of each item's configs on ``draws`` fresh held-out draws, keyed by (item id, config JSON).

    An item's duplicate configs are scored once; the order of ``wanted`` is the engine's request order.
    """
    pairs = []
    for item, configs in wanted:
        seen: list[str] = []
        for c in configs:
            if c.identity() not in seen:
                seen.append(c.identity())
                pairs.append((item, c))
    evals, _ = evaluate(engine, task, pairs, draws, OFFSET_HELDOUT, stage=stage)
    return {(ev.item_id, ev.config.identity()): ev.mean for ev in evals}



def keeps(changed: bool, heldout_searched: float, heldout_start: float, margin: float) -> bool:
    """The check's one rule: a changed label stays if its held-out mean beats the start config's by ``margin``.

    ``margin=0`` is the unchecked arm of notebook 05 (``label_arms.unchecked``): a tie keeps the label.
    """
    return bool(changed) and heldout_searched >= heldout_start + margin - 1e-12


def _search_mean(label: ItemLabel, config: DecodingConfig) -> float:
    key = config.identity()
    for ev in label.evaluations:
        if ev.config.identity() == key:
            return ev.mean
    return math.nan


def check(
    engine: Engine,
    task: Task,
    items: Sequence[Any],
    labels: Sequence[ItemLabel],
    start: DecodingConfig,
    draws: int,
    margin: float,
    *,
    stage: str = "label check",
) -> list[CheckedLabel]:
    """Score each item's searched label and ``start`` on ``draws`` held-out draws; keep wins by ``margin``.

    ``items`` are the labelled items (matched to ``labels`` by id). The start config is scored on every
    item (the "after" of an unchanged item needs it too); a changed label is scored once more.
    """
    if not 0 <= margin <= 1:
        raise ValueError(f"margin must be in [0, 1], got {margin!r}")
    by_id = {it.id: it for it in items}
    missing = [lab.item_id for lab in labels if lab.item_id not in by_id]
    if missing:
        raise ValueError(f"task {task.name}: labels for items that were not given: {missing[:3]}")
    start = start.effective()
    means = heldout_means(engine, task, [(by_id[lab.item_id], [start, lab.config.effective()]) for lab in labels], draws, stage)
    out = []
    for lab in labels:
        searched = lab.config.effective()
        h_start = means[(lab.item_id, start.to_json())]
        h_searched = means[(lab.item_id, searched.to_json())]
        changed = searched.to_json() != start.to_json()
        out.append(
            CheckedLabel(
                task=task.name, item_id=lab.item_id, query=lab.query, searched=searched, start=start,
                search_searched=float(lab.score), search_start=_search_mean(lab, start),
                heldout_searched=h_searched, heldout_start=h_start,
                kept=keeps(changed, h_searched, h_start, margin),
            )
        )
    return out


def summary(checked: Sequence[CheckedLabel]) -> pd.DataFrame:
    """Per task: items, labels the search changed, labels kept, and mean scores before and after the check."""
    frame = frame_of(checked)
    if frame.empty:
        return pd.DataFrame(columns=["task", "items", "changed", "kept", "kept_share"])
    after_heldout = frame["heldout_searched"].where(frame["kept"], frame["heldout_start"])
    frame = frame.assign(after_heldout=after_heldout)
    out = frame.groupby("task", sort=False).agg(
        items=("item_id", "size"), changed=("changed", "sum"), kept=("kept", "sum"),
        search_before=("search_searched", "mean"), heldout_before=("heldout_searched", "mean"),
        heldout_after=("after_heldout", "mean"), heldout_start=("heldout_start", "mean"),
    ).reset_index()
    out.insert(4, "kept_share", out["kept"] / out["items"])
    return out


def frame_of(checked: Sequence[CheckedLabel]) -> pd.DataFrame:
    return pd.DataFrame([c.row() for c in checked], columns=list(COLUMNS))


def write(checked: Sequence[CheckedLabel], out_dir: Path | str) -> list[Path]:
    """``<out_dir>/<task>/checked_labels.csv`` per task, atomically (floats as repr: exact round trip)."""
    paths = []
    for task, group in frame_of(checked).groupby("task", sort=False):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in group.to_dict("records"):
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        path = Path(out_dir) / str(task) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buf.getvalue())
        paths.append(path)
    return paths


def read(out_dir: Path | str, tasks: Sequence[str]) -> pd.DataFrame:
    """The checked labels of ``tasks`` (the frame ``dataset.build`` takes: task, item_id, query, config, ...)."""
    frames = []
    for name in tasks:
        path = Path(out_dir) / name / FILE
        if not path.is_file():
            raise FileNotFoundError(f"no checked labels for task {name!r}: {path} (run notebook 01 first)")
        frame = pd.read_csv(path, dtype={"task": str, "item_id": str, "query": str, "config": str,
                                         "searched": str, "start": str}, keep_default_na=False)
        bad = [c for c in COLUMNS if c not in frame.columns]
        if bad:
            raise ValueError(f"{path}: missing column(s) {bad}")
        for col in ("search_searched", "search_start", "heldout_searched", "heldout_start"):
            frame[col] = frame[col].astype(float)  # "nan" (the start config never scored) included
        for col in ("changed", "kept"):
            frame[col] = frame[col].map({"True": True, "False": False, True: True, False: False})
            if frame[col].isna().any():
                raise ValueError(f"{path}: column {col!r} must hold True/False")
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)
