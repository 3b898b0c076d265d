"""`make lab` starts from the committed run: 06_figures and 05_ablations run under the lab's variables at the
default profile, read what the lab has not written from results/, write only into the lab folder, and leave
results/ as it is (tests/test_stages.py checks the fallback readers on temporary folders, in milliseconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_study import listing, make_lab_env

import hagstudy
from hagstudy import config, stages

ROOT = Path(hagstudy.__file__).resolve().parent.parent
KERNEL = "hagstudy"  # registered by `make setup`; the kernel JupyterLab offers
REPLAY_STAMP = ROOT / "artifacts" / "cache" / ".imported-default"  # the Makefile's $(IMPORTED) at the default profile

pytestmark = pytest.mark.slow


def _lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's variables as `make lab` sets them, its output folder moved to ``tmp_path``; the default profile."""
    env = make_lab_env()
    assert env.get(config.OUTPUT_ENV), f"`make lab` no longer sets {config.OUTPUT_ENV}: {env}"
    from jupyter_client.kernelspec import find_kernel_specs

    if KERNEL not in find_kernel_specs():
        pytest.skip(f"no Jupyter kernel {KERNEL!r}: `make setup` registers it")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(config.OUTPUT_ENV, str(tmp_path / "lab"))  # an absolute folder: nothing under artifacts/lab
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)  # `make lab` names no profile: the default one
    monkeypatch.delenv(config.ROOT_ENV, raising=False)
    # The kernel imports this checkout's package, even where another one is installed in the environment.
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *inherited]))
    return tmp_path / "lab" / "default"


def _run_all(notebook: str, out: Path) -> None:
    """Run All Cells, as in JupyterLab (the kernel starts in notebooks/, the parameters cell as it is)."""
    import papermill

    papermill.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(out / f"{notebook}.ipynb"),
                               kernel_name=KERNEL, cwd=str(ROOT / "notebooks"), progress_bar=False)


def _committed() -> config.Paths:
    paths = config.Paths.for_profile("default")
    assert paths.committed == ROOT / "results"
    return paths


def test_06_under_make_lab_draws_the_committed_tables_and_leaves_results_untouched(tmp_path, monkeypatch):
    lab = _lab(tmp_path, monkeypatch)
    paths = _committed()
    missing = [h.label for h in stages.STAGES[-1].reads if not h.find(paths).is_file()]
    assert not missing, f"results/ lacks tables 06_figures draws: {missing}"
    before = listing(paths.committed)
    _run_all("06_figures", tmp_path)
    assert listing(paths.committed) == before
    drawn = [h for h in stages.STAGES[-1].writes if h.fmt is stages.FIGURE]
    for figure in drawn:  # the same tables give the same bytes (plots.save is byte-stable)
        for suffix in (".png", ".svg"):
            name = f"{figure.stem}{suffix}"
            assert (lab / "figures" / name).read_bytes() == (paths.committed / "figures" / name).read_bytes(), name
    assert not (lab / "tables").exists()  # 06 writes no table


def test_05_under_make_lab_runs_on_the_replayed_run_and_leaves_results_untouched(tmp_path, monkeypatch):
    lab = _lab(tmp_path, monkeypatch)
    paths = _committed()
    needs = [h for h in stages.STAGES[5].reads if not h.find(paths).exists()]
    if not REPLAY_STAMP.is_file() or needs:
        pytest.skip("05_ablations needs the default run replayed on this clone: `make all` imports the shipped "
                    "generations and the adapters' receipts into artifacts/ and runs 00-04 "
                    f"(missing: {[h.label for h in needs] or REPLAY_STAMP.relative_to(ROOT)})")
    before = listing(paths.committed)
    _run_all("05_ablations", tmp_path)
    assert listing(paths.committed) == before
    for table in (h for h in stages.STAGES[5].writes if h.home == stages.TABLES):  # replayed: the committed numbers
        name = table.name
        assert (lab / "tables" / name).read_bytes() == (paths.committed / "tables" / name).read_bytes(), name
