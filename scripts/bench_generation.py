"""Generation benchmark: the engine against transformers' ``model.generate`` on the same requests.

Usage: ``.venv/bin/python scripts/bench_generation.py [--repeats 2] [--prompts 16] [--quick]``
(``make bench``). Writes results/benchmarks/generation.json; the last printed line is
``engine_speedup_vs_per_config_generate: X.XX``.

Workload: ``--prompts`` chat prompts from the study's tasks (search split, spread over all six) times
8 distinct decoding configs (greedy to hot, with and without top-k/top-p/repetition penalty),
``max_new_tokens`` 64, cache off, one dtype for everything (bf16 by default: the fast path on AMX).
Three ways to produce the same completions, timed in one process, interleaved per repeat:

  (a) ``model.generate`` once per request (batch 1), on a subset of requests (it is slow), whose
      rate stands for all of them;
  (b) ``model.generate`` once per distinct config, all of that config's prompts batched (left padding);
  (c) ``Engine.generate`` on all requests at once (per-row configs, continuous batching).

Rates are *useful* tokens per second: generated tokens before the end-of-turn token. Sampled
texts differ between (a)/(b) and (c) (different random streams), so their token counts differ a
little; tokens/s is the comparable figure. Also prints an estimate of the CPU compute bound:
measured matmul FLOP/s divided by 2 x parameters (attention and everything else ignored).
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

# Spinning OpenMP workers starve each other when other processes share the 2 cores (every op then
# waits a scheduler tick for a descheduled thread: 10-30x slower here). Passive waiting avoids that;
# it must be set before torch loads OpenMP. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hagstudy import models  # noqa: E402
from hagstudy.decoding import DecodingConfig  # noqa: E402
from hagstudy.generation import Engine, Request  # noqa: E402

MAX_NEW = 64
CONFIGS = [  # 8 distinct configs spanning the search space
    DecodingConfig(0.0, 1.0, 0, 1.0),  # greedy
    DecodingConfig(1.0, 1.0, 50, 1.0),  # transformers' defaults
    DecodingConfig(0.5, 0.9, 50, 1.0),
    DecodingConfig(1.0, 0.9, 0, 1.0),
    DecodingConfig(0.7, 1.0, 10, 1.1),
    DecodingConfig(1.5, 0.5, 0, 1.0),
    DecodingConfig(1.0, 0.9, 10, 1.3),
    DecodingConfig(0.5, 1.0, 0, 1.1),
]


def build_requests(engine: Engine, n_prompts: int) -> list[Request]:
    """``n_prompts`` task prompts (round-robin over the six tasks) x the 8 configs, seed 0."""
    from hagstudy import tasks

    per_task = -(-n_prompts // len(tasks.names()))
    pools = [(t, t.items("search", per_task)) for t in tasks.all_tasks()]
    prompts: list[str] = []
    for i in range(per_task):
        for task, items in pools:
            if i < len(items) and len(prompts) < n_prompts:
                prompts.append(engine.render(task.messages(items[i])))
    return [Request(p, c.with_(max_new_tokens=MAX_NEW), seed=0) for c in CONFIGS for p in prompts]


def useful(ids: list[int], eos: set[int]) -> int:
    """Generated tokens before the first end-of-turn (padding after it excluded)."""
    for i, t in enumerate(ids):
        if t in eos:
            return i
    return len(ids)


def gen_kwargs(cfg: DecodingConfig, pad_id: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "pad_token_id": pad_id, "repetition_penalty": cfg.repetition_penalty}
    if cfg.greedy:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kw.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    return kw


@torch.inference_mode()
def run_generate(model: Any, tok: Any, reqs: list[Request], eos: set[int]) -> tuple[int, float]:
    """One ``model.generate`` call for ``reqs`` (all with the same config), left-padded. -> (useful tokens, seconds)."""
    cfg = reqs[0].config
    enc = tok([r.prompt for r in reqs], add_special_tokens=False, padding=True, return_tensors="pt")
    torch.manual_seed(reqs[0].seed)
    start = time.perf_counter()
    out = model.generate(**enc, **gen_kwargs(cfg, tok.pad_token_id))
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    return sum(useful(row, eos) for row in new), seconds


def time_per_request(model: Any, tok: Any, reqs: list[Request], eos: set[int]) -> dict[str, float]:
    tokens, seconds = 0, 0.0
    for r in reqs:
        n, s = run_generate(model, tok, [r], eos)
        tokens, seconds = tokens + n, seconds + s
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds, "requests": len(reqs)}


def time_per_config(model: Any, tok: Any, reqs: list[Request], eos: set[int]) -> dict[str, Any]:
    groups: dict[str, list[Request]] = {}
    for r in reqs:
        groups.setdefault(r.config.key(), []).append(r)
    tokens, seconds, per_config = 0, 0.0, []
    for group in groups.values():
        n, s = run_generate(model, tok, group, eos)
        tokens, seconds = tokens + n, seconds + s
        per_config.append(n / len(group))
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "requests": len(reqs),
        "calls": len(groups),
        "mean_tokens_per_config": per_config,
    }


def time_engine(engine: Engine, reqs: list[Request]) -> dict[str, Any]:
    before = dict(engine.stats)
    start = time.perf_counter()
    outs = engine.generate(reqs, desc="bench")
    seconds = time.perf_counter() - start
    useful_tokens = [c.n_tokens - int(c.finished) for c in outs]
    tokens = sum(useful_tokens)
    per_config: dict[str, list[int]] = {}
    for r, n in zip(reqs, useful_tokens):
        per_config.setdefault(r.config.key(), []).append(n)
    delta = {k: engine.stats[k] - before[k] for k in engine.stats}
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "requests": len(reqs),
        "mean_tokens_per_config": [sum(v) / len(v) for v in per_config.values()],
        "engine_stats": {k: round(v, 3) if isinstance(v, float) else v for k, v in delta.items()},
    }


def matmul_flops(dtype: torch.dtype, m: int, k: int, n: int, reps: int = 10) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16, help="distinct prompts (x 8 configs = requests)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of (a), (b), (c)")
    ap.add_argument("--per-request", type=int, default=8, help="requests timed for (a), one per config")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(models.DTYPES))
    ap.add_argument("--batch-size", type=int, default=None, help="engine rows per batch (default: engine's choice)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "generation.json")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script works (numbers meaningless)")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.repeats, args.per_request = 2, 1, 2

    load_start = os.getloadavg()[0]
    model, tok = models.load(dtype=args.dtype)
    n_params = sum(p.numel() for p in model.parameters())
    engine = Engine(model, tok, cache=None, progress=False, max_batch_size=args.batch_size)
    eos = set(engine.eos_ids.tolist())
    reqs = build_requests(engine, args.prompts)
    subset = [reqs[min(len(reqs) - 1, (i * len(reqs)) // args.per_request + (i % args.prompts))] for i in range(args.per_request)]
    print(
        f"model {engine.identity}  params {n_params / 1e6:.1f}M  dtype {args.dtype}  torch threads {torch.get_num_threads()}  "
        f"cpus {os.cpu_count()}  OMP_WAIT_POLICY {os.environ['OMP_WAIT_POLICY']}  load avg {os.getloadavg()[0]:.2f}"
    )
    print(
        f"workload: {len(reqs)} requests = {args.prompts} prompts x {len(CONFIGS)} configs, max_new_tokens {MAX_NEW}, "
        f"engine batch {engine.max_batch_size}; (a) times {len(subset)} requests (one per config) and extrapolates by rate"
    )

    # Warm-up: kernel creation and first-call costs hit whichever method runs first otherwise.
    time_engine(engine, reqs[: min(8, len(reqs))])
    run_generate(model, tok, reqs[:2], eos)

    runs: dict[str, list[dict[str, float]]] = {"a_generate_per_request": [], "b_generate_per_config": [], "c_engine": []}
    for rep in range(args.repeats):
        runs["a_generate_per_request"].append(time_per_request(model, tok, subset, eos))
        runs["b_generate_per_config"].append(time_per_config(model, tok, reqs, eos))
        runs["c_engine"].append(time_engine(engine, reqs))
        line = "  ".join(f"{k[0]}: {v[-1]['tok_s']:.1f} tok/s ({v[-1]['seconds']:.1f} s)" for k, v in runs.items())
        print(f"repeat {rep + 1}/{args.repeats}  {line}", flush=True)

    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in runs.items()}
    ratios_b = [c["tok_s"] / b["tok_s"] for b, c in zip(runs["b_generate_per_config"], runs["c_engine"])]
    ratios_a = [c["tok_s"] / a["tok_s"] for a, c in zip(runs["a_generate_per_request"], runs["c_engine"])]
    speed_b, speed_a = statistics.median(ratios_b), statistics.median(ratios_a)

    bounds = {}
    for name, dt in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        decode_shape = matmul_flops(dt, engine.max_batch_size, model.config.hidden_size, model.config.intermediate_size)
        large = matmul_flops(dt, 2048, model.config.hidden_size, model.config.intermediate_size, reps=5)
        bounds[name] = {
            "matmul_gflops_decode_shape": decode_shape / 1e9,
            "matmul_gflops_large": large / 1e9,
            "token_bound_decode_shape": decode_shape / (2 * n_params),
            "token_bound_large": large / (2 * n_params),
        }

    print()
    print(f"useful tokens/s at {args.dtype} (median of {args.repeats} interleaved repeats):")
    a_total = runs["a_generate_per_request"][0]["seconds"] / len(subset) * len(reqs)
    print(f"  (a) model.generate per request : {med['a_generate_per_request']:8.1f}  (timed {len(subset)} of {len(reqs)} requests; all would take ~{a_total:.0f} s)")
    print(f"  (b) model.generate per config  : {med['b_generate_per_config']:8.1f}  ({len(CONFIGS)} batched calls)")
    print(f"  (c) engine                     : {med['c_engine']:8.1f}  (one call, batch {engine.max_batch_size})")
    for name, b in bounds.items():
        print(
            f"  compute bound {name:8s}: matmul {b['matmul_gflops_large']:.0f} GFLOP/s (large) / {b['matmul_gflops_decode_shape']:.0f} "
            f"(decode-shaped) -> {b['token_bound_large']:.0f} / {b['token_bound_decode_shape']:.0f} tok/s at 2 x {n_params / 1e6:.0f}M FLOP/token"
        )
    lengths_b = runs["b_generate_per_config"][-1]["mean_tokens_per_config"]
    lengths_c = runs["c_engine"][-1]["mean_tokens_per_config"]
    print("  mean useful tokens per request, by config (b vs c; same distribution, different random streams):")
    print("    " + "  ".join(f"{b:.0f}/{c:.0f}" for b, c in zip(lengths_b, lengths_c)))
    st = runs["c_engine"][-1]["engine_stats"]
    print(
        f"  engine time split: prefill {st['prefill_seconds']:.1f} s, decode forwards {st['forward_seconds']:.1f} s "
        f"({st['steps']} steps), sampling {st['sample_seconds']:.1f} s, cache splicing {st['splice_seconds']:.1f} s; "
        f"mean batch {st['row_steps'] / max(st['steps'], 1):.0f}, KV efficiency {st['kv_live_cells'] / max(st['kv_cells'], 1):.2f}"
    )
    print(f"engine_speedup_vs_per_request_generate: {speed_a:.2f}")

    result = {
        "model": engine.identity,
        "parameters": n_params,
        "dtype": args.dtype,
        "requests": len(reqs),
        "prompts": args.prompts,
        "configs": [json.loads(c.key()) | {"max_new_tokens": MAX_NEW} for c in CONFIGS],
        "max_new_tokens": MAX_NEW,
        "engine_batch_size": engine.max_batch_size,
        "repeats": args.repeats,
        "per_request_subset": len(subset),
        "useful_tok_s_median": med,
        "runs": runs,
        "speedup_vs_per_config_generate": speed_b,
        "speedup_vs_per_request_generate": speed_a,
        "compute_bound": bounds,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "load_avg_1m_at_start": load_start,
            "load_avg_1m_at_end": os.getloadavg()[0],
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "quick": bool(args.quick),
    }
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    print(f"engine_speedup_vs_per_config_generate: {speed_b:.2f}")


if __name__ == "__main__":
    main()
