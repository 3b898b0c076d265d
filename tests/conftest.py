"""Shared fixtures and fakes.

The tiny-random model (3M parameters, the real tokenizer) loads in well under a second. The fakes
(``FakeEngine``, ``FakeTask``) stand in for the engine and a task in the scoring, search, methods
and ablation tests (import them with ``from conftest import ...``): text is a hash of the request,
so a test can score "how good is this config" without a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pytest

from hagstudy.decoding import DecodingConfig


@pytest.fixture(scope="session")
def tiny():
    from hagstudy.engine import models

    return models.load(models.TINY, dtype="float32")


@pytest.fixture(scope="session")
def tokenizer(tiny):
    return tiny[1]


@dataclass(frozen=True)
class FakeItem:
    task: str
    id: str
    query: str
    reference: Any = None


@dataclass(frozen=True)
class FakeCompletion:
    text: str
    n_tokens: int
    finished: bool
    cached: bool


class FakeEngine:
    """Deterministic text from sha256(prompt, effective config, seed); greedy ignores the seed.

    The text ends with the config's JSON so a task can score "how good is this config". ``seen``
    plays the cache: a request generated before comes back with ``cached=True``.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.seen: set[str] = set()
        self.stats = {"hits": 0, "misses": 0, "new_tokens": 0, "seconds": 0.0}

    def render(self, messages: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def generate(self, requests: Sequence[Any], desc: str = "generate") -> list[FakeCompletion]:
        self.calls.append(len(requests))
        out = []
        for r in requests:
            cfg = r.config.effective()
            seed = 0 if cfg.greedy else r.seed
            key = f"{r.prompt}|{cfg.key()}|{seed}"
            digest = hashlib.sha256(key.encode()).hexdigest()
            cached = key in self.seen
            self.seen.add(key)
            n = int(digest[8:10], 16) % cfg.max_new_tokens + 1
            self.stats["hits" if cached else "misses"] += 1
            out.append(FakeCompletion(text=f"{digest[:8]}|{cfg.to_json()}", n_tokens=n, finished=True, cached=cached))
        return out


class FakeTask:
    """score = fn(text); counts score calls to check that scoring is batched."""

    capability = "fake"

    def __init__(self, fn: Callable[[str], float], name: str = "fake", n_items: int = 8, max_new_tokens: int = 16):
        self.name = name
        self.fn = fn
        self.max_new_tokens = max_new_tokens
        self._items = [FakeItem(name, f"{name}-{i:03d}", f"question {i}?", i) for i in range(n_items)]
        self.score_calls = 0

    def items(self, split: str, n: int | None = None) -> list[FakeItem]:
        return self._items[:n]

    def messages(self, item: FakeItem) -> list[dict[str, str]]:
        return [{"role": "system", "content": "Answer."}, {"role": "user", "content": item.query}]

    def score(self, items: Sequence[FakeItem], outputs: Sequence[str]) -> list[float]:
        self.score_calls += 1
        assert len(items) == len(outputs)
        return [self.fn(o) for o in outputs]


def noise(text: str) -> float:
    """Coarse pseudo-random score in {0, 1/3, 2/3, 1}: many ties, on purpose."""
    return (int(text[:8], 16) % 4) / 3


def target_score(target: DecodingConfig, noise_weight: float = 0.0) -> Callable[[str], float]:
    """Scores a config by its closeness to ``target`` (plus optional hash noise)."""

    def fn(text: str) -> float:
        cfg = DecodingConfig(**json.loads(text.split("|", 1)[1]))
        value = 1.0 - cfg.distance(target) / 4
        return (1 - noise_weight) * value + noise_weight * noise(text)

    return fn


class ReplyEngine:
    """Renders messages as plain text and answers from a {user text: reply} table; records every request."""

    def __init__(self, replies: dict[str, str] | None = None):
        self.replies = replies or {}
        self.calls: list[list[Any]] = []

    def render(self, msgs: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in msgs) + "<assistant>"

    def generate(self, requests, desc: str = "generate"):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            user = r.prompt.split("<user>")[-1].removesuffix("<assistant>")
            text = self.replies.get(user, f"answer to {user} with seed {r.seed}")
            out.append(FakeCompletion(text=text, n_tokens=len(text.split()), finished=True, cached=False))
        return out
