"""The opening of results/README.md: the answer in a few plain sentences, and the findings grouped by task.

A reader who stops after one paragraph should know what was tested, what the data show, and what they
cannot show. Every number comes from the tables passed in; a table another notebook has not written
yet (the confirmatory comparison, the minimum detectable effects) is optional, and the sentence falls
back to what ``relative_strong.csv`` can say.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from hagstudy import registry, stages
from hagstudy.report.evaluation import flags

# Verdicts of the relative tables, as the opening words them; anything else (not significant) = cannot tell.
WORSE, BETTER, EQUIVALENT, UNKNOWN = "worse", "better", "equivalent", "cannot tell"
_OUTCOMES = (WORSE, BETTER, EQUIVALENT, UNKNOWN)  # the order they are named in: losses first


def _need(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    stages.require_columns(frame, columns, f"summary: {what}")


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _span(values: pd.Series, fmt: str = "{:.2f}") -> str:
    lo, hi = float(values.min()), float(values.max())
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)} to {fmt.format(hi)}"


def chance_tasks(at_chance: pd.DataFrame | None) -> list[str]:
    """Tasks at chance for this model, in table order (none when the table is absent)."""
    if at_chance is None or at_chance.empty:
        return []
    _need(at_chance, ["task", "at_chance"], "at_chance")
    return [str(t) for t in at_chance.loc[flags(at_chance["at_chance"]), "task"]]


def outcomes(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Outcome -> the tasks (or ``task vs baseline`` where a task's baselines disagree) with that outcome."""
    _need(rows, ["task", "baseline", "verdict"], "the comparison table")
    out: dict[str, list[str]] = {o: [] for o in _OUTCOMES}
    for task, g in rows.groupby("task", sort=False):
        kinds = [str(v) if str(v) in (WORSE, BETTER, EQUIVALENT) else UNKNOWN for v in g["verdict"]]
        if len(set(kinds)) == 1:
            out[kinds[0]].append(str(task))
        else:
            for baseline, kind in zip(g["baseline"], kinds):
                out[kind].append(f"{task} vs {baseline}")
    return out


def _tested(main: pd.DataFrame, chance: list[str], baselines: Sequence[str], target: str) -> str:
    _need(main, ["task", "method", "n_items", "n_seeds"], "main")
    tasks = [str(t) for t in pd.unique(main["task"])]
    own = main.loc[main["method"] == registry.HAG.name]
    own = own if not own.empty else main
    informative = [t for t in tasks if t not in chance]
    return (f"This run tested whether {target}, where the model writes its own decoding config for each query, "
            f"beats the best fixed configs ({' / '.join(baselines)}) on {len(tasks)} tasks, {len(informative)} of "
            f"them above chance for this model, with {_span(own['n_items'], '{:.0f}')} test items x "
            f"{_span(own['n_seeds'], '{:.0f}')} evaluation seeds per task.")


def _shown(rows: pd.DataFrame, target: str, source: str) -> str:
    found = outcomes(rows)
    margins = sorted(set(float(m) for m in rows["margin"])) if "margin" in rows.columns else []
    margin = f" within ±{margins[0]:g}" if len(margins) == 1 else " within the margin"
    words = {WORSE: f"{target} is worse on", BETTER: f"{target} is better on",
             EQUIVALENT: f"the two are equivalent{margin} on", UNKNOWN: "the data cannot tell on"}
    parts = [f"{words[o]} {_join(found[o])}" for o in _OUTCOMES if found[o]]
    return f"Against the best fixed config on the informative tasks ({source}): {'; '.join(parts)}."


def _limits(rows: pd.DataFrame, mde: pd.DataFrame | None, informative: list[str], target: str) -> str | None:
    if mde is not None and not mde.empty:
        _need(mde, ["task", "n_items", "alpha", "power", "mde"], "mde")
        own = mde.loc[mde["task"].astype(str).isin(informative)]
        own = own if not own.empty else mde
        # identical outputs (HAG writes the baseline's config on every item) have no spread: no MDE to quote
        varied = own.loc[own["mde"].astype(float) > 0]
        own = varied if not varied.empty else own
        return (f"What the data cannot show: with {_span(own['n_items'], '{:.0f}')} items per task, the smallest "
                f"difference this run detects with {float(own['power'].iloc[0]):.0%} power (alpha = "
                f"{float(own['alpha'].iloc[0]):g}) is {_span(own['mde'], '{:.3f}')} depending on the task, so a "
                f"smaller gain or loss of {target} would likely go unseen, and 'cannot tell' is not evidence of a tie.")
    if rows.empty:
        return None
    half = (rows["diff_ci_high"].astype(float) - rows["diff_ci_low"].astype(float)) / 2
    return (f"What the data cannot show: the paired 95% CIs against the best fixed configs reach "
            f"{_span(half, '{:.3f}')} either side of the difference, so a smaller gain or loss of {target} cannot "
            "be told from zero here, and 'cannot tell' is not evidence of a tie.")


def _headroom(headroom: pd.DataFrame, informative: list[str]) -> str | None:
    _need(headroom, ["task", "verdict"], "headroom")
    own = headroom.loc[headroom["task"].astype(str).isin(informative)]
    if own.empty:
        return None
    shown = [str(t) for t in own.loc[own["verdict"] == "headroom shown", "task"]]
    absent = [str(t) for t in own.loc[own["verdict"].isin(["below margin", "item oracle below"]), "task"]]
    on = f", on {_span(own['n_items'], '{:.0f}')} test items" if "n_items" in own.columns else ""
    said = [f"beats the task oracle on {_join(shown)}"] if shown else []
    said += [f"is shown not to beat the task oracle by more than the task's margin on {_join(absent)}"] if absent else []
    rest = len(own) - len(shown) - len(absent)
    said += [f"cannot be told apart from the task oracle on {'the other ' if said else ''}{rest}"] if rest else []
    return (f"Picking the best config per item with hindsight (the item oracle{on}) {'; it '.join(said)} of the "
            f"{len(own)} informative tasks.")


def opening(main: pd.DataFrame, at_chance: pd.DataFrame | None, confirmatory: pd.DataFrame | None = None,
            mde: pd.DataFrame | None = None, headroom: pd.DataFrame | None = None,
            strong: pd.DataFrame | None = None, target: str = "HAG") -> list[str]:
    """Three to five sentences: what was tested, what the data show per informative task, what they cannot show.

    ``confirmatory`` (the relative tables' columns) gives the verdicts when present, else ``strong``
    (``relative_strong.csv``) restricted to the best fixed configs; ``mde`` (task, n_items, alpha, power,
    mde, ...) says how large a difference could have been seen, else the CIs' half-widths do;
    ``headroom`` adds whether any per-query choice could win. Tasks at chance are named apart.
    """
    chance = chance_tasks(at_chance)
    best_fixed = list(registry.names(registry.BEST_FIXED))
    if confirmatory is not None and not confirmatory.empty:
        rows, source = confirmatory, "the confirmatory comparison, Holm-corrected"
    elif strong is not None and not strong.empty:
        rows = strong.loc[strong["baseline"].isin(best_fixed)]
        source = "the strong-baseline table, Holm-corrected over all its comparisons"
    else:
        rows, source = pd.DataFrame(), ""
    baselines = [str(b) for b in pd.unique(rows["baseline"])] if not rows.empty else best_fixed
    out = [_tested(main, chance, baselines, target)]
    tasks = [str(t) for t in pd.unique(main["task"])]
    informative = [t for t in tasks if t not in chance]
    rows = rows.loc[rows["task"].astype(str).isin(informative)] if not rows.empty else rows
    if not rows.empty:
        out.append(_shown(rows, target, source))
    if chance:
        out.append(f"{_join(chance)} {'is' if len(chance) == 1 else 'are'} at chance for this model (no method's 95% "
                   "CI clears the best constant answer), so they cannot say whether per-query decoding helps.")
    if (limits := _limits(rows, mde, informative, target)) is not None:
        out.append(limits)
    if headroom is not None and not headroom.empty and len(out) < 5 and (room := _headroom(headroom, informative)):
        out.append(room)
    return out


def by_task(lines: Sequence[str], tasks: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Findings sentences grouped under the task they start with, tasks in order of first mention (so a task
    with a loss, said first, leads); a sentence about no one task goes under "" at the end. The
    ``task: `` lead is dropped, since the group's heading says it."""
    groups: dict[str, list[str]] = {}
    longest_first = sorted((str(t) for t in tasks), key=len, reverse=True)  # yes_no_black_white before yes_no
    for line in lines:
        task = next((t for t in longest_first if line.startswith((f"{t}:", f"{t} "))), "")
        text = line[len(task) + 1:].lstrip() if task and line.startswith(f"{task}:") else line
        groups.setdefault(task, []).append(text[:1].upper() + text[1:] if task and line.startswith(f"{task}:") else text)
    ordered = [t for t in groups if t] + ([""] if "" in groups else [])
    return [(t, groups[t]) for t in ordered]
