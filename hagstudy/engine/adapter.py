"""An adapter folder's format, in one place: training writes it, inference and the replay read it.

A trained adapter folder (``training.train`` writes it in one ``os.replace``) holds the LoRA weights
(``ADAPTER_WEIGHTS``) and ``adapter_config.json``, the tokenizer it was trained with, ``TRAIN_LOG`` (the
training's result) and ``FINGERPRINT`` (what it was trained from), and snapshots under ``CHECKPOINTS``
(``step-0012``: the same files, for a learning curve). ``adapter_digest`` names the weights in cache keys;
``load_adapted`` loads base plus adapter, unmerged, for inference.

A *receipt* (``RECEIPT`` in a folder without weights) records what the committed run's adapter was: the
model identity and decode step its completions were keyed by, the digests of the tokenizer files its
prompts were rendered with, and the sampling fields of its generation config. ``factory.replay`` serves
such a folder from the completion cache alone; ``hagstudy.replay.receipts`` ships receipts with the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from hagstudy import data
from hagstudy.engine import models
from hagstudy.files import atomic_write

log = logging.getLogger(__name__)

TRAIN_LOG = "train_log.json"
FINGERPRINT = "FINGERPRINT"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
RECEIPT = "RECEIPT.json"
RECEIPT_VERSION = 1
# The files a prompt is rendered with (those present are recorded); an import copies them from the base
# model's folder and requires the recorded digests, so a replayed prompt is the text the adapter saw.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt")


CHECKPOINTS = "checkpoints"


def checkpoint_dirs(adapter_dir: str | Path) -> dict[int, Path]:
    """The adapter snapshots saved during training, by step (``step-0012`` -> 12)."""
    root = Path(adapter_dir) / CHECKPOINTS
    if not root.is_dir():
        return {}
    return {int(p.name.split("-")[1]): p for p in sorted(root.glob("step-*")) if p.is_dir()}


def snapshot_dir(adapter_dir: str | Path, step: int) -> Path:
    """Where the snapshot of ``step`` lives in an adapter folder (``checkpoint_dirs`` reads these names)."""
    return Path(adapter_dir) / CHECKPOINTS / f"step-{int(step):04d}"


def save_adapter(model: Any, tokenizer: Any, directory: str | Path) -> str:
    """Write the LoRA weights (not the base) and the tokenizer side by side; return the adapter digest."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    canonical_adapter_config(directory)
    return adapter_digest(directory)


def canonical_adapter_config(directory: str | Path) -> None:
    """Sort ``target_modules`` in adapter_config.json: PEFT writes a set, whose order changes with each
    process's hash seed, so the same weights would get another digest (and cache keys) in every run."""
    path = Path(directory) / "adapter_config.json"
    raw = json.loads(path.read_text())
    if isinstance(raw.get("target_modules"), list):
        raw["target_modules"] = sorted(raw["target_modules"])
        path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")


# adapter_config.json fields that say where the base model was on the training machine: a location, not
# content (the base is named in the model's spec and digest), so the digest leaves them out. Hashing them
# gave the same weights another digest, hence other cache keys, in every checkout folder.
LOCATION_FIELDS = ("base_model_name_or_path",)


def adapter_digest(adapter_dir: str | Path) -> str:
    """sha256 of the adapter weights and config (without ``LOCATION_FIELDS``): names the adapter in cache keys,
    so the same training gives the same keys in any checkout (shipped generations then serve it)."""
    h = hashlib.sha256()
    for name in (ADAPTER_WEIGHTS, "adapter_config.json"):
        path = Path(adapter_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: not a saved PEFT adapter")
        data = path.read_bytes()
        if name == "adapter_config.json":
            config = {k: v for k, v in json.loads(data).items() if k not in LOCATION_FIELDS}
            data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        h.update(name.encode())
        h.update(data)
    return h.hexdigest()[:12]


def load_adapted(base_spec: str, adapter_dir: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Base model plus the saved LoRA adapter, unmerged, in eval mode, and the saved tokenizer.

    ``model.hagstudy_spec`` becomes ``"<base>+lora:<digest>"``, so ``models.identity`` (and every cache key)
    differs from the base model's. The adapter is cast to ``dtype`` with the base (PEFT would otherwise
    keep bf16 adapters in fp32), so a bfloat16 run is bfloat16 throughout.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    digest = adapter_digest(adapter_dir)
    log_path = adapter_dir / TRAIN_LOG
    if log_path.is_file():
        trained_on = json.loads(log_path.read_text()).get("base_spec")
        if trained_on and trained_on != base_spec:
            raise ValueError(f"adapter {adapter_dir} was trained on {trained_on!r}, not {base_spec!r}")
    base, _ = models.load(base_spec, dtype=dtype)
    models.forget_digest(base)  # PeftModel forwards attribute reads to the base: no stale base digest
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False, autocast_adapter_dtype=False)
    model.to(models.DTYPES[dtype])
    model.eval()
    model.hagstudy_spec = f"{base_spec}+lora:{digest}"
    return model, adapter_tokenizer(adapter_dir)


def adapter_tokenizer(adapter_dir: str | Path) -> Any:
    """The tokenizer saved with an adapter, its chat template kept: what its prompts are rendered with."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    models.prepare_tokenizer(tokenizer, keep_template=True)
    return tokenizer


class ReceiptError(RuntimeError):
    """A receipts file or RECEIPT.json that cannot be used; names the file and the field."""


@dataclass(frozen=True)
class Receipt:
    """The keys an adapter's completions were stored under, and what its prompts were rendered with."""

    identity: str  # models.identity of the adapted model
    step: str  # the decode step its engine used (part of every key)
    tokenizer: dict[str, str]  # tokenizer file -> sha256
    generation: dict[str, Any]  # its GenerationDefaults (protocol.GENERATION_FIELDS)
    version: int = RECEIPT_VERSION

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> Receipt:
        fields = ("identity", "step", "tokenizer", "generation", "version")
        missing = [f for f in fields if f not in raw]
        if missing:
            raise ReceiptError(f"{where}: receipt without {', '.join(missing)}")
        if raw["version"] != RECEIPT_VERSION:
            raise ReceiptError(f"{where}: receipt version {raw['version']!r}, this code reads {RECEIPT_VERSION}")
        if not isinstance(raw["tokenizer"], dict) or not isinstance(raw["generation"], dict):
            raise ReceiptError(f"{where}: receipt fields 'tokenizer' and 'generation' must be objects")
        return cls(str(raw["identity"]), str(raw["step"]), dict(raw["tokenizer"]), dict(raw["generation"]), RECEIPT_VERSION)


def tokenizer_digests(folder: Path | str) -> dict[str, str]:
    folder = Path(folder)
    return {name: data.sha256(folder / name) for name in TOKENIZER_FILES if (folder / name).is_file()}


def write_receipt(folder: Path | str, receipt: Receipt) -> Path:
    """``RECEIPT.json`` in ``folder``, atomically (callers write one only where none is: a receipt beside
    weights stays theirs, since training replaces a folder whole)."""
    return atomic_write(Path(folder) / RECEIPT, json.dumps(asdict(receipt), indent=1, sort_keys=True) + "\n")


def read_receipt(folder: Path | str) -> Receipt:
    path = Path(folder) / RECEIPT
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReceiptError(f"{path} is missing: not a receipt folder") from None
    except ValueError as err:
        raise ReceiptError(f"{path}: not JSON ({err})") from None
    return Receipt.from_dict(raw, str(path))


def replay_only(folder: Path | str) -> bool:
    """A folder with a receipt and no weights: its completions can only be replayed from the cache."""
    folder = Path(folder)
    return (folder / RECEIPT).is_file() and not (folder / ADAPTER_WEIGHTS).is_file()
