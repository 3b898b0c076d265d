"""Fuzzing profile loading: mutated profiles either load into valid values or fail with a ProfileError
that names the file (and, for a bad value, the field). Never another exception, never a bad value.

Seeded, 500 files in about 6 s; ``HAGSTUDY_FUZZ_N`` / ``HAGSTUDY_FUZZ_SEED`` run more.
"""

from __future__ import annotations

import copy
import math
import os
import random
from pathlib import Path

import pytest
import yaml

from hagstudy import config
from hagstudy.config import Profile, ProfileError, load_profile
from hagstudy.decoding import RANGES

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("HAGSTUDY_FUZZ_N", "12000")) // 24  # a load is ~10 ms (YAML parsing): 500 files
SEED = int(os.environ.get("HAGSTUDY_FUZZ_SEED", "17"))

VALUES = [0, 1, 2, -1, 3, 40, 2**31 - 1, 2**31, 10**400, 0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 5.0, 1e-9, float("inf"),
          float("-inf"), float("nan"), True, False, None, "", " ", "x", "3e-4", "float32", "bfloat16", "coinflip",
          "temperature", [], [0], [0.5, 1.0], [1, 1], [-1], [0.0, 5], ["a"], [[1]], {}, {"temperature": [0.5]},
          {"top_k": [1.5]}, {"top_p": []}, {"bogus": 1}]
KEYS = ["model", "dtype", "tasks", "n_search", "n_validation", "n_test", "seeds", "prelim_items", "prelim_samples",
        "prelim_grid", "search", "train", "ablation", "seed", "extends", "bogus"]
NESTED = {
    "search": ["prune_items", "draws", "greedy_order", "reliability_items", "heldout_draws", "grid"],
    "train": ["epochs", "learning_rate", "batch_size", "lora_r", "lora_alpha", "lora_dropout", "max_length",
              "validation_fraction", "max_steps"],
    "ablation": ["n_test", "n_seeds", "train_fractions", "search_fraction"],
    "grid": ["temperature", "top_p", "top_k", "repetition_penalty"],
}


def mutate(rng: random.Random, raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(KEYS)
        target = raw
        if key in ("search", "train", "ablation") and rng.random() < 0.8:
            target = raw.setdefault(key, {}) if isinstance(raw.get(key), dict) else raw
            key = rng.choice(NESTED.get(key, ["x"]))
            if key == "grid" and rng.random() < 0.7:
                target = target.setdefault("grid", {}) if isinstance(target.get("grid"), dict) else target
                key = rng.choice(NESTED["grid"])
        if rng.random() < 0.1:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(rng.choice(VALUES))
    return raw


def text_variants(rng: random.Random, text: str) -> str | bytes:
    r = rng.random()
    if r < 0.05:
        return text[: rng.randrange(len(text) + 1)]  # cut short
    if r < 0.08:
        return text.encode("utf-8")[:-1] + b"\xff\xfe"  # not UTF-8
    if r < 0.1:
        i = rng.randrange(len(text) + 1)
        return text[:i] + rng.choice([":", "[", "{", "- ", "\t", "&a", "*a", "!!python/object:os.system"]) + text[i:]
    return text


def check_valid(p: Profile) -> None:
    for grid in (p.search.grid, p.prelim_grid):
        for name, values in grid.items():
            lo, hi = RANGES[name]
            assert values and all(math.isfinite(v) and lo <= v <= hi for v in values), (name, values)
            assert name != "top_p" or all(v > 0 for v in values)
            assert name != "top_k" or all(float(v).is_integer() for v in values)
    assert p.model.strip() and p.seeds and all(0 <= s <= config.SEED_MAX for s in (*p.seeds, p.seed))
    t = p.train
    assert all(math.isfinite(x) and x > 0 for x in (t.epochs, t.learning_rate, t.lora_alpha))
    assert 0 <= t.lora_dropout < 1 and 0 < t.validation_fraction < 1


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    (tmp_path / "configs").mkdir()
    for path in (ROOT / "configs").glob("*.yaml"):
        (tmp_path / "configs" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv(config.ROOT_ENV, str(tmp_path))
    return tmp_path


def test_mutated_profiles_load_valid_or_fail_naming_the_file(root):
    rng = random.Random(SEED)
    bases = [yaml.safe_load((ROOT / "configs" / f"{n}.yaml").read_text()) for n in ("smoke", "default")]
    outcomes = {"loaded": 0, "refused": 0}
    target = root / "configs" / "fuzz.yaml"
    for i in range(N):
        raw = mutate(rng, rng.choice(bases))
        text = text_variants(rng, yaml.safe_dump(raw, sort_keys=False))
        target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        try:
            p = load_profile("fuzz")
        except ProfileError as err:
            assert str(err).startswith("configs/fuzz.yaml: "), (i, str(err))
            outcomes["refused"] += 1
            continue
        check_valid(p)
        outcomes["loaded"] += 1
    assert outcomes["loaded"] > N // 20 and outcomes["refused"] > N // 5, outcomes
