"""results/README.md: findings from the tables, a caption under every figure, parse rates and HAG's configs."""

from __future__ import annotations

import pandas as pd
import pytest

from hagstudy import config, stages
from hagstudy.report import evaluation as ev
from hagstudy.report import render, summary


def _relative() -> pd.DataFrame:
    rows = [("coinflip", "default", "", 0.47, 0.36, 0.3, 0.11, 0.03, 0.19, 0.18, 0.006, 0.048, 0.047, 0.98, 1.0,
             "not shown", "better", "exploratory", ""),
            ("taboo", "default", "", 0.04, 0.07, -0.35, -0.03, -0.07, -0.01, -0.015, 0.001, 0.004, 0.01, 0.9, 1.0,
             "not shown", "worse", "exploratory", "")]  # fmt: skip
    return pd.DataFrame(rows, columns=list(ev.RELATIVE_COLUMNS))


def _configs() -> pd.DataFrame:
    rows = [("coinflip", "hag_seed0", f"c-{i}", "ok", 0.5, 0.5, 50, 1.0) for i in range(3)]
    rows += [("coinflip", "hag_seed0", "c-9", "ok", 1.5, 0.5, 0, 1.1)]
    rows += [("coinflip", "zero_shot", f"c-{i}", "failed", 1.0, 1.0, 50, 1.0) for i in range(4)]
    return pd.DataFrame(rows, columns=["task", "method", "item_id", "status", "temperature", "top_p", "top_k",
                                       "repetition_penalty"])  # fmt: skip


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv(config.OUTPUT_ENV, str(tmp_path))
    folder = config.Paths.for_profile("default").results
    (folder / "tables").mkdir(parents=True)
    (folder / "figures").mkdir()
    return folder


def test_readme_has_findings_parse_rates_configs_and_a_caption_per_figure(results) -> None:
    tables = results / "tables"
    _relative().to_csv(tables / "relative.csv", index=False)
    pd.DataFrame({"task": ["coinflip"] * 2, "method": ["hag_seed0", "zero_shot"], "failed": [0, 4], "clamped": [1, 0],
                  "ok": [3, 0]}).to_csv(tables / "parse_rates.csv", index=False)  # fmt: skip
    _configs().to_csv(tables / "hag_configs.csv", index=False)
    for empty in ("difficulty.csv", "relative_item_oracle.csv"):  # no adapter passed the gate: skipped, not a crash
        stages.write_table(pd.DataFrame(), tables / empty)
    for stem in ("sensitivity", "main", "brand_new"):
        (results / "figures" / f"{stem}.png").write_bytes(b"\x89PNG")
    _relative().assign(family="confirmatory", same_as=["task_oracle", ""]).to_csv(tables / "confirmatory.csv", index=False)
    text = render.write_readme("default").read_text()
    answer = text.split("## The answer", 1)[1].split("\n## ", 1)[0]
    assert "Confirmatory family, declared before the run" in answer and "2 tests" in answer
    assert answer.index("- taboo: HAG LOSES to default") < answer.index("- coinflip: HAG beats the best fixed config")
    assert "| coinflip | default | task_oracle |" in text.split("## The confirmatory family", 1)[1]
    findings = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "**taboo**\n\n- HAG is WORSE than default" in findings  # from the table, grouped by task
    assert findings.index("**taboo**") < findings.index("**coinflip**")  # the task with a loss leads
    assert "- HAG beats default" in findings.split("**coinflip**", 1)[1]
    assert findings.index("**Across tasks**") > findings.index("**coinflip**")  # counts and the Holm note last
    assert "RQ4" not in findings
    parse = text.split("## Stage 1: did the generated configs parse?", 1)[1].split("\n## ", 1)[0]
    assert "| coinflip | zero_shot | 4 | 0 | 0 | 4 | 0.000 | 1.000 |" in parse
    assert "| coinflip | hag_seed0 | 4 | 3 | 1 | 0 | 1.000 | 0.000 |" in parse
    configs = text.split("## Configs HAG wrote per task", 1)[1].split("\n## ", 1)[0]
    assert "| coinflip | hag_seed0 | T=0.5 p=0.5 k=50 rp=1 | 3 | 0.750 | 2 | 4 |" in configs
    assert "zero_shot" not in configs
    figures = text.split("## Figures", 1)[1]
    assert figures.index("figures/main.png") < figures.index("figures/sensitivity.png") < figures.index("brand_new")
    for stem in ("main", "sensitivity", "brand_new"):  # every figure is followed by its caption line
        after = figures.split(f"](figures/{stem}.png)", 1)[1].lstrip("\n").splitlines()[0]
        assert after.startswith(f"*Figure `{stem}`.*"), after
    assert "no caption" in figures.split("brand_new.png)", 1)[1]


def test_every_figure_a_notebook_draws_has_a_caption() -> None:
    from hagstudy import stages

    stems = {h.stem for h in stages.handoffs() if h.fmt is stages.FIGURE}  # tests/test_stages.py: the notebooks' own
    assert len(stems) >= 7 and stems <= set(render.FIGURE_CAPTIONS), stems - set(render.FIGURE_CAPTIONS)


def test_parse_rate_and_config_tables_name_a_missing_column() -> None:
    with pytest.raises(ValueError, match=r"parse_rates.csv: missing column\(s\) \['clamped'\]"):
        render.parse_rate_table(pd.DataFrame({"task": ["a"], "method": ["m"], "ok": [1], "failed": [0]}))
    with pytest.raises(ValueError, match=r"hag_configs.csv: missing column\(s\) \['top_k'\]"):
        render.config_counts(_configs().drop(columns=["top_k"]))


def test_the_rq4_sentence_comes_from_difficulty_csv(results) -> None:
    tables = results / "tables"
    _relative().to_csv(tables / "relative.csv", index=False)
    pd.DataFrame({"task": list("abcd"), "difficulty": [0.1, 0.4, 0.6, 0.9],
                  "improvement": [0.0, 0.1, 0.2, 0.3]}).to_csv(tables / "difficulty.csv", index=False)
    findings = render.write_readme("default").read_text().split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "RQ4: Spearman rho" in findings and "+1.00" in findings and "4 tasks" in findings


def _main() -> pd.DataFrame:
    rows = [(t, m, 0.5, 0.4, 0.6, n, 3) for t, n in (("coinflip", 100), ("taboo", 100), ("arithmetic", 80))
            for m in ("hag", "task_oracle", "default")]
    return pd.DataFrame(rows, columns=["task", "method", "mean", "ci_low", "ci_high", "n_items", "n_seeds"])


def _chance() -> pd.DataFrame:
    return pd.DataFrame({"task": ["coinflip", "taboo", "arithmetic"], "at_chance": [True, False, False]})


def _verdicts(pairs: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([(t, b, 0.01, -0.03, 0.05, v, 0.02) for t, b, v in pairs],
                        columns=["task", "baseline", "diff", "diff_ci_low", "diff_ci_high", "verdict", "margin"])


def test_opening_says_what_was_tested_shown_and_not_shown_from_the_tables() -> None:
    confirmatory = _verdicts([("coinflip", "task_oracle", "better"), ("taboo", "task_oracle", "equivalent"),
                              ("arithmetic", "task_oracle", "not significant")])
    mde = pd.DataFrame({"task": ["taboo", "arithmetic", "coinflip"], "baseline": ["task_oracle"] * 3,
                        "n_items": [100, 80, 100], "sd_diff": [0.2, 0.3, 0.9], "alpha": [0.05] * 3, "power": [0.8] * 3,
                        "mde": [0.056, 0.094, 0.5], "margin": [0.02] * 3})
    identical = mde.iloc[:1].assign(baseline="greedy", sd_diff=0.0, mde=0.0)  # HAG = greedy item for item: no MDE
    mde = pd.concat([mde, identical], ignore_index=True)
    headroom = pd.DataFrame({"task": ["taboo", "arithmetic"], "n_items": [100, 100], "verdict": ["below margin", "headroom shown"]})
    said = summary.opening(_main(), _chance(), confirmatory=confirmatory, mde=mde, headroom=headroom)
    assert 3 <= len(said) <= 5
    assert said[0].startswith("This run tested whether HAG") and "(task_oracle)" in said[0]
    assert "on 3 tasks, 2 of them above chance" in said[0] and "80 to 100 test items x 3 evaluation seeds" in said[0]
    assert "confirmatory" in said[1] and "equivalent within ±0.02 on taboo" in said[1]
    assert "the data cannot tell on arithmetic" in said[1] and "coinflip" not in said[1]  # at chance: apart
    assert said[2].startswith("coinflip is at chance")
    assert "0.056 to 0.094" in said[3] and "80% power" in said[3] and "0.500" not in said[3]  # informative tasks only
    assert said[4] == ("Picking the best config per item with hindsight (the item oracle, on 100 test items) beats the task "
                       "oracle on arithmetic; it is shown not to beat the task oracle by more than the task's margin on taboo "
                       "of the 2 informative tasks.")


def test_opening_falls_back_to_the_strong_table_and_its_ci_widths() -> None:
    strong = _verdicts([("taboo", "task_oracle", "worse"), ("taboo", "best_single_config", "not significant"),
                        ("taboo", "greedy", "better"), ("arithmetic", "task_oracle", "better"),
                        ("arithmetic", "best_single_config", "better")])
    said = summary.opening(_main(), _chance(), strong=strong)
    assert "(task_oracle / best_single_config)" in said[0]  # the best fixed configs, not greedy
    assert "strong-baseline table" in said[1]
    assert "HAG is worse on taboo vs task_oracle" in said[1] and "HAG is better on arithmetic" in said[1]
    assert "the data cannot tell on taboo vs best_single_config" in said[1]
    assert "0.040" in said[3] and "not evidence of a tie" in said[3]
    only_main = summary.opening(_main(), None)
    assert len(only_main) == 1 and "3 of them above chance" in only_main[0]
    with pytest.raises(ValueError, match="n_seeds"):
        summary.opening(_main().drop(columns=["n_seeds"]), None)


def test_findings_group_under_their_task_longest_name_first() -> None:
    lines = ["yes_no_bw: HAG is WORSE than default.", "yes_no is at chance for this model.", "Against default: 2.",
             "yes_no: HAG beats random."]
    assert summary.by_task(lines, ["yes_no", "yes_no_bw"]) == [
        ("yes_no_bw", ["HAG is WORSE than default."]),
        ("yes_no", ["yes_no is at chance for this model.", "HAG beats random."]),
        ("", ["Against default: 2."]),
    ]


def test_captions_quote_the_tables_and_say_so_when_a_fact_is_missing() -> None:
    facts = render.caption_facts(_main(), pd.DataFrame({"n_items": [10, 10]}), pd.DataFrame({"n_validation": [46]}))
    assert "only 10 items per point" in render.caption("sensitivity", facts)
    assert "80-100 test items x 3 seeds" in render.caption("forest", facts)
    assert "46 validation rows" in render.caption("stage1_curve", facts)
    assert "? validation rows" in render.caption("stage1_curve", render.caption_facts(None, None, None))
    assert "no caption" in render.caption("brand_new", facts)


def test_the_readme_opens_with_the_answer(results) -> None:
    tables = results / "tables"
    _main().to_csv(tables / "main.csv", index=False)
    _chance().to_csv(tables / "at_chance.csv", index=False)
    _verdicts([("taboo", "task_oracle", "worse")]).to_csv(tables / "relative_strong.csv", index=False)
    text = render.write_readme("default").read_text()
    first = text.split("\n\n")[1]
    assert first.startswith("This run tested whether HAG") and "HAG is worse on taboo" in first


def test_the_opening_quotes_the_mde_table(results) -> None:
    tables = results / "tables"
    _main().to_csv(tables / "main.csv", index=False)
    _chance().to_csv(tables / "at_chance.csv", index=False)
    first = render.write_readme("default").read_text().split("\n\n")[1]
    assert "0.057" not in first  # no MDE table yet: nothing quoted
    pd.DataFrame({"task": ["taboo"], "baseline": ["task_oracle"], "n_items": [100], "sd_diff": [0.2], "alpha": [0.05],
                  "power": [0.8], "mde": [0.0567], "margin": [0.02]}).to_csv(tables / "mde.csv", index=False)
    first = render.write_readme("default").read_text().split("\n\n")[1]
    assert "is 0.057 depending on the task" in first


def test_readme_shows_notebook_05s_label_arms_consistency_cost_and_grid_edges(results) -> None:
    tables = results / "tables"
    pd.DataFrame({"variant": ["hag_shuffled_labels", "hag_train25"], "task": ["taboo", "taboo"], "target_mean": [0.1, 0.2],
                  "base_mean": [0.1, 0.1], "diff": [0.0, 0.1], "diff_ci_low": [0.0, 0.05], "diff_ci_high": [0.0, 0.15],
                  "p_holm": [1.0, 0.01], "verdict": ["equivalent", "better"]}).to_csv(tables / "ablation_vs_hag.csv", index=False)
    pd.DataFrame({"task": ["taboo"] * 2, "method": ["hag_seed0"] * 2, "variation": ["original", "whitespace"],
                  "n": [30, 30], "changed": [None, 1.0]}).to_csv(tables / "consistency.csv", index=False)
    pd.DataFrame({"method": ["hag"], "setup_generations": [15384], "setup_train_seconds": [231.4], "per_query_passes": [2],
                  "per_query_tokens": [52.7], "note": ["search + check"]}).to_csv(tables / "overhead.csv", index=False)
    pd.DataFrame({"task": ["taboo", "arithmetic"], "method": ["min_p", "edt"], "grid_edge": [True, False], "moved": [True, False],
                  "search_original": [0.08, 0.25], "search_extended": [0.09, None], "test_original": [0.08, None],
                  "test_extended": [0.1, None], "diff": [0.02, None], "diff_ci_low": [-0.01, None],
                  "diff_ci_high": [0.05, None]}).to_csv(tables / "grid_edges.csv", index=False)  # fmt: skip
    text = render.write_readme("default").read_text()
    arms = text.split("## Label arms against HAG", 1)[1].split("\n## ", 1)[0]
    assert "| hag_shuffled_labels | taboo |" in arms and "hag_train25" not in arms  # the label arms only
    assert "| hag_seed0 | whitespace | 1.00 |" in text.split("## Stage-1 consistency", 1)[1]
    assert "| hag | 15384 | 231.4 | 2 | 52.7 | search + check |" in text.split("## What each method costs", 1)[1]
    edges = text.split("## Tuned baselines at their grid's edge", 1)[1].split("\n## ", 1)[0]
    assert "| taboo | min_p |" in edges and "arithmetic" not in edges  # only choices at an edge
