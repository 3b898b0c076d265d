"""Requests, completions and their cache keys: what every generation backend takes, returns and stores.

A completion's text depends only on (model, prompt, config, seed) and the decode step, so its cache key
(``request_key``) is sha256 of exactly those. The eager step's keys are ENGINE_VERSION 2's; texts decoded
with ``decode_step`` ("fused") carry ``STEP_VERSION`` and the step's name instead: their rounding differs
from the eager forward's, so neither may serve the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hagstudy.decoding import DecodingConfig

# Part of every cache key: bump it whenever the same request could decode to a different text.
ENGINE_VERSION = "2"  # 2: the final sampling path of the first release (1 was used during its development)
# The keys of texts decoded with ``decode_step`` (step "fused") carry this version and the step's name instead.
STEP_VERSION = "4"  # 4: pooled calls, 256-row CPU batches and 32-column KV buckets (other bf16 rounding)


class ReplayMiss(RuntimeError):
    """A cache-only engine was asked for a completion the cache does not hold (the message names the fix)."""


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

    ``step``: the decode step that produces the text ("eager" or "fused"). The eager step's
    keys are those of ENGINE_VERSION 2, unchanged; the others add ``STEP_VERSION`` and their name.
    """
    head = [ENGINE_VERSION] if step == "eager" else [f"{STEP_VERSION}:{step}"]
    payload = json.dumps([*head, identity, request.prompt, request.config.key(), int(request.seed)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def meta(identity: str, req: Request, step: str = "eager") -> dict[str, Any]:
    """What a cache row records beside its text: the parts of its key, readable (model, config, seed, prompt digest, engine)."""
    return {
        "model": identity,
        "config": json.loads(req.config.key()),
        "seed": int(req.seed),
        "prompt_sha256": hashlib.sha256(req.prompt.encode("utf-8")).hexdigest()[:16],
        "engine": ENGINE_VERSION if step == "eager" else STEP_VERSION,
        **({} if step == "eager" else {"step": step}),
    }

