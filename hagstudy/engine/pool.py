"""Pooled engine calls: independent pieces of work (one task's search, one task's baselines) share one engine call.

A fuller batch is the cheapest lever on CPU: the weights are read once per decode step whatever the batch, and a
call of a few dozen requests spends much of its time draining its last rows. The study's work is naturally split
per task, and each task's code issues calls of a few hundred requests. ``map_pooled(engine, fn, items)`` runs
``fn(item)`` for every item in lockstep: each runs until it asks ``engine`` for completions (or returns); when
all have asked, their requests are decoded as *one* engine call and each gets its own completions back.

* **Deterministic.** The pieces run one at a time, in item order, each in its own thread used as a coroutine: no two
  ever run Python or torch at once. The pooled call is the concatenation of the pieces' requests in item order,
  so a rerun forms exactly the same pooled calls. A piece whose call the cache serves in full still waits for
  the pooled call, so resuming after a kill rebuilds the same pooled calls and (by the engine's group commit) the
  same decode groups and batches: the same texts, bf16 included.
* **Other engines.** A piece may call another engine (an adapter's): that call runs at once, alone, while every
  other piece waits.
* **Failure.** The first piece that raises stops the others (they unwind with ``PoolAborted``) and its exception
  is raised by ``map_pooled``; so is an exception of the pooled call itself (a kill included).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class PoolAborted(RuntimeError):
    """Raised inside a piece whose pool stopped (another piece or the pooled call failed)."""


class _Piece:
    def __init__(self, index: int) -> None:
        self.index = index
        self.go = threading.Semaphore(0)
        self.asked: tuple[list[Any], str] | None = None  # (requests, desc) while waiting for the pooled call
        self.answer: list[Any] | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False


class Pool:
    """The pieces of one ``map_pooled`` and the hand-over between them and the coordinating thread."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.yielded = threading.Semaphore(0)
        self.local = threading.local()
        self.aborted = False
        self.calls = 0  # pooled engine calls made

    def inside(self) -> bool:
        """True in a piece's thread: its engine calls go to the pool."""
        return getattr(self.local, "piece", None) is not None

    def ask(self, requests: Sequence[Any], desc: str) -> list[Any]:
        """A piece's engine call: hand the requests over, wait for the pooled call, return this piece's part."""
        piece: _Piece = self.local.piece
        piece.asked = (list(requests), desc)
        self.yielded.release()
        piece.go.acquire()
        if self.aborted:
            raise PoolAborted("another piece of this pool failed")
        answer, piece.answer = piece.answer, None
        return answer  # type: ignore[return-value]

    def _body(self, piece: _Piece, fn: Callable[[Any], Any], item: Any) -> None:
        self.local.piece = piece
        piece.go.acquire()
        try:
            if self.aborted:
                raise PoolAborted("another piece of this pool failed")
            piece.value = fn(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinator, which re-raises it
            piece.error = exc
        finally:
            piece.done = True
            self.yielded.release()

    def _resume(self, piece: _Piece) -> None:
        """Let one piece run until it asks for completions or ends."""
        piece.go.release()
        self.yielded.acquire()

    def _abort(self, pieces: Sequence[_Piece], threads: Sequence[threading.Thread]) -> None:
        self.aborted = True
        for piece in pieces:
            if not piece.done:
                piece.go.release()
        for t in threads:
            t.join()

    def run(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        pieces = [_Piece(i) for i in range(len(items))]
        threads = [threading.Thread(target=self._body, args=(p, fn, x), daemon=True, name=f"pool-{p.index}")
                   for p, x in zip(pieces, items)]
        for t in threads:
            t.start()
        try:
            waiting = list(pieces)
            while waiting:
                for piece in waiting:
                    self._resume(piece)
                    if piece.error is not None:
                        raise piece.error
                asking = [p for p in waiting if not p.done]
                if not asking:
                    break
                requests: list[Any] = []
                for p in asking:
                    requests += p.asked[0]  # type: ignore[index]
                descs = [p.asked[1] for p in asking]  # type: ignore[index]
                desc = descs[0] if len(descs) == 1 else f"{len(descs)} pooled: {', '.join(descs)}"
                answers = self.engine.generate_now(requests, desc=desc)
                self.calls += 1
                at = 0
                for p in asking:
                    n = len(p.asked[0])  # type: ignore[index]
                    p.answer, p.asked = answers[at : at + n], None
                    at += n
                waiting = asking
        except BaseException:
            self._abort(pieces, threads)
            raise
        for t in threads:
            t.join()
        return [p.value for p in pieces]


def map_pooled(engine: Any, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, with the pieces' calls to ``engine`` pooled (see the module docstring).

    An engine that cannot pool (vLLM, a cache-only engine) runs the pieces one after the other; so does a
    pool nested in a piece."""
    if len(items) < 2 or not getattr(engine, "can_pool", False) or engine.pooling():
        return [fn(x) for x in items]
    pool = Pool(engine)
    engine.pool = pool
    try:
        return pool.run(fn, items)
    finally:
        engine.pool = None
