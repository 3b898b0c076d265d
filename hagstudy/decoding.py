"""Decoding configs: the schema, the search space, the canonical JSON text and the tolerant parser.

One ``DecodingConfig`` is what HAG's stage 1 writes and stage 2 obeys. Its canonical JSON (fixed key
order, rounded values) is shared by the search labels, the training targets and the cache keys, so
that the same config is always the same string.

Two training-free adaptive baselines ride on the same config, off by default and never searched by
stage 1: ``min_p`` (Nguyen et al. 2024; transformers' ``MinPLogitsWarper``) and ``edt_theta`` (EDT,
Zhang et al. 2024: per-step temperature ``T = temperature * EDT_N ** (edt_theta / H)``, H the entropy
of the step's distribution). A third, ``top_nsigma`` (top-nσ, Tang et al. 2024), keeps the tokens whose
logit is within n standard deviations (over the vocabulary) of the row's top logit. They enter the JSON
text and the cache key only when non-zero, so every config without them keeps its text and key byte for byte.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

HYPERPARAMETERS: tuple[str, ...] = ("temperature", "top_p", "top_k", "repetition_penalty")
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),  # 0 means greedy
    "top_p": (0.0, 1.0),  # open at 0: (0, 1]
    "top_k": (0, 1000),  # 0 means off; the upper bound only guards against nonsense
    "repetition_penalty": (1.0, 2.0),
}
DECIMALS = 2
# Not searched by stage 1 (not in HYPERPARAMETERS): each is 0 = off, and in the JSON text only when on.
ADAPTIVE: tuple[str, ...] = ("min_p", "edt_theta", "top_nsigma")
ADAPTIVE_RANGES: dict[str, tuple[float, float]] = {
    "min_p": (0.0, 1.0),  # [0, 1)
    "edt_theta": (0.0, 10.0),
    "top_nsigma": (0.0, 10.0),  # n beyond ~5 keeps nearly the whole vocabulary (plain sampling)
}
EDT_N = 0.8  # EDT's base N (Zhang et al. 2024, "EDT: ... entropy-based dynamic temperature sampling")
EDT_MIN_TEMPERATURE = 0.05  # floor on EDT's per-step temperature (H -> 0 sends it to 0)


class ConfigError(ValueError):
    """A decoding hyperparameter outside its range or of the wrong type."""


@dataclass(frozen=True)
class DecodingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    # The token budget: not a searched hyperparameter and not in the JSON text. scoring.score attaches
    # the task's budget to each request (the one place), and HAG's stage 1 its own.
    max_new_tokens: int = 64
    # Adaptive baselines (0 = off): after max_new_tokens, so positional construction keeps its meaning.
    min_p: float = 0.0  # keep tokens with probability >= min_p * the top probability (after top-k/top-p)
    edt_theta: float = 0.0  # EDT: per-step temperature T = temperature * EDT_N ** (edt_theta / entropy)
    top_nsigma: float = 0.0  # top-nσ: keep tokens whose logit is >= max logit - top_nsigma * std of the row's logits

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "repetition_penalty", *ADAPTIVE):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
            # "+ 0.0" turns -0.0 into 0.0: one config, one JSON text, one cache key.
            object.__setattr__(self, name, round(float(value), DECIMALS) + 0.0)
        for name in ("top_k", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    object.__setattr__(self, name, int(value))
                else:
                    raise ConfigError(f"{name} must be an integer, got {value!r}")
        lo, hi = RANGES["temperature"]
        if not lo <= self.temperature <= hi:
            raise ConfigError(f"temperature must be in [{lo}, {hi}] (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        lo, hi = RANGES["top_k"]
        if not lo <= self.top_k <= hi:
            raise ConfigError(f"top_k must be an integer in [{lo}, {hi}] (0 = off), got {self.top_k}")
        lo, hi = RANGES["repetition_penalty"]
        if not lo <= self.repetition_penalty <= hi:
            raise ConfigError(f"repetition_penalty must be in [{lo}, {hi}], got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        lo, hi = ADAPTIVE_RANGES["min_p"]
        if not lo <= self.min_p < hi:
            raise ConfigError(f"min_p must be in [{lo}, {hi}) (0 = off), got {self.min_p}")
        lo, hi = ADAPTIVE_RANGES["edt_theta"]
        if not lo <= self.edt_theta <= hi:
            raise ConfigError(f"edt_theta must be in [{lo}, {hi}] (0 = off), got {self.edt_theta}")
        lo, hi = ADAPTIVE_RANGES["top_nsigma"]
        if not lo <= self.top_nsigma <= hi:
            raise ConfigError(f"top_nsigma must be in [{lo}, {hi}] (0 = off), got {self.top_nsigma}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def hyperparameters(self) -> dict[str, float | int]:
        """The four searched values, in canonical order."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    def adaptive(self) -> dict[str, float]:
        """The adaptive baselines that are on (non-zero), in canonical order; empty for every searched config."""
        return {name: getattr(self, name) for name in ADAPTIVE if getattr(self, name) != 0.0}

    def to_json(self) -> str:
        """Canonical text: fixed key order, rounded values, no spaces. The training target.

        ``min_p``/``edt_theta``/``top_nsigma`` follow the four hyperparameters only when non-zero (existing texts
        unchanged)."""
        return json.dumps({**self.hyperparameters(), **self.adaptive()}, separators=(", ", ": "))

    @classmethod
    def from_json(cls, text: str, max_new_tokens: int = 64) -> "DecodingConfig":
        """The inverse of ``to_json`` (strict: the four keys, plus min_p/edt_theta/top_nsigma if present; the token
        budget is not in the text)."""
        return cls(**json.loads(text), max_new_tokens=max_new_tokens)

    def effective(self) -> "DecodingConfig":
        """The config that decodes identically: greedy ignores top_p, top_k and the adaptive baselines. Used for cache keys."""
        if self.greedy:
            return replace(self, top_p=1.0, top_k=0, min_p=0.0, edt_theta=0.0, top_nsigma=0.0)
        return self

    def identity(self) -> str:
        """THE identity of a config: the canonical text of the config that decodes the same (``effective``).

        Two configs are the same config exactly when their identities are equal; the search's memo and
        prune table, the label check, the ablations and the item oracle all key configs by it. The token
        budget is not part of it (it is the task's, not the config's); ``key`` adds it for the cache."""
        return self.effective().to_json()

    def key(self) -> str:
        """The cache key: ``identity`` plus the token budget, keys sorted (a stable string for hashing; a
        config without the adaptive baselines keeps its key byte for byte)."""
        return json.dumps({**json.loads(self.identity()), "max_new_tokens": self.max_new_tokens}, sort_keys=True)

    def with_(self, **changes: Any) -> "DecodingConfig":
        return replace(self, **changes)

    def distance(self, other: "DecodingConfig") -> float:
        """Range-normalised L1 distance over the four hyperparameters (ties go to the nearer config)."""
        total = 0.0
        for name in HYPERPARAMETERS:
            lo, hi = RANGES[name]
            if name == "top_k":  # 0 means off: treat as the widest setting
                a, b = (getattr(c, name) or 100 for c in (self, other))
                total += abs(min(a, 100) - min(b, 100)) / 100
            else:
                total += abs(getattr(self, name) - getattr(other, name)) / (hi - lo)
        return total


# transformers' sampling defaults, which are DecodingConfig's own field defaults (the one definition);
# SmolLM2's GGUF carries no sampling values of its own.
TRANSFORMERS_DEFAULT = DecodingConfig()


def default_config(generation_config: Any = None) -> tuple[DecodingConfig, str]:
    """The study's ``default`` baseline and where it came from.

    The model's own generation defaults when it sets sampling values (``do_sample`` or a temperature
    other than 1), otherwise transformers' defaults (T=1.0, top_p=1.0, top_k=50, rep=1.0).
    """
    gc = generation_config
    if gc is not None and (getattr(gc, "do_sample", False) or getattr(gc, "temperature", None) not in (None, 1.0)):
        cfg = DecodingConfig(
            temperature=float(getattr(gc, "temperature", None) or 1.0),
            top_p=float(getattr(gc, "top_p", None) or 1.0),
            top_k=int(getattr(gc, "top_k", None) or 0),
            repetition_penalty=float(getattr(gc, "repetition_penalty", None) or 1.0),
        )
        return cfg, "model generation_config"
    return TRANSFORMERS_DEFAULT, "transformers defaults (model sets none)"


GREEDY = DecodingConfig(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0)


@dataclass(frozen=True)
class SearchSpace:
    """Grids per hyperparameter. ``coarse`` is the pruning grid; ``fine`` bounds random/TPE search."""

    coarse: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "temperature": (0.0, 0.5, 1.0, 1.5),
            "top_p": (0.5, 0.9, 1.0),
            "top_k": (0, 10, 50),
            "repetition_penalty": (1.0, 1.1, 1.3),
        }
    )

    def grid(self) -> list[DecodingConfig]:
        """Every coarse-grid combination, greedy duplicates (T=0 with other top_p/top_k) removed."""
        seen: dict[str, DecodingConfig] = {}
        for values in _product([self.coarse[h] for h in HYPERPARAMETERS]):
            cfg = DecodingConfig(**dict(zip(HYPERPARAMETERS, values)))
            seen.setdefault(cfg.identity(), cfg.effective())
        return list(seen.values())

    def sample(self, rng: Any) -> DecodingConfig:
        """A uniform draw over the continuous ranges (top_k uniform over {0, 1..100}); for ``random``."""
        return DecodingConfig(
            temperature=float(rng.uniform(0.0, 1.5)),
            top_p=float(rng.uniform(0.3, 1.0)),
            top_k=int(rng.integers(0, 101)),
            repetition_penalty=float(rng.uniform(1.0, 1.5)),
        )

    def bounds(self) -> dict[str, tuple[float, float]]:
        """Ranges used by random search and Optuna (the same as ``sample``)."""
        return {"temperature": (0.0, 1.5), "top_p": (0.3, 1.0), "top_k": (0, 100), "repetition_penalty": (1.0, 1.5)}


def _product(lists: list[tuple[float, ...]]) -> Iterator[tuple[float, ...]]:
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for tail in _product(lists[1:]):
            yield (head, *tail)


# ---------------------------------------------------------------------------------------------
# The tolerant stage-1 parser
# ---------------------------------------------------------------------------------------------

_ALIASES = {
    "temperature": "temperature",
    "temp": "temperature",
    "t": "temperature",
    "top_p": "top_p",
    "topp": "top_p",
    "p": "top_p",
    "nucleus": "top_p",
    "top_k": "top_k",
    "topk": "top_k",
    "k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "repetitionpenalty": "repetition_penalty",
    "rep_penalty": "repetition_penalty",
    "reppenalty": "repetition_penalty",
    "repeat_penalty": "repetition_penalty",
    "penalty": "repetition_penalty",
}
_PAIR = re.compile(r"[\"']?([A-Za-z][A-Za-z _\-]{0,30}?)[\"']?\s*[:=]\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)")


@dataclass(frozen=True)
class ParseResult:
    """What stage 1's text became. ``config`` is None only when ``status == 'failed'``."""

    config: DecodingConfig | None
    status: str  # "ok" | "clamped" | "partial" | "failed"
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.config is not None


def _norm_key(key: str) -> str | None:
    k = re.sub(r"[\s\-]+", "_", key.strip().lower())
    return _ALIASES.get(k) or _ALIASES.get(k.replace("_", ""))


def _norm_key_tail(key: str) -> str | None:
    """A key at the end of a phrase ("I suggest temperature: 0.7"): its last one or two words, no 1-letter aliases."""
    words = key.split()
    for tail in (words[-2:], words[-1:]):
        joined = " ".join(tail)
        if len(tail) < len(words) and len(joined) > 1:
            name = _norm_key(joined)
            if name:
                return name
    return None


def parse_config(text: str, fallback: DecodingConfig = TRANSFORMERS_DEFAULT, max_new_tokens: int | None = None) -> ParseResult:
    """Read a config out of model text: JSON first, then ``key: value`` pairs; clamp into range.

    Missing hyperparameters take ``fallback``'s values (status ``partial``); values out of range,
    however huge (a 310-digit integer, ``1e999``), are clamped (status ``clamped``, so the caller
    counts them); no recognisable hyperparameter at all is a failure, and the caller decides what to
    do (HAG uses the default config and counts it). ``-0`` reads as 0. Never raises on any string.
    """
    budget = max_new_tokens if max_new_tokens is not None else fallback.max_new_tokens
    text = text if isinstance(text, str) else ""
    found: dict[str, float] = {}
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            obj = json.loads(match.group(0))
        except (ValueError, RecursionError):  # JSONDecodeError, over-long integers, deeply nested lists
            continue
        if isinstance(obj, dict):
            for key, value in obj.items():
                name = _norm_key(str(key))
                if name and name not in found and _is_number(value):
                    found[name] = _as_float(value)
            if found:
                break
    if not found:
        for key, value in _PAIR.findall(text):
            name = _norm_key(key) or _norm_key_tail(key)
            if name and name not in found:
                found[name] = _as_float(value)
    if not found:
        snippet = text.strip().replace("\n", " ")[:80]
        return ParseResult(None, "failed", f"no hyperparameter found in {snippet!r}")
    clamped = []
    values: dict[str, Any] = {}
    for name in HYPERPARAMETERS:
        if name not in found:
            values[name] = getattr(fallback, name)
            continue
        value = found[name]
        lo, hi = RANGES[name]
        if name == "top_p":
            lo = 0.01
        new = min(max(value, lo), hi) + 0.0  # huge values (even +-inf) clamp to the range; -0.0 becomes 0.0
        if name == "top_k":
            new = int(round(new))
        if new != value:
            clamped.append(f"{name} {value:g}->{new:g}")
        values[name] = new
    cfg = DecodingConfig(**values, max_new_tokens=budget)
    missing = [h for h in HYPERPARAMETERS if h not in found]
    if clamped:
        return ParseResult(cfg, "clamped", "; ".join(clamped))
    if missing:
        return ParseResult(cfg, "partial", f"missing {missing}, taken from the fallback")
    return ParseResult(cfg, "ok")


def _is_number(value: Any) -> bool:
    """A JSON number the parser can use: finite floats and any int (an int is finite however long)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _as_float(value: Any) -> float:
    """float(value), with an int or digit string beyond float's range as +-inf (clamped later, status "clamped")."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if int(value) > 0 else -math.inf
