"""The decode batch's state: a KV cache that grows in place, the rows it holds, and how many rows fit.

* **KV cache.** A transformers ``DynamicCache`` whose layers append into preallocated buffers (no
  per-step copy), and can drop rows, trim leading padding and splice in new rows (``KVLayer``).
* **Batch.** Decoding is continuous batching over ``max_batch_size`` slots: a finished row's slot is
  refilled from the queue (the new rows are prefilled separately and written right-aligned into the
  shared cache, ``Batch.place``); when the queue is empty, dead slots are compacted away once that saves
  more than the copy costs (``Batch.select``). Cache columns that are padding for every row are trimmed.
* **Memory.** Rows per batch: ``CPU_BATCH`` on CPU unless memory is short; on a GPU, from its free memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from hagstudy.engine.sampling import PARAM_FIELDS, RowParams

log = logging.getLogger(__name__)

# The fused step attends over the cache rounded up to this many columns (grown in these steps). A multiple of 32:
# oneDNN issue 5717 reports AMX bf16 matmuls with K > 32 and K % 32 != 0 reading neighbouring rows, and P.V has K = this width.
KV_BUCKET = 32
# Default rows per batch on CPU (fewer when memory is short). With pooled calls of thousands of requests, 256 rows
# decoded a 512-request search-shaped call at 1.2x the rate of 96 rows, and 512 rows no faster (2 cores, AMX).
CPU_BATCH = 256
# Share of the available memory a CPU batch may plan for, at ``row_bytes``' 1,024-token rows (about 4x what the
# study's rows use): 256 rows of the 135M model need 6.4 GB of the 12 GB this allows on a 24 GiB machine.
CPU_MEMORY_SHARE = 0.5


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


def new_cache(model: Any, reserve: int) -> Any:
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
class Batch:
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
            "nsigma": bool((p.top_nsigma > 0).any()),
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

    def place(self, new: Batch, slots: torch.Tensor) -> None:
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
        for name in PARAM_FIELDS:
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
    avail = available_memory()
    cap = CPU_BATCH if avail is None else int(max(1, CPU_MEMORY_SHARE * avail // per_row))
    if cap < CPU_BATCH:
        # Batch shape decides bf16 rounding, and the cache keys do not name it: say so, loudly.
        log.warning("decode batch capped at %d rows (CPU_BATCH %d) by available memory (%.1f GB): bf16 texts "
                    "decoded now may differ from a run with full batches", cap, CPU_BATCH, (avail or 0) / 2**30)
    return max(1, min(CPU_BATCH, cap))


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
