"""The gate a stage-1 adapter must pass before HAG's scores use it: did it learn its labels?

Round 1's adapter wrote its exact label 17 % of the time while "the most common label of the query's
task" matched 58 %, and its scores were compared anyway. Here an adapter is scored on the validation
rows (queries it did not train on) and passes only if

* it writes a config that parses on at least ``min_parse_rate`` of the rows, and
* it is **not worse** than the per-task majority label (taken from the *training* rows) on both exact
  match and mean config distance.

``beats_majority`` records the stricter outcome, better on both. When the checked labels are mostly
one config per task, the per-task majority is the best any query-to-config map can do on the items
whose labels carry no item-level signal, so "not worse" means "learned what the labels teach", and
``beats_majority`` says whether the adapter learned anything per query beyond that lookup table.
An adapter that fails is reported as "did not learn", never scored as HAG.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from hagstudy import dataset, hag
from hagstudy.decoding import DecodingConfig, ParseResult
from hagstudy.files import atomic_write
from hagstudy.scoring import Engine

FILE = "gate.json"


def majority(train_rows: Sequence[Mapping[str, Any]]) -> dict[str, DecodingConfig]:
    """Each task's most common training label (``dataset.per_task_labels``; ties to the default's side)."""
    frame = pd.DataFrame([{"task": r["task"], "config": dataset.label_of(r).to_json()} for r in train_rows])
    return dataset.per_task_labels(frame)


def majority_quality(train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``hag.config_quality`` of always writing the query's task's majority training label."""
    return hag.config_quality(majority_proposals(train_rows, val_rows), [dataset.label_of(r) for r in val_rows])


def quality(engine: Engine, val_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stage 1 of ``engine`` on the validation queries, against their labels (``hag.config_quality``)."""
    proposals = hag.propose_configs(engine, [dataset.query_of(r) for r in val_rows])
    return hag.config_quality(proposals, [dataset.label_of(r) for r in val_rows])


def per_task(proposed: Mapping[str, Sequence[ParseResult]], val_rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Exact match and config distance per task for each model's proposals on ``val_rows`` (same order)."""
    rows = []
    for model, results in proposed.items():
        if len(results) != len(val_rows):
            raise ValueError(f"{model}: {len(results)} proposals for {len(val_rows)} validation rows")
        for task in dict.fromkeys(str(r["task"]) for r in val_rows):
            idx = [i for i, r in enumerate(val_rows) if str(r["task"]) == task]
            q = hag.config_quality([results[i] for i in idx], [dataset.label_of(val_rows[i]) for i in idx])
            rows.append({"model": model, "task": task, "n": q["n"], "parse_rate": q["parse_rate"],
                         "exact_match": q["exact_all"], "distance": q["mean_distance"]})
    return pd.DataFrame(rows)


def majority_proposals(train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]]) -> list[ParseResult]:
    """The per-task majority training label for each validation row, as parse results."""
    chosen = majority(train_rows)
    missing = sorted({str(r["task"]) for r in val_rows} - set(chosen))
    if missing:
        raise ValueError(f"validation rows of task(s) {missing} have no training rows: no majority label")
    return [ParseResult(chosen[str(r["task"])], "ok") for r in val_rows]


@dataclass(frozen=True)
class Gate:
    """One adapter's verdict on the validation rows, with the numbers it rests on."""

    adapter: str
    seed: int
    steps: int
    n_validation: int
    parse_rate: float
    exact_match: float
    distance: float
    majority_exact_match: float
    majority_distance: float
    min_parse_rate: float
    passed: bool
    beats_majority: bool
    reason: str

    def row(self) -> dict[str, Any]:
        return asdict(self)


def judge(adapter: str, seed: int, steps: int, q: Mapping[str, Any], maj: Mapping[str, Any],
          min_parse_rate: float) -> Gate:
    """The gate's verdict from an adapter's and the majority's ``config_quality`` on the same rows."""
    exact, dist = float(q["exact_all"]), float(q["mean_distance"])
    m_exact, m_dist = float(maj["exact_all"]), float(maj["mean_distance"])
    problems = []
    if not q["parse_rate"] >= min_parse_rate:
        problems.append(f"parse rate {q['parse_rate']:.3f} < {min_parse_rate:g}")
    if not exact >= m_exact - 1e-12:
        problems.append(f"exact match {exact:.3f} < majority's {m_exact:.3f}")
    if math.isnan(dist) or dist > m_dist + 1e-12:
        problems.append(f"config distance {dist:.3f} > majority's {m_dist:.3f}")
    passed = not problems
    return Gate(
        adapter=adapter, seed=int(seed), steps=int(steps), n_validation=int(q["n"]), parse_rate=float(q["parse_rate"]),
        exact_match=exact, distance=dist, majority_exact_match=m_exact, majority_distance=m_dist,
        min_parse_rate=float(min_parse_rate), passed=passed,
        beats_majority=passed and exact > m_exact + 1e-12 and dist < m_dist - 1e-12,
        reason="; ".join(problems) if problems else "learned its labels",
    )


def learning_curve(
    engine_for: Callable[[Path | None], Engine], checkpoints: Mapping[int, Path], val_rows: Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """Stage-1 quality at step 0 (the untuned model: LoRA starts as a no-op) and at each snapshot.

    ``engine_for(None)`` is the base model's engine, ``engine_for(path)`` an adapter's.
    """
    rows = []
    for step, path in [(0, None), *sorted(checkpoints.items())]:
        q = quality(engine_for(path), val_rows)
        rows.append({"step": step, "parse_rate": q["parse_rate"], "exact_match": q["exact_all"],
                     "distance": q["mean_distance"]})
    return pd.DataFrame(rows)


def train_and_judge(
    run: Any, name: str, seed: int, train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]],
    *, curve: bool = True,
) -> tuple[Any, Gate, pd.DataFrame]:
    """Train (or reuse) adapter ``name`` with ``seed``, score its snapshots, and judge the final one.

    Returns the ``TrainResult``, the ``Gate`` and the learning curve (``learning_curve`` plus the
    adapter's name; empty without ``curve``). ``run`` is a ``study.Run``; the majority baseline uses
    ``train_rows`` only.
    """
    from hagstudy import study, training

    result = study.train_once(run, name, list(train_rows), list(val_rows), seed=seed)
    folder = run.artifact("adapters", name)

    def engine_for(path: Path | None) -> Engine:
        return run.engine() if path is None else run.engine(adapter=path)

    snapshots = training.checkpoint_dirs(folder) if curve else {}
    frame = learning_curve(engine_for, snapshots, val_rows) if curve else pd.DataFrame()
    for path in snapshots.values():
        run.drop_engine(path)
    final = quality(run.engine(adapter=folder), val_rows)
    verdict = judge(name, seed, result.steps, final, majority_quality(train_rows, val_rows),
                    run.profile.train.gate_parse_rate)
    return result, verdict, frame.assign(adapter=name)


def write(gates: Sequence[Gate], path: Path | str) -> Path:
    """The gates as JSON, atomically (notebooks 04 and 05 read them with ``read``)."""
    path = Path(path)
    atomic_write(path, json.dumps([g.row() for g in gates], indent=2) + "\n")
    return path


def read(path: Path | str) -> dict[str, Gate]:
    """The gates ``write`` saved, by adapter name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebook 03 (it writes the adapters' gate)")
    try:
        raw = json.loads(path.read_text())
        gates = [Gate(**g) for g in raw]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a gate file ({exc})") from None
    return {g.adapter: g for g in gates}


def frame(gates: Sequence[Gate] | Mapping[str, Gate]) -> pd.DataFrame:
    """One row per adapter, for the committed table."""
    values = list(gates.values()) if isinstance(gates, Mapping) else list(gates)
    return pd.DataFrame([g.row() for g in values])
