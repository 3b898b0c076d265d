"""Notebook 04's statistics cells run on a synthetic score table (the generation cells need the earlier
notebooks' artifacts, so they are not run here; their chance call is checked on a real task)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from test_evaluation import make_scores

from hagstudy import decoding, methods, registry, stages, tasks
from hagstudy.config import Paths, repo_root
from hagstudy.engine.pool import map_pooled
from hagstudy.method import oracles
from hagstudy.report import contrasts, evaluation, findings, headroom, plots

NOTEBOOK = repo_root() / "notebooks" / "04_inference.ipynb"


def code_cells() -> dict[str, str]:
    nb = json.loads(NOTEBOOK.read_text())
    return {c["id"]: "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"}


class FakeRun:
    """Tables in ``folder/tables``, artifacts in ``folder/<part>/`` (stages resolves both from ``paths``)."""

    def __init__(self, folder: Path) -> None:
        self.paths = Paths(root=folder, data=folder, artifacts=folder, cache=folder, model_cache=folder, results=folder,
                           committed=folder)


def synthetic_scores() -> pd.DataFrame:
    """coinflip: every method near 0.45 while always-'no' gets 0.53 (at chance); arithmetic: methods far above 0."""
    coin = make_scores({m: 0.0 for m in ("default", "greedy", "random", "task_oracle", "zero_shot", "hag")},
                       task="coinflip", n_items=100, base_p=(0.3, 0.6))  # fmt: skip
    coin_chance = coin.loc[coin["method"] == "default"].assign(method="chance")
    coin_chance["score"] = [1.0 if int(i[-4:]) % 100 < 53 else 0.0 for i in coin_chance["item_id"]]
    arith = make_scores({"default": 0.0, "greedy": 0.15, "random": -0.1, "task_oracle": 0.15, "zero_shot": 0.0,
                         "hag": 0.12}, task="arithmetic", n_items=100, rng_seed=1, base_p=(0.05, 0.2))  # fmt: skip
    arith_chance = arith.loc[arith["method"] == "default"].assign(method="chance", score=0.0)
    return pd.concat([coin_chance, coin, arith_chance, arith], ignore_index=True)


def synthetic_item_oracle(scores: pd.DataFrame, task: str = "arithmetic") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The item oracle on every test item of the one task above chance (arithmetic): every generation right
    (headroom), and the best fixed candidate in hindsight = the task oracle; plus its per-item choices."""
    rows = scores.loc[(scores["method"] == "task_oracle") & (scores["task"] == task)]
    oracle = rows.assign(method="item_oracle", score=1.0)
    static = rows.assign(method="static_hindsight")
    ids = sorted(rows["item_id"].unique())
    choices = pd.DataFrame({"task": task, "item_id": ids, "config": "{}", "selection_mean": 1.0, "n_candidates": 12,
                            "n_tied": 1, "in_sample_max": 1.0, "reference_selection_mean": 0.2})  # fmt: skip
    return pd.concat([oracle, static], ignore_index=True), choices


def test_the_item_oracle_cell_runs_on_every_test_item_of_the_tasks_above_chance(tmp_path: Path) -> None:
    """The generation cell's wiring, with item_oracle stubbed: the tasks above chance only, oracle_items items,
    oracle_draws draws, the task's candidates and its oracle as the reference; both score frames are saved."""
    source = next(c for c in code_cells().values() if "oracles.item_oracle(" in c)
    calls = []

    def item_oracle(engine, task, items, seeds, candidates, selection_draws, reference):
        calls.append((task.name, len(items), tuple(seeds), len(candidates), selection_draws, reference))
        rows = pd.DataFrame({"task": task.name, "method": "item_oracle", "item_id": [it.id for it in items],
                             "seed": 0, "score": 1.0})  # fmt: skip
        return SimpleNamespace(scores=rows, static=rows.assign(method="static_hindsight"),
                               choices=pd.DataFrame({"task": [task.name], "item_id": [items[0].id], "config": ["{}"]}))

    stub = SimpleNamespace(item_oracle=item_oracle, candidates_for=oracles.candidates_for)
    run = FakeRun(tmp_path)
    p = SimpleNamespace(oracle_items=3, oracle_draws=4, seeds=(0, 1))
    ns = {"oracles": stub, "informative": [tasks.get("arithmetic")], "base": "engine", "methods": methods,
          "oracle": {"coinflip": decoding.GREEDY, "arithmetic": oracles.CANDIDATES[5]}, "p": p, "run": run, "pd": pd,
          "evaluation": evaluation, "stages": stages, "map_pooled": map_pooled}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, "04_inference[item oracle]", "exec"), ns)
    assert calls == [("arithmetic", 3, (0, 1), 12, 4, oracles.CANDIDATES[5])]
    saved = pd.read_csv(tmp_path / "eval" / "item_oracle_scores.csv")
    assert len(saved) == 6 and set(saved["method"]) == {"item_oracle", "static_hindsight"}
    assert (tmp_path / "tables" / "item_oracle_choices.csv").is_file() and "scores" not in ns


def test_statistics_cells_run_on_synthetic_scores(tmp_path: Path) -> None:
    cells = code_cells()
    ids = list(cells)
    after_scores = [i for i in ids[ids.index("04-03") + 1 :] if "oracles.item_oracle(" not in cells[i]]
    scores = synthetic_scores()
    item_scores, choices = synthetic_item_oracle(scores)
    proposals = scores.loc[scores["method"].isin(["hag", "zero_shot"]) & (scores["seed"] == 0), ["task", "method", "item_id"]]
    ns = {"evaluation": evaluation, "findings": findings, "registry": registry, "plots": plots, "pd": pd, "run": FakeRun(tmp_path),
          "stages": stages, "contrasts": contrasts, "headroom": headroom, "tasks": [tasks.get("coinflip"), tasks.get("arithmetic")],
          "scores": scores, "item_scores": item_scores, "choices": choices, "proposals": proposals.assign(status="ok"),
          "learned": ["hag"], "gates": {}}  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell_id in after_scores:
            exec(compile(cells[cell_id], f"04_inference[{cell_id}]", "exec"), ns)

    assert [t.name for t in ns["informative"]] == ["arithmetic"]
    main = pd.read_csv(tmp_path / "tables" / "main.csv")
    assert list(main.loc[main["task"] == "coinflip", "method"])[0] == "chance"
    assert list(main["task"].drop_duplicates()) == ["coinflip", "arithmetic"]
    chance = pd.read_csv(tmp_path / "tables" / "at_chance.csv")
    assert chance.set_index("task")["at_chance"].to_dict() == {"coinflip": True, "arithmetic": False}
    for name in ("relative.csv", "relative_strong.csv"):
        rel = pd.read_csv(tmp_path / "tables" / name)
        assert list(rel.columns) == list(evaluation.RELATIVE_COLUMNS)
        assert set(rel["verdict"]) <= set(evaluation.VERDICTS)
    assert "p_holm" in pd.read_csv(tmp_path / "tables" / "difficulty.csv").columns
    io_rows = main.loc[main["method"].isin(["item_oracle", "static_hindsight"])]
    assert list(io_rows["n_items"]) == [100, 100] and set(io_rows["task"]) == {"arithmetic"}
    assert "item_oracle" not in set(chance["best_method"])
    room = pd.read_csv(tmp_path / "tables" / "headroom.csv").set_index("task")
    assert list(room.columns) == list(headroom.COLUMNS[1:])
    assert room["verdict"].to_dict() == {"arithmetic": "headroom shown"}
    vs_item = pd.read_csv(tmp_path / "tables" / "relative_item_oracle.csv")
    assert list(vs_item["baseline"]) == ["item_oracle", "static_hindsight"]
    text = out.getvalue()
    assert "arithmetic: per-query choice can beat the task's best fixed config" in text
    assert "coinflip is at chance for this model" in text and "Holm-corrected" in text
    assert "■ Confirmatory family, declared before the run: HAG against the task oracle and greedy on the 1 task(s) " \
           "above chance (arithmetic), 2 tests" in text
    assert text.rstrip().splitlines()[-1].startswith("• RQ4: 2 task(s) are too few")  # the notebook ends on its findings


def test_the_chance_call_of_the_generation_cell(tmp_path: Path) -> None:
    source = code_cells()["04-03"]
    call = re.search(r"methods\.chance\(.*\)", source)
    assert call, "notebook 04 adds the chance rows to the scores"
    task = tasks.get("coinflip")
    ns = {"methods": methods, "task": task, "items": task.items("test", 20), "p": SimpleNamespace(seeds=(0, 1, 2))}
    rows = eval(call.group(0), ns)
    assert len(rows) == 60 and set(rows["method"]) == {"chance"}
    assert source.index("methods.chance(") < source.index("scores = pd.concat(")
