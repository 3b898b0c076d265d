"""Notebook hygiene: a tagged parameters cell, no committed outputs, the named kernel, no volatile metadata."""

import json

import pytest

from hagstudy.config import repo_root
from hagstudy.report import render

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_seven_notebooks_exist():
    names = [nb.stem for nb in NOTEBOOKS]
    assert names == ["00_preliminary", "01_search", "02_dataset", "03_train", "04_inference", "05_ablations", "06_figures"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill ignores a missing tag silently)"
    assert 'profile: str = ""' in "".join(tagged[0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == render.KERNEL
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "commit notebooks without outputs"


def test_strip_volatile_removes_times_but_keeps_outputs():
    nb = {
        "metadata": {"papermill": {"start_time": "x", "end_time": "y", "duration": 1.0, "parameters": {"profile": "smoke"}}},
        "cells": [{"metadata": {"papermill": {"duration": 2.0, "status": "completed"}, "execution": {"a": 1}},
                   "outputs": [{"output_type": "stream", "text": "42"}]}],
    }
    out = render.strip_volatile(nb)
    assert out["metadata"]["papermill"] == {"parameters": {"profile": "smoke"}}
    assert out["cells"][0]["metadata"] == {"papermill": {}}
    assert out["cells"][0]["outputs"][0]["text"] == "42"


def test_strip_volatile_gives_papermills_injected_cell_a_fixed_id():
    nb = {"cells": [{"id": "9c0b2d97", "metadata": {"tags": ["injected-parameters"]}, "outputs": []},
                    {"id": "02-01", "metadata": {"tags": ["parameters"]}, "outputs": []}]}
    out = render.strip_volatile(nb)
    assert [c["id"] for c in out["cells"]] == ["injected-parameters", "02-01"]


def test_update_html_writes_only_missing_or_stale_copies(tmp_path):
    import os

    import nbformat

    for name in ("00_a", "01_b"):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(name)]), tmp_path / f"{name}.ipynb")
    (tmp_path / "01_b.html").write_text("up to date")
    assert render.update_html(tmp_path) == [tmp_path / "00_a.html"]
    assert "00_a" in (tmp_path / "00_a.html").read_text() and render.update_html(tmp_path) == []
    later = (tmp_path / "01_b.html").stat().st_mtime + 5
    os.utime(tmp_path / "01_b.ipynb", (later, later))  # the notebook was re-rendered after its copy
    assert render.update_html(tmp_path) == [tmp_path / "01_b.html"]


def test_the_results_readme_shows_the_headroom_table(tmp_path, monkeypatch):
    import shutil

    from hagstudy import config

    shutil.copytree(repo_root() / "configs", tmp_path / "configs")
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    tables = tmp_path / "artifacts" / "smoke" / "results" / "tables"
    tables.mkdir(parents=True)
    import pandas as pd

    from hagstudy.report import headroom

    row = dict.fromkeys(headroom.COLUMNS, 0.0) | {"task": "coinflip", "n_items": 2, "n_seeds": 2, "item_oracle_mean": 0.75,
                                                  "task_oracle_mean": 0.5, "headroom": 0.25, "headroom_ci_low": 0.1,
                                                  "headroom_ci_high": 0.4, "verdict": "headroom shown"}  # fmt: skip
    pd.DataFrame([row]).to_csv(tables / "headroom.csv", index=False)
    text = render.write_readme("smoke").read_text()
    assert "## Headroom: item oracle - task oracle on the first 2 test items of each task above chance (2 selection draws" in text
    assert "| coinflip | 2 | 2 | 0.750 | 0.500 | 0.000 | 0.250 | 0.100 | 0.400 |" in text and "headroom shown" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_what_it_found(path):
    """The last word of a notebook is prose: findings generated from its tables (00-05), or a note (06)."""
    cells = json.loads(path.read_text())["cells"]
    last = "".join(cells[-1]["source"])
    if path.stem == "06_figures":
        assert cells[-1]["cell_type"] == "markdown"
    else:
        assert cells[-1]["cell_type"] == "code" and "findings." in last, last
        assert "## What this run found" in "".join(cells[-2]["source"]) or "## In plain words" in "".join(cells[-2]["source"])
