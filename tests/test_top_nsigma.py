"""Top-nσ sampling in the engine: per row against a plain reference, rows without it untouched bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from hagstudy.decoding import DecodingConfig as C
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request
from hagstudy.engine.sampling import RowParams, Warp, filter_logits, sample_rows, top_nsigma_warp, warp


def nsigma_keep(cfg: C, logits_row: torch.Tensor, seen_row: torch.Tensor) -> torch.Tensor:
    """Top-nσ's kept set for one row, written plainly: the penalised logits at T = 1 in numpy float64,
    kept where >= max - n * std (the population standard deviation over the vocabulary)."""
    x = logits_row[None].clone()
    if cfg.repetition_penalty != 1.0:
        x = RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty)(seen_row[None], x)
    z = x[0].numpy().astype(np.float64)
    return torch.from_numpy(z >= z.max() - cfg.top_nsigma * z.std())


def reference(cfg: C, logits_row: torch.Tensor, seen_row: torch.Tensor) -> torch.Tensor:
    """transformers' processors for the config's other fields, then top-nσ's set intersected with theirs."""
    procs = LogitsProcessorList()
    if cfg.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if not cfg.greedy:
        if cfg.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(cfg.temperature))
        if cfg.top_k != 0:
            procs.append(TopKLogitsWarper(cfg.top_k))
        if cfg.top_p < 1.0:
            procs.append(TopPLogitsWarper(cfg.top_p))
        if cfg.min_p > 0:
            procs.append(MinPLogitsWarper(cfg.min_p))
    out = procs(seen_row[None], logits_row[None].clone())[0]
    if cfg.top_nsigma > 0 and not cfg.greedy:
        out = out.masked_fill(~nsigma_keep(cfg, logits_row, seen_row), float("-inf"))
    return out


def synthetic(rows: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * torch.linspace(0.3, 4.0, rows)[:, None]
    seen = torch.randint(0, vocab, (rows, 40), generator=g)
    seen[:, 20:] = seen[:, :20]
    return logits, seen


NSIGMA = [
    C(1.0, 1.0, 0, 1.0, top_nsigma=1.0),  # the paper's setting, alone: the vocabulary path
    C(0.7, 1.0, 0, 1.2, top_nsigma=0.5),  # with a penalty (σ of the penalised logits) and a temperature
    C(1.5, 0.9, 0, 1.0, top_nsigma=2.0),  # with top-p
    C(1.0, 1.0, 40, 1.1, top_nsigma=3.0),  # with top-k
    C(1.2, 0.95, 20, 1.0, min_p=0.1, top_nsigma=1.5),  # with min-p
    C(1.0, 1.0, 0, 1.0),  # rows without it share the batch
    C(0.0, 1.0, 0, 1.3, top_nsigma=1.0),  # greedy ignores it
    C(0.8, 0.9, 10, 1.0, edt_theta=1.0),  # EDT without top-nσ
    C(2.0, 1.0, 0, 1.0, top_nsigma=0.5),  # a hot row: the kept set does not depend on the temperature
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_nsigma_rows_equal_a_per_row_reference(seed):
    logits, seen = synthetic(len(NSIGMA), 1000, seed)
    ours = filter_logits(logits, seen, RowParams.from_configs(NSIGMA))
    plain = filter_logits(logits, seen, RowParams.from_configs([c.with_(top_nsigma=0.0) for c in NSIGMA]))
    removed = 0
    for r, cfg in enumerate(NSIGMA):
        if cfg.edt_theta > 0:  # EDT's own reference is in test_generation; here: untouched by its neighbours
            assert torch.equal(ours[r], plain[r])
            continue
        theirs = reference(cfg, logits[r], seen[r])
        assert torch.equal(ours[r], theirs), f"row {r} {cfg}: {int((ours[r] != theirs).sum())} entries differ"
        if cfg.top_nsigma > 0 and not cfg.greedy:
            removed += int(torch.isfinite(ours[r]).sum()) < int(torch.isfinite(plain[r]).sum())
        else:
            assert torch.equal(ours[r], plain[r])  # rows without top-nσ: bit for bit what they were
    assert removed >= 4  # top-nσ removed tokens in most of its rows (the test is not vacuous)


def test_top_nsigma_rows_at_temperature_one_reuse_the_scores_and_equal_the_reference():
    """When every top-nσ row samples at T = 1 (no EDT), the scores are its logits: the shortcut path."""
    cfgs = [C(1.0, 1.0, 0, 1.0, top_nsigma=1.0), C(1.0, 0.9, 0, 1.3, top_nsigma=0.5), C(0.7, 1.0, 0, 1.0)]
    logits, seen = synthetic(len(cfgs), 1000, 4)
    ours = filter_logits(logits, seen, RowParams.from_configs(cfgs))
    for r, cfg in enumerate(cfgs):
        assert torch.equal(ours[r], reference(cfg, logits[r], seen[r])), f"row {r} {cfg}"
    assert int(torch.isfinite(ours[0]).sum()) < 1000 // 4


def test_top_nsigma_keeps_the_same_set_at_any_temperature():
    logits, seen = synthetic(3, 2000, 5)
    sets = [torch.isfinite(filter_logits(logits, seen, RowParams.from_configs([C(t, 1.0, 0, 1.1, top_nsigma=1.0)] * 3)))
            for t in (0.3, 1.0, 1.7)]
    assert torch.equal(sets[0], sets[1]) and torch.equal(sets[1], sets[2])
    assert int(sets[0].sum()) < sets[0].numel() // 10


def test_top_nsigma_keeps_the_candidate_path_valid():
    """A top-nσ threshold only shrinks the kept set: rows still fit their candidates and both paths agree."""
    logits, _ = synthetic(6, 3000, 11)
    params = RowParams.from_configs([C(0.9, 1.0, 20, 1.0, top_nsigma=1.0)] * 3 + [C(0.9, 1.0, 0, 1.0, top_nsigma=2.0)] * 3)
    x = logits / params.temperature[:, None]
    before = warp(x, params.top_k, params.top_p)
    w = top_nsigma_warp(logits, None, params, x, before)
    assert bool((w.thr >= before.thr).all()) and bool((w.thr[3:] > before.thr[3:]).all())
    assert torch.equal(top_nsigma_warp(logits, None, RowParams.from_configs([C(0.9, 1.0, 20, 1.0)] * 6), x, before).thr,
                       before.thr)  # no top-nσ row: the warp is returned as it was
    for u0 in torch.linspace(0.0, 0.999, 25).tolist():
        u = torch.full((6,), u0, dtype=torch.float64)
        fast = sample_rows(x, w, u)
        slow = sample_rows(x, Warp(w.thr, w.vals, w.idx, torch.zeros_like(w.fits)), u)
        assert torch.equal(fast, slow)
        assert bool((x.gather(1, fast[:, None]).squeeze(1) >= w.thr).all())


def _prompts(engine: Engine) -> list[str]:
    return [engine.render([{"role": "user", "content": q}]) for q in ("hi", "Translate: the cat", "What is 2 + 2?")]


def test_plain_rows_get_the_same_tokens_beside_top_nsigma_rows(tiny):
    """The same batch with and without top-nσ on some rows: every other row's text is bit for bit the same.

    (The same batch shapes on both sides: a batch of other size or padding may round a float32 logit
    differently and flip a near-tie for any row, top-nσ or not, which is not what this test is about.)"""
    model, tok = tiny
    cfgs = [C(1.0, 1.0, 0, 1.0, top_nsigma=1.0), C(1.0, 0.9, 0, 1.0), C(0.8, 1.0, 20, 1.2, top_nsigma=0.5),
            C(0.0, 1.0, 0, 1.2), C(1.3, 1.0, 0, 1.0, min_p=0.2), C(1.0, 1.0, 0, 1.0, top_nsigma=3.0)]
    budgets = [6, 4, 9, 5, 7, 3]
    engine = Engine(model, tok, progress=False, max_batch_size=4)
    reqs = [Request(p, c.with_(max_new_tokens=budgets[(i + j) % 6]), seed=s)
            for i, p in enumerate(_prompts(engine)) for j, c in enumerate(cfgs) for s in (0, 1)]
    off = [Request(r.prompt, r.config.with_(top_nsigma=0.0), r.seed) for r in reqs]
    with_ns, without = engine.generate(reqs), Engine(model, tok, progress=False, max_batch_size=4).generate(off)
    on = [r.config.top_nsigma > 0 for r in reqs]
    assert [a for a, o in zip(with_ns, on) if not o] == [b for b, o in zip(without, on) if not o]
    changed = [a.text != b.text for a, b, o in zip(with_ns, without, on) if o]
    assert sum(changed) >= len(changed) // 2  # top-nσ changes texts: it bites on the tiny model
    alone = Engine(model, tok, progress=False, max_batch_size=1)
    assert alone.generate([reqs[0]])[0] == with_ns[0]  # a top-nσ row alone (the first batch's first row)
