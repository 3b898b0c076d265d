"""results/README.md: findings from the tables, a caption under every figure, parse rates and HAG's configs."""

from __future__ import annotations

import pandas as pd
import pytest

from hagstudy import config, stages
from hagstudy.report import evaluation as ev
from hagstudy.report import render


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
    assert "- taboo: HAG is WORSE than default" in findings  # from the table, loss first
    assert findings.index("taboo: HAG is WORSE") < findings.index("coinflip: HAG beats default")
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
