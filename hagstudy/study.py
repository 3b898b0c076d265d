"""A notebook's run context: the validated profile, its folders, its tasks and its engines.

Every notebook starts with ``run = study.start(profile, notebook="01_search", model=model)``: the
profile is validated (a bad value fails here, naming the field), written next to the notebook's
outputs, seeds are set, the run's log is set up (``runlog``: log lines and warnings as stdout text,
the full log in ``artifacts/<profile>/<notebook>/run.log``), and engines are built on demand with the
shared completion cache.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from hagstudy import registry, runlog, stages
from hagstudy.config import Paths, Profile, TrainSettings, load_profile, save_profile
from hagstudy.decoding import SearchSpace
from hagstudy.engine.cache import COSINES_DB
from hagstudy.files import shown

if TYPE_CHECKING:
    from hagstudy.engine.cache import CompletionCache
    from hagstudy.engine.protocol import Engine
    from hagstudy.method.training import TrainResult
    from hagstudy.tasks.base import Task

log = logging.getLogger(__name__)
TRACE_FILE = "prefill_trace.jsonl"  # beside the run log: each prefilled prompt's first-step logits digest
LOG_FILE = "run.log"  # artifacts/<profile>/<notebook>/run.log: the run's full log (runlog.setup)


@dataclass
class Run:
    profile: Profile
    notebook: str
    _engines: dict[str, Engine] = field(default_factory=dict, repr=False)
    _vllm_workers: dict[str, Any] = field(default_factory=dict, repr=False)
    log: runlog.RunLog | None = field(default=None, repr=False)  # set by ``start``: the log file, warnings shown

    @property
    def paths(self) -> Paths:
        return self.profile.paths

    def artifact(self, *parts: str) -> Path:
        """A path under ``artifacts/<profile>/`` (git-ignored; how notebooks hand data to each other)."""
        return self.paths.artifact(*parts)

    def figure_dir(self) -> Path:
        return self.paths.figures()

    def tasks(self) -> list[Task]:
        from hagstudy import tasks

        return [tasks.get(name) for name in tasks.selected(self.profile)]

    def search_space(self) -> SearchSpace:
        """decoding.SearchSpace with the profile's grid overrides (the smoke profile uses a tiny grid)."""
        space = SearchSpace()
        return SearchSpace(coarse={**space.coarse, **self.profile.search.grid})

    def sensitivity_grids(self) -> dict[str, tuple[float, ...]]:
        from hagstudy.method.preliminary import SENSITIVITY_GRIDS

        return {**SENSITIVITY_GRIDS, **self.profile.prelim_grid}

    def cache(self) -> CompletionCache:
        from hagstudy.engine.cache import CompletionCache

        self.paths.cache.mkdir(parents=True, exist_ok=True)
        return CompletionCache(self.paths.cache / "completions.sqlite")

    def engine(self, adapter: str | Path | None = None, model_spec: str | None = None) -> Engine:
        """The generation backend for the profile's model (or ``model_spec``), optionally with a LoRA adapter
        (``factory.build``: the in-house engine, its cache-only mode for a receipt-only adapter, or vLLM).

        Engines are kept per (model, adapter) for the notebook's lifetime: a model loads once (with vLLM,
        one worker per model serves the base and its adapters).
        """
        from hagstudy.engine import factory

        spec = model_spec or self.profile.model
        key = f"{spec}|{adapter}"
        if key not in self._engines:
            self._engines[key] = factory.build(
                self.profile, adapter, cache=self.cache(), model_spec=spec, workers=self._vllm_workers,
                worker_log=self.paths.artifacts / self.notebook / "vllm_worker.log",  # the worker makes its folder
                trace=self.paths.artifacts / self.notebook / TRACE_FILE,
            )
        return self._engines[key]

    def drop_engine(self, adapter: str | Path | None = None, model_spec: str | None = None) -> None:
        """Forget an engine (its model's memory goes back): for the many adapter snapshots of a learning curve."""
        spec = model_spec or self.profile.model
        self._engines.pop(f"{spec}|{adapter}", None)

    def hag_adapters(self) -> list[tuple[str, int]]:
        """HAG's stage-1 adapters and their training seeds: ``hag_seed0`` (the profile's seed), ``hag_seed1``, ..."""
        return [(registry.HAG.instance(k), self.profile.seed + k) for k in range(self.profile.train.adapters)]


def start(profile: str | None = None, notebook: str = "notebook", **overrides: Any) -> Run:
    """Validate the profile (notebook parameters override it), save it, seed everything, return the run.

    Empty parameters mean "not given": ``profile=""`` reads $HAGSTUDY_PROFILE (else ``default``) and
    ``model=""`` keeps the profile's model.
    """
    overrides = {k: v for k, v in overrides.items() if v not in ("", None)}
    _quiet_progress_bars()
    pd.set_option("display.precision", 3)  # tables in a rendered notebook: 3 decimals (the CSVs keep 4)
    p = load_profile(profile or None, **overrides)
    from hagstudy import tasks
    from hagstudy.tasks import embed

    # The run's profile names its tasks explicitly (an empty list means all), so notebooks can use
    # ``run.profile.tasks`` and profile.json records them; an unknown name fails here, at the start.
    p = dataclasses.replace(p, tasks=tasks.selected(p))
    seed_everything(p.seed)

    embed.use_cache(p.paths.cache / "embeddings.sqlite", p.paths.cache / COSINES_DB)
    run = Run(profile=p, notebook=notebook)
    run.log = runlog.setup(run.artifact(notebook, LOG_FILE))
    for noisy in ("httpx", "transformers", "datasets", "sentence_transformers", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    save_profile(p, run.artifact(notebook, "profile.json"))
    log.info("profile %s, model %s (%s); outputs in %s; full log in %s", p.name, p.model, p.dtype,
             shown(p.paths.results), shown(run.log.path))
    return run


def _quiet_progress_bars() -> None:
    """Rendered notebooks keep results, not hundreds of progress-bar frames."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    runlog.quiet_harmless_warnings()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_once(
    run: Run, name: str, train_rows: list[dict], val_rows: list[dict] | None, settings: TrainSettings | None = None,
    seed: int | None = None,
) -> TrainResult:
    """Train a LoRA adapter into ``artifacts/<profile>/adapters/<name>/`` unless the same one is there.

    "The same" means the same base model, rows, settings and seed (a fingerprint stored beside the
    adapter), so rerunning a notebook reuses finished training and a changed input retrains.
    ``seed`` defaults to the profile's.
    """
    from hagstudy.method import training

    settings = settings or run.profile.train
    return training.train_if_changed(
        run.profile.model, train_rows, val_rows, settings, stages.ADAPTERS.path(run) / name,
        run.profile.seed if seed is None else seed,
    )
