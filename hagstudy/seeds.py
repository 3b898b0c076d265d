"""Seeds that are the same on every machine and run: the study's two seed rules and its offsets.

Every sampled generation's seed is a hash of names, never a counter or Python's salted ``hash()``,
so a rerun (or a resumed run) asks the engine for exactly the same generations and the content
cache serves them. Two rules exist, and both are kept because the committed caches are keyed by them:

* **search draws** (``draw_seeds``): draw ``r`` of an item is ``stable_hash(task, item, offset + r)``
  for every config of that item (common random numbers). A greedy config sends its first draw seed.
* **evaluation seeds** (``eval_seed``): evaluation seed ``s`` of an item is
  ``stable_hash(task, item, "eval", s)`` for every method. A greedy config sends ``GREEDY_SEED``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

OFFSET_REPEAT = 1_000_000  # seed offset of the repeated greedy search (label reliability)
OFFSET_HELDOUT = 2_000_000  # seed offset of the held-out draws that score labels against each other
OFFSET_ORACLE = 3_000_000  # seed offset of the item oracle's selection draws (never the evaluation seeds)
OFFSET_DENOISE = 4_000_000  # seed offset of the denoised-label arm's re-scoring draws (notebook 05)
GREEDY_SEED = 0  # greedy text does not depend on the seed: evaluation sends this one


def stable_hash(*parts: Any) -> int:
    """A 31-bit integer from the parts' JSON text: the same on every machine and Python run."""
    text = json.dumps([p if isinstance(p, (int, float, str, bool)) or p is None else str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") & 0x7FFF_FFFF


def draw_seeds(task: str, item_id: str, draws: int, seed_offset: int = 0) -> tuple[int, ...]:
    """Seeds of an item's search draws; every config of the item gets these same seeds."""
    return tuple(stable_hash(task, item_id, seed_offset + r) for r in range(draws))


def eval_seed(task: str, item_id: str, seed: int) -> int:
    """The sampling seed of evaluation seed ``seed`` on one item: the same for every method."""
    return stable_hash(task, item_id, "eval", seed)
