"""Fine-tuning for HAG's stage 1: TRL SFT with a PEFT LoRA adapter, on CPU, seeded, saved atomically.

The instruction set (``hagstudy.method.dataset``) holds chat rows ``{"messages": [system, user, assistant], ...}``
whose assistant turn is a decoding config's canonical JSON. TRL's ``assistant_only_loss`` uses the
``{% generation %}`` markers of ``models.CHATML_TEMPLATE`` to learn only that JSON and its ``<|im_end|>``.
That last token matters: the embedded tokenizer pads with ``<|im_end|>`` (pad == eos), and a collator
that masked pad ids would also mask every end of turn, giving a model that never stops. TRL 1.16 builds
labels from the assistant mask before padding and pads labels with -100, so the end of turn stays in
the loss; ``tests/test_training.py`` checks it on real tokens.

``train`` writes ``output_dir`` with the adapter, the tokenizer and ``train_log.json`` in one
``os.replace``, in the folder format of ``hagstudy.engine.adapter`` (whose ``load_adapted`` reloads it,
unmerged, with an identity that names the adapter so the completion cache never confuses tuned and
untuned generations).

The same training runs three ways, all through ``train_if_changed`` (same fingerprint, same folder):
in-process from notebook 03 (``study.train_once``), as ``python -m hagstudy.method.training --profile P``,
and on N GPUs as ``accelerate launch --config_file configs/accelerate/<ddp|fsdp>.yaml -m hagstudy.method.training
--profile P`` (docs/scaling.md). Under a launcher every rank trains; rank 0 alone writes the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from hagstudy import stages
from hagstudy.config import TrainSettings
from hagstudy.engine import models
from hagstudy.engine.adapter import (
    FINGERPRINT,
    TRAIN_LOG,
    adapter_digest,
    canonical_adapter_config,
    save_adapter,
    snapshot_dir,
)
from hagstudy.engine.adapter import checkpoint_dirs as checkpoint_dirs  # gate reads snapshots through training
from hagstudy.files import shown

log = logging.getLogger(__name__)

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
# Part of every training fingerprint: bump it whenever the same rows, settings and seed could train a
# different adapter. 2: on CPU, bf16 base weights, eager attention and a loss head over label tokens only.
TRAIN_VERSION = "2"


@dataclass
class TrainResult:
    """What a training run did; ``log_history`` is one dict per logged step (``pd.DataFrame(log_history)``)."""

    output_dir: str
    base_spec: str
    adapter_digest: str
    seed: int
    steps: int
    epochs: float
    wall_seconds: float
    seconds_per_step: float
    train_loss: float | None  # last logged training loss (not the run's mean)
    mean_train_loss: float | None  # TRL's mean over the run
    eval_loss: float | None  # on the validation rows, after training
    n_train: int
    n_validation: int
    n_dropped_too_long: int  # rows whose full sequence exceeds max_length: dropped, never truncated
    settings: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def history(self) -> Any:
        """``log_history`` as a DataFrame without the wall-clock columns (``*_runtime``, ``*_per_second``):
        what stays is the same on every rerun, so the saved table diffs cleanly (``wall_seconds`` has the time)."""
        import pandas as pd

        frame = pd.DataFrame(self.log_history)
        return frame.drop(columns=[c for c in frame.columns if c.endswith(("_runtime", "_per_second"))])

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainResult":
        return cls(**raw)


def lora_config(settings: TrainSettings) -> Any:
    """PEFT LoRA on the attention projections (the paper's choice; MLP left frozen)."""
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(TARGET_MODULES),
    )


def sft_config(
    settings: TrainSettings, output_dir: str | Path, seed: int, *, evaluate: bool, progress: bool = True
) -> Any:
    """TRL's ``SFTConfig`` for a LoRA run, with bf16 autocast where ``settings.bf16`` (always on CUDA).

    On the AMX CPU, ``bf16`` also loads the base weights in bf16 and ``train`` adds two more CPU levers
    (a loss head over label tokens only, eager attention); ``scripts/benchmarks/bench_train.py`` times each against
    round 2's fp32-weights-plus-autocast step in one run. The LoRA weights and the optimizer stay fp32.
    TRL's defaults that would hurt here are overridden: activation (gradient)
    checkpointing (on by default; only slows a 135M model down), ``logging_steps`` (10; we log every
    step, runs are short) and reporting (off: no wandb/trackio).
    """
    from trl import SFTConfig

    cuda = _cuda()
    return SFTConfig(
        output_dir=str(output_dir),
        assistant_only_loss=True,
        max_length=settings.max_length,
        use_cpu=not cuda,
        bf16=cuda or settings.bf16,
        fp16=False,
        # TRL defaults gradient_checkpointing=True; transformers 5.23 renamed it activation_checkpointing and
        # copies the old value over only when the new one is unset, so set the new name.
        activation_checkpointing=False,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        seed=seed,
        data_seed=seed,
        report_to="none",
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="epoch" if evaluate else "no",
        prediction_loss_only=True,
        save_strategy="no",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        ddp_find_unused_parameters=False,  # LoRA: the frozen base has no gradients, and DDP need not search for them
    )


def _check_rows(rows: Sequence[dict[str, Any]], what: str) -> None:
    for i, row in enumerate(rows):
        msgs = row.get("messages") if isinstance(row, dict) else None
        if not msgs or not isinstance(msgs, list) or msgs[-1].get("role") != "assistant":
            raise ValueError(f"{what} row {i}: expected {{'messages': [..., assistant]}}, got {str(row)[:120]!r}")


def sequence_length(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens in the full training sequence (chat template applied), as TRL will tokenize it."""
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def fit_rows(
    tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """Drop rows longer than ``max_length`` (and say so).

    TRL truncates long rows from the end (``keep_start``), which would cut the assistant JSON and its
    ``<|im_end|>``: training on a half config teaches the model to ramble. Dropping is the honest choice.
    """
    kept = [r for r in rows if sequence_length(tokenizer, r["messages"]) <= max_length]
    dropped = len(rows) - len(kept)
    if dropped:
        log.warning("dropped %d of %d rows longer than max_length=%d tokens", dropped, len(rows), max_length)
    return kept, dropped


def to_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """An in-memory ``datasets.Dataset`` with only the ``messages`` column (TRL's conversational format)."""
    from datasets import Dataset

    return Dataset.from_list([{"messages": r["messages"]} for r in rows])


def snapshot_steps(total_steps: int, n: int) -> list[int]:
    """``n`` evenly spaced steps in ``1..total_steps``, the last one included (the learning curve's x)."""
    if total_steps < 1 or n < 1:
        return []
    return sorted({max(1, round(total_steps * k / n)) for k in range(1, n + 1)})


def _snapshot_callback(tokenizer: Any, adapter_dir: Path, n: int) -> Any:
    """A callback that saves the adapter (and tokenizer) at ``n`` evenly spaced steps into ``adapter_dir``'s snapshots."""
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        steps: set[int] = set()

        def on_train_begin(self, _args: Any, state: Any, _control: Any, **kwargs: Any) -> None:
            self.steps = set(snapshot_steps(int(state.max_steps), n))

        def on_step_end(self, _args: Any, state: Any, _control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.global_step in self.steps and state.is_world_process_zero and model is not None:
                save_adapter(model, tokenizer, snapshot_dir(adapter_dir, state.global_step))

    return Snapshots()


def build_trainer(
    model: Any,
    tokenizer: Any,
    train_rows: Sequence[dict[str, Any]],
    val_rows: Sequence[dict[str, Any]] | None,
    settings: TrainSettings,
    output_dir: str | Path,
    seed: int,
    *,
    progress: bool = True,
) -> Any:
    """An ``SFTTrainer`` with the LoRA adapter attached and the datasets tokenized (labels built)."""
    from trl import SFTTrainer

    _check_rows(train_rows, "train")
    _check_rows(val_rows or [], "validation")
    if not train_rows:
        raise ValueError("no training rows")
    args = sft_config(settings, output_dir, seed, evaluate=bool(val_rows), progress=progress)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=to_dataset(val_rows) if val_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )
    if not progress:  # without tqdm, transformers prints every log dict instead; keep quiet runs quiet
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def train(
    base_spec: str,
    train_rows: Sequence[dict[str, Any]],
    val_rows: Sequence[dict[str, Any]] | None,
    settings: TrainSettings,
    output_dir: str | Path,
    seed: int,
    *,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a LoRA adapter on ``base_spec`` (loaded in float32) and save it into ``output_dir``.

    ``output_dir`` ends up holding the adapter, the tokenizer and ``train_log.json`` (a ``TrainResult``),
    or is left as it was if training fails: the run happens in a temporary sibling folder that replaces
    ``output_dir`` only at the end.
    """
    from transformers import set_seed

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    world, main = _world()
    # Base weights in bf16 on CUDA, and on CPU under ``settings.bf16`` (the LoRA weights and the optimizer
    # stay fp32: PEFT upcasts them); autocast would otherwise re-cast every fp32 weight on every step.
    model, tokenizer = models.load(base_spec, dtype="bfloat16" if _cuda() or settings.bf16 else "float32")
    if not _cuda():
        # Rows here are ~100 tokens: the plain matmul attention beats SDPA's CPU flash kernel, whose backward
        # alone took ~0.7 s of a 4.4 s step (scripts/benchmarks/bench_train.py).
        model.set_attn_implementation("eager")
    train_rows, dropped_train = fit_rows(tokenizer, list(train_rows), settings.max_length)
    val_rows, dropped_val = fit_rows(tokenizer, list(val_rows or []), settings.max_length)
    if world > 1:  # every rank must name the same folder; rank 0 writes it
        tmp = output_dir.parent / f".{output_dir.name}-distributed"
        tmp.mkdir(exist_ok=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        trainer = build_trainer(
            model, tokenizer, train_rows, val_rows, settings, tmp / "trainer", seed, progress=progress
        )
        if world == 1:  # snapshots for the stage-1 learning curve (single process: the CPU and 1-GPU runs)
            trainer.add_callback(_snapshot_callback(tokenizer, tmp, settings.checkpoints))
        start = time.perf_counter()
        with label_positions_only():
            out = trainer.train()
            train_seconds = time.perf_counter() - start
            eval_loss = None
            if val_rows:
                eval_loss = float(trainer.evaluate()["eval_loss"])
        wall = time.perf_counter() - start
        if world > 1:
            # Collective (FSDP / ZeRO-3 gather the full adapter state on rank 0); only rank 0 writes.
            trainer.save_model(str(tmp))
            if not main:
                return _rank_result(output_dir, base_spec, seed, trainer)
            tokenizer.save_pretrained(tmp)
            (tmp / "training_args.bin").unlink(missing_ok=True)
            shutil.rmtree(tmp / "trainer", ignore_errors=True)
            canonical_adapter_config(tmp)
            digest = adapter_digest(tmp)
        else:
            shutil.rmtree(tmp / "trainer", ignore_errors=True)
            digest = save_adapter(trainer.model, tokenizer, tmp)
        history = [dict(entry) for entry in trainer.state.log_history]
        losses = [e["loss"] for e in history if "loss" in e]
        steps = int(trainer.state.global_step)
        result = TrainResult(
            output_dir=str(output_dir),
            base_spec=base_spec,
            adapter_digest=digest,
            seed=seed,
            steps=steps,
            epochs=float(trainer.state.epoch or 0.0),
            wall_seconds=round(wall, 3),
            seconds_per_step=round(train_seconds / max(steps, 1), 4),
            train_loss=_finite(losses[-1]) if losses else None,
            mean_train_loss=_finite(out.training_loss),
            eval_loss=_finite(eval_loss),
            n_train=len(train_rows),
            n_validation=len(val_rows),
            n_dropped_too_long=dropped_train + dropped_val,
            settings=asdict(settings),
            log_history=history,
        )
        (tmp / TRAIN_LOG).write_text(json.dumps(result.to_dict(), indent=2, default=_jsonable) + "\n")
        _replace_dir(tmp, output_dir)
    finally:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "trained %s on %s: %d steps in %.1f s (%.2f s/step), loss %s, eval %s",
        shown(output_dir), base_spec, result.steps, result.wall_seconds, result.seconds_per_step, result.train_loss, result.eval_loss,
    )
    return result


@contextlib.contextmanager
def label_positions_only() -> Iterator[bool]:
    """Make TRL's fused LM head project only the positions that carry a label, on CPU too.

    TRL 1.16's ``add_fused_lm_head`` scores only label positions where Triton runs and *every* position
    elsewhere, masking the rest afterwards. Our labels are the ~20 config tokens of a ~100-token row, so
    on CPU four fifths of the vocabulary projection, its entropy and its backward were thrown away: 2.0 s
    of a 4.4 s step. The compact path is TRL's own (same kernel, same loss, fewer rows), chosen by the
    private ``trl.trainer.utils._use_triton``; if a TRL release renames it, training runs the slow path,
    logged. Yields whether the compact path is on.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        log.warning("trl.trainer.utils._use_triton is gone: the fused LM head scores every position (slower, same loss)")
        yield False
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield True
    finally:
        trl_utils._use_triton = original


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")


def _world() -> tuple[int, bool]:
    """(processes in the run, whether this is rank 0), from the launcher's environment (1, True in-process)."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")) == 0


def _rank_result(output_dir: Path, base_spec: str, seed: int, trainer: Any) -> TrainResult:
    """What a rank other than 0 returns: the step count only (rank 0 writes and reports the run)."""
    return TrainResult(str(output_dir), base_spec, "", seed, int(trainer.state.global_step), float(trainer.state.epoch or 0),
                       0.0, 0.0, None, None, None, 0, 0, 0)


def fingerprint(base_spec: str, train_rows: Sequence[dict[str, Any]], val_rows: Sequence[dict[str, Any]] | None,
                settings: TrainSettings, seed: int) -> str:
    """What makes two trainings "the same": the training code's version, base model, rows, settings and seed."""
    payload = json.dumps([TRAIN_VERSION, base_spec, list(train_rows), val_rows, settings_text(settings), seed], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# Settings that choose among finished snapshots and do not change what training computes: left out of the
# fingerprint, so changing them reuses the trained adapter.
NOT_TRAINING: tuple[str, ...] = ("select",)


def settings_text(settings: TrainSettings) -> str:
    """``repr(settings)`` without the ``NOT_TRAINING`` fields (the text earlier fingerprints hashed)."""
    shown = ", ".join(f"{f.name}={getattr(settings, f.name)!r}" for f in dataclasses.fields(settings) if f.name not in NOT_TRAINING)
    return f"{type(settings).__qualname__}({shown})"


def train_if_changed(
    base_spec: str,
    train_rows: Sequence[dict[str, Any]],
    val_rows: Sequence[dict[str, Any]] | None,
    settings: TrainSettings,
    output_dir: str | Path,
    seed: int,
    *,
    progress: bool = True,
) -> TrainResult:
    """``train`` unless ``output_dir`` holds the same training (its FINGERPRINT matches); the stamp is written after."""
    output_dir = Path(output_dir)
    stamp = output_dir / FINGERPRINT
    current = fingerprint(base_spec, train_rows, val_rows, settings, seed)
    if stamp.is_file() and stamp.read_text().strip() == current:
        log.info("adapter %s is current (fingerprint %s): not retraining", shown(output_dir), current)
        return read_result(output_dir)
    result = train(base_spec, train_rows, val_rows, settings, output_dir, seed, progress=progress)
    if _world()[1]:
        stamp.write_text(current + "\n")
    if _cuda():  # hand the training's cached GPU memory back: a vLLM worker started next needs it
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
    return result


def read_result(output_dir: str | Path) -> TrainResult:
    """The ``TrainResult`` saved with an adapter (so a notebook can skip training it already did)."""
    path = Path(output_dir) / TRAIN_LOG
    if not path.is_file():
        raise FileNotFoundError(f"no {TRAIN_LOG} in {output_dir}: not a finished training run")
    return TrainResult.from_dict(json.loads(path.read_text()))


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``; an existing ``dst`` is set aside first and deleted after."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}-old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hagstudy.method.training --profile P``: notebook 03's training, from notebook 02's rows, into its folder."""
    from hagstudy.config import load_profile
    from hagstudy.method import dataset

    ap = argparse.ArgumentParser(prog="python -m hagstudy.method.training", description=main.__doc__)
    ap.add_argument("--profile", default=None, help="configs/<profile>.yaml (default: $HAGSTUDY_PROFILE, else default)")
    ap.add_argument("--name", default="hag_seed0",
                    help="adapter name: artifacts/<profile>/adapters/<name> (notebook 03: hag_seed0, hag_seed1, ...)")
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed (default: the profile's seed; notebook 03 trains hag_seedK with seed + K)")
    ap.add_argument("--out", type=Path, default=None, help="adapter folder (default: from --name)")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="folder with train.jsonl and validation.jsonl (default: artifacts/<profile>/dataset, notebook 02's)")
    ap.add_argument("--model", default=None, help="base model spec (default: the profile's)")
    ap.add_argument("--max-steps", type=int, default=None, help="override train.max_steps (a quick check)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"model": args.model}
    if args.max_steps is not None:
        overrides["train"] = {"max_steps": args.max_steps}
    profile = load_profile(args.profile, **overrides)
    data = args.dataset or stages.TRAIN_ROWS.find(profile).parent
    files = [data / stages.TRAIN_ROWS.name, data / stages.VALIDATION_ROWS.name]
    for f in files:
        if not f.is_file():
            raise SystemExit(f"{f} is missing: run notebook 02 (make all PROFILE={profile.name}) or pass --dataset")
    train_rows, val_rows = (dataset.read_jsonl(f) for f in files)
    out = args.out or stages.ADAPTERS.path(profile) / args.name
    seed = profile.seed if args.seed is None else args.seed
    result = train_if_changed(profile.model, train_rows, val_rows, profile.train, out, seed)
    if _world()[1]:
        print(f"adapter {out}: {result.steps} steps, {result.seconds_per_step:.2f} s/step, eval loss {result.eval_loss}")


if __name__ == "__main__":
    main()
