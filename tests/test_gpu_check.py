"""scripts/benchmarks/gpu_check.py: its CPU dry run writes every field a GPU run will, and its budgets cut parts.

The GPU numbers themselves come only from a lent GPU (docs/scaling.md, "GPU check"); these tests run
the same code paths at the tiny-random shape on the CPU.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_check = _load()


def test_shapes_have_the_published_parameter_counts() -> None:
    # Llama-3.2-1B: 1.236B (tied embeddings); Llama-2-7B: 6.738B.
    assert abs(gpu_check.shape_params("1b") / 1.2358e9 - 1) < 0.002
    assert abs(gpu_check.shape_params("7b") / 6.7384e9 - 1) < 0.002


def test_slug_names_the_results_file() -> None:
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"
    assert gpu_check.slug("  ") == "unknown"


def test_a_part_past_its_budget_is_killed_and_reported(tmp_path: Path) -> None:
    res = gpu_check.run_child([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], 2, None)
    assert res["status"] == "timeout" and res["wall_s"] < 10 and "started" in res["stdout_tail"]
    res = gpu_check.run_child([sys.executable, "-c", "raise SystemExit('boom')"], 20, None)
    assert res["status"] == "failed" and res["rc"] == 1 and "boom" in res["stderr_tail"]


def test_parts_left_without_time_are_skipped_with_the_reason(tmp_path: Path) -> None:
    gpu_check.main(["--dry-run", "--out", str(tmp_path), "--budget", "20", "--parts", "env,train_1b"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    for part in ("env", "train_1b"):
        assert report["parts"][part]["status"] == "skipped"
        assert "--budget 20" in report["parts"][part]["reason"]
    with pytest.raises(SystemExit, match="unknown part 'bogus'"):
        gpu_check.main(["--dry-run", "--out", str(tmp_path), "--parts", "bogus"])


@pytest.mark.parametrize("mode", ["peft", "plain"])
def test_fallback_training_modes_time_steps_and_say_so(tmp_path: Path, mode: str) -> None:
    if gpu_check.train_modes()[mode]:
        pytest.skip(gpu_check.train_modes()[mode])
    out = tmp_path / "part.json"
    gpu_check.main(["--part", "train_1b", "--part-result", str(out), "--device", "cpu", "--tiny", "--train-mode", mode,
                    "--train-batch", "2", "--train-seq", "16", "--train-steps", "2", "--train-warmup", "1"])
    res = json.loads(out.read_text())
    assert res["status"] == "ok" and res["mode"] == mode and res["shape"] == "tiny"
    assert res["timed_steps"] == 2 and res["s_per_step"] > 0 and res["tokens_per_step"] == 32
    assert res["tokens_per_s"] == pytest.approx(32 / res["s_per_step"], rel=0.01)
    assert "not the study's step" in res["note"]
    # LoRA trains a small adapter; the LoRA-free stand-in trains the attention projections themselves
    assert 0 < res["trainable_parameters"] < res["parameters"]
    assert (res["trainable_parameters"] < 20_000) == (mode == "peft")


@pytest.mark.slow
def test_dry_run_writes_every_field(tmp_path: Path) -> None:
    """The whole CPU dry run, as CI can run it: a prepared bundle, then env, bench and training in subprocesses."""
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    prep = subprocess.run([sys.executable, str(SCRIPT), "--prepare", "--prepare-prompts", "8", "--bundle", str(bundle)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-2000:]
    assert len(json.loads((bundle / "prompts.json").read_text())) == 8 and (bundle / "tokenizer" / "tokenizer.json").is_file()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--bundle", str(bundle), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "tiny" and report["device_arg"] == "cpu" and report["gpu"] is None
    assert report["versions"]["torch"] and report["versions"]["transformers"]
    assert report["wall_s"] < report["budget_s"]
    parts = report["parts"]
    assert list(parts) == ["env", "bench", "train_1b"], parts
    assert all(p["status"] == "ok" for p in parts.values()), {k: p.get("stderr_tail", p) for k, p in parts.items()}
    assert parts["env"]["matmul_bf16"]["tflops"] > 0
    bench = parts["bench"]
    assert "--prompts-file" in bench["command"] and (out / bench["file"]).is_file()
    summary = bench["summary"]
    assert summary["device"] == "cpu" and summary["model"].startswith("tiny-random")
    assert {"c_engine_eager", "c_engine_fused", "b_generate_per_config"} <= set(summary["useful_tok_s_median"])
    assert summary["speedup_vs_per_config_generate"] > 0
    train = parts["train_1b"]
    expected_mode = next(m for m, why in gpu_check.train_modes().items() if why is None)
    assert train["mode"] == expected_mode and train["timed_steps"] >= 1
    assert train["s_per_step"] > 0 and train["tokens_per_s"] > 0 and train["peak_memory_gib"] is None
    assert all(loss == loss and loss > 0 for loss in train["losses"])  # finite, positive
