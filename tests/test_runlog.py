"""runlog.setup: a rendered notebook shows log lines and real warnings as stdout text (no stderr boxes),
the full log lands in the run's file, and only the known-harmless third-party warnings are dropped."""

from __future__ import annotations

import logging
import warnings

import pytest
from tqdm import TqdmWarning

from hagstudy import config, runlog, study, tasks
from hagstudy.files import shown


@pytest.fixture(autouse=True)
def _restore_logging():
    """setup changes process-wide state (root handlers, showwarning): put it back for the next test."""
    root = logging.getLogger()
    handlers, level, show = list(root.handlers), root.level, warnings.showwarning
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    warnings.showwarning = show


def test_a_warning_goes_to_stdout_numbered_and_to_the_log_file(tmp_path, capsys):
    run_log = runlog.setup(tmp_path / "nb" / "run.log")
    logging.getLogger("hagstudy.method.hag").warning("zero_shot (coinflip): %d of %d proposals did not parse", 3, 10)
    logging.getLogger("hagstudy.method.training").info("adapter hag_seed0 is current")
    logging.getLogger("hagstudy.method.hag").warning("second")
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "warning #1 hag: zero_shot (coinflip): 3 of 10 proposals did not parse",
        "training: adapter hag_seed0 is current",
        "warning #2 hag: second",
    ]
    assert run_log.warnings == 2
    text = (tmp_path / "nb" / "run.log").read_text()
    assert "WARNING hagstudy.method.hag: zero_shot (coinflip): 3 of 10" in text and "INFO hagstudy.method.training:" in text


def test_the_tqdm_warning_is_filtered_but_another_warning_surfaces(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        run_log = runlog.setup(tmp_path / "run.log")
        # as tqdm.auto raises it (stacklevel 2 names tqdm.auto), and a different one from the same module
        exec(compile('warnings.warn("IProgress not found. Please update jupyter", TqdmWarning, stacklevel=1)',
                     "tqdm/auto.py", "exec"), {"__name__": "tqdm.auto", "warnings": warnings, "TqdmWarning": TqdmWarning})
        exec(compile('warnings.warn("something else is wrong", TqdmWarning, stacklevel=1)', "tqdm/auto.py", "exec"),
             {"__name__": "tqdm.auto", "warnings": warnings, "TqdmWarning": TqdmWarning})
        warnings.warn("IProgress not found, but as a UserWarning", UserWarning)
    out, err = capsys.readouterr()
    assert err == ""
    assert "IProgress not found. Please" not in out
    assert "warning #1 py.warnings: TqdmWarning: something else is wrong" in out
    assert "warning #2 py.warnings: UserWarning: IProgress not found, but as a UserWarning (tests/test_runlog.py:" in out
    assert run_log.warnings == 2


def test_the_transformers_deprecation_is_filtered_only_from_transformers(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        runlog.setup(tmp_path / "run.log")
        msg = "`is_gradient_checkpointing` is deprecated and will be removed in v6."
        exec(compile(f"warnings.warn({msg!r}, FutureWarning)", "modeling_utils.py", "exec"),
             {"__name__": "transformers.modeling_utils", "warnings": warnings})
        warnings.warn(msg, FutureWarning)  # the same text from our own code is not known to be harmless
    out, _ = capsys.readouterr()
    assert out.count("is_gradient_checkpointing") == 1 and "(tests/test_runlog.py:" in out


def test_shown_is_root_relative_inside_the_study_and_unchanged_outside(tmp_path):
    root = config.repo_root()
    assert shown(root / "artifacts" / "default" / "adapters" / "hag_seed0") == "artifacts/default/adapters/hag_seed0"
    assert shown(tmp_path / "x.csv") == str(tmp_path / "x.csv")
    assert shown("results/tables") == "results/tables"


def test_start_announces_the_log_file_first_and_writes_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").mkdir()
    for path in (config.repo_root() / "configs").glob("*.yaml"):
        (tmp_path / "configs" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(tasks.embed, "use_cache", lambda *paths: None)
    run = study.start("smoke", notebook="nb")
    out, err = capsys.readouterr()
    assert err == "" and str(tmp_path) not in out
    assert out.splitlines()[0].endswith("outputs in artifacts/smoke/results; full log in artifacts/smoke/nb/run.log")
    assert run.log.path == tmp_path / "artifacts" / "smoke" / "nb" / "run.log" and run.log.path.is_file()
