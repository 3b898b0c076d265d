"""Fuzzing the stage-1 parser with generated text (seeded: a failure is reproducible).

Invariants on every string: ``parse_config`` returns (never raises); a config it returns is in the
schema's ranges with no -0.0; the config's canonical JSON parses back to the same config with status
``ok``. About 15,000 strings in a few seconds; ``HAGSTUDY_FUZZ_N`` and ``HAGSTUDY_FUZZ_SEED`` run more.
"""

from __future__ import annotations

import json
import math
import os
import random

from hagstudy.decoding import HYPERPARAMETERS, RANGES, DecodingConfig, parse_config

N = int(os.environ.get("HAGSTUDY_FUZZ_N", "12000"))
SEED = int(os.environ.get("HAGSTUDY_FUZZ_SEED", "17"))

KEYS = ["temperature", "temp", "t", "top_p", "top-p", "topP", "p", "nucleus", "top_k", "k", "topk",
        "repetition_penalty", "repetition penalty", "rep_penalty", "penalty", "I suggest temperature", "x", "Top_K"]
NUMBERS = ["0", "-0", "-0.0", "0.0", "1", "1.0", "0.5", "2", "5", "-1", "1.5", "0.01", "0.004", "1000", "1001",
           "1e3", "1e-3", "-1e-9", "1e308", "1e309", "1e999", "-1e999", "NaN", "Infinity", "-Infinity", "nan",
           "inf", "true", "null", '"0.7"', "[0.5]", "{}", "0x10", "1_000", "٣", "1" * 310, "-" + "9" * 320,
           "7" * 5000, "0." + "0" * 400 + "1"]
NOISE = ["{", "}", "[", "]", ":", "=", ",", '"', "'", " ", "\n", "```json", "```", "\\", "\x00", "🙂", "é",
         "\u202e", "Here is the config:", "temperature", "{{", "}}", "e", "-", ".", "\t"]


def json_like(rng: random.Random) -> str:
    pairs = [f'"{rng.choice(KEYS)}": {rng.choice(NUMBERS)}' for _ in range(rng.randint(0, 6))]
    return "{" + ", ".join(pairs) + ("}" if rng.random() < 0.9 else "")


def pairs_like(rng: random.Random) -> str:
    sep = rng.choice([": ", "=", " = ", ":", " : "])
    return rng.choice([", ", "\n", "; ", " "]).join(
        f"{rng.choice(KEYS)}{sep}{rng.choice(NUMBERS)}" for _ in range(rng.randint(1, 6))
    )


def complete(rng: random.Random) -> str:
    """All four hyperparameters, mostly in range (as a trained stage 1 writes them), as JSON or pairs."""
    values = {
        "temperature": f"{rng.uniform(0, 2):.{rng.randint(0, 3)}f}",
        "top_p": f"{rng.uniform(0.01, 1):.2f}",
        "top_k": str(rng.randint(0, 1000)),
        "repetition_penalty": f"{rng.uniform(1, 2):.2f}",
    }
    if rng.random() < 0.3:
        values[rng.choice(HYPERPARAMETERS)] = rng.choice(NUMBERS)
    if rng.random() < 0.5:
        return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"
    return ", ".join(f"{k}: {v}" for k, v in values.items())


def noise(rng: random.Random) -> str:
    parts = [rng.choice(NOISE + KEYS + NUMBERS) for _ in range(rng.randint(0, 30))]
    return "".join(parts)


def chars(rng: random.Random) -> str:
    return "".join(chr(rng.choice([rng.randint(0, 127), rng.randint(0, 0x10FFFF)])) for _ in range(rng.randint(0, 60)))


def mutate(rng: random.Random, text: str) -> str:
    """Cut, duplicate or splice noise into a text, as a model that stops early or rambles would."""
    if not text:
        return text
    i = rng.randrange(len(text))
    op = rng.randrange(3)
    if op == 0:
        return text[:i]
    if op == 1:
        return text[:i] + text[i:] * 2
    return text[:i] + rng.choice(NOISE) + text[i:]


def generated(rng: random.Random, n: int):
    makers = [json_like, pairs_like, complete, noise, chars]
    for _ in range(n):
        text = rng.choice(makers)(rng)
        if rng.random() < 0.3:
            text = mutate(rng, text)
        if rng.random() < 0.2:
            text = noise(rng) + text + noise(rng)
        yield text


def check_config(cfg: DecodingConfig, text: str) -> None:
    for name in HYPERPARAMETERS:
        value = getattr(cfg, name)
        lo, hi = RANGES[name]
        assert lo <= value <= hi and math.isfinite(value), (text, name, value)
        assert math.copysign(1.0, value) == 1.0, (text, name, "negative zero")
    assert cfg.top_p > 0 and isinstance(cfg.top_k, int), text
    back = parse_config(cfg.to_json(), max_new_tokens=cfg.max_new_tokens)
    assert back.status == "ok" and back.config == cfg, (text, cfg.to_json(), back)
    assert json.loads(cfg.to_json()) == cfg.hyperparameters()


def test_parser_invariants_on_generated_text():
    rng = random.Random(SEED)
    statuses: dict[str, int] = {}
    for text in generated(rng, N):
        result = parse_config(text)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        assert (result.config is None) == (result.status == "failed"), text
        if result.config is not None:
            check_config(result.config, text)
    assert sum(statuses.values()) == N >= 10_000
    assert all(statuses.get(s, 0) > N // 50 for s in ("ok", "clamped", "partial", "failed")), statuses


def test_every_valid_config_round_trips_through_its_canonical_json():
    rng = random.Random(SEED + 1)
    for _ in range(3000):
        cfg = DecodingConfig(
            temperature=rng.choice([0.0, rng.uniform(0, 2)]),
            top_p=rng.choice([1.0, rng.uniform(0.01, 1)]),
            top_k=rng.choice([0, rng.randint(0, 1000)]),
            repetition_penalty=rng.choice([1.0, rng.uniform(1, 2)]),
            max_new_tokens=rng.randint(1, 256),
        )
        check_config(cfg, cfg.to_json())
