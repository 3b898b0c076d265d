"""A Llama decode step as one pure function over packed weights (the engine's "fused" step).

The engine's eager step calls the transformers model: per layer dozens of small ops (casts, RoPE,
``repeat_kv`` copies, an SDPA call with a mask) whose per-op cost, not arithmetic, dominates a CPU
decode step. ``decode_step`` does the same maths for one new token per row with fewer, larger ops:

* q, k and v come from one matmul (their weights concatenated), gate and up from another;
* RoPE reads a precomputed cos/sin table instead of recomputing them per layer;
* grouped-query attention is two batched matmuls over the cache's own layout (no ``repeat_kv``
  copy), with an additive mask built once per step;
* the new key/value column is written straight into the engine's preallocated KV buffers.

It is the same model, not the same floating-point program: rounding differs from transformers'
forward (fused weights, another attention kernel), so texts decoded with it are keyed separately
from the eager path's (``requests.request_key``).

Supported: plain full-attention Llama-family models (``LlamaForCausalLM`` and its PEFT LoRA
wrappers, whose adapters are merged into the packed weights). Anything else: ``unsupported`` says
why, and the engine uses its eager step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

ROPE_TABLE = 8192  # positions covered by the cos/sin table (grown on demand)


@dataclass
class StepWeights:
    """The decoder's weights, packed for one-token steps (views of the model's where no packing is needed)."""

    embed: torch.Tensor  # [V, H]
    lm_head: torch.Tensor  # [V, H]
    norm: torch.Tensor  # [H] final RMSNorm
    ln_in: list[torch.Tensor]  # per layer [H]
    ln_post: list[torch.Tensor]  # per layer [H]
    qkv: list[torch.Tensor]  # per layer [(Hq + 2 Hkv) D, H]
    o: list[torch.Tensor]  # per layer [H, Hq D]
    gate_up: list[torch.Tensor]  # per layer [2 I, H]
    down: list[torch.Tensor]  # per layer [H, I]
    n_heads: int
    n_kv: int
    head_dim: int
    eps: float
    rope_cos: torch.Tensor  # [P, D] float32
    rope_sin: torch.Tensor  # [P, D] float32
    inv_freq: torch.Tensor  # [D/2] float32

    @property
    def layers(self) -> int:
        return len(self.qkv)

    def rope(self, pos: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin rows for positions ``pos`` [B], cast like transformers' rotary embedding."""
        need = int(pos.max()) + 1
        if need > self.rope_cos.shape[0]:
            self.rope_cos, self.rope_sin = _rope_table(self.inv_freq, max(need, 2 * self.rope_cos.shape[0]))
        return self.rope_cos[pos].to(dtype), self.rope_sin[pos].to(dtype)


def unsupported(model: Any) -> str | None:
    """Why ``decode_step`` cannot run this model (None when it can)."""
    base = _base_model(model)
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        return f"model type {getattr(cfg, 'model_type', type(model).__name__)!r} is not llama"
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rope type {rope.get('rope_type')!r}"
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "activation or biases differ from plain Llama"
    if hasattr(base.model.embed_tokens, "base_layer"):
        return "adapter on the embeddings"
    for module in base.modules():
        if not hasattr(module, "base_layer"):
            continue
        kind = type(module).__name__
        if not hasattr(module, "lora_A") or not hasattr(module, "get_delta_weight"):
            return f"wrapped layer {kind}"
        if getattr(module, "merged", False) or any(getattr(module, "use_dora", {}).values()):
            return f"{kind}: LoRA merged in place, or DoRA"
    return None


def pack(model: Any, prepack: bool = False) -> StepWeights:
    """The model's effective weights (LoRA deltas merged in), packed for ``decode_step``.

    ``prepack``: reorder the matmul weights once into oneDNN's blocked layout (bf16 on CPU only), which
    saves the reorder a plain bf16 ``linear`` pays on every call.
    """
    base = _base_model(model)
    cfg = base.config
    inner = base.model
    with torch.no_grad():
        layers = inner.layers
        qkv, o, gate_up, down, ln_in, ln_post = [], [], [], [], [], []
        for layer in layers:
            at, mlp = layer.self_attn, layer.mlp
            qkv.append(torch.cat([_weight(at.q_proj), _weight(at.k_proj), _weight(at.v_proj)]).contiguous())
            o.append(_weight(at.o_proj))
            gate_up.append(torch.cat([_weight(mlp.gate_proj), _weight(mlp.up_proj)]).contiguous())
            down.append(_weight(mlp.down_proj))
            ln_in.append(layer.input_layernorm.weight.detach())
            ln_post.append(layer.post_attention_layernorm.weight.detach())
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        inv_freq = inv_freq.to(qkv[0].device)
        cos, sin = _rope_table(inv_freq, ROPE_TABLE)
        lm_head = _weight(base.lm_head)
        if prepack and can_prepack(qkv[0]):
            qkv, o, gate_up, down = ([_prepack(t) for t in group] for group in (qkv, o, gate_up, down))
            lm_head = _prepack(lm_head)
        return StepWeights(
            embed=inner.embed_tokens.weight.detach(),
            lm_head=lm_head,
            norm=inner.norm.weight.detach(),
            ln_in=ln_in,
            ln_post=ln_post,
            qkv=qkv,
            o=o,
            gate_up=gate_up,
            down=down,
            n_heads=cfg.num_attention_heads,
            n_kv=cfg.num_key_value_heads,
            head_dim=head_dim,
            eps=float(cfg.rms_norm_eps),
            rope_cos=cos,
            rope_sin=sin,
            inv_freq=inv_freq,
        )


def can_prepack(w: torch.Tensor) -> bool:
    """oneDNN packing applies: a bf16 CPU weight, with torch built with oneDNN."""
    return w.device.type == "cpu" and w.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _prepack(w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), 64)


def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T; with a oneDNN-packed weight, its linear kernel (the same products, no per-call reorder)."""
    if w.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    return x @ w.t()


def _rope_table(inv_freq: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' default RoPE (float32 products, cos/sin of the doubled frequencies) for positions 0..n-1."""
    freqs = torch.arange(n, dtype=torch.float32, device=inv_freq.device)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _base_model(model: Any) -> Any:
    """The ``*ForCausalLM`` under PEFT wrappers."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def _weight(linear: Any) -> torch.Tensor:
    """A linear layer's effective weight: plain, or a PEFT LoRA layer's base weight plus its active delta."""
    if hasattr(linear, "base_layer") and hasattr(linear, "lora_A"):
        w = linear.get_base_layer().weight.detach()
        delta = torch.zeros_like(w, dtype=torch.float32)
        for name in linear.active_adapters:
            if name in linear.lora_A:
                delta += linear.get_delta_weight(name).to(torch.float32)
        return (w.to(torch.float32) + delta).to(w.dtype).contiguous()
    return linear.weight.detach()


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: float32 statistics, cast back, then the weight."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


def layer_step(
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor,
    ln_in: torch.Tensor,
    qkv_w: torch.Tensor,
    o_w: torch.Tensor,
    ln_post: torch.Tensor,
    gate_up_w: torch.Tensor,
    down_w: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    col: torch.Tensor,
    n_heads: int,
    n_kv: int,
    eps: float,
) -> torch.Tensor:
    """One decoder layer for one new token per row: the residual stream h [B, H] after the layer.

    Writes the new key/value into ``keys``/``values`` [B, Hkv, L, D] (contiguous) at column ``col``
    and attends over all L columns under the additive ``mask`` [B, 1, 1, L].
    """
    b = h.shape[0]
    d = keys.shape[-1]
    g = n_heads // n_kv
    x = _rms(h, ln_in, eps)
    qkv = _linear(x, qkv_w)
    q = _rotate(qkv[:, : n_heads * d].view(b, n_heads, d), cos, sin)
    k = _rotate(qkv[:, n_heads * d : (n_heads + n_kv) * d].view(b, n_kv, d), cos, sin)
    v = qkv[:, (n_heads + n_kv) * d :].view(b, n_kv, d)
    keys.index_copy_(2, col.view(1), k[:, :, None, :])
    values.index_copy_(2, col.view(1), v[:, :, None, :])
    kv_len = keys.shape[2]
    scores = torch.bmm(q.reshape(b * n_kv, g, d), keys.view(b * n_kv, kv_len, d).transpose(1, 2)).view(b, n_kv, g, kv_len)
    probs = torch.softmax(scores.to(torch.float32) * d**-0.5 + mask, dim=-1).to(h.dtype)
    att = torch.bmm(probs.view(b * n_kv, g, kv_len), values.view(b * n_kv, kv_len, d)).reshape(b, n_heads * d)
    h = h + _linear(att, o_w)
    x = _rms(h, ln_post, eps)
    gu = _linear(x, gate_up_w)
    inter = gu.shape[1] // 2
    return h + _linear(torch.nn.functional.silu(gu[:, :inter]) * gu[:, inter:], down_w)


def decode_step(
    w: StepWeights,
    tokens: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    col: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """Next-token logits (float32 [B, V]) for one new token per row.

    tokens [B]; cos/sin [B, D] for each row's position; ``keys``/``values`` per layer [B, Hkv, L, D]
    (contiguous: the cache's columns, spare ones zero), into which the new column is written at
    ``col`` (a 0-dim int64 tensor); bias [B, L] additive
    attention mask (0 or -inf) in float32.
    """
    h = w.embed[tokens]
    cos, sin, mask = cos[:, None, :], sin[:, None, :], bias[:, None, None, :]
    for i in range(w.layers):
        h = layer_step(h, cos, sin, mask, w.ln_in[i], w.qkv[i], w.o[i], w.ln_post[i], w.gate_up[i], w.down[i],
                  keys[i], values[i], col, w.n_heads, w.n_kv, w.eps)
    return _linear(_rms(h, w.norm, w.eps), w.lm_head).to(torch.float32)
