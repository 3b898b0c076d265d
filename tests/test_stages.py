"""The stage manifest: the chain's hand-offs are whole, named in one place, written with today's bytes,
and under `make lab` read from the committed run until the lab writes its own."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hagstudy import config, stages
from hagstudy.decoding import DecodingConfig
from hagstudy.files import atomic_write

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def notebook_code(path: Path) -> str:
    """A notebook's code cells as one Python source (IPython magics dropped)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
             for c in nb["cells"] if c["cell_type"] == "code"]
    return re.sub(r"^\s*[%!].*$", "", "\n".join(cells), flags=re.M)


# ------------------------------------------------------------------------------------ the chain is whole


def test_every_file_a_notebook_reads_is_written_by_an_earlier_one():
    assert stages.unwritten_reads() == []
    assert [s.notebook for s in stages.STAGES] == sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    written = set(stages.handoffs())
    assert [h.label for h in stages.README_READS if h not in written] == []


def test_a_read_before_its_writer_is_reported():
    a, b = stages.table("a.csv"), stages.table("b.csv")
    chain = (stages.Stage("01_x", (b,), (a,)), stages.Stage("02_y", (a,), (b,)))
    assert stages.unwritten_reads(chain) == ["01_x reads tables/b.csv, which no earlier notebook writes"]


def test_the_readme_reads_what_the_manifest_says():
    source = (REPO / "hagstudy" / "report" / "render.py").read_text(encoding="utf-8")
    named = set(re.findall(r"\bstages\.([A-Z0-9_]+)\b", source)) - {"Handoff"}
    assert named == {k for k, v in vars(stages).items() if v in stages.README_READS}


def test_each_file_has_one_writer_and_one_constant():
    writes = [h for s in stages.STAGES for h in s.writes]
    assert len(writes) == len(set(writes)) == len({h.label for h in writes})
    constants = [v for v in vars(stages).values() if isinstance(v, stages.Handoff)]
    assert set(constants) == set(writes)


def test_the_notebooks_use_what_they_declare():
    """Every ``stages.X`` a notebook names is among its reads or writes; each table and figure it declares is named."""
    by_name = {k: v for k, v in vars(stages).items() if isinstance(v, stages.Handoff)}
    for stage in stages.STAGES:
        code = notebook_code(NOTEBOOKS / f"{stage.notebook}.ipynb")
        named = {by_name[n] for n in re.findall(r"\bstages\.([A-Z0-9_]+)\b", code)}
        declared = set(stage.reads) | set(stage.writes)
        assert sorted(h.label for h in named - declared) == [], stage.notebook
        shown = {h for h in declared if h.home in (stages.TABLES, stages.FIGURES)}
        assert sorted(h.label for h in shown - named) == [], stage.notebook


def make_order_gaps(makefile: str) -> list[str]:
    """Reads whose writing notebook is not upstream of the reader in the Makefile's chain of rendered notebooks."""
    rule = re.compile(r"^\$\(RESULTS\)/(\d\d_\w+)\.ipynb:(.*)$", re.M)
    upstream = {m[1]: set(re.findall(r"\$\(RESULTS\)/(\d\d_\w+)\.ipynb", m[2])) for m in rule.finditer(makefile)}

    def before(name: str) -> set[str]:
        direct = upstream.get(name, set())
        return direct.union(*(before(d) for d in direct))

    writer = {h: s.notebook for s in stages.STAGES for h in s.writes}
    return [f"{s.notebook} reads {h.label} but make does not run {writer[h]} first"
            for s in stages.STAGES for h in s.reads if writer[h] not in before(s.notebook)]


def test_make_runs_every_writer_before_its_readers():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert make_order_gaps(makefile) == []
    cut = makefile.replace("$(RESULTS)/00_preliminary.ipynb $(RESULTS)/05_ablations.ipynb", "$(RESULTS)/05_ablations.ipynb")
    assert cut != makefile and make_order_gaps(cut) == ["06_figures reads tables/sensitivity.csv but make does not "
                                                        "run 00_preliminary first"]


# ------------------------------------------------------------------------- no file name outside stages.py


def literal_names(source: str, names: set[str]) -> list[str]:
    """String constants in ``source`` that are one of ``names`` (docstrings are prose: not counted)."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            and id(node) not in docstrings]


def manifest_names() -> set[str]:
    names = {h.name for h in stages.handoffs() if "." in h.name}
    return names | {f"{h.stem}.svg" for h in stages.handoffs() if h.fmt is stages.FIGURE}


def test_no_notebook_or_module_spells_a_manifest_file_name():
    names = manifest_names()
    found = {}
    for path in sorted((REPO / "hagstudy").rglob("*.py")):
        if path.name != "stages.py" and (hits := literal_names(path.read_text(encoding="utf-8"), names)):
            found[str(path.relative_to(REPO))] = hits
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        if hits := literal_names(notebook_code(path), names):
            found[str(path.relative_to(REPO))] = hits
    assert found == {}, f"use the hagstudy.stages constant instead of the file name: {found}"


def test_the_literal_check_can_fail():
    source = '"""Reads oracles.json."""\ndef f(run):\n    """oracles.json"""\n    return run.artifact("search", "oracles.json")\n'
    assert literal_names(source, manifest_names()) == ["oracles.json"]
    assert literal_names('x = "main.png"', manifest_names()) == ["main.png"]
    assert literal_names('x = stages.ORACLES.path(run)', manifest_names()) == []


# ------------------------------------------------------------------------------ the writers' bytes


def _old_write_table(df: pd.DataFrame, path: Path, decimals: int = 4) -> Path:
    """``evaluation.write_table`` as it was before the manifest took it over (its code, verbatim)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(decimals) + 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, out.to_csv(index=False, float_format=f"%.{decimals}f", lineterminator="\n"))
    return path


def _frames() -> list[pd.DataFrame]:
    rng = np.random.default_rng(0)
    return [
        pd.DataFrame({"task": ["a", "b, c", 'q"'], "x": [-0.0, 1 / 3, np.nan], "n": [1, 2, 3],
                      "ok": [True, False, True], "s": ["T=0.5", None, "é"]}),
        pd.DataFrame({"v": rng.normal(size=50), "w": rng.normal(size=50).astype("float32")}),
        pd.DataFrame(),
        pd.DataFrame({"only": []}),
    ]


def test_tables_keep_their_bytes(tmp_path):
    from hagstudy.report import evaluation

    assert not hasattr(evaluation, "write_table"), "committed tables have one writer: stages.write_table"
    for i, df in enumerate(_frames()):
        for decimals in (4, 2):
            old = _old_write_table(df, tmp_path / "old" / f"{i}.csv", decimals).read_bytes()
            assert stages.write_table(df, tmp_path / "new" / f"{i}.csv", decimals).read_bytes() == old
        assert stages.TABLE.write(tmp_path / "t" / f"{i}.csv", df).read_bytes() == _old_write_table(
            df, tmp_path / "old" / f"{i}.csv").read_bytes()


def test_frames_json_and_jsonl_keep_their_bytes(tmp_path):
    from hagstudy.method import dataset, gate, oracles

    for i, df in enumerate(_frames()):  # what df.to_csv(path, index=False) wrote (eval/*.csv, 06's configs.csv)
        df.to_csv(tmp_path / f"pandas{i}.csv", index=False)
        frame = stages.FRAME.write(tmp_path / f"frame{i}.csv", df)
        assert frame.read_bytes() == (tmp_path / f"pandas{i}.csv").read_bytes()

    t, single = DecodingConfig(temperature=0.7, top_p=0.9), DecodingConfig(temperature=0.0)
    oracles.write_oracles(tmp_path / "o.json", {"coinflip": t, "taboo": single}, single)
    assert stages.JSON.write(tmp_path / "o2.json", stages.JSON.read(tmp_path / "o.json")).read_bytes() == \
        (tmp_path / "o.json").read_bytes()
    oracles.write_adaptive(tmp_path / "a.json", {"min_p": {"coinflip": t}})
    assert stages.JSON.write(tmp_path / "a2.json", {"min_p": {"coinflip": t.to_json()}}).read_bytes() == \
        (tmp_path / "a.json").read_bytes()
    q = {"n": 4, "parse_rate": 1.0, "exact_all": 0.5, "mean_distance": 1 / 3}
    g = gate.judge("hag_seed0", 0, 7, q, {**q, "exact_all": 0.25}, 0.99)
    gate.write([g], tmp_path / "g.json")
    assert stages.JSON.write(tmp_path / "g2.json", [g.row()]).read_bytes() == (tmp_path / "g.json").read_bytes()
    assert gate.FILE == stages.GATES.name

    rows = [{"messages": [{"role": "user", "content": "é \"x\"\n"}], "task": "t", "item_id": "1"}, {"n": 1.5}]
    dataset.write_jsonl(rows, tmp_path / "d.jsonl")
    assert stages.JSONL.write(tmp_path / "d2.jsonl", rows).read_bytes() == (tmp_path / "d.jsonl").read_bytes()
    assert stages.JSONL.read(tmp_path / "d2.jsonl") == rows == dataset.read_jsonl(tmp_path / "d.jsonl")


# --------------------------------------------------------------------------------- make lab's fallback


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(config.OUTPUT_ENV, raising=False)
    return tmp_path


def test_outside_make_lab_a_run_reads_and_writes_its_own_results(root):
    paths = config.Paths.for_profile("default")
    assert paths.results == paths.committed == root / "results"
    assert stages.MAIN.path(paths) == stages.MAIN.find(paths) == root / "results" / "tables" / "main.csv"
    assert stages.GATES.find(paths) == root / "artifacts" / "default" / "adapters" / "gate.json"


def test_under_make_lab_readers_fall_back_to_the_committed_run_and_writers_stay_in_the_lab(root, monkeypatch):
    committed = root / "results"
    stages.MAIN.write(config.Paths.for_profile("default"), pd.DataFrame({"method": ["hag"], "mean": [0.5]}))
    before = stages.MAIN.find(config.Paths.for_profile("default")).read_bytes()

    monkeypatch.setenv(config.OUTPUT_ENV, "artifacts/lab")
    paths = config.Paths.for_profile("default")
    lab = root / "artifacts" / "lab" / "default"
    assert paths.results == lab and paths.committed == committed
    assert stages.MAIN.find(paths) == committed / "tables" / "main.csv"  # the lab has not written it yet
    assert stages.MAIN.read(paths).to_dict("list") == {"method": ["hag"], "mean": [0.5]}
    assert stages.DIFFICULTY.find(paths) == lab / "tables" / "difficulty.csv"  # nowhere: where its writer puts it
    assert stages.MAIN.write(paths, pd.DataFrame({"method": ["hag"], "mean": [0.75]})) == lab / "tables" / "main.csv"
    assert stages.MAIN.find(paths) == lab / "tables" / "main.csv"  # the lab's own copy wins once written
    assert stages.MAIN.read(paths)["mean"].tolist() == [0.75]
    assert (committed / "tables" / "main.csv").read_bytes() == before
    assert sorted(p.name for p in committed.rglob("*") if p.is_file()) == ["main.csv"]
    # Artifacts are the run's own under the lab too (search logs, adapters: what 04 and 05 read).
    assert stages.GATES.path(paths) == stages.GATES.find(paths) == root / "artifacts" / "default" / "adapters" / "gate.json"


def test_another_profile_falls_back_to_its_own_results_folder(root, monkeypatch):
    monkeypatch.setenv(config.OUTPUT_ENV, str(root / "lab"))
    own = root / "artifacts" / "smoke" / "results"
    (own / "tables").mkdir(parents=True)
    (own / "tables" / "train_log.csv").write_text("step,loss\n1,0.5000\n")
    paths = config.Paths.for_profile("smoke")
    assert paths.committed == own and paths.results == root / "lab" / "smoke"
    assert stages.TRAIN_LOG.find(paths) == own / "tables" / "train_log.csv"
    assert stages.TRAIN_LOG.find(config.Paths.for_profile("default")) == root / "lab" / "default" / "tables" / "train_log.csv"


def test_a_run_or_a_profile_stands_for_its_paths(root):
    profile = config.Profile(name="smoke")
    paths = config.Paths.for_profile("smoke")

    class Run:
        def __init__(self, paths: config.Paths) -> None:
            self.paths = paths

    assert stages.SEARCH.path(Run(paths)) == paths.artifacts / "search" and (paths.artifacts / "search").is_dir()
    assert stages.SEARCH.find(profile) == stages.SEARCH.find(paths) == root / "artifacts" / "smoke" / "search"


def test_the_docs_table_is_the_manifest():
    text = (REPO / "docs" / "stages.md").read_text(encoding="utf-8")
    assert stages.markdown_table() in text, "docs/stages.md: paste the output of `python -m hagstudy.stages`"
