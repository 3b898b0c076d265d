import pytest

from hagstudy.engine import models


def test_chat_template_renders_like_the_original(tokenizer):
    """The marked template must produce the GGUF's own text, so inference prompts are unchanged."""
    from jinja2 import Template

    original = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    conversations = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "{}"}],
    ]
    for msgs in conversations:
        for gen in (True, False):
            ours = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert ours == Template(original).render(messages=msgs, add_generation_prompt=gen)


def test_template_marks_assistant_turn_including_end_of_turn(tokenizer):
    msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": '{"temperature": 0.5}'}]
    out = tokenizer.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    marked = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert marked == '{"temperature": 0.5}<|im_end|>'


def test_tokenizer_pads_left_with_end_of_turn(tokenizer):
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"


def test_tiny_random_is_seeded_and_identity_tracks_weights():
    a, _ = models.load(models.TINY, seed=0)
    b, _ = models.load(models.TINY, seed=0)
    c, _ = models.load(models.TINY, seed=1)
    assert models.identity(a) == models.identity(b) != models.identity(c)
    assert models.identity(a).startswith("tiny-random|float32|")
    bf, _ = models.load(models.TINY, dtype="bfloat16")
    assert models.identity(bf) != models.identity(a)


def test_unknown_spec_and_dtype_fail_clearly():
    with pytest.raises(models.ModelError, match="unknown model spec"):
        models.load("no-such-model")
    with pytest.raises(models.ModelError, match="dtype"):
        models.load(models.TINY, dtype="int8")


def test_local_folder_spec_loads(tmp_path, tiny):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, _ = models.load(str(tmp_path))
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_embedded_model_loads_from_cache_and_answers(monkeypatch):
    import torch

    models.ensure_cached()

    def no_gguf() -> None:
        raise AssertionError("the GGUF was read again: the safetensors cache was not used")

    monkeypatch.setattr(models, "gguf_path", no_gguf)  # a second load must come from the cache
    model, tok = models.load()
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])


# --- every failure is a ModelError saying which spec and what was expected -----------------------

def test_an_empty_folder_says_what_a_model_folder_holds(tmp_path):
    with pytest.raises(models.ModelError, match=r"lacks config.json, weights \(one of model.safetensors.*\), tokenizer files") as err:
        models.load(str(tmp_path))
    assert str(tmp_path) in str(err.value) and "Unrecognized" not in str(err.value)


def test_garbage_weights_are_a_model_error(tmp_path, tiny):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(models.ModelError, match=r"could not read its weights from .*SafetensorError"):
        models.load(str(tmp_path))


def test_a_folder_without_a_tokenizer_says_so(tmp_path, tiny):
    model, _ = tiny
    model.save_pretrained(tmp_path)
    with pytest.raises(models.ModelError, match=r"lacks tokenizer files \(one of tokenizer.json"):
        models.load(str(tmp_path))
    with pytest.raises(models.ModelError, match="lacks tokenizer files"):
        models.load_tokenizer(str(tmp_path))


def test_unreadable_config_is_a_model_error(tmp_path, tiny):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(models.ModelError, match=r"could not read its config.json"):
        models.load(str(tmp_path))


@pytest.mark.parametrize(
    "spec",
    ["artifacts/models/nothing-here", "no/such/deep/folder", "./missing", "../missing", "~/surely-not-here-hagstudy",
     "/no/such/folder", "runs/missing"],  # runs/ exists: 'runs/missing' is a path, not the hub id 'runs/missing'
)
def test_a_missing_local_path_is_no_such_folder_not_a_hub_lookup(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(models.ModelError, match=f"model spec '{spec}': no such folder"):
        models.load(spec)


def test_a_file_is_not_a_model_folder(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(models.ModelError, match="is a file, not a folder"):
        models.load(str(f))


@pytest.mark.parametrize("spec", ["", "   "])
def test_an_empty_spec_is_refused(spec):
    with pytest.raises(models.ModelError, match="empty model spec"):
        models.load(spec)


def test_spec_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert models.resolve("runs") == models.Path("runs")  # an existing folder, even without a slash
    with pytest.raises(models.ModelError, match="unknown model spec"):
        models.resolve("not a spec/with spaces")


def test_an_unreachable_hub_id_is_a_model_error(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(models.ModelError, match=r"'nobody-hagstudy/nothing'.*hub id"):
        models.load("nobody-hagstudy/nothing")
