"""One place that builds every engine from a profile and an adapter.

* a folder that holds only a receipt (``adapter.replay_only``): the engine's cache-only mode under the
  receipt's identity and step (``replay``); it decodes nothing, and a miss raises ``ReplayMiss`` with the fix;
* ``generation.backend: vllm``: a ``VLLMBackend`` on a worker per base model (``workers``, kept by the caller);
* otherwise the in-house ``Engine`` on the base model, or the base plus the adapter (``adapter.load_adapted``),
  with the profile's decode step, resolved here once: "fused" where ``decode_step`` supports the model,
  else "eager" (logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hagstudy.config import Profile
from hagstudy.engine import adapter as adapters
from hagstudy.engine import decode_step, models
from hagstudy.engine.engine import Engine
from hagstudy.engine.protocol import Engine as EngineProtocol
from hagstudy.engine.protocol import GenerationDefaults
from hagstudy.files import shown

log = logging.getLogger(__name__)

FORGET = "python -m hagstudy.replay.receipts forget --profile {profile}"  # turns receipt-only adapters back into trainable ones


def build(
    profile: Profile,
    adapter: str | Path | None = None,
    *,
    cache: Any = None,
    model_spec: str | None = None,
    workers: dict[str, Any] | None = None,
    worker_log: Path | None = None,
    trace: Path | None = None,
) -> EngineProtocol:
    """The engine for the profile's model (or ``model_spec``), optionally with a LoRA adapter folder.

    ``workers``: the vLLM workers already started, by model spec (a new one is added); ``worker_log``: where
    a new worker logs; ``trace``: the in-house engine's prefill trace (``engine.prefill_trace``). No progress bars: they bloat rendered notebooks; each call logs a summary line.
    """
    spec = model_spec or profile.model
    g = profile.generation
    if adapter is not None and adapters.replay_only(adapter):
        if g.backend != "engine":
            raise ValueError(f"adapter {shown(adapter)} is a receipt without weights: only the in-house engine "
                             f"replays it; train it with `{FORGET.format(profile=profile.name)}`")
        log.info("adapter %s: the committed run's receipt, no weights here: its completions are replayed from "
                 "the cache", shown(adapter))
        return replay(adapter, cache, profile.name)
    if g.backend == "vllm":
        from hagstudy.engine import vllm_backend

        workers = {} if workers is None else workers
        if spec not in workers:
            workers[spec] = vllm_backend.start_worker(
                spec, profile.dtype, g, lora_rank_needed=profile.train.lora_r, seed=profile.seed, log_path=worker_log,
            )
        return vllm_backend.VLLMBackend(workers[spec], spec, cache, adapter=adapter, allow_unseeded=g.allow_unseeded)
    if adapter is None:
        model, tokenizer = models.load(spec, dtype=profile.dtype)
    else:
        model, tokenizer = adapters.load_adapted(spec, adapter, dtype=profile.dtype)
    return Engine(model, tokenizer, cache, progress=False, step=step_for(model, g.step, spec), trace=trace)


def step_for(model: Any, step: str, spec: str = "model") -> str:
    """The decode step the engine runs ``model`` with: ``step``, or "eager" where "fused" cannot run it."""
    if step == "fused" and (why := decode_step.unsupported(model)):
        log.warning("decode step 'eager' for %s, not the profile's 'fused': %s", spec, why)
        return "eager"
    return step


def replay(folder: str | Path, cache: Any, profile: str = "default") -> Engine:
    """A receipt-only adapter folder as a cache-only engine: its completions under the recorded identity and
    step, prompts rendered with its own tokenizer (whose files must match the receipt's digests)."""
    folder = Path(folder)
    receipt = adapters.read_receipt(folder)
    found = adapters.tokenizer_digests(folder)
    if found != receipt.tokenizer:
        raise adapters.ReceiptError(f"{shown(folder)}: its tokenizer files differ from the receipt's "
                                    f"({sorted(found)} vs {sorted(receipt.tokenizer)}): prompts would render differently")
    miss = (
        f"adapter {shown(folder)} has no weights here, only the committed run's receipt",
        f"Train it here: `{FORGET.format(profile=profile)}` (removes the receipt-only adapters), then rerun; or "
        "`make all FRESH=1`.",
    )
    return Engine.cache_only(adapters.adapter_tokenizer(folder), cache, receipt.identity, receipt.step,
                             GenerationDefaults.from_dict(receipt.generation), miss)
