"""The method registry: every compared method once, and the committed tables, colours and sentences it reproduces."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from hagstudy import registry
from hagstudy.config import repo_root
from hagstudy.report import evaluation, findings, plots

ROOT = repo_root()
TABLES = ROOT / "results" / "tables"

# Literals equal to a method's name that are not that method, with why they may stay.
ALLOWED: dict[tuple[str, str], str] = {
    ("hagstudy/decoding.py", "min_p"): "the DecodingConfig field the min_p sampler sets",
    ("hagstudy/decoding.py", "top_nsigma"): "the DecodingConfig field the top_nsigma sampler sets",
    ("hagstudy/config.py", "default"): "the default profile's name",
    ("hagstudy/data.py", "default"): "the default profile's name",
    ("hagstudy/replay/receipts.py", "default"): "the default profile's name",
    ("hagstudy/replay/shipped.py", "default"): "the default profile's name",
    ("hagstudy/report/render.py", "default"): "the default profile's name",
    ("hagstudy/method/search.py", "default"): "prune.json's key for the search's default config",
    ("hagstudy/method/search.py", "greedy"): "the greedy search strategy (labels' method column, its stage name)",
    ("hagstudy/method/strategies.py", "random"): "the random search strategy (labels' method column, its seed salt)",
    ("hagstudy/method/ablations.py", "greedy"): "the greedy search strategy, compared with random and TPE",
    ("hagstudy/method/ablations.py", "random"): "the random search strategy, compared with greedy and TPE",
    ("hagstudy/method/label_arms.py", "greedy"): "the greedy search stage's rows in the search log",
}
# The engine wing, whichever of its modules: sampling fields and flags (min_p, EDT, top_nsigma, greedy rows) and
# model-config values ("default" rope, the default profile's model cache), never a compared method.
ENGINE = "hagstudy/engine/"
ENGINE_ALLOWED = {"min_p", "edt", "top_nsigma", "greedy", "default"}
ALLOWED[("notebooks/00_preliminary.ipynb", "zero_shot")] = "notebook 00 labels the untuned model's configs"
# Notebook 05 names its ablation arms (it is outside the change that made this registry); the arms' colours are here.
ALLOWED.update({("notebooks/05_ablations.ipynb", n): "notebook 05 names its own arms, its reference and strategies"
                for n in ("hag_per_task_labels", "hag_adapter_stage2", "hag_temperature_only", "hag", "default", "random")})


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def name_literals(source: str, where: str, names: set[str]) -> list[tuple[str, int, str]]:
    """(where, line, name) for every string literal in ``source`` equal to one of ``names`` (docstrings aside)."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [(where, node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            and id(node) not in skip]  # fmt: skip


def sources() -> list[tuple[str, str]]:
    """Every module of the package but the registry, and every notebook's code (magics dropped)."""
    out = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "hagstudy").rglob("*.py"))
           if p.name != "registry.py" or p.parent.name != "hagstudy"]  # fmt: skip
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        code = "\n".join("".join(c["source"]) for c in cells)
        out.append((str(nb.relative_to(ROOT)), "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                                                        for ln in code.splitlines())))
    return out


def test_method_names_are_defined_once() -> None:
    names = set(registry.BY_NAME)
    hits = [h for where, text in sources() for h in name_literals(text, where, names)]
    stray = [f"{where}:{line}: {name!r}" for where, line, name in hits
             if (where, name) not in ALLOWED and not (where.startswith(ENGINE) and name in ENGINE_ALLOWED)]
    assert not stray, "method names written out instead of taken from hagstudy.registry:\n" + "\n".join(stray)


def test_the_name_check_can_fail() -> None:
    src = '"""A docstring naming hag is fine."""\nx = "hag"\ny = registry.HAG.name\nz = f"{x}_seed0"\n'
    assert name_literals(src, "m.py", set(registry.BY_NAME)) == [("m.py", 2, "hag")]


def test_names_are_unique_and_order_is_the_ranked_registry() -> None:
    assert len(registry.BY_NAME) == len(registry.REGISTRY)
    assert evaluation.METHOD_ORDER == registry.ORDER == (
        "chance", "default", "greedy", "random", "best_single_config", "task_oracle", "item_oracle", "static_hindsight",
        "zero_shot", "zero_shot_json", "hag",
    )  # fmt: skip
    assert registry.HAG.instance(1) == "hag_seed1"


@pytest.mark.parametrize("name", ["main.csv", "relative.csv", "relative_strong.csv", "relative_item_oracle.csv"])
def test_canonical_sort_of_the_committed_tables_is_a_no_op(name: str) -> None:
    table = pd.read_csv(TABLES / name, keep_default_na=False)
    again = evaluation.sort_canonical(table.sample(frac=1, random_state=0), list(pd.unique(table["task"])))
    pd.testing.assert_frame_equal(again, table)


def test_every_method_of_the_committed_tables_is_registered_or_an_adapter() -> None:
    adapters = {registry.HAG.instance(k) for k in range(len(registry.HAG.shades))}
    for name in ("main.csv", "ablation.csv"):
        assert set(pd.read_csv(TABLES / name)["method"]) <= set(registry.BY_NAME) | adapters


def test_colours_are_the_committed_figures_colours() -> None:
    assert plots.METHOD_COLORS == {
        "chance": "#8c8c8c", "default": "#ca9161", "greedy": "#de8f05", "random": "#ece133",
        "best_single_config": "#029e73", "task_oracle": "#cc78bc", "item_oracle": "#fbafe4", "static_hindsight": "#b15928", "zero_shot": "#d55e00",
        "zero_shot_json": "#7f3c8d", "min_p": "#e7298a", "edt": "#66a61e", "top_nsigma": "#7570b3", "hag": "#08519c", "hag_seed0": "#9ecae1",
        "hag_seed1": "#6baed6", "hag_seed2": "#3182bd", "hag_train25": "#17becf", "hag_train50": "#0e7c86",
        "hag_random_search_labels": "#bcbd22", "hag_tpe_labels": "#8c6d31", "hag_per_task_labels": "#393b79",
        "hag_temperature_only": "#ad494a", "hag_adapter_stage2": "#000000", "hag_shuffled_labels": "#d6616b",
        "hag_denoised_labels": "#31a354", "hag_unchecked_labels": "#fd8d3c",
    }  # fmt: skip


def test_groups_keep_the_order_the_sentences_and_tables_name_them_in() -> None:
    assert findings.FIXED == ("task_oracle", "best_single_config") and findings.ADAPTIVE == ("min_p", "edt", "top_nsigma")
    assert registry.names(registry.WEAK) == ("default", "random")
    assert registry.names(registry.STRONG) == (
        "greedy", "task_oracle", "best_single_config", "min_p", "edt", "top_nsigma", "zero_shot", "zero_shot_json")
    assert all(isinstance(m.scored_by, str) and m.scored_by for m in registry.REGISTRY)


def test_sources_cover_the_package_and_the_notebooks() -> None:
    where = {w for w, _ in sources()}
    assert "hagstudy/methods.py" in where and "notebooks/04_inference.ipynb" in where
    assert "hagstudy/registry.py" not in where and Path(ROOT / "hagstudy" / "registry.py").is_file()
