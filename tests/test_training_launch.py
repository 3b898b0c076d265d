"""The training entry point: ``python -m hagstudy.method.training`` under ``accelerate launch`` (1 CPU process here)
writes the adapter where notebook 03 reads it, and notebook 03's in-process call then reuses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hagstudy.config import load_profile
from hagstudy.decoding import DecodingConfig
from hagstudy.engine import adapter as adapters
from hagstudy.method import training
from hagstudy.method.dataset import write_jsonl

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [DecodingConfig(0.5, 0.9, 50, 1.0), DecodingConfig(0.0, 1.0, 0, 1.1)]


def rows(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "system", "content": "Choose decoding hyperparameters. Answer with JSON only."},
                {"role": "user", "content": f"Question {i}: is the sky blue?"},
                {"role": "assistant", "content": CONFIGS[i % 2].to_json()},
            ],
            "task": "strategyqa",
            "item_id": f"strategyqa-{i:04d}",
        }
        for i in range(n)
    ]


def test_the_fingerprint_names_the_training_code_version():
    """An adapter trained by older training code (round 2: fp32 base weights, SDPA, a loss head over every
    position) has the old formula's fingerprint, so it is retrained rather than served as current."""
    import hashlib
    import json

    p = load_profile("smoke")
    tr, va = rows(2), rows(1)
    old = hashlib.sha256(json.dumps([p.model, tr, va, repr(p.train), p.seed], sort_keys=True).encode()).hexdigest()[:16]
    now = training.fingerprint(p.model, tr, va, p.train, p.seed)
    assert now != old
    assert now == hashlib.sha256(
        json.dumps([training.TRAIN_VERSION, p.model, tr, va, training.settings_text(p.train), p.seed],
                   sort_keys=True).encode()
    ).hexdigest()[:16]
    assert training.fingerprint(p.model, tr, va, p.train, p.seed + 1) != now


def test_adapter_config_is_written_in_one_order(tmp_path):
    """Measured: the same weights trained in-process and under accelerate differed only in target_modules' order."""
    import json

    for order in (["v_proj", "q_proj", "o_proj", "k_proj"], ["q_proj", "k_proj", "o_proj", "v_proj"]):
        folder = tmp_path / "-".join(order)
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": order}))
        (folder / adapters.ADAPTER_WEIGHTS).write_bytes(b"same weights")
        adapters.canonical_adapter_config(folder)
    digests = {adapters.adapter_digest(f) for f in tmp_path.iterdir()}
    assert len(digests) == 1


def test_missing_dataset_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(SystemExit, match=r"train.jsonl is missing: run notebook 02"):
        training.main(["--profile", "smoke", "--dataset", str(tmp_path)])


@pytest.mark.slow
def test_accelerate_launch_trains_the_adapter_that_the_notebook_then_reuses(tmp_path, monkeypatch):
    data = tmp_path / "dataset"
    write_jsonl(rows(6), data / "train.jsonl")
    write_jsonl(rows(2), data / "validation.jsonl")
    out = tmp_path / "adapters" / "hag"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "HAGSTUDY_NO_PROGRESS": "1"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1", "--cpu",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "hagstudy.method.training", "--profile", "smoke", "--model", "tiny-random", "--dataset", str(data),
        "--out", str(out), "--max-steps", "2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = training.read_result(out)
    assert result.steps == 2 and result.base_spec == "tiny-random" and result.n_train == 6
    assert result.adapter_digest == adapters.adapter_digest(out)
    assert (out / adapters.FINGERPRINT).is_file()
    assert not list(out.parent.glob(".hag-*")), "temporary training folders left behind"

    # Notebook 03's call (study.train_once -> train_if_changed) with the same inputs reads it, never retrains.
    def no_training(*args, **kwargs):
        raise AssertionError("retrained an adapter that was current")

    monkeypatch.setattr(training, "train", no_training)
    p = load_profile("smoke", model="tiny-random", train={"max_steps": 2})
    from hagstudy.method.dataset import read_jsonl

    again = training.train_if_changed(p.model, read_jsonl(data / "train.jsonl"), read_jsonl(data / "validation.jsonl"),
                                      p.train, out, p.seed)
    assert again.adapter_digest == result.adapter_digest
