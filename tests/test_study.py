"""study.start: the profile's task names are resolved and checked at the start of a notebook, and a
notebook run by hand (under `make lab`, or with another model) writes its tables and figures away from results/."""

import hashlib
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from hagstudy import config, stages, study, tasks
from hagstudy.config import ProfileError
from hagstudy.engine import decode_step
from hagstudy.report import plots

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    (tmp_path / "configs").mkdir()
    for path in (ROOT / "configs").glob("*.yaml"):
        (tmp_path / "configs" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(tasks.embed, "use_cache", lambda *paths: None)  # keep the session's embedding cache
    return tmp_path


def test_unknown_task_fails_when_the_study_starts(root):
    with pytest.raises(ProfileError, match=r"tasks: unknown task\(s\) \['chess'\]"):
        study.start("smoke", notebook="nb", tasks=["chess"])
    assert not (root / "artifacts" / "smoke" / "nb" / "profile.json").exists()


def test_start_names_every_task_when_the_profile_lists_none(root):
    run = study.start("smoke", notebook="nb")
    assert run.profile.tasks == tuple(tasks.names()) and [t.name for t in run.tasks()] == tasks.names()
    saved = json.loads((root / "artifacts" / "smoke" / "nb" / "profile.json").read_text())
    assert saved["tasks"] == tasks.names()  # profile.json records the tasks, as before
    picked = study.start("smoke", notebook="nb", tasks=["taboo"])
    assert picked.profile.tasks == ("taboo",) and [t.name for t in picked.tasks()] == ["taboo"]


def test_the_engine_runs_the_profiles_step_or_eager_where_fused_cannot(root, monkeypatch, caplog):
    run = study.start("smoke", notebook="nb", model="tiny-random")
    logging.getLogger().addHandler(caplog.handler)  # study.start resets the root logger's handlers
    try:
        assert run.engine().step == "fused"
        monkeypatch.setattr(decode_step, "unsupported", lambda model: "model type 'qwen2' is not llama")
        run.drop_engine()
        assert run.engine().step == "eager"
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert "not the profile's 'fused': model type 'qwen2' is not llama" in caplog.text


def make_lab_env() -> dict[str, str]:
    """The HAGSTUDY_* variables `make lab` starts JupyterLab with, from make's own expansion of the recipe."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if "jupyter lab" in line)
    return dict(word.split("=", 1) for word in line.split() if word.startswith("HAGSTUDY_") and "=" in word)


def listing(folder: Path) -> dict[str, tuple[str, int] | str]:
    """Every path under ``folder`` with each file's sha256 and mtime: any write, even of the same bytes, shows."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
    }


def write_like_05(run: study.Run) -> tuple[Path, Path]:
    """What notebook 05 writes to its run's results: a table through its stage, a figure into run.figure_dir."""
    table = stages.ABLATION.write(run, pd.DataFrame({"arm": ["hag"], "score": [0.7]}))
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    png, _ = plots.save(fig, "ablation", run.figure_dir())
    return table, png


@pytest.fixture
def committed(root, monkeypatch) -> Path:
    """A results/ as `make all` leaves it, in the temporary root; no profile or output variable from the caller."""
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)  # `make test` sets it; `make lab` does not
    monkeypatch.delenv(config.OUTPUT_ENV, raising=False)
    results = root / "results"
    (results / "tables").mkdir(parents=True)
    (results / "tables" / "ablation.csv").write_text("arm,score\nhag,0.5000\n")
    (results / "figures").mkdir()
    (results / "figures" / "ablation.png").write_bytes(b"committed figure")
    return results


def test_running_05_under_make_lab_leaves_results_untouched(root, committed, monkeypatch):
    env = make_lab_env()
    assert env.get(config.OUTPUT_ENV), f"`make lab` no longer sets {config.OUTPUT_ENV}: {env}"
    before = listing(committed)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    profile, model = "", ""  # notebook 05's parameters cell, left as it is when run by hand
    run = study.start(profile, notebook="05_ablations", model=model)
    table, png = write_like_05(run)
    assert listing(committed) == before
    lab = root / env[config.OUTPUT_ENV] / "default"
    assert table == lab / "tables" / "ablation.csv" and png == lab / "figures" / "ablation.png"
    assert run.artifact("x") == root / "artifacts" / "default" / "x"  # it reads the default run's search and adapters

    # The check can fail: the same cells outside `make lab` (as `make all` runs them) do rewrite results/.
    monkeypatch.delenv(config.OUTPUT_ENV)
    write_like_05(study.start(profile, notebook="05_ablations", model=model))
    assert listing(committed) != before


def test_a_hand_run_with_another_model_gets_folders_of_its_own(root, committed):
    before = listing(committed)
    (root / "artifacts" / "default" / "search").mkdir(parents=True)
    (root / "artifacts" / "default" / "search" / "labels.jsonl").write_text("{}\n")
    default_artifacts = listing(root / "artifacts" / "default")
    run = study.start("", notebook="05_ablations", model="tiny-random")
    table, _ = write_like_05(run)
    run.artifact("search", "labels.jsonl").write_text('{"other": 1}\n')  # what notebook 01 would write
    own = root / "artifacts" / "default@tiny-random"
    assert table == own / "results" / "tables" / "ablation.csv" and run.artifact("search").parent == own
    assert listing(committed) == before and listing(root / "artifacts" / "default") == default_artifacts
    saved = json.loads((own / "05_ablations" / "profile.json").read_text())
    assert saved["model"] == "tiny-random" and saved["model_override"] is True
