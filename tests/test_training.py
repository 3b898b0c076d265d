"""Training on tiny-random: label masking (assistant JSON + end of turn only), a short run that learns,
and the adapter's save/reload round trip. A few seconds each on 2 CPU cores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hagstudy.config import TrainSettings
from hagstudy.decoding import DecodingConfig
from hagstudy.engine import adapter as adapters
from hagstudy.engine import models
from hagstudy.method import training

SYSTEM = "You choose decoding hyperparameters for a question. Answer with JSON only."
CONFIGS = [
    DecodingConfig(temperature=0.5, top_p=0.9, top_k=50, repetition_penalty=1.0),
    DecodingConfig(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.1),
]

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def row(i: int, query: str | None = None) -> dict:
    """One instruction row in the dataset module's shape."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": query or f"Question {i}: is the sky blue?"},
            {"role": "assistant", "content": CONFIGS[i % 2].to_json()},
        ],
        "task": "strategyqa",
        "item_id": f"strategyqa-{i:04d}",
    }


# fp32 here: the round-trip test compares logits at 1e-5 (the profiles' bf16 autocast is run by the smoke chain)
SETTINGS = TrainSettings(epochs=1, learning_rate=1e-2, batch_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                         max_length=128, max_steps=8, bf16=False, checkpoints=2)


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-random", dtype="float32")


@pytest.fixture(scope="module")
def trainer(tiny, tmp_path_factory):
    model, tokenizer = models.load("tiny-random", dtype="float32")
    rows = [row(0), row(1, "A much longer question that makes this row longer than the other one, for padding?")]
    return training.build_trainer(model, tokenizer, rows, None, replace(SETTINGS, max_steps=2),
                                  tmp_path_factory.mktemp("t"), 0, progress=False)


def test_labels_are_exactly_the_assistant_json_and_end_of_turn(trainer):
    tok = trainer.processing_class
    for i, example in enumerate(trainer.train_dataset):
        ids, labels = example["input_ids"], example["labels"]
        learned = [t for t, lab in zip(ids, labels) if lab != -100]
        assert tok.decode(learned) == CONFIGS[i % 2].to_json() + "<|im_end|>"
        # the learned span is contiguous and everything before it (system, user, assistant header) is masked
        first = next(j for j, lab in enumerate(labels) if lab != -100)
        assert tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        assert all(lab == ids[j] for j, lab in enumerate(labels) if lab != -100)


def test_end_of_turn_survives_padding_with_eos(trainer):
    """pad == eos == <|im_end|>: the collator must pad labels with -100, not mask every eos id."""
    tok = trainer.processing_class
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id == tok.eos_token_id == eot
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    short = 0 if len(trainer.train_dataset[0]["input_ids"]) < len(trainer.train_dataset[1]["input_ids"]) else 1
    labels, mask, ids = batch["labels"][short], batch["attention_mask"][short], batch["input_ids"][short]
    n = int(mask.sum())
    assert n < len(ids) and (ids[n:] == eot).all()  # padded with the eos id ...
    assert (labels[n:] == -100).all()  # ... which is not learned,
    learned = labels[labels != -100]
    assert int(learned[-1]) == eot  # while the real end of turn is
    assert (batch["labels"][1 - short] != -100).sum() > 0


def test_fit_rows_drops_rows_that_would_be_truncated(tiny):
    _, tok = tiny
    long = row(0, "word " * 200)
    kept, dropped = training.fit_rows(tok, [row(0), long], max_length=128)
    assert dropped == 1 and kept == [row(0)]


def test_bad_rows_are_refused(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="assistant"):
        training.build_trainer(model, tok, [{"messages": row(0)["messages"][:2]}], None, SETTINGS, "/tmp/x", 0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rows = [row(i) for i in range(8)]
    out = tmp_path_factory.mktemp("run") / "adapter"
    return training.train("tiny-random", rows, rows[:2], SETTINGS, out, seed=0, progress=False)


def test_training_learns_and_saves_atomically(trained):
    losses = [e["loss"] for e in trained.log_history if "loss" in e]
    assert trained.steps == SETTINGS.max_steps == len(losses)
    assert losses[-1] < losses[0] - 0.1, losses
    assert trained.eval_loss is not None and trained.n_train == 8 and trained.n_validation == 2
    out = Path(trained.output_dir)
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "train_log.json"} <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    saved = training.read_result(out)
    assert saved.adapter_digest == trained.adapter_digest == adapters.adapter_digest(out)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == SETTINGS.lora_r
    # snapshots for the learning curve: evenly spaced, the last one is the final adapter
    snaps = adapters.checkpoint_dirs(out)
    assert sorted(snaps) == training.snapshot_steps(SETTINGS.max_steps, SETTINGS.checkpoints) == [4, 8]
    assert adapters.adapter_digest(snaps[8]) == trained.adapter_digest
    assert adapters.adapter_digest(snaps[4]) != trained.adapter_digest


def test_the_adapter_digest_names_content_not_the_checkout_folder(trained, tmp_path):
    """The same weights trained in another folder (another clone) get the same digest, hence the same cache
    keys; a changed weight or config value does not."""
    src = Path(trained.output_dir)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in (adapters.ADAPTER_WEIGHTS, "adapter_config.json"):
        (moved / name).write_bytes((src / name).read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/another/clone/artifacts/models/base"
    (moved / "adapter_config.json").write_text(json.dumps(config, indent=2))
    assert adapters.adapter_digest(moved) == trained.adapter_digest
    config["lora_alpha"] = config["lora_alpha"] + 1
    (moved / "adapter_config.json").write_text(json.dumps(config))
    assert adapters.adapter_digest(moved) != trained.adapter_digest


def test_snapshot_steps_are_evenly_spaced_and_end_at_the_last_step():
    assert training.snapshot_steps(54, 4) == [14, 27, 40, 54]
    assert training.snapshot_steps(3, 4) == [1, 2, 3]
    assert training.snapshot_steps(0, 4) == [] and training.snapshot_steps(10, 0) == []
    assert adapters.checkpoint_dirs("/nonexistent") == {}


def test_training_is_seeded(trained, tmp_path):
    rows = [row(i) for i in range(8)]
    again = training.train("tiny-random", rows, None, replace(SETTINGS, max_steps=2), tmp_path / "a", seed=0,
                           progress=False)
    first = [e["loss"] for e in trained.log_history if "loss" in e][:2]
    assert [e["loss"] for e in again.log_history if "loss" in e] == pytest.approx(first, rel=1e-5)


def test_load_adapted_names_the_adapter(trained, tiny):
    model, tok = adapters.load_adapted("tiny-random", trained.output_dir)
    assert model.hagstudy_spec == f"tiny-random+lora:{trained.adapter_digest}"
    assert models.identity(model) != models.identity(tiny[0])
    assert tok.padding_side == "left" and tok.pad_token == "<|im_end|>" and "generation" in tok.chat_template
    with pytest.raises(ValueError, match="trained on"):
        adapters.load_adapted("smollm2-135m-instruct", trained.output_dir)


def test_adapter_round_trip_same_logits(trainer, tiny, tmp_path):
    trainer.train()
    model = trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[0]])
    with torch.no_grad():
        before = model(input_ids=batch["input_ids"]).logits
        base = tiny[0](input_ids=batch["input_ids"]).logits
    digest = adapters.save_adapter(model, trainer.processing_class, tmp_path)
    reloaded, _ = adapters.load_adapted("tiny-random", tmp_path)
    with torch.no_grad():
        after = reloaded(input_ids=batch["input_ids"]).logits
    assert not torch.allclose(before, base, atol=1e-4)  # the adapter changed something
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert reloaded.hagstudy_spec.endswith(digest)


def test_instruction_rows_match_the_stage1_prompt(tiny):
    """The prompt HAG sends at inference is exactly the prefix the model was trained on, then the JSON."""
    dataset = pytest.importorskip("hagstudy.method.dataset")
    _, tok = tiny
    ex = dataset.example("Is the sky blue?", CONFIGS[0], "strategyqa", "strategyqa-0000")
    prompt = tok.apply_chat_template(dataset.stage1_messages("Is the sky blue?"), tokenize=False,
                                     add_generation_prompt=True)
    full = tok.apply_chat_template(ex["messages"], tokenize=False)
    assert full == prompt + dataset.label_text(CONFIGS[0]) + "<|im_end|>\n"
    out = tok.apply_chat_template(ex["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    learned = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(learned) == dataset.label_text(CONFIGS[0]) + "<|im_end|>"
    assert training.sequence_length(tok, ex["messages"]) <= 384  # fits the profiles' max_length


def test_the_saved_history_has_no_wall_clock_columns():
    from hagstudy.method.training import TrainResult

    log = [{"loss": 0.5, "step": 1, "epoch": 0.5},
           {"eval_loss": 0.4, "eval_runtime": 2.1, "eval_samples_per_second": 3.3, "step": 2},
           {"train_runtime": 9.0, "train_steps_per_second": 0.2, "train_loss": 0.45, "total_flos": 1e9, "step": 2}]
    result = TrainResult(output_dir="x", base_spec="tiny-random", adapter_digest="d", seed=0, steps=2, epochs=1.0,
                         wall_seconds=9.0, seconds_per_step=4.5, train_loss=0.5, mean_train_loss=0.45, eval_loss=0.4,
                         n_train=4, n_validation=2, n_dropped_too_long=0, log_history=log)
    assert list(result.history().columns) == ["loss", "step", "epoch", "eval_loss", "train_loss", "total_flos"]


def test_the_label_only_loss_head_gives_the_same_loss_and_is_undone(trainer):
    """training.label_positions_only switches TRL's fused LM head to label positions on CPU: same loss, and
    TRL's own choice comes back afterwards. Fails if TRL renames the private switch (the slow path would
    then run silently but for a warning)."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    model = trainer.model
    with torch.no_grad():
        full = model(**batch, fused_lm_head=True)
        with training.label_positions_only() as compact:
            assert compact and trl_utils._use_triton(torch.device("cpu"))
            label_only = model(**batch, fused_lm_head=True)
    assert trl_utils._use_triton is original
    assert torch.allclose(full.loss, label_only.loss, rtol=1e-5, atol=1e-6)
    assert torch.equal(full.label_mask, label_only.label_mask)


def test_the_snapshot_rule_is_not_part_of_the_training_fingerprint():
    """``train.select`` picks among finished snapshots: changing it must reuse the adapter, while a setting
    that changes training must not. The text equals the repr earlier fingerprints hashed."""
    from dataclasses import replace

    from hagstudy.config import TrainSettings

    s = TrainSettings()
    assert training.settings_text(s) == repr(s).replace(", select='best_validation'", "")
    fp = training.fingerprint("m", [{"a": 1}], None, s, 0)
    assert training.fingerprint("m", [{"a": 1}], None, replace(s, select="final"), 0) == fp
    assert training.fingerprint("m", [{"a": 1}], None, replace(s, max_steps=5), 0) != fp
