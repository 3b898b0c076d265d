"""Every figure helper runs on synthetic tables, and save() writes byte-stable PNG and SVG files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hagstudy.report import plots

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
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == TASKS  # evaluation's tables come in the study's task order; plots keep it


def test_main_bars_facet_per_task_with_its_metric_and_own_scale() -> None:
    frame = main_frame()
    frame.loc[frame["task"] == "coinflip", ["mean", "ci_low", "ci_high"]] /= 10  # a task on a much smaller scale
    fig = plots.main_bars(frame, metrics={"taboo": "compliance x relevance"})
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert axes["taboo"].get_ylabel() == "compliance x relevance"
    assert axes["coinflip"].get_ylabel() == "accuracy"  # from the task registry
    assert axes["coinflip"].get_ylim()[1] < 0.1 < axes["taboo"].get_ylim()[1]
    with_column = plots.main_bars(frame.assign(metric="BLEU"))
    assert {ax.get_ylabel() for ax in with_column.axes if ax.get_visible()} == {"BLEU"}
    # error bars are the table's CIs: the whisker of taboo/hag spans ci_low..ci_high
    row = frame.loc[(frame["task"] == "taboo") & (frame["method"] == "hag")].iloc[0]
    spans = [seg[:, 1] for coll in axes["taboo"].collections for seg in coll.get_segments()]
    assert any(np.allclose(sorted(s), [row["ci_low"], row["ci_high"]]) for s in spans)


def _legend_colors(fig: Figure) -> dict[str, tuple]:
    """Label -> RGB of every legend entry of a figure (figure legends and axes legends)."""
    from matplotlib.colors import to_rgb

    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    out: dict[str, tuple] = {}
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if hasattr(handle, "get_facecolor") and not hasattr(handle, "get_markerfacecolor"):
                color = handle.get_facecolor()
            else:
                color = handle.get_color()
            out[text.get_text()] = tuple(round(c, 4) for c in to_rgb(color))
    return out


ALL_METHODS = [
    "chance", "default", "greedy", "random", "zero_shot", "zero_shot_json", "task_oracle", "best_single_config",
    "item_oracle", "hag", "hag_seed0", "hag_seed1", "hag_seed2", "min_p", "edt", "top_nsigma", "hag_train25", "hag_train50",
    "hag_random_labels", "hag_tpe_labels", "hag_per_task_labels", "hag_temperature_only", "hag_adapter_stage2",
    "some_new_arm", "another_arm",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_two_legend_entries_share_a_colour(name) -> None:
    colors = _legend_colors(BUILDERS[name]())
    seen: dict[tuple, str] = {}
    for label, rgb in colors.items():
        assert rgb not in seen, f"{name}: {label!r} and {seen[rgb]!r} share colour {rgb}"
        seen[rgb] = label


def test_every_method_keeps_one_colour_across_figures() -> None:
    one = main_frame()
    rows = [(t, m, 0.4, 0.3, 0.5, 20, 3) for t in TASKS for m in ALL_METHODS]
    everything = pd.DataFrame(rows, columns=one.columns)
    a, b = _legend_colors(plots.main_bars(one)), _legend_colors(plots.main_bars(everything))
    assert set(b) == set(ALL_METHODS) and len(set(b.values())) == len(ALL_METHODS)
    for method in a:  # the same method, a different set of methods beside it: the same colour
        assert a[method] == b[method], method
    assert a["default"] != b["hag_seed1"] and b["chance"] != b["hag_seed0"]  # the two clashes of the old palette


def test_method_colours_fixed_and_fallbacks_never_collide() -> None:
    fixed = plots.METHOD_COLORS
    assert {"chance", "default", "zero_shot_json", "task_oracle", "hag", "hag_seed2", "min_p", "edt"} <= set(fixed)
    assert len(set(fixed.values())) == len(fixed)
    unknown = [f"arm_{i}" for i in range(20)]
    colors = plots.method_colors(["hag", *unknown])
    assert colors["hag"] == fixed["hag"]
    assert not set(colors[u] for u in unknown) & set(fixed.values())
    assert len(set(colors.values())) == len(colors)
    assert plots.method_colors(["arm_3"]) == plots.method_colors(["arm_3"])  # deterministic
    with pytest.raises(ValueError, match="hagstudy.registry"):
        plots.method_colors([f"x{i}" for i in range(len(plots._FALLBACK) + 1)])


def test_sensitivity_puts_off_apart_and_rings_the_default() -> None:
    frame = sens_frame().assign(is_default=lambda d: (d["hyperparameter"] == "top_k") & (d["value"] == 50))
    fig = plots.sensitivity_curves(frame)
    top_k_col = [ax for ax in fig.axes if ax.get_title() == "top_k"][0]
    bottom = [ax for ax in fig.axes if ax.get_xlabel() == "top_k"][0]
    labels = [t.get_text() for t in bottom.get_xticklabels()]
    assert labels == ["10", "50", "off"]  # 0 is not drawn next to small values: it is "off", last, after a gap
    ticks = list(bottom.get_xticks())
    assert ticks[2] - ticks[1] > ticks[1] - ticks[0]
    rings = [ln for ln in top_k_col.get_lines() if ln.get_label() == "default config"]
    assert rings and list(rings[0].get_xdata()) == [ticks[1]]
    assert len(fig.axes) == (2 + 1) * 2  # a row per task plus self-BLEU, a column per hyperparameter


def test_config_distributions_counts_and_keeps_fallbacks_apart() -> None:
    frame = configs_frame().assign(status="ok")
    frame.loc[:4, "status"] = "failed"
    fig = plots.config_distributions(frame)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[-1] == "fallback" and "other" in labels  # many distinct values: the rest lumped as "other"
    texts = [int(t.get_text()) for t in ax.texts]
    assert sum(texts) == len(frame)  # every config counted once, in a value column or as a fallback
    fallback_x = ax.get_xticks()[-1]
    assert sum(int(t.get_text()) for t in ax.texts if t.get_position()[0] == fallback_x) == 5


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


def test_difficulty_title_has_spearman_and_close_points_get_apart_labels() -> None:
    frame = difficulty_frame().assign(difficulty=lambda d: 1 - d["base_mean"])
    fig = plots.improvement_vs_difficulty(frame)
    assert "Spearman" in fig.axes[0].get_title()
    xs, ys = np.array([0.36, 0.37, 0.9]), np.array([0.11, 0.107, -0.02])
    offsets = plots._label_offsets(xs, ys)
    assert offsets[0] != offsets[1]  # two tasks at one spot: labels on different sides
    assert offsets[2] == (4, 4)


def test_stage1_curve_rings_the_selected_snapshot() -> None:
    curve = pd.DataFrame({"step": [0, 12, 24, 0, 12, 24], "parse_rate": [0, 1, 1, 0, 1, 1],
                          "exact_match": [0, 0.5, 0.6, 0, 0.4, 0.7], "distance": [1, 0.3, 0.2, 1, 0.4, 0.1],
                          "adapter": ["a"] * 3 + ["b"] * 3, "selected": [False, True, False, False, False, True]})
    fig = plots.stage1_curve(curve)
    rings = [c for c in fig.axes[1].collections if len(c.get_offsets())]
    assert sorted(tuple(o) for c in rings for o in c.get_offsets()) == [(12.0, 0.5), (24.0, 0.7)]


def test_main_bars_name_a_method_scored_on_fewer_items() -> None:
    frame = main_frame()
    frame.loc[frame["method"] == "random", "n_items"] = 8
    fig = plots.main_bars(frame)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "random (first 8 items)" in labels and "hag" in labels and "random" not in labels
