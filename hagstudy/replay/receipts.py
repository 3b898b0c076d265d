"""Adapter receipts: what a trained adapter's completions are keyed by, so shipped generations serve it without its weights.

An adapter's completions are keyed by the adapted model's identity (``models.identity``: spec, dtype and a
digest of every weight) and its decode step. bf16 training rounds differently on another CPU, so a clone
there trains other weights, gets other keys, and the shipped generations (``shipped``) would serve none of
the adapters' completions: every table that depends on training would be recomputed there. A *receipt*
(``RECEIPT.json`` in an adapter or snapshot folder) records what the committed run's adapter was: the
identity and step its keys used, the digests of the tokenizer files its prompts were rendered with, and
the sampling fields of its generation config.

``make ship`` writes every adapter's receipts, its ``FINGERPRINT`` and ``train_log.json`` to
``results/adapters.json`` (``export``); ``make all`` restores them where an adapter folder is missing
(``import_into``). Notebook 03 then finds the training done (the fingerprint matches, as for any trained
adapter), and ``study.Run.engine`` serves a receipt-only folder through a ``ReplayEngine``: cache reads
under the recorded identity, no decoding. A request the cache does not hold raises ``ReplayMiss``, which
names the adapter and the fix (train it here: ``python -m hagstudy.replay.receipts forget``, or ``make all
FRESH=1``); it never decodes with other weights. A folder that holds weights is never touched by an import,
and ``Run.engine`` writes its receipt when it builds the adapter's engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

from hagstudy.files import atomic_write, shown
from hagstudy.method.training import (
    ADAPTER_WEIGHTS,
    FINGERPRINT,
    TRAIN_LOG,
    adapter_tokenizer,
    checkpoint_dirs,
    snapshot_dir,
)

log = logging.getLogger(__name__)

RECEIPT = "RECEIPT.json"
FILE_NAME = "adapters.json"  # beside generations.jsonl.gz in the results folder
VERSION = 1
# The files a prompt is rendered with (those present are recorded); an import copies them from the base
# model's folder and requires the recorded digests, so a replayed prompt is the text the adapter saw.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt")
GENERATION_FIELDS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")  # what default_config reads
_FORGET = "python -m hagstudy.replay.receipts forget --profile {profile}"


class ReceiptError(RuntimeError):
    """A receipts file or RECEIPT.json that cannot be used; names the file and the field."""


class ReplayMiss(RuntimeError):
    """A receipt-only adapter was asked for a completion the cache does not hold."""


@dataclass(frozen=True)
class Receipt:
    """The keys an adapter's completions were stored under, and what its prompts were rendered with."""

    identity: str  # models.identity of the adapted model
    step: str  # the decode step its engine used (part of every key)
    tokenizer: dict[str, str]  # tokenizer file -> sha256
    generation: dict[str, Any]  # GENERATION_FIELDS of its generation_config
    version: int = VERSION

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> Receipt:
        fields = ("identity", "step", "tokenizer", "generation", "version")
        missing = [f for f in fields if f not in raw]
        if missing:
            raise ReceiptError(f"{where}: receipt without {', '.join(missing)}")
        if raw["version"] != VERSION:
            raise ReceiptError(f"{where}: receipt version {raw['version']!r}, this code reads {VERSION}")
        if not isinstance(raw["tokenizer"], dict) or not isinstance(raw["generation"], dict):
            raise ReceiptError(f"{where}: receipt fields 'tokenizer' and 'generation' must be objects")
        return cls(str(raw["identity"]), str(raw["step"]), dict(raw["tokenizer"]), dict(raw["generation"]), VERSION)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tokenizer_digests(folder: Path | str) -> dict[str, str]:
    folder = Path(folder)
    return {name: _sha256(folder / name) for name in TOKENIZER_FILES if (folder / name).is_file()}


def of_engine(folder: Path | str, engine: Any) -> Receipt:
    """The receipt of the adapter in ``folder`` as ``engine`` (a ``generation.Engine`` on its weights) keys it."""
    if engine.step is None:
        engine._settle_step()
    gc = getattr(engine.model, "generation_config", None)
    generation = {f: getattr(gc, f, None) for f in GENERATION_FIELDS}
    return Receipt(engine.identity, engine.step, tokenizer_digests(folder), generation)


def write(folder: Path | str, receipt: Receipt) -> Path:
    """``RECEIPT.json`` in ``folder``, atomically (callers write one only where none is: a receipt beside
    weights stays theirs, since training replaces a folder whole)."""
    return atomic_write(Path(folder) / RECEIPT, json.dumps(asdict(receipt), indent=1, sort_keys=True) + "\n")


def read(folder: Path | str) -> Receipt:
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


class ReplayEngine:
    """An adapter known by its receipt: serves its cached completions under the recorded keys, decodes nothing.

    It answers what the notebooks ask of an engine (``render``, ``generate``, ``key``, ``model.generation_config``);
    a request the cache lacks raises ``ReplayMiss`` before anything is returned.
    """

    def __init__(self, folder: Path | str, cache: Any, profile: str = "default") -> None:
        self.folder = Path(folder)
        self.receipt = read(self.folder)
        found = tokenizer_digests(self.folder)
        if found != self.receipt.tokenizer:
            raise ReceiptError(f"{shown(self.folder)}: its tokenizer files differ from the receipt's "
                               f"({sorted(found)} vs {sorted(self.receipt.tokenizer)}): prompts would render differently")
        self.tokenizer = adapter_tokenizer(self.folder)  # as training.load_adapted renders
        self.cache = cache
        self.identity = self.receipt.identity
        self.step = self.receipt.step
        self.profile = profile
        self.model = SimpleNamespace(generation_config=SimpleNamespace(**self.receipt.generation))

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def key(self, request: Any) -> str:
        from hagstudy.engine.generation import request_key

        return request_key(self.identity, request, self.step)

    def generate(self, requests: Sequence[Any], desc: str = "generate") -> list[Any]:
        from hagstudy.engine.generation import from_cache, require_prompts

        require_prompts(requests)
        keys = [self.key(r) for r in requests]
        done, todo, _ = from_cache(self.cache, keys, requests)
        if todo:
            raise ReplayMiss(
                f"{desc}: adapter {shown(self.folder)} has no weights here, only the committed run's receipt, and "
                f"{len(todo)} of these {len(requests)} requests are not in the shipped generations. Train it here: "
                f"`{_FORGET.format(profile=self.profile)}` (removes the receipt-only adapters), then rerun; or "
                "`make all FRESH=1`.")
        return [done[k] for k in keys]


# ---------------------------------------------------------------------------------------------
# The results file: every adapter's fingerprint, training log and receipts
# ---------------------------------------------------------------------------------------------


def _receipt(path: Path, receipt_of: Callable[[Path], Receipt]) -> dict[str, Any]:
    """``path``'s receipt as exported; a missing one is made first (training replaces a folder whole, so a
    receipt beside weights is theirs)."""
    if not (path / RECEIPT).is_file():
        write(path, receipt_of(path))
    return asdict(read(path))


def export(adapters_root: Path | str, out_path: Path | str, receipt_of: Callable[[Path], Receipt]) -> int:
    """Write ``out_path`` (replaced atomically) from every finished adapter under ``adapters_root``; return how many.

    ``receipt_of(folder)`` gives the receipt of a folder that has weights but no ``RECEIPT.json`` yet
    (``study`` builds its engine); folders that hold only a receipt pass theirs on unchanged.
    """
    root = Path(adapters_root)
    adapters: dict[str, Any] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (folder / FINGERPRINT).is_file() or not (folder / TRAIN_LOG).is_file():
            log.warning("%s: no %s or %s (an unfinished training): not exported", shown(folder), FINGERPRINT, TRAIN_LOG)
            continue
        adapters[folder.name] = {
            "fingerprint": (folder / FINGERPRINT).read_text().strip(),
            "train_log": json.loads((folder / TRAIN_LOG).read_text()),
            "receipt": _receipt(folder, receipt_of),
            "snapshots": {str(step): _receipt(path, receipt_of) for step, path in checkpoint_dirs(folder).items()},
        }
    # Not sort_keys: the training log keeps its key order (the column order of train_log.csv); the rest is
    # in a fixed order already (adapters by name, receipts by field), so the same adapters give the same bytes.
    atomic_write(out_path, json.dumps({"version": VERSION, "adapters": adapters}, indent=1) + "\n")
    log.info("%d adapters' receipts written to %s", len(adapters), shown(out_path))
    return len(adapters)


def _entry(path: Path, name: str, entry: Any) -> dict[Path, Receipt]:
    """One adapter's receipts by folder relative to the adapter (``Path()`` is the adapter itself), checked."""
    where = f"{path}: adapter {name!r}"
    for field in ("fingerprint", "train_log", "receipt", "snapshots"):
        if field not in entry:
            raise ReceiptError(f"{where} has no {field!r}")
    receipts = {Path(): Receipt.from_dict(entry["receipt"], where)}
    for step, snap in entry["snapshots"].items():
        if not str(step).isdigit():
            raise ReceiptError(f"{where}: snapshot step {step!r} is not a number")
        receipts[snapshot_dir(Path(), int(step))] = Receipt.from_dict(snap, f"{where} step {step}")
    return receipts


def import_into(path: Path | str, adapters_root: Path | str, tokenizer_source: Path | str) -> list[str]:
    """Restore each adapter of ``path`` under ``adapters_root`` as a receipt-only folder; return the names restored.

    A folder that exists is left alone (trained here, or restored before). Tokenizer files come from
    ``tokenizer_source`` (the base model's folder) and must match the receipt's digests, else the adapter
    is not restored (logged) and trains as usual.
    """
    path, root, source = Path(path), Path(adapters_root), Path(tokenizer_source)
    try:
        raw = json.loads(path.read_text())
    except ValueError as err:
        raise ReceiptError(f"{path}: not JSON ({err}); restore it (`git checkout -- {path}`)") from None
    if not isinstance(raw, dict) or raw.get("version") != VERSION or not isinstance(raw.get("adapters"), dict):
        raise ReceiptError(f"{path}: not a receipts file of version {VERSION} (top level needs 'version' and 'adapters')")
    # Every entry is checked before any folder is written: a damaged file restores nothing.
    checked = {name: _entry(path, name, entry) for name, entry in sorted(raw["adapters"].items())}
    available = tokenizer_digests(source)
    restored = []
    for name, receipts in checked.items():
        entry = raw["adapters"][name]
        folder = root / name
        if folder.exists():
            log.info("adapter %s is here already: its receipt is not imported", shown(folder))
            continue
        wrong = {f for r in receipts.values() for f, d in r.tokenizer.items() if available.get(f) != d}
        if wrong:
            log.warning("adapter %s not restored: tokenizer files %s of %s differ from its receipt (it trains instead)",
                        name, sorted(wrong), shown(source))
            continue
        staging = root / f".{name}.importing"
        shutil.rmtree(staging, ignore_errors=True)
        for sub, receipt in receipts.items():
            (staging / sub).mkdir(parents=True, exist_ok=True)
            for f in receipt.tokenizer:
                shutil.copyfile(source / f, staging / sub / f)
            write(staging / sub, receipt)
        (staging / TRAIN_LOG).write_text(json.dumps(entry["train_log"], indent=2) + "\n")  # as training.train writes it
        (staging / FINGERPRINT).write_text(str(entry["fingerprint"]) + "\n")
        staging.rename(folder)  # whole or absent
        restored.append(name)
    log.info("%d adapters restored from %s as receipts (%d in the file)", len(restored), shown(path), len(raw["adapters"]))
    return restored


def forget(adapters_root: Path | str) -> list[str]:
    """Delete the receipt-only adapters under ``adapters_root`` (so they train here); return their names."""
    root = Path(adapters_root)
    gone = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if replay_only(folder):
            shutil.rmtree(folder)
            gone.append(folder.name)
    log.info("%d receipt-only adapters removed from %s%s", len(gone), shown(root), f": {', '.join(gone)}" if gone else "")
    return gone


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("export", "import", "forget"),
                        help="adapters -> results/adapters.json; that file -> receipt-only adapters; "
                             "remove receipt-only adapters (they train on the next run)")
    parser.add_argument("--profile", default="default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from hagstudy import study
    from hagstudy.config import load_profile
    from hagstudy.engine import models

    profile = load_profile(args.profile)
    adapters = profile.paths.artifact("adapters")
    out = profile.paths.results / FILE_NAME
    try:
        if args.action == "export":
            run = study.Run(profile=profile, notebook="receipts")

            def receipt_of(folder: Path) -> Receipt:
                receipt = of_engine(folder, run.engine(adapter=folder))
                run.drop_engine(folder)  # one adapted model in memory at a time
                return receipt

            export(adapters, out, receipt_of)
        elif args.action == "import":
            if out.is_file():
                import_into(out, adapters, models.resolve(profile.model))
        else:
            forget(adapters)
    except ReceiptError as err:
        raise SystemExit(f"error: {err}") from err


if __name__ == "__main__":
    main()
