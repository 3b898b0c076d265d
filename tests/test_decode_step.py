"""The fused decode step (hagstudy/engine/decode_step.py) keeps the engine's guarantees, and its keys apart."""

from __future__ import annotations

import random

import pytest
import torch
from test_cache import Crash
from test_generation import mixed_requests, prompts

from hagstudy.decoding import DecodingConfig as C
from hagstudy.engine import decode_step, factory, kv, models, requests
from hagstudy.engine.cache import CompletionCache
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request, request_key


def test_fused_logits_match_the_transformers_forward(tiny):
    """One step of decode_step against the model's own forward over the same cache (float32)."""
    model, tok = tiny
    engine = Engine(model, tok, progress=False, step="fused")
    reqs = [Request(p, C(0.0, 1.0, 0, 1.0, 4)) for p in prompts(engine)]
    ids = tok([r.prompt for r in reqs], add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        batch = engine._prefill(list(range(len(reqs))), ids, reqs, 4)
        mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=1)
        import copy

        ref = model(input_ids=batch.last[:, None], attention_mask=mask, position_ids=batch.pos[:, None],
                    past_key_values=copy.deepcopy(batch.cache), use_cache=True).logits[:, -1].float()
        ours = engine._forward(batch)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert batch.cache.layers[0].length == mask.shape[1] and batch.mask.shape == mask.shape


def test_fused_text_does_not_depend_on_batch_composition(tiny):
    """The engine's batch-independence guarantee (float32) holds for the fused step too."""
    model, tok = tiny
    together = Engine(model, tok, progress=False, max_batch_size=5, step="fused")
    reqs = mixed_requests(together)
    batched = together.generate(reqs)
    order = list(range(len(reqs)))
    random.Random(1).shuffle(order)
    reordered = Engine(model, tok, progress=False, max_batch_size=16, step="fused").generate([reqs[i] for i in order])
    alone = Engine(model, tok, progress=False, max_batch_size=1, step="fused")
    for k in range(0, len(reqs), 4):
        assert alone.generate([reqs[k]])[0] == batched[k]
    for pos, i in enumerate(order):
        assert reordered[pos] == batched[i]
    # Same model, other rounding: float32 texts agree with the eager step here (the keys still differ).
    eager = Engine(model, tok, progress=False, max_batch_size=5).generate(reqs)
    assert sum(a.text == b.text for a, b in zip(eager, batched)) >= 0.9 * len(reqs)


def test_fused_greedy_equals_model_generate(tiny):
    model, tok = tiny
    engine = Engine(model, tok, progress=False, max_batch_size=3, step="fused")
    reqs = [Request(p, C(0.0, 1.0, 0, 1.2, 10)) for p in prompts(engine)]
    for r, out in zip(reqs, engine.generate(reqs)):
        enc = tok(r.prompt, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(**enc, do_sample=False, max_new_tokens=10, repetition_penalty=1.2, pad_token_id=tok.pad_token_id)
        assert out.text == tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_keys_name_the_step_and_eager_keys_are_unchanged(tiny):
    model, tok = tiny
    r = Request("p", C(1.0, 0.9, 0, 1.0, 8), seed=3)
    keys = {s: request_key("m", r, s) for s in ("eager", "fused")}
    assert len(set(keys.values())) == 2
    # ENGINE_VERSION 2's payload, byte for byte: the committed caches keep serving the eager step.
    import hashlib
    import json

    old = json.dumps(["2", "m", "p", r.config.key(), 3], ensure_ascii=False)
    assert keys["eager"] == hashlib.sha256(old.encode()).hexdigest() == request_key("m", r)
    ident = models.identity(model)
    assert Engine(model, tok, progress=False, step="fused").key(r) == request_key(ident, r, "fused")
    assert Engine(model, tok, progress=False).key(r) == request_key(ident, r)


def test_cached_texts_are_not_served_across_steps(tiny, tmp_path):
    model, tok = tiny
    cache = CompletionCache(tmp_path / "c.sqlite")
    reqs = mixed_requests(Engine(model, tok, progress=False))[:6]
    Engine(model, tok, cache, progress=False).generate(reqs)
    fused = Engine(model, tok, cache, progress=False, step="fused")
    fused.generate(reqs)
    assert fused.stats["hits"] == 0 and fused.stats["misses"] == len(reqs)
    row = cache.get_many([fused.key(reqs[0])])[fused.key(reqs[0])]
    assert row["meta"]["engine"] == requests.STEP_VERSION and row["meta"]["step"] == "fused"
    again = Engine(model, tok, cache, progress=False, step="fused")
    again.generate(reqs)
    assert again.stats["hits"] == len(reqs)


def test_the_factory_uses_the_eager_step_for_unsupported_models(tiny, caplog):
    model, tok = tiny
    model.config.model_type = "not-llama"
    try:
        with caplog.at_level("WARNING"):
            assert factory.step_for(model, "fused", "tiny") == "eager"
        assert "decode step 'eager' for tiny" in caplog.text
        assert factory.step_for(model, "eager") == "eager"
        with pytest.raises(ValueError, match="not llama"):
            Engine(model, tok, progress=False, step="fused")
    finally:
        model.config.model_type = "llama"
    with pytest.raises(ValueError, match="step must be one of"):
        Engine(model, tok, progress=False, step="fast")


def test_a_killed_bf16_fused_call_resumes_to_the_uninterrupted_texts(tmp_path, monkeypatch):
    """tests/test_resume.py's guarantee for the fused step: whole groups cached, byte-identical resume."""
    from test_resume import _requests

    step, left = decode_step.decode_step, [40]

    def crashing(*args):
        left[0] -= 1
        if left[0] < 0:
            raise Crash("injected")
        return step(*args)

    model, tok = models.load("tiny-random", dtype="bfloat16")
    ident = models.identity(model)
    opts = {"progress": False, "max_batch_size": 8, "group_rows": 8, "identity": ident, "step": "fused"}
    reqs = _requests(Engine(model, tok, **opts))
    clean = [c.text for c in Engine(model, tok, CompletionCache(tmp_path / "a.sqlite"), **opts).generate(reqs)]
    cache = CompletionCache(tmp_path / "b.sqlite")
    with pytest.raises(Crash), monkeypatch.context() as m:
        m.setattr(decode_step, "decode_step", crashing)
        Engine(model, tok, cache, **opts).generate(reqs)
    saved = len(cache)
    assert 0 < saved < len(reqs) and saved % 8 == 0
    resumed = Engine(model, tok, cache, **opts)
    assert [c.text for c in resumed.generate(reqs)] == clean
    assert resumed.stats["hits"] == saved


def test_lora_adapters_are_merged_into_the_packed_weights(tiny):
    peft = pytest.importorskip("peft")
    model, tok = models.load("tiny-random", dtype="float32", seed=1)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False))
    lora.eval()
    assert decode_step.unsupported(lora) is None
    reqs = [Request(p, C(0.0, 1.0, 0, 1.0, 8)) for p in prompts(Engine(model, tok, progress=False))]
    eager = Engine(lora, tok, progress=False, identity="lora").generate(reqs)
    fused = Engine(lora, tok, progress=False, identity="lora", step="fused").generate(reqs)
    assert [a.text for a in eager] == [b.text for b in fused]


def test_gpu_batch_is_sized_from_free_memory_without_the_old_256_cap(tiny, monkeypatch):
    model, _ = tiny
    per_row = kv.row_bytes(model)
    assert per_row == 2 * 2 * 2 * 16 * 4 * 1024 + 8 * 4 * model.config.vocab_size  # 2 layers, 2 KV heads of 16, fp32
    gib = 1 << 30
    assert kv.gpu_batch_size(80 * gib, 3 << 20) == 4096  # the ceiling, far above 256
    assert kv.gpu_batch_size(12 * gib, 3 << 20) == 2048  # 0.5 x 12 GiB / 3 MiB, a multiple of 64
    assert kv.gpu_batch_size(1 << 20, 3 << 20) == 1  # never zero
    assert kv.gpu_batch_size(200 << 20, 3 << 20) == 33  # small counts are not rounded
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * gib, 80 * gib))
    rows = kv.default_batch_size(model, torch.device("cuda"))
    assert rows == kv.gpu_batch_size(40 * gib, per_row) > 256
