"""study.start: the profile's task names are resolved and checked at the start of a notebook."""

import json
import logging
from pathlib import Path

import pytest

from hagstudy import config, study, tasks
from hagstudy.config import ProfileError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    (tmp_path / "configs").mkdir()
    for path in (ROOT / "configs").glob("*.yaml"):
        (tmp_path / "configs" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(tasks.embed, "use_cache", lambda path: None)  # keep the session's embedding cache
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
        assert run.engine().requested_step == "fused"
        monkeypatch.setattr(study.decode_step, "unsupported", lambda model: "model type 'qwen2' is not llama")
        run.drop_engine()
        assert run.engine().requested_step == "eager"
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert "not the profile's 'fused': model type 'qwen2' is not llama" in caplog.text
