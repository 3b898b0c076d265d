"""Where two runs' decodes began to differ: compare their engines' prefill traces.

Each notebook's engine appends one line per prefilled prompt to ``artifacts/<run>/<notebook>/prefill_trace.jsonl``
(``hagstudy.engine.engine.prefill_trace``): the engine, the call, the prompt's digest and its first-step
logits' digest. Given two such files (say a failing cold chain's and a good one's), this names the first
prompt whose logits differ, or says that every shared prompt prefilled alike, which puts a divergence in
the decode steps. Lines are matched by (engine, call description, prompt, occurrence), so a resumed run,
which skips cached work, still lines up. ``python scripts/benchmarks/compare_traces.py A.jsonl B.jsonl``.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any


def keyed(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The trace's lines by (engine, desc, prompt, n-th occurrence), in file order."""
    seen: collections.Counter[tuple[str, str, str]] = collections.Counter()
    out = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        try:
            line = json.loads(raw)
            base = (line["engine"], line["desc"], line["prompt"])
        except (ValueError, KeyError) as err:
            raise SystemExit(f"{path}:{n}: not a prefill trace line ({err})") from err
        out[(*base, seen[base])] = line | {"line": n}
        seen[base] += 1
    return out


def first_difference(a: Path, b: Path) -> str:
    """A sentence naming the first shared prompt (in ``a``'s order) whose first-step logits differ."""
    ka, kb = keyed(a), keyed(b)
    shared = [k for k in ka if k in kb]
    for k in shared:
        if ka[k]["logits"] != kb[k]["logits"]:
            la, lb = ka[k], kb[k]
            return (f"first difference: engine {la['engine']}, call {la['call']} ({la['desc']!r}), prompt {la['prompt']} "
                    f"({la['tokens']} tokens): logits {la['logits']} ({a}:{la['line']}) vs {lb['logits']} ({b}:{lb['line']}); "
                    f"argmax {la['argmax']} vs {lb['argmax']}")
    return (f"{len(shared)} shared prompts prefilled alike ({len(ka) - len(shared)} only in {a}, {len(kb) - len(shared)} only "
            f"in {b}): any difference in texts began in the decode steps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    print(first_difference(args.a, args.b))


if __name__ == "__main__":
    main()
