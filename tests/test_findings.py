"""Findings wording: losses first and plain, 'not significant' vs 'equivalent (TOST, margin)', Holm, chance."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hagstudy.report import evaluation as ev
from hagstudy.report import findings


def row(task: str, baseline: str, verdict: str, diff: float, **extra) -> dict:
    base = 0.40
    out = {
        "task": task, "baseline": baseline, "target_mean": base + diff, "base_mean": base,
        "rel_improvement": diff / base, "diff": diff, "diff_ci_low": diff - 0.05, "diff_ci_high": diff + 0.05,
        "p_value": 0.5, "p_holm": 1.0, "margin": 0.02, "p_tost": 0.5, "p_tost_holm": 1.0,
        "equivalence": "not shown", "verdict": verdict, "note": "",
    }  # fmt: skip
    out.update(extra)
    return out


def table(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(ev.RELATIVE_COLUMNS))


def relative() -> pd.DataFrame:
    return table(
        row("coinflip", "default", "better", 0.10, p_value=0.001, p_holm=0.004),
        row("strategyqa", "default", "not significant", 0.01),
        row("taboo", "default", "worse", -0.20, p_value=0.001, p_holm=0.004),
        row("arithmetic", "default", "equivalent", 0.002, diff_ci_low=-0.008, diff_ci_high=0.012, p_tost=0.001, p_tost_holm=0.003, equivalence="equivalent"),
    )


def test_losses_come_first_and_plainly() -> None:
    text = findings.lines(relative())
    assert text[0].startswith("taboo: HAG is WORSE than default")
    assert "WORSE" not in " ".join(text[1:])


def test_not_significant_is_never_called_a_tie() -> None:
    text = findings.lines(relative())
    ns = next(t for t in text if t.startswith("strategyqa"))
    assert "not significant" in ns and "no evidence of a tie" in ns and "equivalence within ±0.02 is not shown" in ns
    eq = next(t for t in text if t.startswith("arithmetic"))
    assert "equivalent to default within ±0.02 (TOST, Holm p=0.003)" in eq
    for t in text:  # a tie is only ever denied, never claimed
        assert "equal" not in t.lower() and "tie" not in t.lower().replace("evidence of a tie", "")


def test_counts_and_the_holm_and_tost_statement() -> None:
    strong = table(row("coinflip", "greedy", "not significant", 0.0), row("taboo", "greedy", "worse", -0.1))
    text = findings.lines(relative(), strong)
    assert "Against default: worse on 1, better on 1, equivalent on 1, not significant on 1 of 4 tasks." in text
    assert "Against greedy: worse on 1, better on 0, equivalent on 0, not significant on 1 of 2 tasks." in text
    assert text[0].startswith("taboo: HAG is WORSE than default") and text[1].startswith("taboo: HAG is WORSE than greedy")
    last = text[-1]
    assert "Holm-corrected across the comparisons of each table (4 and 2)" in last
    assert "TOST" in last and "±0.02" in last and "not evidence of a tie" in last


def test_a_win_below_the_margin_says_so() -> None:
    rel = table(row("coinflip", "default", "better", 0.005, p_holm=0.01, p_tost_holm=0.01, equivalence="equivalent"))
    assert "beats default, but by less than the equivalence margin ±0.02" in findings.lines(rel)[0]


def test_relative_change_below_the_floor_is_not_quoted() -> None:
    note = "baseline mean 0.0246 below floor 0.05: relative change not shown; read diff"
    rel = table(row("pig_latin", "default", "better", 0.02, rel_improvement=math.nan, note=note))
    line = findings.lines(rel)[0]
    assert "no relative change: baseline mean 0.0246 below floor 0.05" in line and "% relative" not in line


def test_tasks_at_chance_are_flagged() -> None:
    chance = pd.DataFrame(
        [
            {"task": "coinflip", "chance_mean": 0.53, "best_method": "hag", "best_mean": 0.50, "best_ci_low": 0.40,
             "best_above_chance": False, "n_above_chance": 0, "at_chance": True},
            {"task": "taboo", "chance_mean": 0.0, "best_method": "task_oracle", "best_mean": 0.08, "best_ci_low": 0.04,
             "best_above_chance": True, "n_above_chance": 3, "at_chance": False},
        ],
        columns=list(ev.AT_CHANCE_COLUMNS),
    )  # fmt: skip
    text = findings.lines(relative(), at_chance=chance)
    assert text[0].startswith("taboo: HAG is WORSE")  # a loss still comes first
    assert text[1].startswith("coinflip is at chance for this model") and "0.530" in text[1]
    assert sum("is at chance" in t for t in text) == 2  # the flag, and the coinflip win's sentence
    assert next(t for t in text if t.startswith("coinflip: HAG beats")).endswith("(coinflip is at chance for this model.)")


def test_unknown_verdicts_are_refused() -> None:
    with pytest.raises(ValueError, match="no significant difference"):
        findings.lines(table(row("coinflip", "default", "no significant difference", 0.0)))


def test_findings_from_a_computed_table() -> None:
    from test_evaluation import twins

    frame = twins(n_items=200, flips=3)
    rel = ev.relative_table(frame, baselines=("default",), n_boot=500)
    text = findings.lines(rel)
    margin = rel["margin"].iloc[0]  # the per-task margin: 10 % of the best fixed config's (default's) mean
    assert margin == pytest.approx(0.1 * frame.loc[frame["method"] == "default", "score"].mean())
    assert text[0].startswith(f"coinflip: HAG is equivalent to default within ±{margin:.3g} (TOST")


def test_adapters_that_did_not_learn_come_first_and_stop_the_comparison() -> None:
    from hagstudy.method import gate

    q = {"n": 4, "parse_rate": 1.0, "exact_all": 0.8, "mean_distance": 0.1}
    maj = {"n": 4, "parse_rate": 1.0, "exact_all": 0.75, "mean_distance": 0.2}
    ok = gate.judge("hag_seed0", 0, 9, q, maj, 0.99)
    bad = gate.judge("hag_seed1", 1, 9, {**q, "parse_rate": 0.5}, maj, 0.99)
    rel = ev.relative_table(_scores_for_findings(), target="hag", baselines=("default",))
    some = findings.lines(rel, gates={"hag_seed0": ok, "hag_seed1": bad})
    assert some[0].startswith("Adapter hag_seed1 did not learn its labels (parse rate 0.500")
    assert not any("did not learn" in line for line in some[1:])
    none = findings.lines(rel.iloc[0:0], gates={"hag_seed1": bad})
    assert len(none) == 2 and "No HAG adapter passed the gate" in none[1]


def _scores_for_findings() -> pd.DataFrame:
    from test_evaluation import make_scores

    return make_scores({"default": 0.0, "hag": 0.2}, n_items=60)


def test_headroom_lines_follow_the_verdict() -> None:
    from hagstudy.report import headroom

    def row(task, h, lo, hi, verdict):
        return {"task": task, "n_items": 100, "n_seeds": 3, "item_oracle_mean": 0.5 + h, "task_oracle_mean": 0.5,
                "static_hindsight_mean": 0.5, "headroom": h, "headroom_ci_low": lo, "headroom_ci_high": hi,
                "margin": 0.05, "p_value": 0.01, "p_holm": 0.02, "p_tost": 0.5, "p_tost_holm": 0.5, "verdict": verdict,
                "per_query_gain": h, "per_query_gain_ci_low": lo, "per_query_gain_ci_high": hi,
                "in_sample_bracket": 0.2, "in_sample_bracket_ci_high": 0.25, "mean_tied": 1.5}  # fmt: skip

    table = pd.DataFrame([row("coinflip", 0.12, 0.05, 0.19, "headroom shown"), row("taboo", 0.01, -0.02, 0.04, "below margin"),
                          row("arithmetic", -0.1, -0.15, -0.05, "item oracle below"),
                          row("number_words", 0.03, -0.03, 0.09, "cannot tell")], columns=list(headroom.COLUMNS))  # fmt: skip
    gain, none, below, unsure = findings.headroom_lines(table)
    assert gain.startswith("coinflip: per-query choice can beat the task's best fixed config: headroom +0.120, 95% CI [+0.050, +0.190]")
    assert none.startswith("taboo: headroom is shown to be within ±0.050 (TOST, Holm)")
    assert below.startswith("arithmetic: no headroom: even the item oracle")
    assert unsure.startswith("number_words: the data cannot tell") and "in-sample bracket, an upper bound, is +0.200" in unsure
    answer = findings.answer(None, table, None)
    assert any(line.startswith("Headroom (item oracle - task oracle, on the test items of 4 task(s)") and "shown on coinflip"
               in line and "not resolved either way on number_words" in line for line in answer)  # fmt: skip
    with pytest.raises(ValueError, match="verdict"):
        findings.headroom_lines(table.drop(columns=["verdict"]))


def test_the_answer_says_where_hag_loses_to_a_fixed_config_and_where_headroom_is_shown():
    strong = pd.DataFrame([
        {"task": "a", "baseline": "task_oracle", "verdict": "worse"},
        {"task": "b", "baseline": "task_oracle", "verdict": "equivalent"},
        {"task": "a", "baseline": "best_single_config", "verdict": "not significant"},
        {"task": "a", "baseline": "min_p", "verdict": "better"},
        {"task": "a", "baseline": "greedy", "verdict": "better"},  # not a fixed-config or adaptive baseline
    ])
    headroom = pd.DataFrame([{"task": "a", "verdict": "headroom shown"}, {"task": "b", "verdict": "cannot tell"}])
    chance = pd.DataFrame([{"task": "a", "at_chance": True}, {"task": "b", "at_chance": False}])
    fixed, adaptive, room = findings.answer(strong, headroom, chance)
    assert fixed.startswith("HAG against the best fixed configs (task_oracle / best_single_config, 3 of the 5 "
                            "exploratory comparisons, Holm over all 5): worse on a; equivalent on b; not significant on a")
    assert fixed.endswith("(a at chance for this model).")
    assert adaptive.startswith("HAG against training-free adaptive decoding") and "better on a" in adaptive
    assert room.endswith("shown on a (at chance); not resolved either way on b.")
    none = findings.answer(None, headroom.assign(verdict="below margin"))
    assert len(none) == 1 and "shown below the task's margin on a, b" in none[0]


def _difficulty(improvements: list[float]) -> pd.DataFrame:
    diff = [0.2, 0.4, 0.6, 0.8, 0.9]
    return pd.DataFrame({"task": list("abcde"), "difficulty": diff, "improvement": improvements})


def test_difficulty_line_quotes_spearman_and_reads_a_weak_rho_as_not_shown() -> None:
    rising = findings.difficulty_line(_difficulty([0.01, 0.02, 0.03, 0.04, 0.05]))
    assert "rho between task difficulty" in rising and "+1.00" in rising and "5 tasks" in rising
    assert "HAG helps more on harder tasks" in rising
    mixed = findings.difficulty_line(_difficulty([0.03, -0.01, 0.05, 0.0, 0.02]))
    assert "no relation between difficulty and improvement is shown" in mixed
    assert "too few" in findings.difficulty_line(_difficulty([0.1, 0.2, 0.3, 0.4, 0.5]).head(2))
    with pytest.raises(ValueError, match="difficulty"):
        findings.difficulty_line(pd.DataFrame({"task": ["a"]}))


def test_notebook_closing_lines_follow_their_tables() -> None:
    influence = pd.DataFrame({"task": ["a", "a"], "hyperparameter": ["temperature", "top_k"], "score_min": [0.1, 0.2],
                              "score_max": [0.5, 0.3], "score_spread": [0.4, 0.1], "most_influential": [True, False]})
    zero = pd.DataFrame({"task": ["a"] * 4, "status": ["failed", "ok", "failed", "clamped"]})
    pre = findings.preliminary_lines(influence, zero)
    assert "a: temperature moves the score most" in pre[0] and "2 of 4" in pre[-1] and "top_k" not in " ".join(pre)
    flat = influence.assign(score_min=0.3, score_max=0.3, score_spread=0.0, most_influential=True)
    lines = findings.preliminary_lines(flat, zero)
    assert len(lines) == 2 and lines[0] == "a: no hyperparameter moves the score on the preliminary items (all at 0.300)."

    check = pd.DataFrame({"task": ["a", "b"], "items": [10, 10], "kept": [3, 0], "heldout_after": [0.5, 0.2],
                          "heldout_start": [0.4, 0.2]})
    rel = pd.DataFrame({"task": ["a"], "n_items": [5], "agree_exact": [0.6]})
    lines = findings.search_lines(check, rel)
    assert "3 of 10 items keep" in lines[0] and "60% of 5 items" in lines[0] and "searches" not in lines[1]
    assert "3 of 20 search items (15%)" in lines[-1]

    gates = pd.DataFrame({"adapter": ["ok", "bad"], "steps": [72, 72], "selected_step": [36, 72], "parse_rate": [1.0, 0.5],
                          "exact_match": [0.8, 0.1], "distance": [0.1, 0.9], "majority_exact_match": [0.7, 0.7],
                          "majority_distance": [0.2, 0.2], "passed": [True, False], "beats_majority": [True, False],
                          "reason": ["learned its labels", "parse rate 0.500 < 0.99"]})
    g = findings.gate_lines(gates)
    assert g[0] == "bad did NOT pass at step 72 of 72: parse rate 0.500 < 0.99." and "ok passed" in g[1]
    assert "beats the majority" in g[1]
    assert g[-1].startswith("1 of 2 adapters pass; 1 beat")

    vs = pd.DataFrame({"variant": ["x", "x", "y", "y"], "task": ["a", "b", "a", "b"],
                       "verdict": ["equivalent", "not significant", "worse", "worse"]})
    arm_gates = pd.DataFrame({"method": ["x", "z"], "status": ["learned", "did not learn"], "parse_rate": [1.0, 0.0],
                              "exact_match": [0.7, 0.0], "reason": ["learned its labels", "parse rate 0.000 < 0.99"]})
    ab = findings.ablation_lines(vs, arm_gates)
    assert ab[0].startswith("z did not learn") and ab[1] == "1 of 2 trained arms passed their gate."
    assert ab[2].startswith("y against HAG: worse on 2 of 2") and ab[3].startswith("x against HAG: equivalent on 1")
    with pytest.raises(ValueError, match="gate"):
        findings.gate_lines(gates.drop(columns=["reason"]))


def confirmatory() -> pd.DataFrame:
    """Four tasks, seven tests: d loses to greedy, b beats both, c is equivalent, a cannot tell."""
    def conf(task, base, verdict, diff, base_mean, **extra):
        extra = {"same_as": "", **extra}
        return row(task, base, verdict, diff, base_mean=base_mean, target_mean=base_mean + diff,
                   largest_gain=diff + 0.04, family="confirmatory", **extra)
    return table(
        conf("a", "greedy", "not significant", 0.01, 0.30), conf("a", "task_oracle", "not significant", 0.0, 0.31),
        conf("b", "greedy", "better", 0.10, 0.40, p_holm=0.001, same_as="task_oracle"),
        conf("c", "greedy", "equivalent", 0.001, 0.50, p_tost_holm=0.01, margin=0.05),
        conf("c", "task_oracle", "equivalent", 0.0, 0.50, p_tost_holm=0.01, margin=0.05),
        conf("d", "greedy", "worse", -0.2, 0.60, p_holm=0.0001), conf("d", "task_oracle", "not significant", -0.05, 0.55),
    )


def test_the_confirmatory_answer_quotes_its_family_and_reads_each_task_once() -> None:
    mde = pd.DataFrame([{"task": "a", "baseline": "task_oracle", "n_items": 100, "sd_diff": 0.3, "alpha": 0.05 / 7,
                         "power": 0.8, "mde": 0.098, "margin": 0.031}])
    head, *tasks = findings.confirmatory_lines(confirmatory(), mde)
    assert "on the 4 task(s) above chance (a, b, c, d), 7 tests" in head and "within these 7" in head
    assert [t.split(":")[0] for t in tasks] == ["d", "b", "c", "a"]  # the loss first
    assert tasks[0].startswith("d: HAG LOSES to greedy: 0.400 vs 0.600") and "Holm p<0.001" in tasks[0]
    assert tasks[1].startswith("b: HAG beats the best fixed config, greedy (= task_oracle: the same scores)")
    assert tasks[2].startswith("c: HAG is equivalent to the best fixed config, greedy, within ±0.05 (TOST Holm p=0.010)")
    assert tasks[3].startswith("a: the data cannot tell HAG from the best fixed config, task_oracle")  # the higher mean
    assert "a gain above +0.040 is ruled out" in tasks[3] and "detects only differences of about 0.098" in tasks[3]
    assert "not tested" in findings.confirmatory_lines(confirmatory().iloc[0:0])[0]
    mixed = confirmatory().iloc[5:7].assign(verdict=["better", "worse"], diff=[0.2, -0.1])  # d: beats greedy, loses to the oracle
    loss = findings.confirmatory_lines(mixed)[1]
    assert loss.startswith("d: HAG LOSES to task_oracle") and " It does beat greedy (" in loss
    with pytest.raises(ValueError, match="largest_gain"):
        findings.confirmatory_lines(confirmatory().drop(columns=["largest_gain"]))


def test_the_answer_reads_the_confirmatory_family_when_given() -> None:
    strong = pd.DataFrame([{"task": "a", "baseline": "task_oracle", "verdict": "worse"},
                           {"task": "a", "baseline": "min_p", "verdict": "better"}])
    text = findings.answer(strong, None, confirmatory=confirmatory())
    assert text[0].startswith("Confirmatory family, declared before the run") and len(text) == 6
    assert not any("best fixed configs (task_oracle" in t for t in text)  # the exploratory reading is replaced
    assert text[-1].startswith("HAG against training-free adaptive decoding (min_p / edt / top_nsigma, 1 of the 2 exploratory")
