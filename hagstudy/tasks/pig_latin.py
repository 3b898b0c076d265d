"""pig_latin (translation): encode an English sentence into Pig Latin (BIG-bench language_games/pig_latin_encode).

Score: sentence BLEU of the extracted translation against the BIG-bench reference, divided by 100.
sacrebleu.sentence_bleu with its defaults (signature ``nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp``):
13a tokenisation (punctuation split off), case-sensitive, exponential smoothing and effective order,
so short sentences are not zeroed by a missing 4-gram. The reference itself scores 1.0.
The first non-empty line after an optional 'Pig Latin:' label is the translation.
Sentences of at most 8 words (774 of 1,000), so a translation fits ``max_new_tokens``.
The prompt states BIG-bench's own rules and no worked examples: with few-shot examples the 135M model
copied them verbatim (measured, docs/tasks.md).
"""

from __future__ import annotations

from typing import Sequence

from hagstudy import data
from hagstudy.tasks import bigbench
from hagstudy.tasks.base import Item, Task, shuffled
from hagstudy.tasks.text import strip_label

MAX_WORDS = 8  # longer sentences would not fit the token budget (Pig Latin costs ~2.5 tokens a word)
LABELS = ("pig latin", "translation", "answer", "output")


def bleu(hypothesis: str, reference: str) -> float:
    import sacrebleu  # light, but only scorers need it

    return round(sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100.0, 6)


def load_pairs() -> list[dict[str, object]]:
    """Distinct sentences of at most MAX_WORDS words with their reference, in file order."""
    path, examples = bigbench.examples("pig_latin_encode")
    out, seen = [], set()
    for i, ex in enumerate(examples):
        try:
            english, target = str(ex["input"]).strip(), str(ex["target"]).strip()
        except (KeyError, TypeError) as err:
            raise data.DataError(f"{path}: example {i} lacks input/target ({err!r}): run `make data` again") from err
        if english in seen or len(english.split()) > MAX_WORDS:
            continue
        seen.add(english)
        out.append({"index": i, "english": english, "target": target})
    return out


class PigLatin(Task):
    name = "pig_latin"
    capability = "translation"
    metric = "sentence BLEU / 100"
    max_new_tokens = 48  # references are <= 28 tokens (18 on average)
    seed = 13
    split_sizes = {"search": 100, "validation": 100, "test": 500}
    system = (
        "You translate English into Pig Latin, word by word. Pig Latin rules: if a word starts with a vowel, "
        "add 'yay' to the end (ice -> iceyay). If it starts with consonants, move them to the end and add 'ay' "
        "(prank -> ankpray). Keep capitals and punctuation (Maggie -> Aggiemay). "
        "Reply with one line that starts with 'Pig Latin:'."
    )

    def _build(self) -> list[Item]:
        pairs = shuffled(load_pairs(), self.seed)
        return [
            Item(task=self.name, id=f"{self.name}-{p['index']:04d}", query=f"Translate into Pig Latin: {p['english']}",
                 reference={"target": p["target"], "english": p["english"]})
            for p in pairs
        ]

    def score(self, items: Sequence[Item], outputs: Sequence[str]) -> list[float]:
        self._check(items, outputs)
        return [bleu(strip_label(out, LABELS), it.reference["target"]) for it, out in zip(items, outputs)]
