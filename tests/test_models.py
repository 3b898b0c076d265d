import pytest

from hagstudy import models


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
def test_embedded_model_loads_from_cache_and_answers():
    import time

    import torch

    models.ensure_cached()
    start = time.time()
    model, tok = models.load()
    assert time.time() - start < 30  # from the safetensors cache, not the GGUF (that takes ~25 s more)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])
