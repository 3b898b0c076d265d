"""The generation engine: batched decoding where every row has its own config and seed.

Generation is nearly all of the study's cost (the search samples thousands of completions, each
under a different config), so the engine runs its own decode loop over the model's KV cache rather
than one ``model.generate`` per config. Per-row sampling is ``sampling``'s, the batch and its KV cache
``kv``'s, keys ``requests``'.

* **Throughput.** Requests are sorted by prompt length (equal prompts adjacent: one item under many
  configs and seeds is prefilled once and its KV rows copied), then decoded by continuous batching
  (``kv.Batch``). Per step: one forward, then ``sampling``'s vectorized passes.
* **Decode step.** ``Engine(step=...)``: "eager" (default) runs the transformers forward; "fused" runs
  ``decode_step`` (packed weights, fewer and larger ops, attention over tight KV buffers grown
  ``KV_BUCKET`` columns at a time). Rounding differs between steps, so the step is part of the cache key
  (``request_key``); the eager step's keys are ENGINE_VERSION 2's.
* **Cache and resumption.** Jobs are decoded in fixed groups of ``group_rows`` (a few batches), and
  each finished group is written to the ``CompletionCache`` in one transaction. A killed run loses at
  most the group in flight; its rerun rebuilds exactly the same groups and batches for the rest, so it
  ends with byte-identical texts, bf16 included (see ``_decode``).
* **Cache only.** ``Engine.cache_only`` serves a model known only by its identity (an adapter's receipt,
  ``adapter.Receipt``) from the cache: no weights, no decoding; a request the cache lacks raises
  ``ReplayMiss`` with the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hagstudy.config import ENGINE_STEPS
from hagstudy.decoding import DecodingConfig, default_config
from hagstudy.engine import decode_step, models
from hagstudy.engine.kv import KV_BUCKET, Batch, default_batch_size, new_cache
from hagstudy.engine.protocol import GenerationDefaults
from hagstudy.engine.requests import Completion, ReplayMiss, Request, from_cache, meta, request_key, require_prompts
from hagstudy.engine.sampling import (
    RowParams,
    edt_temperature,
    greedy_tokens,
    min_p_warp,
    sample_rows,
    scaled_scores,
    top_nsigma_warp,
    uniforms,
    warp,
)

log = logging.getLogger(__name__)

STEPS = ENGINE_STEPS  # the profile checks generation.step against the same tuple
PROMPT_STATE_BYTES = 512 << 20  # prefilled prompts kept for later refills within one generate call
GROUP_BATCHES = 4  # a decode group is this many batches: big enough that refills keep slots busy


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
        defaults: GenerationDefaults | None = None,
        miss: tuple[str, str] | None = None,
        trace: Path | None = None,
    ) -> None:
        """``step``: how a decode step runs: "eager", the transformers forward (ENGINE_VERSION 2 keys), or
        "fused", ``decode_step`` (keys of their own). The step is part of every cache key, so texts from one
        step are never served for another. ``model=None`` is the cache-only mode (``cache_only``). ``trace``: a
        JSON-lines file that gets one line per prompt prefilled (``prefill_trace``)."""
        if step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, got {step!r}")
        if step == "fused" and model is not None and (why := decode_step.unsupported(model)):
            raise ValueError(f"step='fused' cannot run this model: {why}")
        if model is None and (identity is None or defaults is None or miss is None):
            raise ValueError("a cache-only engine (model=None) needs its identity, defaults and miss message")
        self.model = model
        self.tokenizer = tokenizer
        self.cache = cache
        self.progress = progress
        self.step = step
        self.identity = identity or models.identity(model)
        gen = getattr(model, "generation_config", None)
        self.defaults = defaults or GenerationDefaults.of(gen)
        self.miss = miss  # cache-only: (what the engine is, how to fix a miss)
        self.device = next(model.parameters()).device if model is not None else torch.device("cpu")
        self.max_batch_size = int(max_batch_size or (1 if model is None else default_batch_size(model, self.device)))
        self.refill_rows = max(1, self.max_batch_size // 8)  # prefill new rows once this many slots are free
        # Rows decoded and committed together (see _decode): what a kill can lose, and the unit of resumption.
        self.group_rows = int(group_rows or GROUP_BATCHES * self.max_batch_size)
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(gen, "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.eos_ids = torch.tensor(sorted(i for i in eos if i is not None), dtype=torch.int64, device=self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(self.eos_ids[0])
        self._prompts: OrderedDict[tuple[int, ...], _PromptState] = OrderedDict()
        self._prompt_bytes = 0
        self.trace = trace
        self._traced: list[dict[str, Any]] = []
        self._calls = 0  # generate calls that decoded something: the trace's call number
        self._desc = ""
        self._weights: Any = None
        self._weights_stamp: Any = None
        self.pool: Any = None  # the open ``pool.Pool`` while ``pool.map_pooled`` runs
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
        }

    @classmethod
    def cache_only(
        cls, tokenizer: Any, cache: Any, identity: str, step: str, defaults: GenerationDefaults, miss: tuple[str, str]
    ) -> Engine:
        """An engine that serves ``identity``'s completions (keyed under ``step``) from ``cache`` and decodes
        nothing: there are no weights to decode with. A request the cache lacks raises ``ReplayMiss``, whose
        message says what this engine is and how to fix it (``miss``); nothing is ever decoded with other weights."""
        return cls(None, tokenizer, cache, progress=False, identity=identity, step=step, defaults=defaults, miss=miss)

    def render(self, messages: list[dict[str, str]]) -> str:
        """Chat template plus the generation prompt: the text a Request carries."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[Request], desc: str = "generate") -> list[Completion]:
        """Completions in request order. Cached ones are read, identical requests decoded once.

        ``stats``: ``hits`` counts requests served from the cache, ``misses`` distinct requests decoded.
        Inside ``pool.map_pooled`` the requests join the pool's next pooled call.
        """
        if self.pool is not None and self.pool.inside():
            return self.pool.ask(requests, desc)
        return self.generate_now(requests, desc)

    @property
    def can_pool(self) -> bool:
        """Whether ``pool.map_pooled`` can pool this engine's calls (not in the cache-only mode: it decodes nothing)."""
        return self.model is not None

    def pooling(self) -> bool:
        return self.pool is not None

    def generate_now(self, requests: Sequence[Request], desc: str = "generate") -> list[Completion]:
        """``generate`` as one engine call, whatever pool is open."""
        start = time.perf_counter()
        require_prompts(requests)
        keys = [self.key(r) for r in requests]
        done, todo, hits = from_cache(self.cache, keys, requests)
        if todo and self.model is None:
            what, fix = self.miss
            raise ReplayMiss(f"{desc}: {what}, and {len(todo)} of these {len(requests)} requests are not in the "
                             f"shipped generations. {fix}")
        self.stats["hits"] += hits
        self.stats["misses"] += len(todo)
        if todo:
            self._calls += 1
            self._desc = desc
            try:
                with torch.inference_mode():
                    self._decode(todo, done, desc)
            finally:
                # Prompt states live for one call: the model may change between calls (adapters, training).
                self._prompts.clear()
                self._prompt_bytes = 0
                self._write_trace()
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
        return request_key(self.identity, request, self.step)

    def generation_defaults(self) -> GenerationDefaults:
        """The model's own sampling defaults (a cache-only engine's come from its receipt)."""
        return self.defaults

    def default_config(self) -> DecodingConfig:
        """The study's ``default`` baseline for this model."""
        return default_config(self.defaults)[0]

    # -- the decode step -----------------------------------------------------------------------

    def _packed(self) -> Any:
        """``decode_step``'s packed weights, rebuilt when any parameter changed (new tensor or in-place write)."""
        stamp = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if self._weights is None or stamp != self._weights_stamp:
            self._weights = decode_step.pack(self.model, prepack=self.step == "fused")
            self._weights_stamp = stamp
        return self._weights

    def _forward(self, batch: Batch) -> torch.Tensor:
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
        col = torch.tensor(n, dtype=torch.int64, device=mask.device)
        logits = decode_step.decode_step(w, batch.last, cos, sin, [x.kbuf for x in layers], [x.vbuf for x in layers], col, bias)
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

        def finish(batch: Batch, rows: torch.Tensor) -> None:
            n_gen = batch.n_gen[rows].tolist()
            outs = batch.out()[rows].tolist()
            texts = self.tokenizer.batch_decode([o[:n] for o, n in zip(outs, n_gen)], skip_special_tokens=True)
            eos = torch.isin(batch.last[rows], self.eos_ids).tolist()
            for row, text, n, fin in zip(rows.tolist(), texts, n_gen, eos):
                key, req = jobs[batch.jobs[row]]
                out[key] = {"text": text, "n_tokens": n, "finished": fin, "meta": meta(self.identity, req, self.step)}
            self.stats["new_tokens"] += sum(n_gen)
            bar.update(len(n_gen))

        batch: Batch | None = None
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
    def _worth_compacting(batch: Batch, n_dead: int) -> bool:
        """Worth it when the saved row-steps clearly exceed the copy.

        Compaction copies the cache (measured: about half a step's per-row cost per row); dropping dead
        rows saves ``n_dead`` rows on each remaining step, of which the largest remaining budget is an
        upper bound (rows often end sooner), hence the factor 2; and never for fewer than 1/8 of the rows.
        """
        remaining = int((batch.max_new - batch.n_gen)[batch.alive].max())
        return 8 * n_dead >= len(batch) and n_dead * remaining >= 2 * len(batch)

    def _prefill(self, rows: list[int], ids: list[list[int]], reqs: list[Request], horizon: int, reserve: int | None = None) -> Batch:
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
        cache = new_cache(self.model, reserve=horizon + 16 if reserve is None else reserve)
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
        batch = Batch(
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
            cache = new_cache(self.model, reserve=0)
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            self.stats["prefill_tokens"] += int(mask.sum())
            if self.trace is not None:
                self._traced += [prefill_trace(self.identity, self._calls, self._desc, x, out.logits[r, -1])
                                 for r, x in enumerate(missing)]
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

    def _write_trace(self) -> None:
        """Append this call's prefill lines to ``trace`` (a diagnostic log: appended, like the run log)."""
        if self.trace is None or not self._traced:
            return
        self.trace.parent.mkdir(parents=True, exist_ok=True)
        with open(self.trace, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in self._traced)
        self._traced = []

    def _step(self, batch: Batch) -> None:
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

    def _accept(self, batch: Batch, tokens: torch.Tensor) -> None:
        """Record the drawn tokens; dead slots keep their count (their writes land on their own old cells)."""
        rows = torch.arange(len(batch), device=tokens.device)
        batch.seen[rows, batch.prompt_width + batch.n_gen.clamp(max=batch.horizon - 1)] = tokens
        batch.n_gen = batch.n_gen + batch.alive
        batch.last = tokens

    def _next_tokens(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Penalty, temperature (EDT rows: their own), top-k/top-p, min-p, top-nσ and a per-row draw (greedy
        rows: argmax); ``filter_logits`` inline.

        Every row goes through the same vectorized passes; greedy rows ride along as top-k 1 (cheap)
        and take the argmax of their penalised logits, transformers' greedy rule (first of ties).
        EDT, min-p and top-nσ run only when a row of the batch uses them (``flags``).
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
        if flags["nsigma"]:
            w = top_nsigma_warp(logits, seen, p, x, w)
        tokens = sample_rows(x, w, u)
        if flags["any_greedy"]:
            g = p.greedy.nonzero().squeeze(1)
            tokens[g] = greedy_tokens(x, w, g)
        return tokens


def prefill_trace(identity: str, call: int, desc: str, prompt: tuple[int, ...], logits: torch.Tensor) -> dict[str, Any]:
    """One prompt's prefill, as a line of the engine's trace: its first-step logits' digest.

    Two runs that decode the same prompts give the same lines (in the same order, when neither resumed);
    the first line whose ``logits`` digest differs names the engine, call, prompt and that the divergence
    began at prefill (``scripts/benchmarks/compare_traces.py``). Same digests with other texts put it in the
    decode steps.
    """
    values = logits.detach().float().cpu().contiguous().numpy()
    return {
        "engine": identity.rsplit("|", 1)[-1],
        "call": call,
        "desc": desc,
        "prompt": hashlib.sha256(repr(prompt).encode()).hexdigest()[:12],
        "tokens": len(prompt),
        "logits": hashlib.sha256(values.tobytes()).hexdigest()[:16],
        "argmax": int(values.argmax()),
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
