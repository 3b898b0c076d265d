"""What every generation backend offers its callers: the in-house engine, its cache-only mode, vLLM.

Callers (scoring, the search, stage 1, the notebooks) use only this protocol; nobody reaches into a
backend's model. ``generation_defaults`` is what the study reads of a model's own generation config (the
sampling fields ``decoding.default_config`` turns into the ``default`` baseline); a cache-only engine has
it from its receipt, so it answers without weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

from hagstudy.decoding import DecodingConfig

Messages = list[dict[str, str]]
GENERATION_FIELDS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")  # what default_config reads


@dataclass(frozen=True)
class GenerationDefaults:
    """The sampling fields of a model's generation config (None where it sets none)."""

    do_sample: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    repetition_penalty: Any = None

    @classmethod
    def of(cls, generation_config: Any) -> GenerationDefaults:
        """From a transformers ``GenerationConfig`` (or None: nothing set)."""
        return cls(**{f: getattr(generation_config, f, None) for f in GENERATION_FIELDS})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GenerationDefaults:
        return cls(**{f: raw.get(f) for f in GENERATION_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """The fields in ``GENERATION_FIELDS`` order (what a receipt records)."""
        return {f: getattr(self, f) for f in GENERATION_FIELDS}


class Engine(Protocol):
    """A generation backend: renders chats, keys and generates completions behind the completion cache."""

    identity: str  # the model part of every cache key

    def render(self, messages: Messages) -> str:
        """Chat template plus the generation prompt: the text a request carries."""
        ...

    def generate(self, requests: Sequence[Any], desc: str = ...) -> list[Any]:
        """Completions in request order (cached ones read, the rest generated)."""
        ...

    def key(self, request: Any) -> str:
        """The request's cache key under this backend's model."""
        ...

    def generation_defaults(self) -> GenerationDefaults:
        """The model's own sampling defaults."""
        ...

    def default_config(self) -> DecodingConfig:
        """The study's ``default`` baseline for this model (``decoding.default_config`` of its defaults)."""
        ...
