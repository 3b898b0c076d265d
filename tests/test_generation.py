"""The engine: per-row processing equals transformers' processors, per-row seeds, batching invariance."""

from __future__ import annotations

import json
import random

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

from hagstudy.decoding import EDT_MIN_TEMPERATURE, EDT_N
from hagstudy.decoding import DecodingConfig as C
from hagstudy.engine import kv, models, sampling
from hagstudy.engine.engine import Engine
from hagstudy.engine.requests import Request
from hagstudy.engine.sampling import (
    RowParams,
    Warp,
    filter_logits,
    min_p_warp,
    sample_rows,
    uniforms,
    warp,
)

CONFIGS = [
    C(0.0, 1.0, 0, 1.0),  # greedy
    C(0.0, 1.0, 0, 1.3),  # greedy with a penalty: the penalty still applies
    C(1.0, 1.0, 0, 1.0),  # plain sampling
    C(0.7, 1.0, 10, 1.0),
    C(1.0, 0.9, 0, 1.0),
    C(1.5, 0.5, 0, 1.1),
    C(0.5, 0.9, 50, 1.2),
    C(1.2, 0.3, 3, 1.0),
    C(1.0, 1.0, 1, 1.0),  # top_k 1
    C(0.3, 0.05, 0, 2.0),  # tiny nucleus
    C(1.0, 0.99, 0, 1.05),  # wide nucleus: beyond the first candidates
    C(2.0, 0.95, 1000, 1.5),  # k as large as the vocabulary
]


def transformers_processors(cfg: C, temperature: float | None = None) -> LogitsProcessorList:
    """What ``model.generate`` builds for this config (same conditions, same order: min-p after top-p).

    ``temperature``: this step's temperature in place of the config's (an EDT row's, from ``edt_reference``)."""
    procs = LogitsProcessorList()
    if cfg.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if not cfg.greedy:
        t = cfg.temperature if temperature is None else temperature
        if t != 1.0:
            procs.append(TemperatureLogitsWarper(t))
        if cfg.top_k != 0:
            procs.append(TopKLogitsWarper(cfg.top_k))
        if cfg.top_p < 1.0:
            procs.append(TopPLogitsWarper(cfg.top_p))
        if cfg.min_p > 0:
            procs.append(MinPLogitsWarper(cfg.min_p))
    return procs


def edt_reference(cfg: C, logits_row: torch.Tensor, seen_row: torch.Tensor) -> float:
    """EDT's temperature for one row, written plainly: entropy (nats, numpy float64) of the penalised
    logits at T=1, then T0 * N ** (theta / H), floored, rounded to float32 as the engine's temperatures."""
    x = logits_row[None].clone()
    if cfg.repetition_penalty != 1.0:
        x = RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty)(seen_row[None], x)
    z = x[0].numpy().astype(np.float64)
    prob = np.exp(z - z.max())
    prob /= prob.sum()
    nz = prob[prob > 0]
    h = float(-(nz * np.log(nz)).sum())
    t0 = float(np.float32(cfg.temperature))
    t = t0 * EDT_N ** (cfg.edt_theta / h) if h > 0 else 0.0
    return float(np.float32(max(t, EDT_MIN_TEMPERATURE)))


def synthetic(rows: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits shaped like an LM's (a few large values, a long flat tail) and seen-token ids with repeats."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 4.0, rows)[:, None]  # flat rows make wide nuclei, steep rows narrow ones
    logits = torch.randn(rows, vocab, generator=g) * scale
    seen = torch.randint(0, vocab, (rows, 40), generator=g)
    seen[:, 20:] = seen[:, :20]  # repeats, as in real prompts
    return logits, seen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtered_logits_equal_transformers_processors_row_by_row(seed):
    vocab = 1000
    logits, seen = synthetic(len(CONFIGS), vocab, seed)
    ours = filter_logits(logits, seen, RowParams.from_configs(CONFIGS))
    for r, cfg in enumerate(CONFIGS):
        theirs = transformers_processors(cfg)(seen[r : r + 1], logits[r : r + 1].clone())[0]
        assert torch.equal(ours[r], theirs), f"row {r} {cfg}: {int((ours[r] != theirs).sum())} entries differ"


def test_filtered_logits_match_with_the_full_vocabulary_and_wide_nuclei():
    """Real vocabulary size, and rows whose nucleus is far wider than the first candidates."""
    cfgs = [C(1.5, 0.95, 0, 1.0), C(1.0, 0.9, 0, 1.2), C(0.8, 0.99, 200, 1.0), C(0.0, 1.0, 0, 1.1)]
    logits, seen = synthetic(len(cfgs), 49152, 7)
    logits = logits * 0.5
    ours = filter_logits(logits, seen, RowParams.from_configs(cfgs))
    for r, cfg in enumerate(cfgs):
        theirs = transformers_processors(cfg)(seen[r : r + 1], logits[r : r + 1].clone())[0]
        assert torch.equal(ours[r], theirs)
    assert int(torch.isfinite(ours[0]).sum()) > sampling.TOPP_CANDIDATES  # the wide path was taken


def test_greedy_rows_take_the_argmax_of_penalised_logits():
    logits, seen = synthetic(2, 500, 3)
    cfgs = [C(0.0, 1.0, 0, 1.0), C(0.0, 1.0, 0, 1.5)]
    ours = filter_logits(logits, seen, RowParams.from_configs(cfgs))
    assert torch.equal(ours[0], logits[0])
    penal = RepetitionPenaltyLogitsProcessor(1.5)(seen[1:2], logits[1:2].clone())[0]
    assert torch.equal(ours[1], penal)


def test_draws_follow_the_filtered_distribution():
    """Stratified uniforms through the inverse CDF reproduce the probabilities to within 1/N."""
    logits, seen = synthetic(4, 2000, 5)
    cfgs = [C(0.7, 1.0, 10, 1.0), C(1.0, 0.8, 0, 1.0), C(1.3, 1.0, 0, 1.0), C(1.0, 0.9, 40, 1.1)]
    params = RowParams.from_configs(cfgs)
    filtered = filter_logits(logits, seen, params)
    n = 4000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    for r in range(len(cfgs)):
        x = filtered[r : r + 1].expand(n, -1).contiguous()  # already filtered: -inf draws nothing
        keep_all = Warp(torch.full((n,), float("-inf")), None, None, torch.zeros(n, dtype=torch.bool))
        tokens = sample_rows(x, keep_all, u)
        freq = torch.bincount(tokens, minlength=x.shape[1]).double() / n
        probs = torch.softmax(filtered[r].double(), -1)
        assert float((freq - probs).abs().max()) <= 1.5 / n
        assert bool((probs[tokens] > 0).all())


def test_candidate_and_vocabulary_paths_draw_the_same_token():
    logits, seen = synthetic(6, 3000, 11)
    params = RowParams.from_configs([C(0.9, 0.9, 20, 1.0)] * 6)
    x = logits / params.temperature[:, None]
    w = warp(x, params.top_k, params.top_p)
    assert bool(w.fits.all())
    for u0 in torch.linspace(0.0, 0.999, 25).tolist():
        u = torch.full((6,), u0, dtype=torch.float64)
        fast = sample_rows(x, w, u)
        slow = sample_rows(x, Warp(w.thr, w.vals, w.idx, torch.zeros_like(w.fits)), u)
        assert torch.equal(fast, slow)


def test_uniform_streams_are_prefix_stable_and_keyed():
    a = uniforms(3, "prompt", 10)
    assert (uniforms(3, "prompt", 4) == a[:4]).all()
    assert not (uniforms(4, "prompt", 10) == a).any()
    assert not (uniforms(3, "other prompt", 10) == a).any()
    assert ((a >= 0) & (a < 1)).all()


# -- the engine on the tiny random model (float32, so batching changes nothing but rounding) ------


def prompts(engine: Engine) -> list[str]:
    questions = ["hi", "What is 2 + 2? Explain it to a child, step by step, in a few sentences please.", "Translate: the cat"]
    return [engine.render([{"role": "user", "content": q}]) for q in questions] + [
        engine.render([{"role": "system", "content": "Answer in one word. " * 8}, {"role": "user", "content": "Sky colour?"}])
    ]


def mixed_requests(engine: Engine) -> list[Request]:
    cfgs = [C(0.0, 1.0, 0, 1.0), C(1.0, 0.9, 0, 1.0), C(0.7, 1.0, 10, 1.3), C(1.5, 0.5, 50, 1.1), C(1.0, 1.0, 0, 1.0)]
    budgets = [6, 11, 3, 8, 5]
    return [
        Request(p, c.with_(max_new_tokens=budgets[(i + j) % len(budgets)]), seed=s)
        for i, p in enumerate(prompts(engine))
        for j, c in enumerate(cfgs)
        for s in (0, 1)
    ]


def test_text_does_not_depend_on_batch_composition(tiny):
    """A request decoded alone equals it inside mixed batches, in any order, with refills and compaction.

    float32 keeps this exact on the tiny model; in bf16, or with very different padding, a row's
    logits can change by rounding and flip a near-tie, which is expected and not tested here.
    """
    model, tok = tiny
    together = Engine(model, tok, progress=False, max_batch_size=5)
    reqs = mixed_requests(together)
    batched = together.generate(reqs)
    shuffled = list(range(len(reqs)))
    random.Random(0).shuffle(shuffled)
    reordered = Engine(model, tok, progress=False, max_batch_size=16).generate([reqs[i] for i in shuffled])
    alone_engine = Engine(model, tok, progress=False, max_batch_size=1)
    for k in range(0, len(reqs), 3):  # a third of them one by one (keeps the test fast)
        assert alone_engine.generate([reqs[k]])[0] == batched[k]
    for pos, i in enumerate(shuffled):
        assert reordered[pos] == batched[i]
    assert together.stats["steps"] > 0 and together.stats["misses"] == len(reqs)


def test_greedy_equals_model_generate(tiny):
    model, tok = tiny
    engine = Engine(model, tok, progress=False, max_batch_size=2)
    cfgs = [C(0.0, 1.0, 0, 1.0, 10), C(0.0, 1.0, 0, 1.3, 10)]
    reqs = [Request(p, c) for p in prompts(engine)[:3] for c in cfgs]
    outs = engine.generate(reqs)
    for r, out in zip(reqs, outs):
        enc = tok(r.prompt, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(
                **enc, do_sample=False, max_new_tokens=10, repetition_penalty=r.config.repetition_penalty, pad_token_id=tok.pad_token_id
            )
        new = ids[0, enc["input_ids"].shape[1] :]
        assert out.text == tok.decode(new, skip_special_tokens=True)
        assert out.n_tokens == len(new)


def test_seeds_give_reproducible_distinct_samples(tiny):
    model, tok = tiny
    engine = Engine(model, tok, progress=False)
    p = prompts(engine)[0]
    cfg = C(1.0, 1.0, 0, 1.0, 8)
    a = engine.generate([Request(p, cfg, seed=s) for s in range(4)])
    b = engine.generate([Request(p, cfg, seed=s) for s in reversed(range(4))])[::-1]
    assert [x.text for x in a] == [x.text for x in b]
    assert len({x.text for x in a}) == 4


def test_stops_on_end_of_turn_and_at_the_budget(tiny):
    model, tok = tiny
    engine = Engine(model, tok, progress=False)
    p = prompts(engine)[0]
    first = engine.generate([Request(p, C(0.0, 1.0, 0, 1.0, 1))])[0]
    assert first.n_tokens == 1 and not first.finished
    with torch.inference_mode():
        token = int(model(**tok(p, add_special_tokens=False, return_tensors="pt")).logits[0, -1].argmax())
    engine.eos_ids = torch.tensor([token])  # pretend the greedy first token ends the turn
    stopped = engine.generate([Request(p, C(0.0, 1.0, 0, 1.0, 7)), Request(p, C(1.0, 1.0, 0, 1.0, 5), seed=9)])
    assert stopped[0].n_tokens == 1 and stopped[0].finished
    assert stopped[1].n_tokens <= 5 and (stopped[1].finished or stopped[1].n_tokens == 5)


def test_identical_requests_are_decoded_once(tiny):
    model, tok = tiny
    engine = Engine(model, tok, progress=False)
    r = Request(prompts(engine)[1], C(1.0, 0.9, 0, 1.0, 4), seed=2)
    greedy = C(0.0, 0.5, 7, 1.0, 4)  # greedy ignores top_p/top_k: the same request as plain greedy
    outs = engine.generate([r, r, Request(r.prompt, greedy), Request(r.prompt, C(0.0, 1.0, 0, 1.0, 4))])
    assert outs[0] == outs[1] and outs[2] == outs[3]
    assert engine.stats["misses"] == 2 and engine.stats["hits"] == 0


def test_progress_bar_reports_rows(tiny, capsys):
    model, tok = tiny
    engine = Engine(model, tok, progress=True)
    engine.generate([Request(prompts(engine)[0], C(0.0, 1.0, 0, 1.0, 2))], desc="bar-test")
    assert "bar-test" in capsys.readouterr().err


@pytest.mark.slow
def test_real_model_greedy_batch_equals_generate_one_by_one():
    from hagstudy.engine import models

    model, tok = models.load(dtype="float32")
    engine = Engine(model, tok, progress=False, max_batch_size=2)
    questions = ["Is the sun a star? Answer Yes or No.", "Translate into Pig Latin: the quick brown fox", "Calculate 12 + 30."]
    reqs = [Request(engine.render([{"role": "user", "content": q}]), C(0.0, 1.0, 0, 1.1, 16)) for q in questions]
    outs = engine.generate(reqs)
    for r, out in zip(reqs, outs):
        enc = tok(r.prompt, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(**enc, do_sample=False, max_new_tokens=16, repetition_penalty=1.1, pad_token_id=tok.pad_token_id)
        assert out.text == tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_a_prompt_is_prefilled_once_per_call_across_refills(tiny):
    model, tok = tiny
    engine = Engine(model, tok, progress=False, max_batch_size=2)
    p = prompts(engine)[1]
    reqs = [Request(p, C(1.0, 1.0, 0, 1.0, 3), seed=s) for s in range(7)]
    outs = engine.generate(reqs)
    assert engine.stats["prefill_tokens"] == len(tok(p, add_special_tokens=False)["input_ids"])
    assert [o.text for o in outs] == [o.text for o in Engine(model, tok, progress=False).generate(reqs)]
    assert not engine._prompts  # states are dropped after the call (the model may change in between)


# -- the adaptive baselines: min-p (transformers' MinPLogitsWarper) and EDT, per row ------------------

ADAPTIVE = [
    C(1.0, 1.0, 0, 1.0, min_p=0.5),  # min-p alone (a flat row): the vocabulary path
    C(0.7, 1.0, 0, 1.2, min_p=0.05),
    C(1.5, 0.9, 0, 1.0, min_p=0.2),  # after top-p
    C(1.0, 1.0, 40, 1.1, min_p=0.02),  # after top-k
    C(1.2, 0.95, 20, 1.0, min_p=0.3),
    C(1.0, 1.0, 0, 1.0),  # rows without them share the batch
    C(0.0, 1.0, 0, 1.3, min_p=0.5),  # greedy ignores min-p
    C(0.8, 0.9, 10, 1.0),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_p_rows_equal_transformers_processors_row_by_row(seed):
    logits, seen = synthetic(len(ADAPTIVE), 1000, seed)
    ours = filter_logits(logits, seen, RowParams.from_configs(ADAPTIVE))
    plain = filter_logits(logits, seen, RowParams.from_configs([c.with_(min_p=0.0) for c in ADAPTIVE]))
    removed = 0
    for r, cfg in enumerate(ADAPTIVE):
        theirs = transformers_processors(cfg)(seen[r : r + 1], logits[r : r + 1].clone())[0]
        assert torch.equal(ours[r], theirs), f"row {r} {cfg}: {int((ours[r] != theirs).sum())} entries differ"
        if cfg.min_p > 0 and not cfg.greedy:
            removed += int(torch.isfinite(ours[r]).sum()) < int(torch.isfinite(plain[r]).sum())
        else:
            assert torch.equal(ours[r], plain[r])
    assert removed >= 3  # min-p removed tokens in most of its rows (the test is not vacuous)


def test_min_p_matches_with_the_full_vocabulary():
    cfgs = [C(1.5, 1.0, 0, 1.0, min_p=0.01), C(1.0, 0.99, 0, 1.2, min_p=0.001), C(0.0, 1.0, 0, 1.1)]
    logits, seen = synthetic(len(cfgs), 49152, 7)
    ours = filter_logits(logits * 0.5, seen, RowParams.from_configs(cfgs))
    for r, cfg in enumerate(cfgs):
        theirs = transformers_processors(cfg)(seen[r : r + 1], 0.5 * logits[r : r + 1])[0]
        assert torch.equal(ours[r], theirs)


EDT = [
    C(1.0, 1.0, 0, 1.0, edt_theta=1.0),
    C(0.7, 1.0, 0, 1.3, edt_theta=0.5),
    C(1.5, 0.9, 20, 1.0, edt_theta=3.0),
    C(1.0, 0.95, 0, 1.1, min_p=0.1, edt_theta=2.0),  # EDT then min-p
    C(0.9, 1.0, 0, 1.0),  # no EDT: its own temperature
    C(0.0, 1.0, 0, 1.0, edt_theta=5.0),  # greedy ignores EDT
    C(1.2, 1.0, 0, 1.0, edt_theta=10.0),  # the last row is one-hot: H = 0, T at the floor
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edt_rows_equal_a_per_row_reference(seed):
    logits, seen = synthetic(len(EDT), 1000, seed)
    logits[-1] = -1e4
    logits[-1, 5] = 1e4  # softmax is exactly one-hot in float64: H = 0
    ours = filter_logits(logits, seen, RowParams.from_configs(EDT))
    temps = []
    for r, cfg in enumerate(EDT):
        t = edt_reference(cfg, logits[r], seen[r]) if cfg.edt_theta > 0 and not cfg.greedy else None
        temps.append(t)
        theirs = transformers_processors(cfg, t)(seen[r : r + 1], logits[r : r + 1].clone())[0]
        assert torch.equal(ours[r], theirs), f"row {r} {cfg}: {int((ours[r] != theirs).sum())} entries differ"
    assert temps[-1] == pytest.approx(EDT_MIN_TEMPERATURE)
    assert all(t < c.temperature for t, c in zip(temps[:4], EDT))  # N < 1: EDT cools every row
    assert len({round(t / c.temperature, 6) for t, c in zip(temps[:4], EDT)}) == 4  # by its own entropy


def test_min_p_keeps_the_candidate_path_valid():
    """A min-p threshold only shrinks the kept set: rows still fit their candidates and both paths agree."""
    logits, seen = synthetic(6, 3000, 11)
    params = RowParams.from_configs([C(0.9, 1.0, 20, 1.0, min_p=0.2)] * 3 + [C(0.9, 1.0, 0, 1.0, min_p=0.2)] * 3)
    x = logits / params.temperature[:, None]
    w = warp(x, params.top_k, params.top_p)
    assert bool(w.fits[:3].all()) and not bool(w.fits[3:].any())
    w = min_p_warp(x, w, params.min_p)
    assert bool(w.fits.all())  # min-p-only rows now fit the candidates extracted for the others
    before = warp(x, params.top_k, params.top_p).thr
    assert bool((w.thr >= before).all()) and bool((w.thr[3:] > before[3:]).all())
    for u0 in torch.linspace(0.0, 0.999, 25).tolist():
        u = torch.full((6,), u0, dtype=torch.float64)
        fast = sample_rows(x, w, u)
        slow = sample_rows(x, Warp(w.thr, w.vals, w.idx, torch.zeros_like(w.fits)), u)
        assert torch.equal(fast, slow)
        assert bool((x.gather(1, fast[:, None]).squeeze(1) >= w.thr).all())


def test_adaptive_rows_do_not_depend_on_batch_composition(tiny):
    """Min-p and EDT rows decoded alone equal them in mixed batches (refills, compaction, other orders);
    rows without them are unchanged by sharing a batch with them."""
    model, tok = tiny
    together = Engine(model, tok, progress=False, max_batch_size=5)
    # The tiny model's logits are flat (entropy ~10.8 nats, spread ~1.6): strong settings, so the baselines bite.
    cfgs = [C(1.0, 1.0, 0, 1.0, min_p=0.5), C(1.3, 0.9, 20, 1.1, edt_theta=10.0), C(0.8, 1.0, 0, 1.0, min_p=0.3, edt_theta=5.0),
            C(1.0, 0.9, 0, 1.0), C(0.0, 1.0, 0, 1.2)]
    budgets = [6, 11, 3, 8, 5]
    reqs = [Request(p, c.with_(max_new_tokens=budgets[(i + j) % 5]), seed=s)
            for i, p in enumerate(prompts(together)) for j, c in enumerate(cfgs) for s in (0, 1)]
    batched = together.generate(reqs)
    shuffled = list(range(len(reqs)))
    random.Random(1).shuffle(shuffled)
    reordered = Engine(model, tok, progress=False, max_batch_size=16).generate([reqs[i] for i in shuffled])
    for pos, i in enumerate(shuffled):
        assert reordered[pos] == batched[i]
    alone = Engine(model, tok, progress=False, max_batch_size=1)
    for k in range(0, len(reqs), 3):
        assert alone.generate([reqs[k]])[0] == batched[k]
    plain = [i for i, r in enumerate(reqs) if not r.config.adaptive()]
    without = Engine(model, tok, progress=False, max_batch_size=5).generate([reqs[i] for i in plain])
    assert without == [batched[i] for i in plain]
    # The baselines change texts: a min-p/EDT request is not its plain config's.
    changed = [batched[i].text != alone.generate([Request(r.prompt, r.config.with_(min_p=0.0, edt_theta=0.0), r.seed)])[0].text
               for i, r in enumerate(reqs) if r.config.adaptive()]
    assert sum(changed) >= len(changed) // 2


def test_engine_first_tokens_follow_filter_logits_for_adaptive_rows(tiny):
    """The engine's inline path (``_next_tokens``) draws what ``filter_logits`` plus the row's uniform give
    (min-p, EDT and top-nσ rows beside a plain one)."""
    model, tok = tiny
    engine = Engine(model, tok, progress=False, max_batch_size=4)
    cfgs = [C(1.0, 1.0, 0, 1.0, 1, min_p=0.5), C(1.3, 0.9, 20, 1.1, 1, edt_theta=10.0),
            C(0.8, 1.0, 0, 1.2, 1, min_p=0.3, edt_theta=5.0), C(1.0, 1.0, 0, 1.0, 1, top_nsigma=1.0),
            C(1.3, 0.9, 20, 1.1, 1, top_nsigma=0.5), C(1.0, 0.9, 0, 1.0, 1)]
    p = prompts(engine)[1]
    reqs = [Request(p, c, seed=s) for c in cfgs for s in range(3)]
    outs = engine.generate(reqs)
    ids = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[:, -1].float()
    for r, out in zip(reqs, outs):
        filtered = filter_logits(logits, ids, RowParams.from_configs([r.config]))
        keep_all = Warp(torch.full((1,), float("-inf")), None, None, torch.zeros(1, dtype=torch.bool))
        u = torch.tensor(uniforms(r.seed, r.prompt, 1), dtype=torch.float64)
        token = int(sample_rows(filtered, keep_all, u)[0])
        assert out.text == tok.decode([token], skip_special_tokens=True), r.config


def test_a_memory_capped_cpu_batch_is_logged(monkeypatch, caplog):
    """Batch shape decides bf16 rounding and is not in the keys: a batch smaller than CPU_BATCH must be said."""
    model, _ = models.load("tiny-random")
    per_row = kv.row_bytes(model)
    monkeypatch.setattr(kv, "available_memory", lambda: int(per_row * 10 / kv.CPU_MEMORY_SHARE))
    with caplog.at_level("WARNING", logger="hagstudy.engine.kv"):
        assert kv.default_batch_size(model, torch.device("cpu")) == 10
    assert "capped at 10 rows" in caplog.text
    caplog.clear()
    monkeypatch.setattr(kv, "available_memory", lambda: int(per_row * (kv.CPU_BATCH + 1) / kv.CPU_MEMORY_SHARE))
    with caplog.at_level("WARNING", logger="hagstudy.engine.kv"):
        assert kv.default_batch_size(model, torch.device("cpu")) == kv.CPU_BATCH
    assert "capped" not in caplog.text


def test_the_prefill_trace_names_where_two_runs_diverge(tiny, tmp_path):
    """Each prefilled prompt's first-step logits digest goes to the trace; the same work gives the same lines,
    and a perturbed weight is named at its first prompt (scripts/benchmarks/compare_traces.py)."""
    import copy
    import importlib.util

    from hagstudy.config import repo_root

    model, tok = tiny
    reqs = [Request(p, C(0.7, 0.9, 0, 1.0, max_new_tokens=4), seed=s) for p in ("a b c", "d e") for s in (0, 1)]
    runs = {}
    for name, m in (("a", model), ("b", model), ("c", copy.deepcopy(model))):
        if name == "c":
            with torch.no_grad():
                m.lm_head.weight[0, 0] += 1.0
        # c: other weights under the same identity, as when the same engine decodes differently
        Engine(m, tok, step="eager", progress=False, identity=models.identity(model),
               trace=tmp_path / f"{name}.jsonl").generate(reqs, desc="probe")
        runs[name] = tmp_path / f"{name}.jsonl"
    lines = [json.loads(x) for x in runs["a"].read_text().splitlines()]
    assert len(lines) == 2 and {x["desc"] for x in lines} == {"probe"} and all(x["call"] == 1 for x in lines)
    assert runs["a"].read_text() == runs["b"].read_text()
    spec = importlib.util.spec_from_file_location("compare_traces", repo_root() / "scripts/benchmarks/compare_traces.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    assert "2 shared prompts prefilled alike" in compare.first_difference(runs["a"], runs["b"])
    assert compare.first_difference(runs["a"], runs["c"]).startswith("first difference: engine")
