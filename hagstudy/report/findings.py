"""Plain-language findings generated from the result tables, so the prose never drifts from the numbers.

The sentences follow the tables' statistics exactly: a verdict comes from Holm-corrected p-values,
a tie is claimed only where the equivalence test (TOST, with the table's per-task margin) shows it, and
any other non-significant difference is called "not significant", never "equal"; where the test could
not tell, the confirmatory answer says how large a difference it could have detected (the MDE). Family
sizes are read from the tables, never written down. Losses come first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from hagstudy import registry, stages
from hagstudy.report.evaluation import difficulty_correlation, flags

_ORDER = {"worse": 0, "better": 1, "equivalent": 2, "not significant": 3}


def _need(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Refuse a table without the columns a sentence reads, naming the table and the columns."""
    stages.require_columns(frame, columns, f"findings: {what} table")


def _p(p: float, name: str = "p") -> str:
    """``p=0.012`` to three decimals; below 0.001 (a permutation p can reach 1 / 20,001) ``p<0.001``."""
    return f"{name}={p:.3f}" if p >= 0.001 else f"{name}<0.001"


def _fmt(row: pd.Series) -> str:
    rel = row["rel_improvement"]
    if pd.notna(rel):
        rel_txt = f"{rel:+.1%} relative"
    else:
        reason = str(row.get("note", "") or "").split(":")[0].strip()
        rel_txt = f"no relative change: {reason}" if reason else "no relative change"
    return (
        f"{row['target_mean']:.3f} vs {row['base_mean']:.3f} (difference {row['diff']:+.3f}, "
        f"95% CI [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}]; {rel_txt}; "
        f"{_p(row['p_value'])}, Holm {_p(row['p_holm'])})"
    )


def _base(row: pd.Series) -> str:
    """The baseline's name, with the baselines merged into its row (identical scores: the same config)."""
    same = row.get("same_as", "")
    return f"{row['baseline']} (= {same}: the same scores)" if isinstance(same, str) and same else str(row["baseline"])


def _sentence(row: pd.Series, target: str, chance_tasks: set[str]) -> str:
    task, base, margin = row["task"], _base(row), row["margin"]
    verdict = row["verdict"]
    if verdict == "worse":
        head = f"{task}: {target} is WORSE than {base}"
    elif verdict == "better":
        head = f"{task}: {target} beats {base}"
        if row["equivalence"] == "equivalent":
            head += f", but by less than the equivalence margin ±{margin:.3g}"
    elif verdict == "equivalent":
        head = f"{task}: {target} is equivalent to {base} within ±{margin:.3g} (TOST, Holm {_p(row['p_tost_holm'])})"
    else:
        head = (
            f"{task}: {target} vs {base} is not significant, and equivalence within ±{margin:.3g} is not shown "
            f"either (TOST Holm {_p(row['p_tost_holm'])}), so this is no evidence of a tie"
        )
        if pd.notna(row.get("largest_gain", float("nan"))):
            head += f"; a gain above {row['largest_gain']:+.3f} is ruled out (one-sided 95% bound)"
    text = f"{head}: {_fmt(row)}."
    if task in chance_tasks:
        text += f" ({task} is at chance for this model.)"
    return text


def _chance_sentence(row: pd.Series) -> str:
    return (
        f"{row['task']} is at chance for this model: no method's 95% CI lower bound exceeds the best constant "
        f"answer's {row['chance_mean']:.3f} (best method {row['best_method']}: {row['best_mean']:.3f}, "
        f"CI lower bound {row['best_ci_low']:.3f}). A method that wins there has found a constant answer, "
        "not a better decoding."
    )


@dataclass(frozen=True)
class GateOutcome:
    """What a sentence reads of an adapter's gate: its name, whether it passed, and why not.

    ``gate.Gate`` offers the same three fields; this is the same verdict read back from ``train_gate.csv``
    (the report reads tables, not the training wing)."""

    adapter: str
    passed: bool
    reason: str


def gate_outcomes(table: pd.DataFrame) -> dict[str, GateOutcome]:
    """``train_gate.csv``'s rows (columns adapter, passed, reason) as outcomes by adapter name."""
    _need(table, ("adapter", "passed", "reason"), "the gate")
    return {str(r.adapter): GateOutcome(str(r.adapter), str(r.passed).lower() == "true", str(r.reason))
            for r in table.itertuples()}


def lines(
    relative: pd.DataFrame,
    strong: pd.DataFrame | None = None,
    target: str = "HAG",
    at_chance: pd.DataFrame | None = None,
    alpha: float = 0.05,
    gates: Mapping[str, Any] | None = None,
) -> list[str]:
    """Sentences from ``evaluation.relative_table`` outputs (and ``evaluation.at_chance``), in this order:

    adapters that did not learn their labels (``gates``: name -> ``gate.Gate``) first, then every
    loss, then the tasks at chance, then wins, shown equivalences and non-significant differences;
    then a count per baseline, and last how the tests were corrected (Holm, per table) and what
    "equivalent" means (TOST, the margin).
    """
    out: list[str] = []
    if gates:
        failed = [g for g in gates.values() if not g.passed]
        for g in failed:
            out.append(f"Adapter {g.adapter} did not learn its labels ({g.reason}); it is not scored as {target}.")
        if len(failed) == len(gates):
            out.append(f"No {target} adapter passed the gate, so {target} is not compared with any baseline.")
            return out
    tables = [relative] + ([strong] if strong is not None else [])
    rel = pd.concat(tables, ignore_index=True)
    unknown = sorted(set(rel["verdict"]) - set(_ORDER))
    if unknown:
        raise ValueError(f"findings: unknown verdict(s) {unknown}; expected {list(_ORDER)}")
    chance_rows = at_chance.loc[at_chance["at_chance"].astype(bool)] if at_chance is not None else None
    chance_tasks = set(chance_rows["task"]) if chance_rows is not None else set()

    ranked = rel.assign(_rank=rel["verdict"].map(_ORDER)).sort_values("_rank", kind="mergesort")
    losses = ranked.loc[ranked["verdict"] == "worse"]
    out += [_sentence(row, target, chance_tasks) for _, row in losses.iterrows()]
    if chance_rows is not None:
        out += [_chance_sentence(row) for _, row in chance_rows.iterrows()]
    rest = ranked.loc[ranked["verdict"] != "worse"]
    out += [_sentence(row, target, chance_tasks) for _, row in rest.iterrows()]

    for base, g in rel.groupby("baseline", sort=False):
        counts = g["verdict"].value_counts()
        out.append(
            f"Against {base}: worse on {counts.get('worse', 0)}, better on {counts.get('better', 0)}, "
            f"equivalent on {counts.get('equivalent', 0)}, not significant on {counts.get('not significant', 0)} "
            f"of {len(g)} tasks."
        )
    sizes = " and ".join(str(len(t)) for t in tables)
    margins = sorted(set(float(m) for m in rel["margin"]))
    margin_txt = f"±{margins[0]:.3g}" if len(margins) == 1 else "the per-task margins in the table"
    out.append(
        f"Verdicts use permutation p-values Holm-corrected across the comparisons of each table ({sizes}), at "
        f"{alpha:g}: these are exploratory families (the confirmatory one is the answer's). 'Equivalent' means the "
        f"TOST equivalence test showed the difference lies within {margin_txt} (Holm-corrected too); 'not "
        "significant' is a failure to find a difference, not evidence of a tie."
    )
    return out


def headroom_lines(headroom: pd.DataFrame) -> list[str]:
    """One sentence per task of ``report.headroom.headroom_table``: what choosing a config per query could gain.

    The sentence follows the table's ``verdict`` (Holm across tasks): a gain only where it is shown, "no
    headroom" only where the TOST shows it below the task's margin, and otherwise that the data cannot tell,
    with the in-sample bracket (an upper bound) so the reader sees how large it could still be.
    """
    _need(headroom, ("task", "n_items", "item_oracle_mean", "task_oracle_mean", "headroom", "headroom_ci_low",
                     "headroom_ci_high", "margin", "verdict", "per_query_gain", "per_query_gain_ci_low",
                     "per_query_gain_ci_high", "in_sample_bracket"), "headroom")
    out = []
    for _, row in headroom.iterrows():
        ci = f"{row['headroom']:+.3f}, 95% CI [{row['headroom_ci_low']:+.3f}, {row['headroom_ci_high']:+.3f}]"
        numbers = (f"item oracle {row['item_oracle_mean']:.3f} vs task oracle {row['task_oracle_mean']:.3f} on "
                   f"{int(row['n_items'])} test items")
        gain = (f"; over the best fixed candidate chosen in hindsight on the same items, per-query choice adds "
                f"{row['per_query_gain']:+.3f} [{row['per_query_gain_ci_low']:+.3f}, {row['per_query_gain_ci_high']:+.3f}]")
        verdict = str(row["verdict"])
        if verdict == "headroom shown":
            out.append(f"{row['task']}: per-query choice can beat the task's best fixed config: headroom {ci} "
                       f"({numbers}){gain}.")
        elif verdict == "item oracle below":
            out.append(f"{row['task']}: no headroom: even the item oracle, choosing per query on separate draws, "
                       f"scores below the task oracle ({ci}; {numbers}).")
        elif verdict == "below margin":
            out.append(f"{row['task']}: headroom is shown to be within ±{row['margin']:.3f} (TOST, Holm): {ci} "
                       f"({numbers}); no per-query choice among these candidates gains more than that.")
        else:
            out.append(f"{row['task']}: the data cannot tell: headroom {ci} is neither shown above 0 nor within "
                       f"±{row['margin']:.3f} ({numbers}); the in-sample bracket, an upper bound, is "
                       f"{row['in_sample_bracket']:+.3f}.")
    return out


def difficulty_line(difficulty: pd.DataFrame, target: str = "HAG", base: str = registry.DEFAULT.name) -> str:
    """RQ4 in one sentence: the Spearman rank correlation between task difficulty and the target's improvement.

    ``difficulty`` is ``evaluation.difficulty_vs_improvement``'s table. With one point per task the test has
    little power, so the sentence gives the number of tasks and reads a non-significant rho as "not shown".
    """
    _need(difficulty, ("task", "difficulty", "improvement"), "difficulty")
    rho, p = difficulty_correlation(difficulty)
    n = len(difficulty)
    if rho != rho:  # nan: fewer than three tasks
        return f"RQ4: {n} task(s) are too few for a rank correlation between difficulty and {target}'s improvement."
    verdict = (f"{target} helps {'more' if rho > 0 else 'less'} on harder tasks" if p < 0.05
               else "no relation between difficulty and improvement is shown")
    return (f"RQ4: Spearman rho between task difficulty (1 - {base}'s mean) and {target}'s improvement over {base} "
            f"is {rho:+.2f} (p = {p:.2f}, {n} tasks): {verdict}.")


FIXED = registry.names(registry.BEST_FIXED)  # the best fixed choices a per-query method must beat
ADAPTIVE = registry.names(registry.ADAPTIVE)  # training-free per-step adaptation


def _mde_text(mde: pd.DataFrame | None, task: str, base: str) -> str:
    if mde is None or mde.empty:
        return ""
    hit = mde.loc[(mde["task"] == task) & (mde["baseline"] == base)]
    if hit.empty:
        return ""
    r = hit.iloc[0]
    return (f"; with {int(r['n_items'])} items this test detects only differences of about {r['mde']:.3f} or more "
            f"({r['power']:.0%} power at the per-test level {r['alpha']:.4f}), against an equivalence margin of "
            f"±{r['margin']:.3g}")


def _numbers(r: pd.Series) -> str:
    return (f"{r['target_mean']:.3f} vs {r['base_mean']:.3f}, difference {r['diff']:+.3f}, 95% CI "
            f"[{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}], Holm {_p(r['p_holm'])}")


def confirmatory_lines(confirmatory: pd.DataFrame, mde: pd.DataFrame | None = None, target: str = "HAG",
                       alpha: float = 0.05) -> list[str]:
    """The study's question, from ``evaluation.confirmatory_table`` (and ``evaluation.mde_table``).

    First the family as declared (its real size, read from the table), then per task one of: the target
    loses to a fixed config (said first), beats the best fixed config (the higher-scoring baseline of its
    rows), is shown equivalent to it within the task's margin, or the data cannot tell (with the MDE).
    """
    _need(confirmatory, ("task", "baseline", "target_mean", "base_mean", "diff", "diff_ci_low", "diff_ci_high",
                         "largest_gain", "p_holm", "p_tost_holm", "margin", "verdict"), "the confirmatory")
    if confirmatory.empty:
        return [f"The confirmatory family ({target} against the task oracle and greedy on the tasks above chance) has "
                f"no test on this run (no task is above chance, or {target} was not scored): the study's question is "
                "not tested."]
    tasks = list(dict.fromkeys(confirmatory["task"]))
    out = [f"Confirmatory family, declared before the run: {target} against the task oracle and greedy on the "
           f"{len(tasks)} task(s) above chance ({', '.join(map(str, tasks))}), {len(confirmatory)} tests (a baseline "
           f"with the same scores as another is tested once), Holm-corrected within these {len(confirmatory)} at "
           f"{alpha:g}; sign-flip permutation p over items, TOST against each task's margin."]
    said: list[tuple[int, str]] = []  # (rank, sentence): losses, wins, ties shown, cannot tell
    for task in tasks:
        rows = confirmatory.loc[confirmatory["task"] == task]
        best = rows.iloc[int(rows["base_mean"].to_numpy(dtype=float).argmax())]
        worse = rows.loc[rows["verdict"] == "worse"]
        if not worse.empty:
            about = worse.iloc[int(worse["diff"].to_numpy(dtype=float).argmin())]
            rank, line = 0, f"{task}: {target} LOSES to {_base(about)}: {_numbers(about)}."
        elif best["verdict"] == "better":
            about, rank = best, 1
            line = f"{task}: {target} beats the best fixed config, {_base(best)}: {_numbers(best)}."
        elif best["verdict"] == "equivalent":
            about, rank = best, 2
            line = (f"{task}: {target} is equivalent to the best fixed config, {_base(best)}, within "
                    f"±{best['margin']:.3g} (TOST Holm {_p(best['p_tost_holm'])}): {_numbers(best)}.")
        else:
            about, rank = best, 3
            line = (f"{task}: the data cannot tell {target} from the best fixed config, {_base(best)}: "
                    f"{_numbers(best)}; a gain above {best['largest_gain']:+.3f} is ruled out"
                    f"{_mde_text(mde, task, str(best['baseline']))}.")
        wins = [r for _, r in rows.iterrows() if r["verdict"] == "better" and r["baseline"] != about["baseline"]]
        said.append((rank, line + "".join(f" It does beat {_base(r)} ({_numbers(r)})." for r in wins)))
    return out + [line for _, line in sorted(said, key=lambda x: x[0])]


def answer(
    strong: pd.DataFrame | None, headroom: pd.DataFrame | None, at_chance: pd.DataFrame | None = None,
    target: str = "HAG", confirmatory: pd.DataFrame | None = None, mde: pd.DataFrame | None = None,
) -> list[str]:
    """The study's question in a few plain sentences: does a per-query choice beat the best fixed config,
    on which tasks, and with what headroom. Losses and "not shown" are said first, as the tables say them.

    ``confirmatory`` (``evaluation.confirmatory_table``) and ``mde`` (``evaluation.mde_table``) give the
    answer (:func:`confirmatory_lines`); without them the best fixed configs are read from ``strong``.
    ``strong``: ``evaluation.relative_table`` of the target against the strong baselines (an exploratory
    family, whose size each sentence quotes); ``headroom``: ``report.headroom.headroom_table``; ``at_chance``:
    ``evaluation.at_chance`` (to flag tasks at chance).
    """
    chance = set() if at_chance is None else set(at_chance.loc[at_chance["at_chance"].astype(bool), "task"])
    out: list[str] = []

    def verdicts(baselines: tuple[str, ...], what: str) -> None:
        if strong is None or strong.empty:
            return
        rows = strong[strong["baseline"].isin(baselines)]
        if rows.empty:
            return
        by = {v: sorted(set(rows.loc[rows["verdict"] == v, "task"])) for v in _ORDER}
        parts = [f"{v} on {', '.join(by[v])}" for v in _ORDER if by[v]]
        flagged = sorted(set(rows["task"]) & chance)
        note = f" ({', '.join(flagged)} at chance for this model)" if flagged else ""
        out.append(f"{target} against {what} ({' / '.join(baselines)}, {len(rows)} of the {len(strong)} exploratory "
                   f"comparisons, Holm over all {len(strong)}): {'; '.join(parts)}{note}.")

    if confirmatory is not None:
        out += confirmatory_lines(confirmatory, mde, target)
    else:
        verdicts(FIXED, "the best fixed configs")
    verdicts(ADAPTIVE, "training-free adaptive decoding")
    if headroom is not None and not headroom.empty:
        _need(headroom, ("task", "verdict"), "headroom")
        groups = {v: [str(t) + (" (at chance)" if t in chance else "") for t in headroom.loc[headroom["verdict"] == v, "task"]]
                  for v in ("headroom shown", "below margin", "item oracle below", "cannot tell")}
        said = [f"{label} on {', '.join(groups[v])}" for v, label in (
            ("headroom shown", "shown"), ("below margin", "shown below the task's margin"),
            ("item oracle below", "negative (the item oracle below the task oracle)"),
            ("cannot tell", "not resolved either way")) if groups[v]]
        out.append(f"Headroom (item oracle - task oracle, on the test items of {len(headroom)} task(s), Holm across "
                   f"them): {'; '.join(said)}.")
    return out


# ---------------------------------------------------------------------------------------------
# Each notebook's closing paragraph: what this run found, from the tables it wrote
# ---------------------------------------------------------------------------------------------


def show(lines: list[str], mark: str = "•") -> None:
    """Print sentences as a notebook's closing paragraph, one bullet each."""
    for line in lines:
        print(mark, line)


def preliminary_lines(influence: pd.DataFrame, zero_shot: pd.DataFrame) -> list[str]:
    """Notebook 00: per task the hyperparameter that moves the score most, and how often the untuned model's
    config parses (``sensitivity_influence.csv``, ``zero_shot_configs.csv``)."""
    _need(influence, ("task", "hyperparameter", "score_min", "score_max", "score_spread", "most_influential"), "the influence")
    _need(zero_shot, ("task", "status"), "the zero-shot configs")
    out = []
    top = influence[flags(influence["most_influential"])]
    for row in top.drop_duplicates("task").itertuples():  # ties: the first hyperparameter in the table's order
        if not row.score_spread > 0:
            out.append(f"{row.task}: no hyperparameter moves the score on the preliminary items (all at "
                       f"{row.score_max:.3f}).")
            continue
        out.append(f"{row.task}: {row.hyperparameter} moves the score most with the others at default, from "
                   f"{row.score_min:.3f} to {row.score_max:.3f} (spread {row.score_spread:.3f}, on the preliminary items).")
    parsed = int((zero_shot["status"] != "failed").sum())
    out.append(f"Zero-shot, the untuned model's stage-1 text parsed into a config for {parsed} of {len(zero_shot)} "
               f"validation queries ({parsed / max(len(zero_shot), 1):.0%}); a failed parse falls back to the default.")
    return out


def search_lines(label_check: pd.DataFrame, reliability: pd.DataFrame | None = None) -> list[str]:
    """Notebook 01: per task how many items keep a per-item label after the held-out check, what that is
    worth on fresh draws, and how often two independent searches agree (``label_check.csv``,
    ``search_reliability.csv``)."""
    if label_check.empty:
        return ["No search label was checked."]
    _need(label_check, ("task", "items", "kept", "heldout_after", "heldout_start"), "the label check")
    agree = {}
    if reliability is not None and not reliability.empty:
        _need(reliability, ("task", "n_items", "agree_exact"), "the search reliability")
        agree = {str(r.task): (float(r.agree_exact), int(r.n_items)) for r in reliability.itertuples()}
    out = []
    for row in label_check.itertuples():
        line = (f"{row.task}: {int(row.kept)} of {int(row.items)} items keep their own label, the rest get the task's "
                f"start config; on the held-out draws that decided this (so optimistically) the checked labels score "
                f"{row.heldout_after:.3f} against the start config's {row.heldout_start:.3f}")
        if str(row.task) in agree:
            share, n = agree[str(row.task)]
            line += f"; two independent searches chose the same whole config for {share:.0%} of {n} items"
        out.append(line + ".")
    kept, items = int(label_check["kept"].sum()), int(label_check["items"].sum())
    out.append(f"In all, {kept} of {items} search items ({kept / max(items, 1):.0%}) keep a per-item label: the "
               "training labels are mostly one config per task.")
    return out


def dataset_lines(per_task: pd.DataFrame, n_train: int, n_validation: int) -> list[str]:
    """Notebook 02: the split sizes and how much of each task one label covers (``label_per_task.csv``)."""
    _need(per_task, ("task", "config", "share_of_items"), "the per-task label")
    out = [f"{n_train} training and {n_validation} validation rows (query -> checked label)."]
    for row in per_task.itertuples():
        out.append(f"{row.task}: its most common label covers {row.share_of_items:.0%} of its items.")
    out.append(f"On average one label per task covers {per_task['share_of_items'].mean():.0%} of a task's items, so "
               "writing the task's majority label is the baseline stage 1 must beat (notebook 03's gate).")
    return out


def gate_lines(gates: pd.DataFrame) -> list[str]:
    """Notebook 03: each adapter's gate verdict on its selected snapshot against the per-task majority label
    (``train_gate.csv``); failures first."""
    _need(gates, ("adapter", "steps", "selected_step", "parse_rate", "exact_match", "distance",
                  "majority_exact_match", "majority_distance", "passed", "beats_majority", "reason"), "the gate")
    passed, beats = flags(gates["passed"]), flags(gates["beats_majority"])
    out = []
    for ok in (False, True):
        for row, b in zip(gates[passed == ok].itertuples(), beats[passed == ok]):
            if not ok:
                out.append(f"{row.adapter} did NOT pass at step {int(row.selected_step)} of {int(row.steps)}: {row.reason}.")
                continue
            out.append(f"{row.adapter} passed (at least the majority on both metrics) at step {int(row.selected_step)} "
                       f"of {int(row.steps)}: exact match "
                       f"{row.exact_match:.3f} vs the per-task majority's {row.majority_exact_match:.3f}, config "
                       f"distance {row.distance:.3f} vs {row.majority_distance:.3f}, parse rate {row.parse_rate:.0%}"
                       + ("; it beats the majority on both" if b else "") + ".")
    out.append(f"{int(passed.sum())} of {len(gates)} adapters pass; {int(beats.sum())} beat the majority label on both "
               "metrics, on the same validation rows their snapshot was chosen on (an optimistic check).")
    return out


def ablation_lines(versus: pd.DataFrame, gates: pd.DataFrame | None = None) -> list[str]:
    """Notebook 05: arms that did not learn first, then each arm's verdicts against HAG over the tasks, the
    arms with losses first (``ablation_vs_hag.csv``, ``ablation_gate.csv``)."""
    out = []
    if gates is not None and not gates.empty:
        _need(gates, ("method", "status", "reason"), "the ablation gate")
        for row in gates[gates["status"] != "learned"].itertuples():
            out.append(f"{row.method} did not learn its labels ({row.reason}): it is not scored.")
        learned = int((gates["status"] == "learned").sum())
        out.append(f"{learned} of {len(gates)} trained arms passed their gate.")
    if versus is None or versus.empty:
        return out + ["No arm was compared with HAG."]
    _need(versus, ("variant", "task", "verdict"), "the ablation comparison")
    counts = {v: g["verdict"].value_counts() for v, g in versus.groupby("variant", sort=False)}
    for variant in sorted(counts, key=lambda v: (-counts[v].get("worse", 0), -counts[v].get("better", 0))):
        c, n = counts[variant], int(counts[variant].sum())
        parts = [f"{k} on {c.get(k, 0)}" for k in _ORDER if c.get(k, 0)]
        out.append(f"{variant} against HAG: {', '.join(parts)} of {n} tasks (Holm-corrected; 'equivalent' by TOST).")
    return out
