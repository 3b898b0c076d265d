import pandas as pd

from hagstudy.decoding import TRANSFORMERS_DEFAULT, ParseResult
from hagstudy.method import preliminary


def _rows():
    rows = []
    for value, base in ((0.0, 0.9), (1.0, 0.5)):
        for i in range(4):
            rows.append({"task": "t", "hyperparameter": "temperature", "value": value, "is_default": value == 1.0,
                         "item_id": f"i{i}", "scores": [base, base], "tokens": 8,
                         "samples": ["the same words here", "the same words here"] if value == 0 else ["a b c d", "e f g h"]})
    return pd.DataFrame(rows)


def test_sensitivity_summary_has_cis_and_diversity():
    s = preliminary.sensitivity_summary(_rows(), n_boot=200)
    greedy, default = s[s.value == 0.0].iloc[0], s[s.value == 1.0].iloc[0]
    assert greedy.score_mean == 0.9 and greedy.score_ci_low <= 0.9 <= greedy.score_ci_high
    assert greedy.self_bleu > default.self_bleu  # identical samples are the least diverse
    assert bool(default.is_default) and greedy.n_items == 4


def test_influence_names_the_hyperparameter_with_the_largest_spread():
    s = preliminary.sensitivity_summary(_rows(), n_boot=200)
    infl = preliminary.influence(s)
    assert infl.loc[infl.most_influential, "hyperparameter"].tolist() == ["temperature"]
    assert abs(infl.score_spread.iloc[0] - 0.4) < 1e-9


def test_parse_rates_count_failures():
    res = [ParseResult(TRANSFORMERS_DEFAULT, "ok"), ParseResult(None, "failed")]
    table = preliminary.config_table("t", ["a", "b"], res, "zero_shot")
    rates = preliminary.parse_rates(table)
    assert rates.parsed.iloc[0] == 0.5 and rates.ok.iloc[0] == 0.5
