import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from hagstudy import config
from hagstudy.config import Profile, ProfileError, SearchSettings, load_profile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A study root holding copies of the real profiles, where a test may write its own."""
    (tmp_path / "configs").mkdir()
    for path in (ROOT / "configs").glob("*.yaml"):
        (tmp_path / "configs" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    return tmp_path


def write(root: Path, name: str, text: str | bytes) -> None:
    path = root / "configs" / f"{name}.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def test_both_profiles_load_and_smoke_is_smaller():
    smoke, default = load_profile("smoke"), load_profile("default")
    assert smoke.n_test < default.n_test and smoke.n_search < default.n_search
    assert default.n_search >= 40 and default.search.draws >= 2 and len(default.seeds) >= 3
    assert default.n_test >= 100


def test_the_committed_profiles_keep_their_values():
    """The schema checks values; it must not change any (ints in float grids stay the floats they were)."""
    smoke = load_profile("smoke")
    assert smoke.search.grid == {
        "temperature": (0.0, 1.0), "top_p": (0.9, 1.0), "top_k": (0.0, 50.0), "repetition_penalty": (1.0, 1.3)
    }
    assert smoke.prelim_grid["top_k"] == (10.0, 50.0)
    assert smoke.train == config.TrainSettings(epochs=1.0, batch_size=4, max_steps=3, max_length=384, adapters=2, checkpoints=2)
    assert smoke.ablation == config.AblationSettings(n_test=2, n_seeds=1, train_fractions=(0.5,), search_fraction=0.5,
                                                     denoise_draws=2)
    assert (smoke.seeds, smoke.seed, smoke.tasks, smoke.model) == ((0, 1), 1234, (), "smollm2-135m-instruct")
    default = load_profile("default")
    assert default.train == config.TrainSettings(epochs=3.0, learning_rate=0.002, max_length=256, validation_fraction=0.2, checkpoints=6)
    assert default.search == SearchSettings(greedy_draws=4, keep_margin=0.1) and default.prelim_grid == {}
    assert default.search.greedy_r == 4 and smoke.search.greedy_r == 2 and SearchSettings(draws=3).greedy_r == 3
    assert default.generation.step == "fused" and smoke.generation.step == "fused"
    assert default.ablation == config.AblationSettings(n_test=30, n_seeds=2, train_fractions=(0.25, 0.5), search_fraction=0.25)


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
        ({"n_test": 0}, "configs/smoke.yaml: n_test: must be >= 1, got 0"),
        ({"n_test": "many"}, "n_test: expected int"),
        ({"seeds": [1, 1]}, "seeds: must be distinct"),
        ({"dtype": "float16"}, "dtype: must be"),
        ({"tasks": ["coinflip", "coinflip"]}, "tasks: must be distinct"),
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"train": {"bogus": 1}}, r"train: unknown key\(s\) \['bogus'\]"),
        ({"search": {"greedy_order": ["temperature"]}}, "search.greedy_order: must be a permutation"),
        ({"train": {"validation_fraction": 1.5}}, "train.validation_fraction"),
        # The cases: each used to load and fail later (or never).
        ({"search": {"grid": {"temperature": [0.0, 1.0, 5]}}}, r"search.grid.temperature\[2\]: must be in \[0, 2\], got 5"),
        ({"search": {"grid": {"top_k": [-1]}}}, r"search.grid.top_k\[0\]: must be in \[0, 1000\], got -1"),
        ({"search": {"grid": {"top_k": [1.5]}}}, r"search.grid.top_k\[0\]: must be an integer"),
        ({"search": {"grid": {"top_p": [0]}}}, r"search.grid.top_p\[0\]: must be in \(0, 1\], got 0"),
        ({"search": {"grid": {"repetition_penalty": [0.5]}}}, r"search.grid.repetition_penalty\[0\]: must be in \[1, 2\]"),
        ({"search": {"grid": {"repetition_penalty": [float("nan")]}}}, r"repetition_penalty\[0\]: must be a finite number"),
        ({"search": {"grid": {"top_p": []}}}, "search.grid.top_p: must list at least one value"),
        ({"prelim_grid": {"temperature": [5]}}, r"prelim_grid.temperature\[0\]: must be in \[0, 2\]"),
        ({"prelim_grid": {"temperature": []}}, "prelim_grid.temperature: must list at least one value"),
        ({"seed": -1}, r"seed: must be in \[0, 2147483647\], got -1"),
        ({"seeds": [0, 2**31]}, r"seeds\[1\]: must be in \[0, 2147483647\]"),
        ({"seeds": []}, "seeds: must list at least one seed"),
        ({"train": {"epochs": float("inf")}}, "train.epochs: must be a finite number > 0, got inf"),
        ({"train": {"learning_rate": float("inf")}}, "train.learning_rate: must be a finite number > 0"),
        ({"train": {"learning_rate": "3e-4"}}, "train.learning_rate: expected float.*write a decimal point"),
        ({"train": {"lora_alpha": -1}}, "train.lora_alpha: must be a finite number > 0, got -1"),
        ({"train": {"lora_dropout": 1.5}}, r"train.lora_dropout: must be in \[0, 1\), got 1.5"),
        ({"train": {"max_steps": 0}}, "train.max_steps: must be -1"),
        ({"train": {"select": "best"}}, r"train.select: must be one of \['best_validation', 'final'\], got 'best'"),
        ({"ablation": {"equal_steps": "yes"}}, "ablation.equal_steps: must be true or false"),
        ({"model": ""}, "model: must name a model"),
        ({"model": "  "}, "model: must name a model"),
        ({"ablation": {"n_seeds": 3}}, r"ablation.n_seeds: must be in \[1, 2\]"),
        ({"ablation": {"train_fractions": [0.5, 0]}}, r"ablation.train_fractions\[1\]: must be in \(0, 1\]"),
        ({"generation": {"step": "warp"}}, r"generation.step: must be one of \['eager', 'fused'\], got 'warp'"),
    ],
)
def test_bad_values_fail_at_once_naming_the_file_and_field(override, message):
    with pytest.raises(ProfileError, match=message):
        load_profile("smoke", **override)


def test_the_error_reads_file_field_value(root):
    write(root, "x", "extends: smoke\nsearch:\n  grid:\n    temperature: [0, 1, 5]\n")
    with pytest.raises(ProfileError) as err:
        load_profile("x")
    assert str(err.value) == "configs/x.yaml: search.grid.temperature[2]: must be in [0, 2], got 5"
    assert err.value.field == "search.grid.temperature[2]"


def test_values_written_in_the_file_are_checked(root):
    write(root, "x", "extends: default\ntrain:\n  epochs: .inf\n")
    with pytest.raises(ProfileError, match="configs/x.yaml: train.epochs: must be a finite number > 0, got inf"):
        load_profile("x")
    write(root, "x", "extends: default\nmodel: ''\n")
    with pytest.raises(ProfileError, match="configs/x.yaml: model: must name a model"):
        load_profile("x")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_profile_is_an_error(root, text):
    write(root, "empty", text)
    with pytest.raises(ProfileError, match="configs/empty.yaml: the profile is empty.*extends: default"):
        load_profile("empty")


def test_extends_default_runs_the_default_study(root):
    write(root, "mine", "extends: default\n")
    mine, default = load_profile("mine"), load_profile("default")
    assert mine.name == "mine" and dataclasses.replace(mine, name="default") == default


def test_extends_merges_nested_settings_key_by_key(root):
    write(root, "mine", "extends: smoke\nn_test: 6\ntrain:\n  epochs: 2\nsearch:\n  grid:\n    temperature: [0.5]\n")
    p, smoke = load_profile("mine"), load_profile("smoke")
    assert p.n_test == 6 and p.train.epochs == 2.0 and p.train.max_steps == 3 and p.train.batch_size == 4
    assert p.search.grid == {**smoke.search.grid, "temperature": (0.5,)} and p.search.draws == smoke.search.draws
    write(root, "deeper", "extends: mine\nseed: 7\n")
    assert dataclasses.replace(load_profile("deeper"), name="mine", seed=p.seed) == p


def test_extends_errors_name_the_file(root):
    write(root, "a", "extends: b\n")
    write(root, "b", "extends: a\n")
    with pytest.raises(ProfileError, match="configs/b.yaml: extends: 'a' extends itself"):
        load_profile("a")
    write(root, "c", "extends: nope\n")
    with pytest.raises(ProfileError, match="configs/c.yaml: extends: unknown profile 'nope'"):
        load_profile("c")
    write(root, "d", "extends: [default]\n")
    with pytest.raises(ProfileError, match="configs/d.yaml: extends: expected a profile name"):
        load_profile("d")


def test_non_utf8_profile_names_the_file(root):
    write(root, "latin", "extends: default\nmodel: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProfileError, match="configs/latin.yaml: not UTF-8"):
        load_profile("latin")


def test_malformed_yaml_and_top_level_list_name_the_file(root):
    write(root, "bad", "n_test: [1\n")
    with pytest.raises(ProfileError, match="configs/bad.yaml: not valid YAML"):
        load_profile("bad")
    write(root, "list", "- 1\n- 2\n")
    with pytest.raises(ProfileError, match="configs/list.yaml: expected a mapping"):
        load_profile("list")


def test_a_profile_built_in_code_is_checked_too():
    with pytest.raises(ProfileError, match="profile 'unit': search.draws: must be >= 1"):
        Profile(name="unit", search=SearchSettings(draws=0))
    with pytest.raises(ProfileError, match=r"profile 'unit': search.grid.top_p\[0\]"):
        Profile(name="unit", search=SearchSettings(grid={"top_p": (0.0,)}))


def test_overrides_merge_nested_settings():
    p = load_profile("smoke", model="tiny-random", train={"epochs": 2})
    assert p.model == "tiny-random" and p.train.epochs == 2.0 and p.train.max_steps == 3


def test_profile_stays_frozen_and_tasks_empty_means_all():
    from hagstudy import tasks

    p = load_profile("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.tasks = ("coinflip",)  # type: ignore[misc]
    assert p.tasks == () and tasks.selected(p) == tuple(tasks.names())
    assert tasks.selected(load_profile("smoke", tasks=["taboo", "coinflip"])) == ("taboo", "coinflip")


def test_unknown_task_names_the_tasks_field():
    from hagstudy import tasks

    p = load_profile("smoke", tasks=["coinflip", "chess"])  # the registry is not config's business
    with pytest.raises(ProfileError, match=r"profile 'smoke': tasks: unknown task\(s\) \['chess'\]; known: \['coinflip'") as err:
        tasks.selected(p)
    assert err.value.field == "tasks"


def test_config_imports_nothing_from_the_task_registry():
    code = (
        "import hagstudy.config as c, sys; assert 'hagstudy.tasks' not in sys.modules; "
        "c.load_profile('smoke'); c.load_profile('default'); assert 'hagstudy.tasks' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_only_default_writes_committed_results(monkeypatch):
    monkeypatch.delenv(config.OUTPUT_ENV, raising=False)
    root = config.repo_root()
    assert load_profile("default").paths.results == root / "results"
    assert load_profile("smoke").paths.results == root / "artifacts" / "smoke" / "results"
    assert not load_profile("default", model="smollm2-135m-instruct").model_override  # the profile's own model
    other = load_profile("default", model="tiny-random")  # a notebook's model parameter
    assert other.model_override and other.paths.artifacts == root / "artifacts" / "default@tiny-random"
    assert other.paths.results == root / "artifacts" / "default@tiny-random" / "results"
    # `make lab`: tables and figures under the output root, per run; artifacts are still the run's own.
    monkeypatch.setenv(config.OUTPUT_ENV, "artifacts/lab")
    assert load_profile("default").paths.results == root / "artifacts" / "lab" / "default"
    assert load_profile("default").paths.artifacts == root / "artifacts" / "default"
    assert other.paths.results == root / "artifacts" / "lab" / "default@tiny-random"
    # What the lab's readers fall back to (hagstudy.stages): the run's own results folder, as without the lab.
    assert load_profile("default").paths.committed == root / "results"
    assert load_profile("smoke").paths.committed == root / "artifacts" / "smoke" / "results"
    assert other.paths.committed == root / "artifacts" / "default@tiny-random" / "results"


def test_run_folders_never_share_a_name():
    assert config.run_folder("default") == "default"
    assert config.run_folder("default", "tiny-random") == "default@tiny-random"
    path = config.run_folder("default", "/models/org/name")
    assert path.startswith("default@models-org-name-") and len(path.rsplit("-", 1)[1]) == 8
    names = {config.run_folder("default", m) for m in ("org/name", "org-name", "org_name", "/org/name", "a" * 80)}
    assert len(names) == 5 and all(len(n) <= len("default@") + 60 for n in names)


def test_model_override_is_not_a_profile_key(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "x.yaml").write_text("model: tiny-random\nmodel_override: true\n")
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    with pytest.raises(ProfileError, match=r"configs/x.yaml: unknown key\(s\) \['model_override'\]"):
        load_profile("x")
    (tmp_path / "configs" / "x.yaml").write_text("model: tiny-random\n")
    assert not load_profile("x").model_override and load_profile("x").paths.artifacts.name == "x"


def test_save_profile_roundtrip(tmp_path: Path):
    p = load_profile("smoke")
    config.save_profile(p, tmp_path / "profile.json")
    assert '"name": "smoke"' in (tmp_path / "profile.json").read_text()


def test_grid_overrides_are_validated():
    p = load_profile("smoke")
    assert p.search.grid["temperature"] == (0.0, 1.0)
    with pytest.raises(ProfileError, match="search.grid: expected a mapping with keys among"):
        load_profile("smoke", search={"grid": {"temp": [0.5]}})
    with pytest.raises(ProfileError, match=r"prelim_grid.top_p\[0\]: expected float"):
        load_profile("smoke", prelim_grid={"top_p": ["high"]})


def test_oracle_items_is_a_prefix_of_the_test_items():
    default = load_profile("default")
    assert (default.oracle_items, default.oracle_draws) == (default.n_test, 4)  # every test item, 4 selection draws
    assert load_profile("smoke").oracle_items == 2
    assert load_profile("smoke", oracle_items=4).oracle_items == 4
    for bad, shown in ((0, "0"), (5, "5"), (True, "True"), ("2", "'2'")):
        with pytest.raises(ProfileError) as err:
            load_profile("smoke", oracle_items=bad)
        assert err.value.field == "oracle_items" and str(err.value).startswith("configs/smoke.yaml: oracle_items: ")
        assert shown in str(err.value)
    with pytest.raises(ProfileError, match=r"oracle_items: must be in \[1, 4\], got 5"):
        load_profile("smoke", oracle_items=5)
    with pytest.raises(ProfileError, match=r"oracle_draws: must be >= 1, got 0"):
        load_profile("smoke", oracle_draws=0)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_every_committed_profile_loads(name):
    p = load_profile(name)
    assert 1 <= p.oracle_items <= p.n_test
