"""scripts/benchmarks/bench_generation.py: transformers' continuous batching arm (e) and the JSON it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hagstudy.decoding import DecodingConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_generation", ROOT / "scripts" / "benchmarks" / "bench_generation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cb_kwargs_map_off_and_greedy(bench) -> None:
    # top_k 0 means "off" here but k=1 (greedy) to transformers' clamped CB warper: it must become the vocabulary.
    assert bench.cb_row_kwargs(DecodingConfig(1.0, 0.9, 0, 1.0), vocab=500) == {"temperature": 1.0, "top_k": 500, "top_p": 0.9}
    assert bench.cb_row_kwargs(DecodingConfig(0.0, 1.0, 0, 1.0), vocab=500) == {"temperature": 1.0, "top_k": 1, "top_p": 1.0}
    assert bench.cb_row_kwargs(DecodingConfig(0.7, 1.0, 10, 1.1), vocab=500) == {"temperature": 0.7, "top_k": 10, "top_p": 1.0}
    same = [bench.cb_same_distribution(c) for c in bench.CONFIGS]
    assert same.count(False) == sum(c.repetition_penalty != 1.0 for c in bench.CONFIGS) == 3


def test_cb_failure_is_recorded_not_raised(bench, monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no paged attention here")

    monkeypatch.setattr(bench, "time_continuous_batching", broken)
    into: list = []
    reason = bench.cb_attempt(None, None, [], set(), {}, into)
    assert reason == "RuntimeError: no paged attention here" and into == []
    assert "failed: RuntimeError" in capsys.readouterr().out


def test_quick_run_writes_the_cb_arm(bench, monkeypatch, tmp_path, capsys) -> None:
    out = tmp_path / "gen.json"
    argv = ["bench", "--quick", "--model", "tiny-random", "--steps", "eager", "--max-new-tokens", "8", "--threads", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    cb = result["transformers_continuous_batching"]
    assert cb["error"] is None, cb["error"]
    runs = result["runs"]["e_transformers_continuous_batching"]
    assert len(runs) == 1 and runs[0]["requests"] == result["requests"] == 16
    # tiny-random never ends a turn: every row's useful tokens are its whole budget, as in the engine's arm
    assert runs[0]["tokens"] == result["runs"]["c_engine_eager"][0]["tokens"] == 16 * 8
    assert result["engine_speedup_vs_continuous_batching"] > 0
    assert cb["rows_not_engine_distribution"] == 3 * 2 and "repetition penalty" in cb["limits"]
    assert "engine_speedup_vs_continuous_batching:" in printed and "(e) limits:" in printed
