"""Grid-edge checks: a tuned choice at its grid's edge is re-tuned on an extended grid, and a move is tested."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEngine, FakeItem, FakeTask

from hagstudy.decoding import DecodingConfig
from hagstudy.method import grid_edges

PLAIN = DecodingConfig(1.0, 1.0, 0, 1.0)
ORACLE = DecodingConfig(0.7, 0.5, 50, 1.0)


def prefers(text: str) -> float:
    """Best: min_p 0.5 (past min-p's grid), T0 0.7 among EDT settings (its grid's edge, kept); top_p indifferent."""
    cfg = json.loads(text.split("|", 1)[1])
    edt = abs(cfg["temperature"] - 0.7) if cfg.get("edt_theta") else 0.0
    return 1.0 - abs(cfg.get("min_p", 0.0) - 0.5) - edt


def test_edges_extensions_and_the_original_grids():
    assert grid_edges.at_edge("min_p", PLAIN.with_(min_p=0.3), (0.5, 1.0))
    assert not grid_edges.at_edge("min_p", PLAIN.with_(min_p=0.2), (0.5, 1.0))
    assert grid_edges.at_edge("edt", PLAIN.with_(temperature=0.7, edt_theta=1.0), (0.5, 1.0))
    assert not grid_edges.at_edge("edt", PLAIN.with_(edt_theta=2.0), (0.5, 1.0))
    assert grid_edges.at_edge("task_oracle", ORACLE, (0.5, 0.9, 1.0)) and not grid_edges.at_edge("task_oracle", ORACLE, (0.3, 1.0))
    assert [c.min_p for c in grid_edges.extension("min_p", PLAIN.with_(min_p=0.3))] == [0.4, 0.5]
    assert [(c.temperature, c.edt_theta) for c in grid_edges.extension("edt", PLAIN.with_(temperature=0.7, edt_theta=1.0))] == [
        (0.1, 1.0), (0.2, 1.0), (0.3, 1.0), (0.4, 1.0), (0.5, 1.0)]
    assert grid_edges.extension("task_oracle", ORACLE) == tuple(ORACLE.with_(top_p=v) for v in (0.2, 0.3, 0.4))
    assert grid_edges.at_edge("top_nsigma", PLAIN.with_(top_nsigma=0.5), (1.0,))
    assert not grid_edges.at_edge("top_nsigma", PLAIN.with_(top_nsigma=1.0), (1.0,))
    assert [c.top_nsigma for c in grid_edges.extension("top_nsigma", PLAIN.with_(top_nsigma=0.5))] == [0.1, 0.25]
    assert grid_edges.setting("top_nsigma", PLAIN.with_(top_nsigma=0.25).to_json()) == "n 0.25"
    for bad in (lambda: grid_edges.at_edge("top_k", PLAIN, (1.0,)), lambda: grid_edges.extension("top_k", PLAIN)):
        with pytest.raises(ValueError, match="'top_k'"):
            bad()


def test_tuned_for_reads_each_methods_config_and_names_what_is_missing():
    adaptive = {"min_p": {"t": PLAIN.with_(min_p=0.3)}, "edt": {"t": PLAIN.with_(edt_theta=1.0)},
                "top_nsigma": {"t": PLAIN.with_(top_nsigma=1.0)}}
    assert grid_edges.tuned_for("t", adaptive, {"t": ORACLE}) == {
        "min_p": PLAIN.with_(min_p=0.3), "edt": PLAIN.with_(edt_theta=1.0), "top_nsigma": PLAIN.with_(top_nsigma=1.0),
        "task_oracle": ORACLE}
    with pytest.raises(ValueError, match=r"'u'.*'min_p', 'edt', 'top_nsigma', 'task_oracle'.*01_search"):
        grid_edges.tuned_for("u", adaptive, {"t": ORACLE})


def test_check_moves_a_choice_at_the_edge_keeps_ties_and_skips_choices_inside(tmp_path):
    engine, task = FakeEngine(), FakeTask(prefers, n_items=3)
    test_items = [FakeItem(task.name, f"test-{i}", f"test question {i}?", i) for i in range(4)]
    tuned = {"min_p": PLAIN.with_(min_p=0.3), "edt": PLAIN.with_(temperature=0.7, edt_theta=1.0), "task_oracle": ORACLE}
    table = grid_edges.check(engine, task, task.items("search", 3), test_items, draws=2, seeds=[0, 1], tuned=tuned,
                             top_p_grid=(0.5, 0.9, 1.0), n_boot=200)
    assert list(table.columns) == grid_edges.COLUMNS and list(table["method"]) == ["min_p", "edt", "task_oracle"]
    rows = table.set_index("method")
    mp = rows.loc["min_p"]
    assert mp.grid_edge and mp.moved and DecodingConfig.from_json(mp.extended).min_p == 0.5
    got = [float(mp[c]) for c in ("search_original", "search_extended", "test_original", "test_extended", "diff",
                                  "diff_ci_low", "diff_ci_high")]
    assert got == pytest.approx([0.8, 1.0, 0.8, 1.0, 0.2, 0.2, 0.2])  # no noise: every resample is +0.2
    for method in ("edt", "task_oracle"):  # at the edge, and the extension is no better (a tie for the oracle)
        r = rows.loc[method]
        assert r.grid_edge and not r.moved and r.extended == r.original
        assert np.isnan(float(r.test_original)) and np.isnan(float(r["diff"]))
    inside = grid_edges.check(engine, task, task.items("search", 3), test_items, 2, [0, 1],
                              {"min_p": PLAIN.with_(min_p=0.1)}, (0.5, 1.0), n_boot=200).iloc[0]
    assert not inside.grid_edge and not inside.moved and inside.extended == "" and np.isnan(float(inside.search_extended))
    assert float(inside.search_original) == pytest.approx(0.6)
    # A flat score (every setting ties): the original choice stays, though an earlier original setting ties it too.
    flat = grid_edges.check(FakeEngine(), FakeTask(lambda text: 0.0, n_items=2), task.items("search", 2), test_items, 1,
                            [0], {"min_p": PLAIN.with_(min_p=0.3)}, (0.5, 1.0), n_boot=200).iloc[0]
    assert flat.grid_edge and not flat.moved and flat.extended == flat.original
    lines = grid_edges.sentences(table)
    assert len(lines) == 3 and "moves it to min_p 0.5" in lines[0] and "+0.200" in lines[0] and "(shown)" in lines[0]
    assert "keeps it" in lines[1] and "T0 0.7" in lines[1] and "top_p 0.5" in lines[2]
    assert "inside its grid" in grid_edges.sentences(inside.to_frame().T)[0]
