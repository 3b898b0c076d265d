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

Which snapshot is "the adapter" is a rule declared before training (``train.select``):
``best_validation`` is early stopping on the validation rows (``select_step``), ``final`` the last step.
Choosing and judging on the same rows makes the verdict optimistic; the test split, on which HAG is
scored, plays no part in either.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from hagstudy import stages
from hagstudy.decoding import DecodingConfig, ParseResult
from hagstudy.files import atomic_write
from hagstudy.method import dataset, hag
from hagstudy.scoring import Engine

FILE = stages.GATES.name  # in the adapters folder (stages.GATES)


def majority(train_rows: Sequence[Mapping[str, Any]]) -> dict[str, DecodingConfig]:
    """Each task's most common training label (``dataset.per_task_labels``; ties to the default's side)."""
    frame = pd.DataFrame([{"task": r["task"], "config": dataset.label_of(r).to_json()} for r in train_rows])
    return dataset.per_task_labels(frame)


def majority_quality(train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``hag.config_quality`` of always writing the query's task's majority training label."""
    return hag.config_quality(majority_proposals(train_rows, val_rows), [dataset.label_of(r) for r in val_rows])


def quality(engine: Engine, val_rows: Sequence[Mapping[str, Any]], desc: str = "stage 1 (validation)") -> dict[str, Any]:
    """Stage 1 of ``engine`` on the validation queries, against their labels (``hag.config_quality``)."""
    proposals = hag.propose_configs(engine, [dataset.query_of(r) for r in val_rows], desc=desc)
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
    selected_step: int  # the snapshot judged and used (``steps``: the final adapter)
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
          min_parse_rate: float, selected_step: int | None = None) -> Gate:
    """The gate's verdict from an adapter's and the majority's ``config_quality`` on the same rows.

    ``selected_step``: the snapshot ``q`` was measured on (default: the final one, ``steps``).
    """
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
        adapter=adapter, seed=int(seed), steps=int(steps),
        selected_step=int(steps if selected_step is None else selected_step), n_validation=int(q["n"]), parse_rate=float(q["parse_rate"]),
        exact_match=exact, distance=dist, majority_exact_match=m_exact, majority_distance=m_dist,
        min_parse_rate=float(min_parse_rate), passed=passed,
        beats_majority=passed and exact > m_exact + 1e-12 and dist < m_dist - 1e-12,
        reason="; ".join(problems) if problems else "learned its labels",
    )


def learning_curve(
    engine_for: Callable[[Path | None], Engine], checkpoints: Mapping[int, Path], val_rows: Sequence[Mapping[str, Any]],
    name: str = "adapter",
) -> pd.DataFrame:
    """Stage-1 quality at step 0 (the untuned model: LoRA starts as a no-op) and at each snapshot.

    ``engine_for(None)`` is the base model's engine, ``engine_for(path)`` an adapter's; ``name`` labels the log lines.
    """
    rows = []
    for step, path in [(0, None), *sorted(checkpoints.items())]:
        q = quality(engine_for(path), val_rows, desc=f"{name} step {step}: stage 1 (validation)")
        rows.append({"step": step, "parse_rate": q["parse_rate"], "exact_match": q["exact_all"],
                     "distance": q["mean_distance"]})
    return pd.DataFrame(rows)


def select_step(curve: pd.DataFrame, rule: str, min_parse_rate: float) -> int:
    """The snapshot step ``rule`` picks from a learning curve (``learning_curve``'s columns).

    ``final``: the last step. ``best_validation``: among snapshots (step 0, the untuned model, excluded)
    the one that parses on at least ``min_parse_rate`` of the rows, then the highest exact match, then the
    lowest config distance, then the later step; when none parses often enough, the last step.
    """
    steps = curve[curve["step"] > 0]
    if steps.empty:
        raise ValueError("select_step: the learning curve has no snapshot after step 0")
    last = int(steps["step"].max())
    if rule == "final":
        return last
    if rule != "best_validation":
        raise ValueError(f"train.select must be 'best_validation' or 'final', got {rule!r}")
    ok = steps[steps["parse_rate"] >= min_parse_rate - 1e-12]
    if ok.empty:
        return last
    ranked = ok.assign(_d=ok["distance"].fillna(float("inf"))).sort_values(
        ["exact_match", "_d", "step"], ascending=[False, True, False], kind="mergesort")
    return int(ranked["step"].iloc[0])


def adapter_path(folder: Path | str, verdict: Gate) -> Path:
    """The folder of the snapshot ``verdict`` judged: the adapter itself, or one of its checkpoints."""
    from hagstudy.method import training

    folder = Path(folder)
    if verdict.selected_step == verdict.steps:
        return folder
    snapshots = training.checkpoint_dirs(folder)
    if verdict.selected_step not in snapshots:
        raise FileNotFoundError(f"{folder}: no snapshot of step {verdict.selected_step} (the gate chose it): "
                                "run notebook 03 again")
    return snapshots[verdict.selected_step]


def used_path(run: Any, name: str) -> Path:
    """The folder of adapter ``name`` as notebook 03/05 judged it (``adapter_path`` via the gate file)."""
    folder = stages.ADAPTERS.find(run) / name
    gates = read(stages.GATES.find(run))
    if name not in gates:
        raise KeyError(f"{stages.GATES.find(run)} has no gate for adapter {name!r}: run notebook 03")
    return adapter_path(folder, gates[name])


def train_and_judge(
    run: Any, name: str, seed: int, train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]],
    *, curve: bool = True, settings: Any = None,
) -> tuple[Any, Gate, pd.DataFrame]:
    """Train (or reuse) adapter ``name`` with ``seed``, score its snapshots, and judge the one ``train.select`` picks.

    Returns the ``TrainResult``, the ``Gate`` and the learning curve (``learning_curve`` plus the
    adapter's name; empty without ``curve``, and then the final adapter is judged). ``run`` is a
    ``study.Run``; the majority baseline uses ``train_rows`` only. ``adapter_path`` gives the folder to use.
    """
    from hagstudy import study
    from hagstudy.method import training

    settings = settings or run.profile.train
    result = study.train_once(run, name, list(train_rows), list(val_rows), settings, seed=seed)
    folder = stages.ADAPTERS.path(run) / name

    def engine_for(path: Path | None) -> Engine:
        return run.engine() if path is None else run.engine(adapter=path)

    snapshots = training.checkpoint_dirs(folder) if curve else {}
    frame = learning_curve(engine_for, snapshots, val_rows, name) if curve else pd.DataFrame()
    step = select_step(frame, settings.select, settings.gate_parse_rate) if curve else result.steps
    chosen = folder if step == result.steps else snapshots[step]
    for path in snapshots.values():
        if path != chosen:
            run.drop_engine(path)
    q = quality(run.engine(adapter=chosen), val_rows, desc=f"{name} step {step}: stage 1 (validation, the gate)")
    verdict = judge(name, seed, result.steps, q, majority_quality(train_rows, val_rows), settings.gate_parse_rate,
                    selected_step=step)
    return result, verdict, frame.assign(adapter=name, selected=frame["step"] == step if curve else False)


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
