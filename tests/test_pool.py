"""map_pooled: pieces run in lockstep, their engine calls decoded as one, results routed back, failures raised."""

from __future__ import annotations

import pytest

from hagstudy.engine.pool import PoolAborted, map_pooled


class PoolEngine:
    """Answers each request with its upper-cased text and records every call it decodes."""

    can_pool = True

    def __init__(self) -> None:
        self.pool = None
        self.calls: list[list[str]] = []

    def pooling(self) -> bool:
        return self.pool is not None

    def generate(self, requests, desc="generate"):
        if self.pool is not None and self.pool.inside():
            return self.pool.ask(requests, desc)
        return self.generate_now(requests, desc)

    def generate_now(self, requests, desc="generate"):
        self.calls.append(list(requests))
        return [r.upper() for r in requests]


def piece(engine: PoolEngine, rounds: int):
    def run(name: str) -> list[str]:
        got = []
        for k in range(rounds):
            got += engine.generate([f"{name}{k}a", f"{name}{k}b"])
        return got
    return run


def test_calls_are_pooled_in_item_order_and_routed_back() -> None:
    engine = PoolEngine()
    out = map_pooled(engine, piece(engine, 2), ["x", "y", "z"])
    assert out == [["X0A", "X0B", "X1A", "X1B"], ["Y0A", "Y0B", "Y1A", "Y1B"], ["Z0A", "Z0B", "Z1A", "Z1B"]]
    assert engine.calls == [["x0a", "x0b", "y0a", "y0b", "z0a", "z0b"], ["x1a", "x1b", "y1a", "y1b", "z1a", "z1b"]]
    assert engine.pool is None


def test_pieces_of_unequal_length_and_without_calls() -> None:
    engine = PoolEngine()
    rounds = {"a": 3, "b": 1, "c": 0}
    out = map_pooled(engine, lambda n: piece(engine, rounds[n])(n), ["a", "b", "c"])
    assert [len(o) for o in out] == [6, 2, 0]
    assert [len(c) for c in engine.calls] == [4, 2, 2]


def test_same_calls_as_one_after_the_other() -> None:
    pooled, alone = PoolEngine(), PoolEngine()
    assert map_pooled(pooled, piece(pooled, 2), ["p", "q"]) == [piece(alone, 2)(n) for n in ["p", "q"]]


def test_a_failing_piece_stops_the_pool() -> None:
    engine = PoolEngine()

    def run(name: str) -> list[str]:
        got = engine.generate([name])
        if name == "bad":
            raise ValueError("bad piece")
        return got + engine.generate([name + "!"])

    with pytest.raises(ValueError, match="bad piece"):
        map_pooled(engine, run, ["ok", "bad", "ok2"])
    assert engine.pool is None
    assert engine.calls == [["ok", "bad", "ok2"]]  # the second round never ran


def test_a_failing_pooled_call_aborts_every_piece() -> None:
    engine = PoolEngine()
    seen: list[BaseException] = []

    def boom(requests, desc="generate"):
        raise KeyboardInterrupt

    engine.generate_now = boom

    def run(name: str) -> None:
        try:
            engine.generate([name])
        except PoolAborted as exc:
            seen.append(exc)
            raise

    with pytest.raises(KeyboardInterrupt):
        map_pooled(engine, run, ["a", "b"])
    assert len(seen) == 2


def test_engines_that_cannot_pool_run_sequentially() -> None:
    engine = PoolEngine()
    engine.can_pool = False
    assert map_pooled(engine, piece(engine, 1), ["a", "b"]) == [["A0A", "A0B"], ["B0A", "B0B"]]
    assert len(engine.calls) == 2


def test_real_engine_pools_and_matches_row_by_row(tiny) -> None:
    """With one row per batch, texts cannot depend on the batch: pooled texts equal unpooled ones."""
    from hagstudy.decoding import DecodingConfig
    from hagstudy.engine.engine import Engine
    from hagstudy.engine.requests import Request

    model, tok = tiny
    cfg = DecodingConfig(temperature=0.8, top_p=0.9, max_new_tokens=6)
    prompts = {name: [Request(f"{name} prompt {k}", cfg, seed=k) for k in range(3)] for name in ("a", "b")}
    pooled = Engine(model, tok, progress=False, max_batch_size=1)
    got = map_pooled(pooled, lambda n: [c.text for c in pooled.generate(prompts[n])], ["a", "b"])
    alone = Engine(model, tok, progress=False, max_batch_size=1)
    assert got == [[c.text for c in alone.generate(prompts[n])] for n in ("a", "b")]
    assert pooled.stats["misses"] == 6
