"""Per-row sampling: each row of a batch under its own config and its own random stream.

* **Per-row hyperparameters.** Repetition penalty, temperature, top-k and top-p are tensors with one
  value per row, applied in transformers' order (penalty, temperature, top_k, top_p) with the same
  arithmetic as its processors (``filter_logits``; tests/test_generation.py checks them row by row).
  Greedy rows (temperature 0) share the batch with sampled rows.
* **Adaptive baselines, per row.** ``min_p`` (transformers' ``MinPLogitsWarper``, after top-p as in
  its warper order) raises a row's keep threshold to the least probable token it keeps, so the
  candidate path and the draw need nothing new. ``edt_theta`` (EDT) replaces a row's temperature
  by ``T0 * EDT_N ** (theta / H)`` per step, H the entropy of its penalised logits at temperature 1
  (floored at ``EDT_MIN_TEMPERATURE``). ``top_nsigma`` (top-nσ, Tang et al. 2024) keeps the tokens
  whose penalised logit at temperature 1 is >= the row's max - n * its standard deviation over the
  vocabulary, and raises the row's threshold like min-p (``top_nsigma_warp``). All are skipped when no
  row in the batch uses them, so rows without them run exactly the arithmetic they would otherwise (a
  config carries ``min_p``/``edt_theta``/``top_nsigma`` in its key only when they are on).
* **Per-row randomness.** A row's draw at step t is inverse-CDF sampling over its own filtered
  distribution (in vocabulary order) with a uniform taken from a Philox stream seeded by
  (seed, sha256(prompt)) (``uniforms``). No generator is shared between rows, so a row's text depends
  only on (model, prompt, config, seed), never on which rows share its batch. The stream does not depend
  on the config: one item under two configs with the same seed uses common random numbers, which makes
  config comparisons less noisy. (Exactness caveat: batch size and padding can change a row's logits
  by floating-point rounding, notably in bf16; that can flip a near-tie, never the distribution.)
* **Cost.** A handful of vectorized [B, V] passes per step (top-k via block maxima, no vocabulary sort);
  nothing loops over the vocabulary or, per token, over rows in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hagstudy.decoding import EDT_MIN_TEMPERATURE, EDT_N, DecodingConfig

TOPP_CANDIDATES = 64  # first guess at the nucleus size; rows whose nucleus is larger are sorted in full
TIE_SLACK = 8  # extra candidates beyond the largest k, so ties at the k-th value rarely leave the fast path


def uniforms(seed: int, prompt: str, n: int) -> np.ndarray:
    """The row's n uniforms in [0, 1): a Philox stream keyed by (seed, sha256(prompt)), independent of batching."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    words = [int(seed) % (1 << 64) & 0xFFFFFFFF, (int(seed) % (1 << 64)) >> 32]
    words += [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(words))).random(n)



@dataclass
class RowParams:
    """One tensor per hyperparameter, one value per row (greedy rows carry temperature 1, the adaptive fields 0)."""

    temperature: torch.Tensor  # float32 [B]
    greedy: torch.Tensor  # bool [B]
    top_k: torch.Tensor  # int64 [B], 0 = off
    top_p: torch.Tensor  # float64 [B], 1 = off
    penalty: torch.Tensor  # float32 [B]
    min_p: torch.Tensor  # float32 [B], 0 = off
    edt_theta: torch.Tensor  # float64 [B], 0 = off
    top_nsigma: torch.Tensor  # float64 [B], 0 = off

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
            top_nsigma=torch.tensor([0.0 if c.greedy else c.top_nsigma for c in configs], dtype=torch.float64, device=device),
        )

    def select(self, idx: torch.Tensor) -> RowParams:
        return RowParams(*(getattr(self, f)[idx] for f in PARAM_FIELDS))


PARAM_FIELDS = ("temperature", "greedy", "top_k", "top_p", "penalty", "min_p", "edt_theta", "top_nsigma")


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
    (every token outside the candidates scores <= that one), which ``sample_rows`` and ``greedy_tokens`` rely on.
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


def top_nsigma_warp(logits: torch.Tensor, seen: torch.Tensor | None, params: RowParams, scores: torch.Tensor, w: Warp) -> Warp:
    """Top-nσ (Tang et al. 2024), per row: keep the tokens whose logit is >= max - n * σ, σ the standard
    deviation of the row's logits over the vocabulary; rows with top_nsigma 0 are untouched.

    The logits are the row's repetition-penalised logits at temperature 1 (``scaled_scores`` with T = 1,
    as EDT's entropy; ``scores`` themselves when every top-nσ row samples at T = 1 without EDT, which is the
    same numbers): the paper's rule is on the pre-temperature logits, so the kept set does not depend on
    the temperature. max and σ (the population standard deviation, in float64) are taken over the
    whole vocabulary, so the set does not depend on top-k/top-p either; it is intersected with theirs
    (and min-p's) by raising the row's threshold on ``scores`` (the temperature-scaled scores it samples
    from) to the least kept score, exactly as ``min_p_warp`` does, which keeps the candidate path valid.
    """
    rows = (params.top_nsigma > 0).nonzero().squeeze(1)
    if not len(rows):
        return w
    sub = params.select(rows)
    if bool(((sub.temperature == 1.0) & (sub.edt_theta == 0)).all()):
        raw = scores[rows]  # already the penalised logits at T = 1 (a division by 1 is exact): no second pass
    else:
        raw = scaled_scores(logits[rows], None if seen is None else seen[rows], sub, torch.ones_like(sub.temperature))
    z = raw.to(torch.float64)
    limit = z.amax(-1) - params.top_nsigma[rows] * z.std(-1, correction=0)
    cut = scores[rows].masked_fill(z < limit[:, None], float("inf")).amin(-1)
    new_thr = w.thr.clone()
    new_thr[rows] = torch.maximum(w.thr[rows], cut)
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
    their argmax is the greedy token. Min-p follows top-p, top-nσ intersects its set with theirs and EDT sets
    the temperature (``min_p_warp``, ``top_nsigma_warp``, ``edt_temperature``). ``Engine`` runs the same
    functions inline.
    """
    temp = edt_temperature(logits, seen, params) if bool((params.edt_theta > 0).any()) else None
    x = scaled_scores(logits, seen, params, temp)
    w = warp(x, torch.where(params.greedy, 0, params.top_k), torch.where(params.greedy, 1.0, params.top_p))
    if bool((params.min_p > 0).any()):
        w = min_p_warp(x, w, params.min_p)
    if bool((params.top_nsigma > 0).any()):
        w = top_nsigma_warp(logits, seen, params, x, w)
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


def greedy_tokens(x: torch.Tensor, w: Warp, rows: torch.Tensor) -> torch.Tensor:
    """argmax for greedy rows (run as top-k 1): the smallest id among candidates equal to the max,
    which is ``argmax``'s first-of-ties rule; a full argmax only if the tie outnumbers the candidates."""
    vals, idx = w.vals[rows], w.idx[rows]
    first = idx.masked_fill(vals != vals[:, :1], x.shape[1]).amin(-1)
    wide = (~w.fits[rows]).nonzero().squeeze(1)
    if len(wide):
        first[wide] = x[rows[wide]].argmax(-1)
    return first

