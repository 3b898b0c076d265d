"""Shipped receipts: every trained adapter's receipt, fingerprint and training log in ``results/adapters.json``.

An adapter's completions are keyed by the adapted model's identity (``models.identity``: spec, dtype and a
digest of every weight) and its decode step. bf16 training rounds differently on another CPU, so a clone
there trains other weights, gets other keys, and the shipped generations (``shipped``) would serve none of
the adapters' completions: every table that depends on training would be recomputed there. A *receipt*
(``adapter.Receipt``, ``RECEIPT.json`` in an adapter or snapshot folder) records what the committed run's
adapter was: the identity and step its keys used, the digests of the tokenizer files its prompts were
rendered with, and the sampling fields of its generation config.

``make ship`` writes every adapter's receipts (``of_engine``: its engine built by ``factory.build`` exactly
as the notebooks build it), its ``FINGERPRINT`` and ``train_log.json`` to ``results/adapters.json``
(``export``); ``make all`` restores them where an adapter folder is missing (``import_into``). Notebook 03
then finds the training done (the fingerprint matches, as for any trained adapter), and ``factory.build``
serves a receipt-only folder in the engine's cache-only mode: cache reads under the recorded identity, no
decoding. A request the cache does not hold raises ``ReplayMiss``, which names the adapter and the fix
(train it here: ``python -m hagstudy.replay.receipts forget``, or ``make all FRESH=1``); it never decodes
with other weights. A folder that holds weights is never touched by an import.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from hagstudy.engine.adapter import (
    FINGERPRINT,
    RECEIPT,
    RECEIPT_VERSION,
    TRAIN_LOG,
    Receipt,
    ReceiptError,
    checkpoint_dirs,
    read_receipt,
    replay_only,
    snapshot_dir,
    tokenizer_digests,
    write_receipt,
)
from hagstudy.files import atomic_write, shown

log = logging.getLogger(__name__)

FILE_NAME = "adapters.json"  # beside generations.jsonl.xz in the results folder
VERSION = RECEIPT_VERSION  # the file's version is its receipts'


def of_engine(folder: Path | str, engine: Any) -> Receipt:
    """The receipt of the adapter in ``folder`` as ``engine`` (the in-house engine on its weights) keys it."""
    return Receipt(engine.identity, engine.step, tokenizer_digests(folder), engine.generation_defaults().to_dict())


# ---------------------------------------------------------------------------------------------
# The results file: every adapter's fingerprint, training log and receipts
# ---------------------------------------------------------------------------------------------


def _receipt(path: Path, receipt_of: Callable[[Path], Receipt]) -> dict[str, Any]:
    """``path``'s receipt as exported; a missing one is made first (training replaces a folder whole, so a
    receipt beside weights is theirs)."""
    if not (path / RECEIPT).is_file():
        write_receipt(path, receipt_of(path))
    return asdict(read_receipt(path))


def export(adapters_root: Path | str, out_path: Path | str, receipt_of: Callable[[Path], Receipt]) -> int:
    """Write ``out_path`` (replaced atomically) from every finished adapter under ``adapters_root``; return how many.

    ``receipt_of(folder)`` gives the receipt of a folder that has weights but no ``RECEIPT.json`` yet
    (``main`` builds its engine); folders that hold only a receipt pass theirs on unchanged.
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
            write_receipt(staging / sub, receipt)
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
    from hagstudy.config import load_profile
    from hagstudy.engine import factory, models

    profile = load_profile(args.profile)
    adapters = profile.paths.artifact("adapters")
    out = profile.paths.results / FILE_NAME
    try:
        if args.action == "export":
            # One adapted model in memory at a time; keys need no cache, so none is opened.
            export(adapters, out, lambda folder: of_engine(folder, factory.build(profile, folder)))
        elif args.action == "import":
            if out.is_file():
                import_into(out, adapters, models.resolve(profile.model))
        else:
            forget(adapters)
    except ReceiptError as err:
        raise SystemExit(f"error: {err}") from err


if __name__ == "__main__":
    main()
