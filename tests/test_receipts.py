"""Adapter receipts: an adapter exported with ``make ship`` and restored without its weights replays its
completions under the committed keys, does not retrain, and never decodes with other weights.
A tiny-random adapter trained here stands in for the study's; a few seconds on 2 CPU cores."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hagstudy.config import TrainSettings, load_profile
from hagstudy.decoding import DecodingConfig
from hagstudy.engine import adapter, factory, models
from hagstudy.engine.cache import CompletionCache
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import ReplayMiss, Request
from hagstudy.method import training
from hagstudy.replay import receipts

SETTINGS = TrainSettings(epochs=1, learning_rate=1e-2, batch_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                         max_length=128, max_steps=4, bf16=False, checkpoints=2)
ROWS = [{"messages": [{"role": "system", "content": "Answer with JSON only."},
                      {"role": "user", "content": f"Question {i}?"},
                      {"role": "assistant", "content": '{"temperature": 0.5}'}], "task": "t", "item_id": f"t-{i}"}
        for i in range(4)]
SAMPLED = DecodingConfig(temperature=0.9, top_p=0.9, top_k=20, repetition_penalty=1.1, max_new_tokens=6)
GREEDY = DecodingConfig(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=6)

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A trained adapter root, a cache its completions went into, the requests, and the exported receipts file."""
    base = tmp_path_factory.mktemp("trained")
    root, cache_path = base / "adapters", base / "completions.sqlite"
    folder = root / "hag_seed0"
    training.train_if_changed("tiny-random", ROWS, ROWS[:2], SETTINGS, folder, seed=0, progress=False)
    cache = CompletionCache(cache_path)
    requests, texts = {}, {}
    for path in [folder, *adapter.checkpoint_dirs(folder).values()]:
        model, tok = adapter.load_adapted("tiny-random", path)
        engine = Engine(model, tok, cache, progress=False, step="eager")
        prompts = [engine.render([{"role": "user", "content": f"Question {i}?"}]) for i in range(3)]
        requests[path] = [Request(p, c, seed=7) for p in prompts for c in (SAMPLED, GREEDY)]
        texts[path] = [c.text for c in engine.generate(requests[path])]
        adapter.write_receipt(path, receipts.of_engine(path, engine))
    out = base / receipts.FILE_NAME

    def no_engine(path: Path) -> adapter.Receipt:
        raise AssertionError(f"every folder has its receipt already: {path}")

    assert receipts.export(root, out, no_engine) == 1
    return {"root": root, "folder": folder, "cache": cache, "requests": requests, "texts": texts, "file": out}


def _restore(shipped, tmp_path) -> Path:
    root = tmp_path / "adapters"
    assert receipts.import_into(shipped["file"], root, models.resolve("tiny-random")) == ["hag_seed0"]
    return root / "hag_seed0"


def test_a_restored_adapter_replays_every_completion_under_the_committed_keys(shipped, tmp_path):
    folder = _restore(shipped, tmp_path)
    assert adapter.replay_only(folder) and not (folder / adapter.ADAPTER_WEIGHTS).exists()
    assert sorted(adapter.checkpoint_dirs(folder)) == sorted(adapter.checkpoint_dirs(shipped["folder"]))
    for name in (adapter.TRAIN_LOG, adapter.FINGERPRINT):  # byte for byte: train_log.csv's columns keep their order
        assert (folder / name).read_bytes() == (shipped["folder"] / name).read_bytes(), name
    for original, requests in shipped["requests"].items():
        restored = folder / original.relative_to(shipped["folder"])
        replay = factory.replay(restored, shipped["cache"])
        model, tok = adapter.load_adapted("tiny-random", original)
        live = Engine(model, tok, None, progress=False, step="eager")
        assert [replay.key(r) for r in requests] == [live.key(r) for r in requests]
        prompt = [{"role": "user", "content": "Question 1?"}]
        assert replay.render(prompt) == live.render(prompt)
        assert replay.generation_defaults() == live.generation_defaults()
        assert replay.default_config() == live.default_config()
        out = replay.generate(requests)
        assert [c.text for c in out] == shipped["texts"][original] and all(c.cached for c in out)


def test_a_request_the_cache_lacks_is_a_miss_naming_the_adapter_and_the_fix(shipped, tmp_path):
    folder = _restore(shipped, tmp_path)
    replay = factory.replay(folder, shipped["cache"], profile="smoke")
    unseen = Request(replay.render([{"role": "user", "content": "A question nobody asked?"}]), GREEDY, seed=7)
    with pytest.raises(ReplayMiss, match=r"hag_seed0.*1 of these 2 requests.*receipts forget --profile smoke"):
        replay.generate([shipped["requests"][shipped["folder"]][0], unseen], desc="stage 1")


def test_a_restored_adapter_is_not_retrained_and_a_changed_recipe_is(shipped, tmp_path, monkeypatch):
    folder = _restore(shipped, tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(training, "train", no_training)
    result = training.train_if_changed("tiny-random", ROWS, ROWS[:2], SETTINGS, folder, seed=0, progress=False)
    assert result.adapter_digest == training.read_result(shipped["folder"]).adapter_digest
    with pytest.raises(AssertionError, match="trained again"):
        training.train_if_changed("tiny-random", ROWS, ROWS[:2], SETTINGS, folder, seed=1, progress=False)


def test_the_import_leaves_existing_adapters_alone_and_refuses_other_tokenizers(shipped, tmp_path, caplog):
    root = tmp_path / "adapters"
    shutil.copytree(shipped["folder"], root / "hag_seed0")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert receipts.import_into(shipped["file"], root, models.resolve("tiny-random")) == []
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (root / "hag_seed0" / adapter.ADAPTER_WEIGHTS).is_file()

    other = tmp_path / "tokenizer"
    shutil.copytree(models.resolve("tiny-random"), other)
    (other / "tokenizer_config.json").write_text("{}\n")
    with caplog.at_level(logging.WARNING, logger="hagstudy.replay.receipts"):
        assert receipts.import_into(shipped["file"], tmp_path / "elsewhere", other) == []
    assert "tokenizer_config.json" in caplog.text and not (tmp_path / "elsewhere" / "hag_seed0").exists()


def test_forget_removes_only_receipt_only_adapters(shipped, tmp_path):
    root = tmp_path / "adapters"
    shutil.copytree(shipped["folder"], root / "trained_here")
    receipts.import_into(shipped["file"], root, models.resolve("tiny-random"))
    assert receipts.forget(root) == ["hag_seed0"]
    assert sorted(p.name for p in root.iterdir()) == ["trained_here"]


def test_the_export_is_deterministic_and_makes_missing_receipts(shipped, tmp_path):
    root = tmp_path / "adapters"
    shutil.copytree(shipped["root"], root)
    for path in root.rglob(adapter.RECEIPT):
        path.unlink()
    made = []

    def receipt_of(path: Path) -> adapter.Receipt:
        made.append(path)
        model, tok = adapter.load_adapted("tiny-random", path)
        return receipts.of_engine(path, Engine(model, tok, None, progress=False, step="eager"))

    receipts.export(root, tmp_path / "a.json", receipt_of)
    assert len(made) == 1 + len(adapter.checkpoint_dirs(root / "hag_seed0"))
    receipts.export(root, tmp_path / "b.json", receipt_of)
    assert len(made) == 3  # the second export read the receipts the first one wrote
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes() == shipped["file"].read_bytes()


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw.pop("adapters"), "top level needs 'version' and 'adapters'"),
    (lambda raw: raw["adapters"]["hag_seed0"].pop("fingerprint"), "adapter 'hag_seed0' has no 'fingerprint'"),
    (lambda raw: raw["adapters"]["hag_seed0"]["receipt"].pop("identity"), "receipt without identity"),
    (lambda raw: raw["adapters"]["hag_seed0"]["snapshots"].update(x={}), "snapshot step 'x' is not a number"),
])
def test_a_bad_receipts_file_names_the_file_and_the_field(shipped, tmp_path, edit, message):
    raw = json.loads(shipped["file"].read_text())
    raw["adapters"]["a_valid"] = json.loads(json.dumps(raw["adapters"]["hag_seed0"]))  # sorts first, is fine
    edit(raw)
    bad = tmp_path / receipts.FILE_NAME
    bad.write_text(json.dumps(raw))
    with pytest.raises(adapter.ReceiptError, match=message) as err:
        receipts.import_into(bad, tmp_path / "adapters", models.resolve("tiny-random"))
    assert str(bad) in str(err.value)
    assert not (tmp_path / "adapters" / "a_valid").exists()  # a damaged file restores nothing
    bad.write_text("{not json")
    with pytest.raises(adapter.ReceiptError, match="not JSON"):
        receipts.import_into(bad, tmp_path / "adapters", models.resolve("tiny-random"))


def test_the_shipped_receipt_is_what_the_factory_builds(shipped, tmp_path):
    """``make ship`` records the identity and step of the engine the notebooks get from ``factory.build``."""
    root = tmp_path / "adapters"
    shutil.copytree(shipped["root"], root)
    smoke = load_profile("smoke")
    profile = replace(smoke, model="tiny-random", dtype="float32", generation=replace(smoke.generation, step="eager"))
    for path in [root / "hag_seed0", *adapter.checkpoint_dirs(root / "hag_seed0").values()]:
        committed = adapter.read_receipt(path)
        (path / adapter.RECEIPT).unlink()
        engine = factory.build(profile, path)
        assert not (path / adapter.RECEIPT).exists()  # building an engine writes nothing: `make ship` does
        assert receipts.of_engine(path, engine) == committed


def test_run_engine_replays_a_receipt_only_folder(shipped, tmp_path, monkeypatch):
    from hagstudy import study

    folder = _restore(shipped, tmp_path)
    run = study.Run(profile=load_profile("smoke"), notebook="test")
    monkeypatch.setattr(study.Run, "cache", lambda self: shipped["cache"])
    engine = run.engine(adapter=folder)
    assert isinstance(engine, Engine) and engine.model is None  # the cache-only mode: no weights to decode with
    vllm = replace(run.profile, generation=replace(run.profile.generation, backend="vllm"))
    with pytest.raises(ValueError, match="receipt without weights"):
        study.Run(profile=vllm, notebook="test").engine(adapter=folder)
