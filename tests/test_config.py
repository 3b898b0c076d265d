from pathlib import Path

import pytest

from hagstudy import config
from hagstudy.config import ProfileError, load_profile


def test_both_profiles_load_and_smoke_is_smaller():
    smoke, default = load_profile("smoke"), load_profile("default")
    assert smoke.n_test < default.n_test and smoke.n_search < default.n_search
    assert default.n_search >= 40 and default.search.draws >= 2 and len(default.seeds) >= 3
    assert default.n_test >= 100


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    assert load_profile().name == "smoke"
    monkeypatch.delenv(config.PROFILE_ENV)
    assert load_profile().name == "default"


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ProfileError, match="unknown profile 'nope'.*smoke"):
        load_profile("nope")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"n_test": 0}, "n_test must be >= 1"),
        ({"n_test": "many"}, "n_test: expected int"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"dtype": "float16"}, "dtype must be"),
        ({"tasks": ["coinflip", "chess"]}, r"unknown task\(s\) \['chess'\]; known: \['coinflip'"),
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"search": {"greedy_order": ["temperature"]}}, "greedy_order must be a permutation"),
        ({"train": {"validation_fraction": 1.5}}, "validation_fraction"),
    ],
)
def test_bad_values_fail_at_once_naming_the_field(override, message):
    with pytest.raises(ProfileError, match=message):
        load_profile("smoke", **override)


def test_overrides_merge_nested_settings():
    p = load_profile("smoke", model="tiny-random", train={"epochs": 2})
    assert p.model == "tiny-random" and p.train.epochs == 2.0 and p.train.max_steps == 3


def test_only_default_writes_committed_results():
    assert load_profile("default").paths.results == config.repo_root() / "results"
    assert load_profile("smoke").paths.results == config.repo_root() / "artifacts" / "smoke" / "results"


def test_save_profile_roundtrip(tmp_path: Path):
    p = load_profile("smoke")
    config.save_profile(p, tmp_path / "profile.json")
    assert '"name": "smoke"' in (tmp_path / "profile.json").read_text()


def test_grid_overrides_are_validated():
    p = load_profile("smoke")
    assert p.search.grid["temperature"] == (0.0, 1.0)
    with pytest.raises(ProfileError, match="keys among"):
        load_profile("smoke", search={"grid": {"temp": [0.5]}})
    with pytest.raises(ProfileError, match="expected float"):
        load_profile("smoke", prelim_grid={"top_p": ["high"]})
