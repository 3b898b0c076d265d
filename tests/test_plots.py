"""Every figure helper runs on synthetic tables, and save() writes byte-stable PNG and SVG files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hagstudy import plots

TASKS = ["taboo", "coinflip", "strategyqa"]  # deliberately not alphabetical


def main_frame() -> pd.DataFrame:
    rows = []
    for t, task in enumerate(TASKS):
        for m, method in enumerate(["hag", "default", "random"]):
            if task == "coinflip" and method == "random":
                continue  # a missing bar must not break the layout
            mean = 0.3 + 0.1 * t + 0.05 * m
            rows.append((task, method, mean, mean - 0.05, mean + 0.04, 20, 3))
    return pd.DataFrame(rows, columns=["task", "method", "mean", "ci_low", "ci_high", "n_items", "n_seeds"])


def configs_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 30
    return pd.DataFrame(
        {
            "task": np.repeat(TASKS, n),
            "temperature": rng.uniform(0, 1.5, 3 * n).round(2),
            "top_p": rng.uniform(0.5, 1.0, 3 * n).round(2),
            "top_k": rng.integers(0, 100, 3 * n),
            "repetition_penalty": rng.uniform(1.0, 1.3, 3 * n).round(2),
            "source": np.tile(["label", "hag"], 3 * n // 2),
        }
    )


def sens_frame(with_bleu: bool = True) -> pd.DataFrame:
    rows = []
    for task in TASKS[:2]:
        for hp, values in {"temperature": [0, 0.5, 1.0, 1.5], "top_k": [0, 10, 50]}.items():
            for v in values:
                m = 0.5 - 0.1 * float(v) / max(values)
                rows.append((task, hp, v, m, m - 0.05, m + 0.05, 0.3 + 0.01 * float(v)))
    frame = pd.DataFrame(
        rows,
        columns=["task", "hyperparameter", "value", "score_mean", "score_ci_low", "score_ci_high", "self_bleu"],
    )
    return frame if with_bleu else frame.drop(columns=["self_bleu"])


def difficulty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": TASKS,
            "base_mean": [0.2, 0.5, 0.8],
            "improvement": [0.1, 0.0, -0.05],
            "improvement_ci_low": [0.05, -0.04, -0.1],
            "improvement_ci_high": [0.15, 0.04, 0.0],
        }
    )


def cost_frame() -> pd.DataFrame:
    rows = []
    for task in TASKS[:2]:
        for strategy, costs in {"grid": [84, 840], "greedy": [20, 40, 80], "random": [10, 1000]}.items():
            for c in costs:
                q = 0.4 + 0.05 * np.log10(c)
                rows.append((task, strategy, c, q, q - 0.03, q + 0.03))
    return pd.DataFrame(rows, columns=["task", "strategy", "generations", "quality", "quality_ci_low", "quality_ci_high"])


def log_history() -> list[dict]:
    hist = [{"loss": 2.0 / (1 + s), "learning_rate": 1e-4, "epoch": s / 10, "step": s} for s in range(1, 20)]
    hist += [{"eval_loss": 1.5 / (1 + s), "epoch": s / 10, "step": s} for s in (5, 10, 15)]
    hist.append({"train_runtime": 12.0, "train_loss": 0.5, "epoch": 2.0, "step": 19})
    return hist


BUILDERS = {
    "main_bars": lambda: plots.main_bars(main_frame()),
    "config_distributions": lambda: plots.config_distributions(configs_frame()),
    "config_distributions_one_source": lambda: plots.config_distributions(configs_frame().drop(columns=["source"])),
    "sensitivity_curves": lambda: plots.sensitivity_curves(sens_frame(), defaults={"temperature": 1.0, "top_k": 50}),
    "sensitivity_curves_no_bleu": lambda: plots.sensitivity_curves(sens_frame(with_bleu=False)),
    "improvement_vs_difficulty": lambda: plots.improvement_vs_difficulty(difficulty_frame()),
    "cost_vs_quality": lambda: plots.cost_vs_quality(cost_frame()),
    "cost_vs_quality_no_task": lambda: plots.cost_vs_quality(cost_frame().drop(columns=["task"])),
    "loss_curve": lambda: plots.loss_curve(log_history()),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_plot_runs_and_saves(name, tmp_path) -> None:
    fig = BUILDERS[name]()
    assert isinstance(fig, Figure)
    png, svg = plots.save(fig, name, tmp_path / "figs")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000]
    assert not list((tmp_path / "figs").glob("*.tmp"))


@pytest.mark.parametrize("name", ["main_bars", "config_distributions"])
def test_save_is_byte_stable_across_rebuilds(name, tmp_path) -> None:
    a = plots.save(BUILDERS[name](), name, tmp_path / "a")
    b = plots.save(BUILDERS[name](), name, tmp_path / "b")
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.suffix
    assert b"<dc:date>" not in a[1].read_bytes()


def test_global_rng_untouched() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    plots.config_distributions(configs_frame())
    assert np.random.random() == expected


def test_main_bars_keep_the_tables_task_order() -> None:
    fig = plots.main_bars(main_frame())
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == TASKS  # evaluation's tables come in the study's task order; plots keep it


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="missing column"):
        plots.main_bars(main_frame().drop(columns=["ci_low"]))
    with pytest.raises(ValueError, match="no 'loss'"):
        plots.loss_curve([{"step": 1, "learning_rate": 0.1}])
    with pytest.raises(ValueError, match="empty"):
        plots.improvement_vs_difficulty(difficulty_frame().iloc[0:0])


def test_draw_saved_skips_a_missing_table_and_saves_a_present_one(tmp_path, capsys):
    assert plots.draw_saved(plots.loss_curve, tmp_path / "nope.csv", "loss", tmp_path) is None
    assert "skipped" in capsys.readouterr().out
    pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.5]}).to_csv(tmp_path / "log.csv", index=False)
    assert plots.draw_saved(plots.loss_curve, tmp_path / "log.csv", "loss", tmp_path) is not None
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "loss.svg").is_file()
