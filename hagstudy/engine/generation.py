"""The generation engine: batched decoding where every row has its own config and seed.

Generation is nearly all of the study's cost (the search samples thousands of completions, each
under a different config), so this module runs its own decode loop over the model's KV cache rather
than one ``model.generate`` per config:

* **Per-row hyperparameters.** Repetition penalty, temperature, top-k and top-p are tensors with one
  value per row, applied in transformers' order (penalty, temperature, top_k, top_p) with the same
  arithmetic as its processors (``filter_logits``; tests/test_generation.py checks them row by row).
  Greedy rows (temperature 0) share the batch with sampled rows.
* **Adaptive baselines, per row.** ``min_p`` (transformers' ``MinPLogitsWarper``, after top-p as in
  its warper order) raises a row's keep threshold to the least probable token it keeps, so the
  candidate path and the draw need nothing new. ``edt_theta`` (EDT) replaces a row's temperature
  by ``T0 * EDT_N ** (theta / H)`` per step, H the entropy of its penalised logits at temperature 1
  (floored at ``EDT_MIN_TEMPERATURE``). Both are skipped when no row in the batch uses them, so rows
  without them run exactly the arithmetic they ran before (same texts, same keys: a config carries
  ``min_p``/``edt_theta`` in its key only when they are on, so their texts are cached under new keys
  and ENGINE_VERSION stays 2).
* **Per-row randomness.** A row's draw at step t is inverse-CDF sampling over its own filtered
  distribution (in vocabulary order) with a uniform taken from a Philox stream seeded by
  (seed, sha256(prompt)). No generator is shared between rows, so a row's text depends only on
  (model, prompt, config, seed), never on which rows share its batch. The stream does not depend on
  the config: one item under two configs with the same seed uses common random numbers, which makes
  config comparisons less noisy. (Exactness caveat: batch size and padding can change a row's logits
  by floating-point rounding, notably in bf16; that can flip a near-tie, never the distribution.
  Resumption never changes a batch, so a resumed run repeats those roundings exactly.)
* **Throughput.** Requests are sorted by prompt length (equal prompts adjacent: one item under many
  configs and seeds is prefilled once and its KV rows copied). Decoding is continuous batching over
  ``max_batch_size`` slots: a finished row's slot is refilled from the queue (the new rows are
  prefilled separately and written right-aligned into the shared cache), so no compute is spent on
  finished rows beyond a few steps; when the queue is empty, dead slots are compacted away once that
  saves more than the copy costs. Cache columns that are padding for every row are trimmed, and the
  KV cache is a DynamicCache whose layers append into preallocated buffers (no per-step copy).
  Per step: one forward, then a handful of vectorized [B, V] passes (top-k via block maxima, no
  vocabulary sort); nothing loops over the vocabulary or, per token, over rows in Python.
* **Decode step.** ``Engine(step=...)``: "eager" (default) runs the transformers forward; "fused" runs
  ``decode_step`` (packed weights, fewer and larger ops, attention over tight KV buffers grown
  ``KV_BUCKET`` columns at a time), "compiled" the same under ``torch.compile`` (one layer's graph,
  falling back to "fused", logged and counted, if compiling fails), "auto" compiled where supported.
  Rounding differs between steps, so the step is part of the cache key (``request_key``); the eager
  step's keys are ENGINE_VERSION 2's, unchanged, so cached results stay reproducible.
* **Cache and resumption.** Jobs are decoded in fixed groups of ``group_rows`` (a few batches), and
  each finished group is written to the ``CompletionCache`` in one transaction. A killed run loses at
  most the group in flight; its rerun rebuilds exactly the same groups and batches for the rest, so it
  ends with byte-identical texts, bf16 included (see ``_decode``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hagstudy.config import ENGINE_STEPS
from hagstudy.decoding import EDT_MIN_TEMPERATURE, EDT_N, DecodingConfig
from hagstudy.engine import decode_step, models

log = logging.getLogger(__name__)

# Part of every cache key: bump it whenever the same request could decode to a different text.
ENGINE_VERSION = "2"  # 2: the final sampling path of the first release (1 was used during its development)
# The keys of texts decoded with ``decode_step`` (step "fused" or "compiled") carry this version and the
# step's name instead: its rounding differs from the eager forward's, so neither may serve the other.
STEP_VERSION = "3"
STEPS = ENGINE_STEPS  # the profile checks generation.step against the same tuple
KV_BUCKET = 16  # fused/compiled steps attend over the cache rounded up to this many columns (grown in these steps)

TOPP_CANDIDATES = 64  # first guess at the nucleus size; rows whose nucleus is larger are sorted in full
TIE_SLACK = 8  # extra candidates beyond the largest k, so ties at the k-th value rarely leave the fast path
PROMPT_STATE_BYTES = 512 << 20  # prefilled prompts kept for later refills within one generate call
GROUP_BATCHES = 4  # a decode group is this many batches: big enough that refills keep slots busy
CPU_BATCH = 96  # default rows per batch on CPU: on 2 cores 96 beat 48/64 and tied 128 (scripts/bench_generation.py)


@dataclass(frozen=True)
class Request:
    prompt: str  # fully rendered prompt text (chat template applied, generation prompt added)
    config: DecodingConfig  # includes max_new_tokens
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    text: str  # the new tokens decoded, special tokens skipped
    n_tokens: int  # tokens generated (up to and including end-of-turn)
    finished: bool  # True if it stopped on end-of-turn, False if it hit max_new_tokens
    cached: bool


def from_cache(
    cache: Any, keys: Sequence[str], requests: Sequence[Request]
) -> tuple[dict[str, Completion], list[tuple[str, Request]], int]:
    """(completions found in ``cache`` by key, the distinct (key, request) pairs still to decode in
    request order, how many of ``requests`` the cache served): the start of every backend's generate."""
    first: dict[str, Request] = {}
    for key, req in zip(keys, requests):
        first.setdefault(key, req)
    done: dict[str, Completion] = {}
    if cache is not None and first:
        for key, row in cache.get_many(list(first)).items():
            done[key] = Completion(row["text"], int(row["n_tokens"]), bool(row["finished"]), cached=True)
    todo = [(k, r) for k, r in first.items() if k not in done]
    return done, todo, sum(1 for k in keys if k in done)


def require_prompts(requests: Sequence[Request]) -> None:
    """Refuse a request without a rendered prompt (a key of an empty prompt would serve any chat)."""
    for r in requests:
        if not r.prompt:
            raise ValueError("empty prompt: render the chat messages with Engine.render first")


def request_key(identity: str, request: Request, step: str = "eager") -> str:
    """sha256 of everything a completion's text depends on; the cache key.

    ``step``: the decode step that produces the text ("eager", "fused" or "compiled"). The eager step's
    keys are those of ENGINE_VERSION 2, unchanged; the others add ``STEP_VERSION`` and their name.
    """
    head = [ENGINE_VERSION] if step == "eager" else [f"{STEP_VERSION}:{step}"]
    payload = json.dumps([*head, identity, request.prompt, request.config.key(), int(request.seed)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def uniforms(seed: int, prompt: str, n: int) -> np.ndarray:
    """The row's n uniforms in [0, 1): a Philox stream keyed by (seed, sha256(prompt)), independent of batching."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    words = [int(seed) % (1 << 64) & 0xFFFFFFFF, (int(seed) % (1 << 64)) >> 32]
    words += [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(words))).random(n)


# ---------------------------------------------------------------------------------------------
# Per-row logits processing (vectorized)
# ---------------------------------------------------------------------------------------------


@dataclass
class RowParams:
    """One tensor per hyperparameter, one value per row (greedy rows carry temperature 1, min_p and edt 0)."""

    temperature: torch.Tensor  # float32 [B]
    greedy: torch.Tensor  # bool [B]
    top_k: torch.Tensor  # int64 [B], 0 = off
    top_p: torch.Tensor  # float64 [B], 1 = off
    penalty: torch.Tensor  # float32 [B]
    min_p: torch.Tensor  # float32 [B], 0 = off
    edt_theta: torch.Tensor  # float64 [B], 0 = off

    @classmethod
    def from_configs(cls, configs: Sequence[DecodingConfig], device: torch.device | str = "cpu") -> RowParams:
        return cls(
            temperature=torch.tensor([c.temperature if not c.greedy else 1.0 for c in configs], dtype=torch.float32, device=device),
            greedy=torch.tensor([c.greedy for c in configs], dtype=torch.bool, device=device),
            top_k=torch.tensor([c.top_k for c in configs], dtype=torch.int64, device=device),
            top_p=torch.tensor([c.top_p for c in configs], dtype=torch.float64, device=device),
            penalty=torch.tensor([c.repetition_penalty for c in configs], dtype=torch.float32, device=device),
            min_p=torch.tensor([0.0 if c.greedy else c.min_p for c in configs], dtype=torch.float32, device=device),
            edt_theta=torch.tensor([0.0 if c.greedy else c.edt_theta for c in configs], dtype=torch.float64, device=device),
        )

    def select(self, idx: torch.Tensor) -> RowParams:
        return RowParams(*(getattr(self, f)[idx] for f in _PARAM_FIELDS))


_PARAM_FIELDS = ("temperature", "greedy", "top_k", "top_p", "penalty", "min_p", "edt_theta")


def scaled_scores(
    logits: torch.Tensor, seen: torch.Tensor | None, params: RowParams, temperature: torch.Tensor | None = None
) -> torch.Tensor:
    """float32 logits, repetition-penalised, divided by temperature: transformers' first two processors.

    Two passes over the vocabulary (cast, in-place division; a mixed-dtype division is ~3x slower on
    CPU); the penalty then rewrites only the seen entries, with transformers' arithmetic:
    (float(logit) * p or / p) / T. ``temperature``: per-row T replacing ``params.temperature`` (EDT rows).
    """
    temp = (params.temperature if temperature is None else temperature)[:, None]
    x = _divide(logits.to(torch.float32, copy=True), temp, inplace=True)
    if seen is not None:
        raw = logits.gather(1, seen).to(torch.float32)
        p = params.penalty[:, None]
        x.scatter_(1, seen, _divide(torch.where(raw < 0, raw * p, _divide(raw, p)), temp))
    return x


def edt_temperature(logits: torch.Tensor, seen: torch.Tensor | None, params: RowParams) -> torch.Tensor:
    """Each row's temperature this step: ``params.temperature``, and for EDT rows (edt_theta > 0)
    T = T0 * EDT_N ** (theta / H), floored at ``EDT_MIN_TEMPERATURE``.

    H is the entropy (nats) of the softmax of the row's repetition-penalised logits at temperature 1,
    in float64 (then T is rounded to float32, like every temperature here); H = 0 gives T = 0, hence the
    floor. Only EDT rows are touched, so other rows keep their temperature bit for bit.
    """
    temp = params.temperature
    rows = (params.edt_theta > 0).nonzero().squeeze(1)
    if not len(rows):
        return temp
    # The penalised logits at temperature 1: ``scaled_scores`` itself (a division by 1 is exact).
    sub = params.select(rows)
    x = scaled_scores(logits[rows], None if seen is None else seen[rows], sub, torch.ones_like(sub.temperature))
    h = torch.special.entr(torch.softmax(x.to(torch.float64), dim=-1)).sum(-1)
    t0 = params.temperature[rows].to(torch.float64)
    t = (t0 * EDT_N ** (params.edt_theta[rows] / h)).clamp(min=EDT_MIN_TEMPERATURE)
    temp = temp.clone()
    temp[rows] = t.to(torch.float32)
    return temp


def _divide(x: torch.Tensor, d: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """x / d the way transformers' processors get it: their divisor is a Python number, which CUDA turns
    into a multiplication by its float32 reciprocal (1 ulp off true division); the CPU divides."""
    if x.device.type == "cuda":
        r = torch.reciprocal(d)
        return x.mul_(r) if inplace else x * r
    return x.div_(d) if inplace else x / d


@dataclass
class Warp:
    """Top-k/top-p outcome per row: keep tokens with score >= ``thr``.

    ``vals``/``idx`` are the top ``m`` candidates (descending); ``fits`` marks rows whose kept set is
    inside their own first ``m_row`` candidates, so they can be sampled without touching the vocabulary.
    """

    thr: torch.Tensor  # [B] (-inf = keep all)
    vals: torch.Tensor | None  # [B, m]
    idx: torch.Tensor | None  # [B, m]
    fits: torch.Tensor  # [B] bool


def warp(scores: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> Warp:
    """Top-k then top-p on temperature-scaled scores, per row, without sorting the vocabulary.

    Top-k keeps every token >= the k-th largest value (ties included, as transformers'
    ``TopKLogitsWarper``). Top-p keeps the most probable survivors whose preceding mass is below p
    (transformers' ``TopPLogitsWarper``: drop where the ascending cumulative mass is <= 1 - p; keep at
    least one). Only the top ``max(k) + 1`` (or ``TOPP_CANDIDATES + 1``) values are extracted; rows whose
    nucleus is wider are sorted in full. A boundary tie is kept whole here (transformers keeps
    whichever tied token its unstable sort puts last), and cumulative sums may round differently in
    the last bit; both change nothing but measure-zero boundary cases.
    """
    rows, vocab = scores.shape
    dev = scores.device
    use_k = top_k > 0
    use_p = top_p < 1.0
    any_k, any_p = bool(use_k.any()), bool(use_p.any())
    neg_inf = torch.full((rows,), float("-inf"), dtype=scores.dtype, device=dev)
    if not (any_k or any_p):
        return Warp(neg_inf, None, None, torch.zeros(rows, dtype=torch.bool, device=dev))
    k = top_k.clamp(min=1, max=vocab)
    m_row = torch.where(use_k, k, torch.where(use_p, TOPP_CANDIDATES, 0))
    m = min(vocab, int(m_row.max()) + TIE_SLACK)  # slack: bf16 logits often tie at the k-th value
    vals, idx = topk(scores, m)
    thr = torch.where(use_k, vals.gather(1, (k.clamp(max=m) - 1)[:, None]).squeeze(1), neg_inf)
    if any_p:
        # Top-k survivors all among the row's own m_row + slack candidates: normalise over those. (Decided
        # from the row alone, not from m, which depends on the other rows.)
        own = vals.gather(1, (m_row + TIE_SLACK - 1).clamp(max=m - 1)[:, None]).squeeze(1)
        k_inside = use_k & (own < thr)
        prow = use_p.nonzero().squeeze(1)
        thr[prow] = _topp_threshold(scores, prow, vals[prow], thr[prow], top_p[prow], k_inside[prow])
    # Every kept token is a candidate. Which rows take the candidate path may depend on the other rows
    # (through m); it does not matter: both paths make the same sequential sum (see ``sample_rows``).
    fits = (m_row > 0) & (vals[:, -1] < thr)
    return Warp(thr, vals, idx, fits)


def min_p_warp(scores: torch.Tensor, w: Warp, min_p: torch.Tensor) -> Warp:
    """Min-p after top-k/top-p, per row (transformers' ``MinPLogitsWarper``): remove tokens whose
    probability is below ``min_p`` times the row's top probability; rows with min_p 0 are untouched.

    The probabilities are transformers' own arithmetic: a float32 softmax over the top-k/top-p survivors,
    compared with float32(min_p) * top. Softmax is monotone in the score, so the kept set is every
    survivor with score >= the least kept score ``cut``: the row's threshold becomes max(thr, cut). A
    higher threshold keeps a subset, so the rest of the path stays valid: ``vals``/``idx`` are still the
    row's own top candidates, and a row ``fits`` when its last candidate is below the new threshold
    (every token outside the candidates scores <= that one), which ``sample_rows`` and ``_greedy`` rely on.
    """
    rows = (min_p > 0).nonzero().squeeze(1)
    if not len(rows):
        return w
    x = scores[rows]
    thr = w.thr[rows]
    if bool(torch.isfinite(thr).any()):
        x = x.masked_fill(x < thr[:, None], float("-inf"))
    probs = torch.softmax(x, dim=-1)
    keep = probs >= min_p[rows, None] * probs.amax(-1, keepdim=True)
    cut = x.masked_fill(~keep, float("inf")).amin(-1)
    new_thr = w.thr.clone()
    new_thr[rows] = torch.maximum(thr, cut)
    fits = w.fits.clone()
    if w.vals is not None:
        fits[rows] = w.vals[rows, -1] < new_thr[rows]
    return Warp(new_thr, w.vals, w.idx, fits)


def topk(x: torch.Tensor, m: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(m)`` (values exact, descending), ~2x faster for small m on CPU.

    The top m values lie in the m blocks with the largest maxima, so only those m * block entries
    are searched. Tied values may come with other (equally valid) indices than ``torch.topk``'s.
    """
    rows, vocab = x.shape
    if x.device.type != "cpu" or vocab % block or 4 * m * block > vocab or not x.is_contiguous():
        return x.topk(m, dim=-1, sorted=True)
    blocks = x.view(rows, vocab // block, block)
    best = blocks.amax(-1).topk(m, dim=-1, sorted=False).indices  # [rows, m]
    cand = blocks.gather(1, best[:, :, None].expand(-1, -1, block)).view(rows, m * block)
    vals, pos = cand.topk(m, dim=-1, sorted=True)
    idx = best.gather(1, pos // block) * block + pos % block
    return vals, idx


def _topp_threshold(
    scores: torch.Tensor, prow: torch.Tensor, vals: torch.Tensor, thr_k: torch.Tensor, top_p: torch.Tensor, k_inside: torch.Tensor
) -> torch.Tensor:
    """The score of the least probable token top-p keeps, for rows ``prow`` (all using top-p)."""
    vocab = scores.shape[1]
    top = vals[:, :1]
    # Normaliser over the top-k survivors: from the candidates when they hold all of them, else a full pass.
    # Sums in float64 (a sequential cumsum over candidates, whose trailing zeros change nothing), so the
    # result does not depend on how many candidates the batch extracted or how a reduction was split.
    alive = vals >= thr_k[:, None]
    z = torch.exp(vals - top).masked_fill_(~alive, 0.0).to(torch.float64).cumsum(-1)[:, -1:]
    full = (~k_inside).nonzero().squeeze(1)
    if len(full):
        x = scores[prow[full]]
        e = torch.exp(x - top[full])
        if bool(torch.isfinite(thr_k[full]).any()):
            e.masked_fill_(x < thr_k[full, None], 0.0)
        z[full] = e.sum(-1, keepdim=True, dtype=torch.float64)
    z = z.to(scores.dtype)
    limit = (1.0 - top_p).to(scores.dtype)[:, None]  # transformers compares with float32(1 - p)
    out = torch.empty(len(prow), dtype=scores.dtype, device=scores.device)
    todo = torch.arange(len(prow), device=scores.device)
    while len(todo):
        m = vals.shape[1]
        alive = vals >= thr_k[todo, None]
        probs = torch.exp(vals - top[todo]).masked_fill_(~alive, 0.0) / z[todo]
        before = probs.cumsum(-1) - probs  # mass of the more probable tokens
        keep = ((1.0 - before) > limit[todo]) & alive  # both are prefixes of the descending order
        keep[:, 0] = True  # min_tokens_to_keep = 1
        n_keep = keep.sum(-1)
        # Closed: the nucleus ends inside the candidates, or the candidates hold every survivor.
        closed = (n_keep < m) | (m >= vocab) | ~alive[:, -1]
        last = vals.gather(1, (n_keep - 1)[:, None]).squeeze(1)
        out[todo[closed]] = last[closed]
        todo = todo[~closed]
        if len(todo):  # a wide nucleus (high temperature): sort these rows in full
            vals = _sort_desc(scores[prow[todo]])
    return out


def _sort_desc(x: torch.Tensor) -> torch.Tensor:
    """Row values in descending order. On CPU numpy's SIMD sort is ~20x faster than torch.sort here."""
    if x.device.type != "cpu":
        return x.sort(dim=-1, descending=True).values
    asc = np.sort(x.numpy(), axis=-1)
    return torch.from_numpy(np.ascontiguousarray(asc[:, ::-1]))


def filter_logits(logits: torch.Tensor, seen: torch.Tensor, params: RowParams) -> torch.Tensor:
    """The processed logits each row samples from (-inf = removed), as transformers' processors give them.

    Greedy rows get the repetition penalty only (transformers applies no warper without sampling);
    their argmax is the greedy token. Min-p follows top-p and EDT sets the temperature (``min_p_warp``,
    ``edt_temperature``). ``Engine`` runs the same functions inline.
    """
    temp = edt_temperature(logits, seen, params) if bool((params.edt_theta > 0).any()) else None
    x = scaled_scores(logits, seen, params, temp)
    w = warp(x, torch.where(params.greedy, 0, params.top_k), torch.where(params.greedy, 1.0, params.top_p))
    if bool((params.min_p > 0).any()):
        w = min_p_warp(x, w, params.min_p)
    return x.masked_fill(x < w.thr[:, None], float("-inf"))


def sample_rows(scores: torch.Tensor, w: Warp, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw per row: the first token, in vocabulary order, whose cumulative mass exceeds u * total.

    Rows whose kept set ``fits`` in their candidates do this over the candidates re-sorted by token
    id, which is the same sum with the zero terms left out; other rows scan the vocabulary. Every
    operation is row-local, so a row's token depends on its own scores and uniform only. Tokens
    with zero probability are never chosen.
    """
    tokens = torch.empty(len(scores), dtype=torch.int64, device=scores.device)
    fit = w.fits.nonzero().squeeze(1)
    rest = (~w.fits).nonzero().squeeze(1)
    if len(fit):
        vals, idx = w.vals[fit], w.idx[fit]
        order = idx.argsort(dim=-1)
        idx = idx.gather(1, order)
        e = torch.exp(vals - vals[:, :1]).masked_fill_(vals < w.thr[fit, None], 0.0).gather(1, order)
        tokens[fit] = idx.gather(1, _inverse_cdf(e, u[fit])[:, None]).squeeze(1)
    if len(rest):
        x = scores if len(rest) == len(scores) else scores[rest]
        top = w.vals[rest, :1] if w.vals is not None else x.amax(-1, keepdim=True)
        e = torch.exp(x - top)
        thr = w.thr[rest]
        if bool(torch.isfinite(thr).any()):
            e.masked_fill_(x < thr[:, None], 0.0)
        tokens[rest] = _inverse_cdf(e, u[rest])
    return tokens


def _inverse_cdf(e: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the first entry whose running sum exceeds u * total (e >= 0, some e > 0 per row)."""
    cdf = e.cumsum(-1)
    total = cdf[:, -1:]
    target = (u.to(cdf.dtype)[:, None] * total).minimum(torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).squeeze(1)


# ---------------------------------------------------------------------------------------------
# Active batch state
# ---------------------------------------------------------------------------------------------


def _kv_layer_class() -> type:
    """A transformers ``DynamicLayer`` that appends into a preallocated buffer instead of ``torch.cat``.

    ``DynamicLayer.update`` concatenates, which copies the whole cache every step (~20% of a step at
    batch 64 here). This layer writes the new column into spare capacity and returns views; it also
    knows how to drop rows, trim leading padding and splice in new rows, which the engine needs.
    """
    from transformers.cache_utils import DynamicLayer

    class KVLayer(DynamicLayer):
        def __init__(self, reserve: int = 64) -> None:
            super().__init__()
            self.reserve = reserve  # spare columns allocated beyond the current length
            self.kbuf: torch.Tensor | None = None
            self.vbuf: torch.Tensor | None = None
            self.length = 0

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            if self.kbuf is None or self.length + n > self.kbuf.shape[2]:
                self._realloc(self.length + n + self.reserve)
            self.kbuf[:, :, self.length : self.length + n] = key_states
            self.vbuf[:, :, self.length : self.length + n] = value_states
            self.length += n
            self._views()
            return self.keys, self.values

        def _realloc(self, cap: int, like: torch.Tensor | None = None) -> None:
            """New buffers of ``cap`` columns holding the current ones (shaped like ``like`` when empty)."""
            ref = self.kbuf if self.kbuf is not None else like
            b, h, _, d = ref.shape
            kb, vb = ref.new_zeros(b, h, cap, d), ref.new_zeros(b, h, cap, d)  # spare columns finite (see tight)
            if self.kbuf is not None and self.length:
                kb[:, :, : self.length] = self.kbuf[:, :, : self.length]
                vb[:, :, : self.length] = self.vbuf[:, :, : self.length]
            self.kbuf, self.vbuf = kb, vb

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            super().lazy_initialization(key_states, value_states)
            self._realloc(key_states.shape[-2] + self.reserve, like=key_states)

        def _views(self) -> None:
            self.keys = self.kbuf[:, :, : self.length]
            self.values = self.vbuf[:, :, : self.length]

        def get_seq_length(self) -> int:
            return self.length

        def tight(self, cap: int) -> None:
            """Make the buffers contiguous with exactly ``cap`` columns (the fused step attends over all of
            them, so spare columns are zeros: masked, and finite, since 0 x NaN would poison attention)."""
            if self.kbuf.shape[2] == cap and self.kbuf.is_contiguous() and self.vbuf.is_contiguous():
                return
            b, h, _, d = self.kbuf.shape
            for name in ("kbuf", "vbuf"):
                new = self.kbuf.new_zeros(b, h, cap, d)
                new[:, :, : self.length] = getattr(self, name)[:, :, : self.length]
                setattr(self, name, new)
            self._views()

        def advance(self) -> None:
            """The fused step wrote column ``length`` itself."""
            self.length += 1
            self._views()

        def select(self, idx: torch.Tensor) -> None:
            self.kbuf = self.kbuf.index_select(0, idx)
            self.vbuf = self.vbuf.index_select(0, idx)
            self._views()

        def trim_left(self, first: int) -> None:
            self.kbuf = self.kbuf[:, :, first:]  # a view: the spare capacity stays
            self.vbuf = self.vbuf[:, :, first:]
            self.length -= first
            self._views()

        def fill(self, keys: list[torch.Tensor], values: list[torch.Tensor], width: int) -> None:
            """Start from per-prompt states [heads, len, dim], right-aligned to ``width`` (zeros before)."""
            self.lazy_initialization(keys[0][None], values[0][None])
            h, d = keys[0].shape[0], keys[0].shape[2]
            self.kbuf = keys[0].new_zeros(len(keys), h, width + self.reserve, d)
            self.vbuf = values[0].new_zeros(len(keys), h, width + self.reserve, d)
            for r, (k, v) in enumerate(zip(keys, values)):
                pad = width - k.shape[1]
                if pad:
                    self.kbuf[r, :, :pad] = 0  # masked, but must be finite: 0 x NaN would poison attention
                    self.vbuf[r, :, :pad] = 0
                self.kbuf[r, :, pad:width] = k
                self.vbuf[r, :, pad:width] = v
            self.length = width
            self._views()

        def widen(self, width: int) -> None:
            """Left-pad every row with zero columns up to ``width``."""
            pad = width - self.length
            for name in ("kbuf", "vbuf"):
                old = getattr(self, name)
                b, h, _, d = old.shape
                new = old.new_zeros(b, h, width + self.reserve, d)
                new[:, :, :pad] = 0  # masked, but must be finite: 0 x NaN would poison attention
                new[:, :, pad:width] = old[:, :, : self.length]
                setattr(self, name, new)
            self.length = width
            self._views()

        def place(self, other: KVLayer, slots: torch.Tensor) -> None:
            """Overwrite rows ``slots`` with ``other``'s rows, right-aligned (zeros before); ``other`` is not wider."""
            pad = self.length - other.length
            for buf, src in ((self.kbuf, other.keys), (self.vbuf, other.values)):
                if pad:
                    buf[slots, :, :pad] = 0
                buf[slots, :, pad : self.length] = src

    return KVLayer


_KV_LAYER: type | None = None


def _new_cache(model: Any, reserve: int) -> Any:
    """A ``DynamicCache`` whose layers are growable ``KVLayer``s (plain full-attention models only)."""
    global _KV_LAYER
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if _KV_LAYER is None:
        _KV_LAYER = _kv_layer_class()
    cache = DynamicCache(config=model.config)
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise NotImplementedError(f"Engine supports full-attention caches only; this model uses {type(layer).__name__}")
    cache.layers = [_KV_LAYER(reserve) for _ in cache.layers]
    return cache


@dataclass
class _Batch:
    """The rows being decoded: their KV cache, attention mask and sampling state (one row each).

    Slots whose row finished stay in place (``alive`` False) until new rows are prefilled into
    them, so the cache is not copied every time a row ends; once the queue is empty, dead rows are
    compacted away when that saves more than it costs.
    """

    jobs: list[int]  # index into the call's job list, per row
    cache: Any  # transformers DynamicCache of KVLayers
    mask: torch.Tensor  # [B, L] attention mask over the cache columns
    last: torch.Tensor  # [B] the token to feed next
    pos: torch.Tensor  # [B] its position id
    n_gen: torch.Tensor  # [B] tokens generated so far
    max_new: torch.Tensor  # [B]
    seen: torch.Tensor  # [B, P + T] prompt ids (left-padded with a repeat) then output ids
    prompt_width: int  # P
    u: torch.Tensor  # [B, T] float64 uniforms
    params: RowParams
    alive: torch.Tensor  # [B] bool: the slot holds a row still decoding
    flags: dict[str, bool] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def horizon(self) -> int:
        return self.u.shape[1]

    def refresh(self) -> None:
        """Batch-level shortcuts (skip work no row needs); recomputed whenever rows change."""
        p = self.params
        self.flags = {
            "penalty": bool((p.penalty != 1.0).any()),
            "min_p": bool((p.min_p > 0).any()),
            "edt": bool((p.edt_theta > 0).any()),
            "any_greedy": bool(p.greedy.any()),
            "all_greedy": bool(p.greedy.all()),
        }

    def out(self) -> torch.Tensor:
        return self.seen[:, self.prompt_width :]

    def select(self, idx: torch.Tensor) -> None:
        """Keep only rows ``idx`` (compaction: drop dead rows from every tensor and the KV cache)."""
        self.jobs = [self.jobs[i] for i in idx.tolist()]
        for layer in self.cache.layers:
            layer.select(idx)
        for name in ("mask", "last", "pos", "n_gen", "max_new", "seen", "u", "alive"):
            setattr(self, name, getattr(self, name).index_select(0, idx))
        self.params = self.params.select(idx)
        self.trim()
        self.refresh()

    def retire(self, rows: torch.Tensor) -> None:
        """Mark finished rows dead. Their mask shrinks to the newest column (a dead row still runs, and a
        fully masked row would attend to nothing), so columns only they used can be trimmed."""
        self.alive[rows] = False
        self.mask[rows, :-1] = 0
        self.trim()

    def trim(self) -> None:
        """Drop leading cache columns that are padding for every row (rows with long prompts may have left)."""
        if not len(self.jobs):
            return
        first = int(self.mask.any(0).to(torch.int8).argmax())
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.trim_left(first)

    def place(self, new: _Batch, slots: torch.Tensor) -> None:
        """Put freshly prefilled rows into dead slots: only their own KV columns are written."""
        width = self.mask.shape[1]
        if new.mask.shape[1] > width:  # a longer prompt than the cache is wide: left-pad everyone (rare)
            width = new.mask.shape[1]
            for layer in self.cache.layers:
                layer.widen(width)
            self.mask = _lpad(self.mask, width, 1)
        for layer, theirs in zip(self.cache.layers, new.cache.layers):
            layer.place(theirs, slots)
        self.mask[slots] = _lpad(new.mask, width, 1)
        pw = max(self.prompt_width, new.prompt_width)
        self.seen = _lpad_repeat(self.seen, self.prompt_width, pw)
        self.prompt_width = pw
        self.seen[slots] = _lpad_repeat(new.seen, new.prompt_width, pw)
        for name in ("last", "pos", "n_gen", "max_new", "u", "alive"):
            getattr(self, name)[slots] = getattr(new, name)
        for name in _PARAM_FIELDS:
            getattr(self.params, name)[slots] = getattr(new.params, name)
        for slot, job in zip(slots.tolist(), new.jobs):
            self.jobs[slot] = job
        self.refresh()


def _lpad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    short = width - t.shape[dim]
    if short <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = short
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _lpad_repeat(seen: torch.Tensor, width: int, new_width: int) -> torch.Tensor:
    """Widen the prompt part of ``seen`` on the left by repeating each row's first id (a harmless repeat)."""
    if new_width <= width:
        return seen
    return torch.cat([seen[:, :1].expand(-1, new_width - width), seen], dim=1)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


GPU_MEMORY_SHARE = 0.5  # of the free GPU memory, for the decode batch (prefill activations and the allocator take the rest)
GPU_BATCH_MAX = 4096  # sanity ceiling only; the engine at 1,024 rows beat 256 rows 3x on an H200 (issue 12)


def row_bytes(model: Any, context: int = 1024) -> int:
    """Memory one decoding row needs: its KV cache over ``context`` tokens plus ~8 float32 logits rows."""
    cfg = model.config
    layers = getattr(cfg, "num_hidden_layers", 32)
    heads = getattr(cfg, "num_key_value_heads", None) or getattr(cfg, "num_attention_heads", 8)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    elem = next(model.parameters()).element_size()
    return layers * 2 * heads * head_dim * elem * context + 8 * 4 * cfg.vocab_size


def gpu_batch_size(free_bytes: int, per_row: int, share: float = GPU_MEMORY_SHARE, ceiling: int = GPU_BATCH_MAX) -> int:
    """Rows that fit in ``share`` of the free GPU memory (at least 1), rounded down to a multiple of 64 above 64."""
    rows = int(share * free_bytes // max(per_row, 1))
    if rows > 64:
        rows -= rows % 64
    return max(1, min(ceiling, rows))


def default_batch_size(model: Any, device: torch.device) -> int:
    """Rows per batch: ``CPU_BATCH`` on CPU unless memory is short; on a GPU, from its free memory."""
    per_row = row_bytes(model)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return gpu_batch_size(free, per_row)
    avail = _available_memory()
    cap = CPU_BATCH if avail is None else int(max(1, 0.25 * avail // per_row))
    if cap < CPU_BATCH:
        # Batch shape decides bf16 rounding, and the cache keys do not name it: say so, loudly.
        log.warning("decode batch capped at %d rows (CPU_BATCH %d) by available memory (%.1f GB): bf16 texts "
                    "decoded now may differ from a run with full batches", cap, CPU_BATCH, (avail or 0) / 2**30)
    return max(1, min(CPU_BATCH, cap))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@dataclass
class _PromptState:
    """A prompt after prefill: per-layer keys/values [heads, len, dim] and the next-token logits."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    logits: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values, self.logits))


class Engine:
    """Batched decoding with per-row configs and seeds, behind a content-addressed cache."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        cache: Any = None,
        *,
        max_batch_size: int | None = None,
        progress: bool = True,
        identity: str | None = None,
        group_rows: int | None = None,
        step: str = "eager",
    ) -> None:
        """``step``: how a decode step runs. "eager": the transformers forward (ENGINE_VERSION 2 keys).
        "fused": ``decode_step`` uncompiled; "compiled": it under ``torch.compile`` (falls back to "fused",
        logged and counted, where compiling fails); "auto": "compiled" for models ``decode_step``
        supports, else "eager". The step actually used (``self.step``, settled on the first call) is
        part of every cache key, so texts from one step are never served for another."""
        if step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, got {step!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.cache = cache
        self.progress = progress
        self.identity = identity or models.identity(model)
        self.device = next(model.parameters()).device
        self.max_batch_size = int(max_batch_size or default_batch_size(model, self.device))
        self.refill_rows = max(1, self.max_batch_size // 8)  # prefill new rows once this many slots are free
        # Rows decoded and committed together (see _decode): what a kill can lose, and the unit of resumption.
        self.group_rows = int(group_rows or GROUP_BATCHES * self.max_batch_size)
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.eos_ids = torch.tensor(sorted(i for i in eos if i is not None), dtype=torch.int64, device=self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(self.eos_ids[0])
        self._prompts: OrderedDict[tuple[int, ...], _PromptState] = OrderedDict()
        self._prompt_bytes = 0
        self.requested_step = step
        self.step = step if step in ("eager", "fused") else None  # None: settled on first use (_settle_step)
        self._step_fn: Any = None
        self._weights: Any = None
        self._weights_stamp: Any = None
        self.stats: dict[str, Any] = {
            "hits": 0,
            "misses": 0,
            "new_tokens": 0,
            "seconds": 0.0,
            "prefill_tokens": 0,  # prompt tokens run (padding excluded)
            "steps": 0,  # decode steps (one forward each)
            "prefill_seconds": 0.0,
            "forward_seconds": 0.0,  # decode-step forwards
            "sample_seconds": 0.0,  # logits processing and draws
            "splice_seconds": 0.0,  # dropping finished rows / merging new ones into the KV cache
            "row_steps": 0,  # sum over decode steps of the batch size (dead slots included)
            "kv_cells": 0,  # sum over decode steps of rows x cache columns (attention work, padding included)
            "kv_live_cells": 0,  # the same without padding and dead slots: kv_live_cells / kv_cells = attention efficiency
            "compile_seconds": 0.0,  # settling the compiled step (its first calls, which compile)
            "compile_fallbacks": 0,  # compiled step unavailable: decoded with the fused step instead
        }
        if self.step == "fused" and (why := decode_step.unsupported(model)):
            raise ValueError(f"step='fused' cannot run this model: {why}")

    def render(self, messages: list[dict[str, str]]) -> str:
        """Chat template plus the generation prompt: the text a Request carries."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[Request], desc: str = "generate") -> list[Completion]:
        """Completions in request order. Cached ones are read, identical requests decoded once.

        ``stats``: ``hits`` counts requests served from the cache, ``misses`` distinct requests decoded.
        """
        start = time.perf_counter()
        require_prompts(requests)
        self._settle_step()
        keys = [self.key(r) for r in requests]
        done, todo, hits = from_cache(self.cache, keys, requests)
        self.stats["hits"] += hits
        self.stats["misses"] += len(todo)
        if todo:
            try:
                with torch.inference_mode():
                    self._decode(todo, done, desc)
            finally:
                # Prompt states live for one call: the model may change between calls (adapters, training).
                self._prompts.clear()
                self._prompt_bytes = 0
                self.stats["seconds"] += time.perf_counter() - start
        else:
            self.stats["seconds"] += time.perf_counter() - start
        if todo:
            seconds = time.perf_counter() - start
            tokens = sum(done[k].n_tokens for k, _ in todo)
            log.info(
                "%s: %d requests, %d from cache, %d decoded, %d tokens in %.1f s (%.0f tok/s)",
                desc, len(requests), hits, len(todo), tokens, seconds, tokens / max(seconds, 1e-9),
            )
        return [done[k] for k in keys]

    def key(self, request: Request) -> str:
        """The request's cache key under this engine's model and step."""
        if self.step is None:
            self._settle_step()
        return request_key(self.identity, request, self.step)

    # -- the decode step -----------------------------------------------------------------------

    def _settle_step(self) -> None:
        """Resolve "auto"/"compiled" once: compile and run the step on a small batch, or fall back.

        Done before any key is computed, so a fallback is visible in the keys of every text it decodes.
        """
        if self.step is not None:
            return
        why = decode_step.unsupported(self.model)
        if why:
            if self.requested_step == "compiled":
                raise ValueError(f"step='compiled' cannot run this model: {why}")
            log.info("decode step: eager (%s)", why)
            self.step = "eager"
            return
        start = time.perf_counter()
        try:
            self._step_fn = decode_step.compile_step()
            self._warm_up()
            self.step = "compiled"
        except Exception as err:  # noqa: BLE001 - any compile failure: run the same maths uncompiled
            decode_step.fallback(decode_step.decode_step, err)
            self.stats["compile_fallbacks"] += 1
            self._step_fn = None
            self._weights = None  # repack for the uncompiled step
            self.step = "fused"
        self.stats["compile_seconds"] += time.perf_counter() - start
        log.info("decode step: %s (settled in %.1f s)", self.step, time.perf_counter() - start)

    def _warm_up(self) -> None:
        """Run the compiled step on throwaway inputs of two batch sizes (compiles, for all sizes)."""
        w = self._packed()
        dev, dtype = self.device, w.embed.dtype
        # Inside inference_mode, as the decode loop: inference tensors are another guard (a recompile).
        with torch.inference_mode():
            for b, width in ((5, 32), (7, 48)):  # sizes unequal to model dims (duck sizing would tie them)
                keys = [torch.zeros(b, w.n_kv, width, w.head_dim, dtype=dtype, device=dev) for _ in range(w.layers)]
                values = [torch.zeros_like(k) for k in keys]
                bias = torch.zeros(b, width, dtype=torch.float32, device=dev)
                pos = torch.arange(b, device=dev)
                cos, sin = w.rope(pos, dtype)
                out = self._step_fn(w, pos, cos, sin, keys, values, torch.tensor(width - 1, device=dev), bias)
                if out.shape != (b, w.embed.shape[0]) or not bool(torch.isfinite(out).all()):
                    raise RuntimeError(f"compiled step returned {tuple(out.shape)} or non-finite logits on the warm-up batch")

    def _packed(self) -> Any:
        """``decode_step``'s packed weights, rebuilt when any parameter changed (new tensor or in-place write)."""
        stamp = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if self._weights is None or stamp != self._weights_stamp:
            self._weights = decode_step.pack(self.model, prepack=self.step == "fused")
            self._weights_stamp = stamp
        return self._weights

    def _forward(self, batch: _Batch) -> torch.Tensor:
        """Next-token logits [B, V] for every row, by the engine's step; appends the new column to the cache."""
        if self.step == "eager":
            mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=1)
            out = self.model(
                input_ids=batch.last[:, None], attention_mask=mask, position_ids=batch.pos[:, None],
                past_key_values=batch.cache, use_cache=True,
            )
            batch.mask = mask
            return out.logits[:, -1, :]
        w = self._packed()
        layers = batch.cache.layers
        n = layers[0].length
        cap = -(-(n + 1) // KV_BUCKET) * KV_BUCKET
        for layer in layers:
            layer.tight(cap)
        mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=1)
        bias = torch.full((len(batch), cap), float("-inf"), dtype=torch.float32, device=mask.device)
        bias[:, : n + 1].masked_fill_(mask.bool(), 0.0)
        cos, sin = w.rope(batch.pos, w.embed.dtype)
        fn = self._step_fn or decode_step.decode_step
        col = torch.tensor(n, dtype=torch.int64, device=mask.device)
        logits = fn(w, batch.last, cos, sin, [x.kbuf for x in layers], [x.vbuf for x in layers], col, bias)
        for layer in layers:
            layer.advance()
        batch.mask = mask
        return logits

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, jobs: list[tuple[str, Request]], done: dict[str, Completion], desc: str) -> None:
        """Decode ``jobs`` group by group; each group's completions reach the cache in one transaction.

        The groups are consecutive ``group_rows`` slices of the jobs in a fixed order (prompt length,
        prompt, request order), and a group is committed only when all its rows are done. A killed call
        therefore leaves whole groups cached, and its rerun sees the remaining jobs as the same order
        minus a prefix of whole groups: it forms the same groups, hence the same batches, refills and
        prefills, so even bf16 rounding (which depends on batch shape) repeats and the resumed run ends
        with byte-identical texts. Prompt states are not carried across groups for the same reason.
        """
        prompts = [r.prompt for _, r in jobs]
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(jobs)), key=lambda i: (len(ids[i]), prompts[i], i))
        bar = _progress(len(jobs), desc, enabled=self.progress)
        tokens, t0 = 0, time.perf_counter()
        try:
            for start in range(0, len(order), self.group_rows):
                self._prompts.clear()
                self._prompt_bytes = 0
                rows = self._decode_group(order[start : start + self.group_rows], jobs, ids, bar)
                if self.cache is not None:
                    self.cache.put_many(rows)
                for key, row in rows.items():
                    done[key] = Completion(row["text"], row["n_tokens"], row["finished"], cached=False)
                tokens += sum(row["n_tokens"] for row in rows.values())
                bar.set_postfix_str(f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f} tok/s")
        finally:
            bar.close()

    def _decode_group(
        self, order: list[int], jobs: list[tuple[str, Request]], ids: list[list[int]], bar: Any
    ) -> dict[str, dict[str, Any]]:
        """Continuous batching over one group's jobs (in ``order``); returns their cache rows by key."""
        horizon = max(jobs[i][1].config.max_new_tokens for i in order)
        queue = deque(order)
        out: dict[str, dict[str, Any]] = {}

        def finish(batch: _Batch, rows: torch.Tensor) -> None:
            n_gen = batch.n_gen[rows].tolist()
            outs = batch.out()[rows].tolist()
            texts = self.tokenizer.batch_decode([o[:n] for o, n in zip(outs, n_gen)], skip_special_tokens=True)
            eos = torch.isin(batch.last[rows], self.eos_ids).tolist()
            for row, text, n, fin in zip(rows.tolist(), texts, n_gen, eos):
                key, req = jobs[batch.jobs[row]]
                out[key] = {"text": text, "n_tokens": n, "finished": fin, "meta": _meta(self.identity, req, self.step)}
            self.stats["new_tokens"] += sum(n_gen)
            bar.update(len(n_gen))

        batch: _Batch | None = None
        while queue or batch is not None:
            if batch is None:
                take = [queue.popleft() for _ in range(min(self.max_batch_size, len(queue)))]
                batch = self._prefill(take, [ids[i] for i in take], [jobs[i][1] for i in take], horizon)
            else:
                dead = (~batch.alive).nonzero().squeeze(1)
                if queue and len(dead) >= min(self.refill_rows, len(queue)):
                    take = [queue.popleft() for _ in range(min(len(dead), len(queue)))]
                    new = self._prefill(take, [ids[i] for i in take], [jobs[i][1] for i in take], horizon, reserve=0)
                    t1 = time.perf_counter()
                    batch.place(new, dead[: len(take)])
                    self.stats["splice_seconds"] += time.perf_counter() - t1
                else:
                    if not queue and len(dead) and self._worth_compacting(batch, len(dead)):
                        t1 = time.perf_counter()
                        batch.select(batch.alive.nonzero().squeeze(1))
                        self.stats["splice_seconds"] += time.perf_counter() - t1
                    self._step(batch)
            finished = batch.alive & ((batch.n_gen >= batch.max_new) | torch.isin(batch.last, self.eos_ids))
            if bool(finished.any()):
                rows = finished.nonzero().squeeze(1)
                finish(batch, rows)
                batch.retire(rows)
                if not queue and not bool(batch.alive.any()):
                    batch = None
        return out

    @staticmethod
    def _worth_compacting(batch: _Batch, n_dead: int) -> bool:
        """Worth it when the saved row-steps clearly exceed the copy.

        Compaction copies the cache (measured: about half a step's per-row cost per row); dropping dead
        rows saves ``n_dead`` rows on each remaining step, of which the largest remaining budget is an
        upper bound (rows often end sooner), hence the factor 2; and never for fewer than 1/8 of the rows.
        """
        remaining = int((batch.max_new - batch.n_gen)[batch.alive].max())
        return 8 * n_dead >= len(batch) and n_dead * remaining >= 2 * len(batch)

    def _prefill(self, rows: list[int], ids: list[list[int]], reqs: list[Request], horizon: int, reserve: int | None = None) -> _Batch:
        """Prefill the new rows (right-aligned, left padding) and draw their first tokens.

        Rows with the same prompt (one item under several configs or seeds: the search's usual
        shape) share one prefill; their KV rows are copies. ``reserve``: spare cache columns (none
        when the rows are only copied into an existing batch).
        """
        dev = self.device
        n, width = len(ids), max(len(x) for x in ids)
        unique: dict[tuple[int, ...], int] = {}
        expand = [unique.setdefault(tuple(x), len(unique)) for x in ids]
        uniq = list(unique)
        t0 = time.perf_counter()
        prefixes = self._prompt_states(uniq)
        if self.step != "eager":
            reserve = 0  # the fused step grows the cache itself, KV_BUCKET columns at a time
        cache = _new_cache(self.model, reserve=horizon + 16 if reserve is None else reserve)
        for i, layer in enumerate(cache.layers):
            layer.fill([p.keys[i] for p in prefixes], [p.values[i] for p in prefixes], width)
        logits = torch.stack([p.logits for p in prefixes])
        umask = torch.zeros((len(uniq), width), dtype=torch.int64)
        for r, x in enumerate(uniq):
            umask[r, width - len(x) :] = 1
        umask = umask.to(dev)
        if len(uniq) < n:
            idx = torch.tensor(expand, dtype=torch.int64, device=dev)
            for layer in cache.layers:
                layer.select(idx)
            logits, umask = logits.index_select(0, idx), umask.index_select(0, idx)
        self.stats["prefill_seconds"] += time.perf_counter() - t0
        seen = torch.empty((n, width + horizon), dtype=torch.int64)
        for r, x in enumerate(ids):
            seen[r, : width - len(x)] = x[0]  # repeats of a prompt id pad the row (harmless for the penalty)
            seen[r, width - len(x) : width] = torch.tensor(x, dtype=torch.int64)
            seen[r, width:] = x[0]  # placeholders until generated
        u = torch.tensor(np.stack([uniforms(r.seed, r.prompt, horizon) for r in reqs]), dtype=torch.float64, device=dev)
        batch = _Batch(
            jobs=list(rows),
            cache=cache,
            mask=umask,
            last=torch.zeros(n, dtype=torch.int64, device=dev),
            pos=torch.tensor([len(x) for x in ids], dtype=torch.int64, device=dev),
            n_gen=torch.zeros(n, dtype=torch.int64, device=dev),
            max_new=torch.tensor([r.config.max_new_tokens for r in reqs], dtype=torch.int64, device=dev),
            seen=seen.to(dev),
            prompt_width=width,
            u=u,
            params=RowParams.from_configs([r.config for r in reqs], device=dev),
            alive=torch.ones(n, dtype=torch.bool, device=dev),
        )
        batch.refresh()
        t0 = time.perf_counter()
        self._accept(batch, self._next_tokens(logits, batch))
        self.stats["sample_seconds"] += time.perf_counter() - t0
        return batch

    def _prompt_states(self, prompts: list[tuple[int, ...]]) -> list[_PromptState]:
        """Each prompt's KV cache and next-token logits, run through the model at most once per call.

        A prompt under many configs and seeds is split over many refills; its state is kept (in
        ``_prompts``, least recently used first out, ``PROMPT_STATE_BYTES`` at most) for the next ones.
        """
        missing = [x for x in prompts if x not in self._prompts]
        if missing:
            dev = self.device
            width = max(len(x) for x in missing)
            input_ids = torch.full((len(missing), width), self.pad_id, dtype=torch.int64)
            mask = torch.zeros((len(missing), width), dtype=torch.int64)
            for r, x in enumerate(missing):
                input_ids[r, width - len(x) :] = torch.tensor(x, dtype=torch.int64)
                mask[r, width - len(x) :] = 1
            input_ids, mask = input_ids.to(dev), mask.to(dev)
            cache = _new_cache(self.model, reserve=0)
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            self.stats["prefill_tokens"] += int(mask.sum())
            for r, x in enumerate(missing):
                keep = slice(width - len(x), width)
                state = _PromptState(
                    keys=[layer.keys[r, :, keep].clone() for layer in cache.layers],
                    values=[layer.values[r, :, keep].clone() for layer in cache.layers],
                    logits=out.logits[r, -1].clone(),
                )
                self._prompts[x] = state
                self._prompt_bytes += state.nbytes()
        states = []
        for x in prompts:
            self._prompts.move_to_end(x)
            states.append(self._prompts[x])
        while self._prompt_bytes > PROMPT_STATE_BYTES and len(self._prompts) > len(prompts):
            _, old = self._prompts.popitem(last=False)
            self._prompt_bytes -= old.nbytes()
        return states

    def _step(self, batch: _Batch) -> None:
        """One decode step for every active row."""
        t0 = time.perf_counter()
        logits = self._forward(batch)
        t1 = time.perf_counter()
        mask = batch.mask
        batch.pos = batch.pos + 1
        self.stats["steps"] += 1
        self.stats["row_steps"] += mask.shape[0]
        self.stats["kv_cells"] += mask.numel()
        self.stats["kv_live_cells"] += int(mask.sum())
        self._accept(batch, self._next_tokens(logits, batch))
        self.stats["forward_seconds"] += t1 - t0
        self.stats["sample_seconds"] += time.perf_counter() - t1

    def _accept(self, batch: _Batch, tokens: torch.Tensor) -> None:
        """Record the drawn tokens; dead slots keep their count (their writes land on their own old cells)."""
        rows = torch.arange(len(batch), device=tokens.device)
        batch.seen[rows, batch.prompt_width + batch.n_gen.clamp(max=batch.horizon - 1)] = tokens
        batch.n_gen = batch.n_gen + batch.alive
        batch.last = tokens

    def _next_tokens(self, logits: torch.Tensor, batch: _Batch) -> torch.Tensor:
        """Penalty, temperature (EDT rows: their own), top-k/top-p, min-p and a per-row draw (greedy rows:
        argmax); ``filter_logits`` inline.

        Every row goes through the same vectorized passes; greedy rows ride along as top-k 1 (cheap)
        and take the argmax of their penalised logits, transformers' greedy rule (first of ties).
        EDT and min-p run only when a row of the batch uses them (``flags``).
        """
        p, flags = batch.params, batch.flags
        seen = batch.seen if flags["penalty"] else None
        x = scaled_scores(logits, seen, p, edt_temperature(logits, seen, p) if flags["edt"] else None)
        step = batch.n_gen.clamp(max=batch.horizon - 1)
        u = batch.u.gather(1, step[:, None]).squeeze(1)
        top_k = torch.where(p.greedy, 1, p.top_k)
        top_p = torch.where(p.greedy, 1.0, p.top_p)
        w = warp(x, top_k, top_p)
        if flags["min_p"]:
            w = min_p_warp(x, w, p.min_p)
        tokens = sample_rows(x, w, u)
        if flags["any_greedy"]:
            g = p.greedy.nonzero().squeeze(1)
            tokens[g] = _greedy(x, w, g)
        return tokens


def _greedy(x: torch.Tensor, w: Warp, rows: torch.Tensor) -> torch.Tensor:
    """argmax for greedy rows (run as top-k 1): the smallest id among candidates equal to the max,
    which is ``argmax``'s first-of-ties rule; a full argmax only if the tie outnumbers the candidates."""
    vals, idx = w.vals[rows], w.idx[rows]
    first = idx.masked_fill(vals != vals[:, :1], x.shape[1]).amin(-1)
    wide = (~w.fits[rows]).nonzero().squeeze(1)
    if len(wide):
        first[wide] = x[rows[wide]].argmax(-1)
    return first


def _meta(identity: str, req: Request, step: str = "eager") -> dict[str, Any]:
    return {
        "model": identity,
        "config": json.loads(req.config.key()),
        "seed": int(req.seed),
        "prompt_sha256": hashlib.sha256(req.prompt.encode("utf-8")).hexdigest()[:16],
        "engine": ENGINE_VERSION if step == "eager" else STEP_VERSION,
        **({} if step == "eager" else {"step": step}),
    }


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str, refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or os.environ.get("HAGSTUDY_NO_PROGRESS"):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", mininterval=1.0, smoothing=0.1)
