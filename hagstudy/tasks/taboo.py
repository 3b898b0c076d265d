"""taboo (creativity, word game): give a clue for a target word without saying it or its taboo words.

Data: BIG-bench taboo, 100 entries with 99 distinct targets ("shopping" appears twice; its taboo
lists are merged). Splits: 40 search / 20 validation / 39 test (fewer than the default profile's 100).

Score = compliance x relevance.
- compliance: 1 unless the output (all of it) contains the target or a taboo word as a whole word
  or an inflection of one: plural/3rd person (-s, -es, -ies), past (-ed, -d, -ied), -ing (with
  dropped e and doubled consonant), -er/-est are matched both ways ("boats" vs "boat", "sailing"
  vs "sail", "ran" is not caught). Hyphenated taboos ("high-rise") match as word sequences.
  Substrings inside other words ("start" vs "star") are allowed.
- relevance: MiniLM cosine of the clue and the target word, mapped linearly from [LO, HI] onto
  [0, 1]. LO = 0.20 is about the 90th percentile of a target against another target's taboo list
  (a clue for the wrong word earns ~0); HI = 0.45 is about the median of a target against its own
  taboo list (the words most associated with it, i.e. a near-ideal, if forbidden, clue), so a good
  compliant clue earns ~1. Calibration on the search split only (numbers in docs/tasks.md).
"""

from __future__ import annotations

from typing import Sequence

from hagstudy import data
from hagstudy.tasks import bigbench, embed
from hagstudy.tasks.base import ECHO, Item, Task, shuffled
from hagstudy.tasks.text import strip_label, words

LO, HI = 0.20, 0.45
_MIN_STEM = 3


def stems(word: str) -> set[str]:
    """Candidate base forms of a lowercase word (itself included), by stripping regular inflections."""
    w = word
    out = {w}

    def add(stem: str) -> None:
        if len(stem) >= _MIN_STEM:
            out.add(stem)
            if len(stem) >= 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouy":
                out.add(stem[:-1])  # running -> runn -> run; stopped -> stopp -> stop

    for suffix in ("ies", "ied"):
        if w.endswith(suffix):
            add(w[: -len(suffix)] + "y")
    for suffix in ("es", "s", "ed", "d", "ing", "er", "est", "ers"):
        if w.endswith(suffix) and not w.endswith("ss"):
            base = w[: -len(suffix)]
            add(base)
            if suffix in ("ing", "ed", "er", "est", "ers"):
                add(base + "e")  # baking -> bake, baked -> bake
    return out


def _matches(word: str, forbidden: str) -> bool:
    return bool(stems(word) & stems(forbidden))


def violations(text: str, forbidden: Sequence[str]) -> list[str]:
    """The forbidden entries that ``text`` uses (whole words or inflections; phrases as word sequences)."""
    tokens = words(text)
    found: list[str] = []
    for entry in forbidden:
        parts = words(entry)
        if not parts:
            continue
        n = len(parts)
        for i in range(len(tokens) - n + 1):
            window = tokens[i : i + n]
            # inflection only on the last word of a phrase ("high-rises"); earlier words must match exactly
            if window[:-1] == parts[:-1] and _matches(window[-1], parts[-1]):
                found.append(entry)
                break
    return found


def load_entries() -> list[dict[str, object]]:
    """Distinct targets with their taboo words (target included), in file order."""
    path, examples = bigbench.examples("taboo")
    merged: dict[str, list[str]] = {}
    for i, ex in enumerate(examples):
        try:
            target = str(ex["target"]).strip().lower()
            taboos = [str(t).strip().lower() for t in ex["taboos"]]
        except (KeyError, TypeError) as err:
            raise data.DataError(f"{path}: example {i} lacks target/taboos ({err!r}): run `make data` again") from err
        bucket = merged.setdefault(target, [])
        bucket.extend(t for t in [target, *taboos] if t and t not in bucket)
    return [{"target": t, "taboo": words_} for t, words_ in merged.items()]


class Taboo(Task):
    name = "taboo"
    capability = "creativity (word game)"
    metric = "compliance x relevance"
    max_new_tokens = 32
    split_sizes = {"search": 40, "validation": 20, "test": 39}
    seed = 11
    system = (
        "You are playing Taboo. Write a short clue (one sentence) that makes someone guess the secret word, "
        "without using the secret word or any of the forbidden words. Reply in exactly this format: "
        "'Clue: <your clue>'."
    )

    query_template = (
        "Secret word: {target}\nForbidden words: {forbidden}\n"
        "Give a one-sentence clue for the secret word without using it or the forbidden words."
    )

    def _build(self) -> list[Item]:
        entries = shuffled(load_entries(), self.seed)
        items = []
        for entry in entries:
            target, taboo = entry["target"], entry["taboo"]
            others = [w for w in taboo if w != target]  # type: ignore[union-attr]
            query = self.query_template.format(target=target, forbidden=", ".join(others))
            items.append(Item(task=self.name, id=f"{self.name}-{target}", query=query,
                              reference={"target": target, "taboo": taboo}))
        return items

    def chance_answers(self, search_items: Sequence[Item]) -> list[str]:
        """The empty clue, the echoed query (it contains the secret word, so it scores 0) and one
        generic clue given for every target word."""
        return ["", ECHO, "Clue: It is something people know well."]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        ok = [not violations(out, it.reference["taboo"]) for it, out in zip(items, outputs)]
        clues = [strip_label(out, ("clue",)) if c else "" for out, c in zip(outputs, ok)]
        sims = embed.similarities([(it.reference["target"], clue) for it, clue in zip(items, clues)]) if any(ok) else [0.0] * len(items)
        return [embed.rescale(s, LO, HI) if c else 0.0 for s, c in zip(sims, ok)]
