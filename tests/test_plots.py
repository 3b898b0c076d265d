"""Every figure helper runs on synthetic tables, and save() writes byte-stable PNG and SVG files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from hagstudy.report import figstyle, plots

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


def relative_frame() -> pd.DataFrame:
    """HAG minus three baselines on three tasks; zero_shot repeats default's numbers and verdicts everywhere."""
    rows = []
    for t, task in enumerate(TASKS):
        for baseline, diff, verdict in (("default", 0.1 + t / 100, "better"), ("random", -0.01, "not significant"),
                                        ("zero_shot", 0.1 + t / 100, "better"), ("greedy", 0.0, "equivalent")):
            rows.append((task, baseline, diff, diff - 0.04, diff + 0.04, verdict, 0.02))
    return pd.DataFrame(rows, columns=["task", "baseline", "diff", "diff_ci_low", "diff_ci_high", "verdict", "margin"])


def curve_frame() -> pd.DataFrame:
    return pd.DataFrame({"step": [0, 12, 24] * 2, "parse_rate": [0, 1, 1, 0, 0.9, 1],
                         "exact_match": [0, 0.5, 0.6, 0, 0.4, 0.7], "distance": [np.nan, 0.3, 0.2, np.nan, 0.4, 0.1],
                         "adapter": ["hag_seed0"] * 3 + ["hag_seed1"] * 3,
                         "selected": [False, True, False, False, False, True]})


def gates_frame() -> pd.DataFrame:
    return pd.DataFrame({"adapter": ["hag_seed0", "hag_seed1"], "n_validation": [20, 20], "min_parse_rate": [0.99] * 2,
                         "majority_exact_match": [0.5] * 2, "majority_distance": [0.3] * 2})


def adapters_log() -> pd.DataFrame:
    frames = [pd.DataFrame(log_history()).assign(adapter=f"hag_seed{k}") for k in range(3)]
    return pd.concat(frames, ignore_index=True)


BUILDERS = {
    "forest": lambda: plots.forest(relative_frame(), pd.DataFrame({"task": TASKS, "at_chance": [False, True, False]})),
    "stage1_curve": lambda: plots.stage1_curve(curve_frame(), gates_frame()),
    "loss_curve_adapters": lambda: plots.loss_curve(adapters_log()),
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


def test_svg_ids_do_not_carry_float_noise_below_the_printed_precision(tmp_path) -> None:
    """Axes 1e-12 apart print the same coordinates; matplotlib's hashed clip ids would still differ."""
    import matplotlib.pyplot as plt

    saved = []
    for shift in (0.0, 1e-12):
        fig = plt.figure(figsize=(3, 2))
        ax = fig.add_axes((0.1 + shift, 0.1, 0.8, 0.8))
        ax.plot([0, 1], [0, 1], marker="o")
        saved.append(plots.save(fig, "f", tmp_path / str(shift))[1].read_bytes())
        plt.close(fig)
    assert saved[0] == saved[1]
    assert b'clip-path="url(#p' in saved[0] and re.search(rb'id="p\d+"', saved[0])


def test_stable_svg_ids_renumbers_definitions_and_their_references() -> None:
    svg = (b'<clipPath id="pabcdef0123"/><path id="m0123456789"/><g clip-path="url(#pabcdef0123)">'
           b'<use xlink:href="#m0123456789"/></g><text>pabcdef0123 stays</text><path id="DejaVuSans-31"/>')
    out = plots.stable_svg_ids(svg)
    assert out == (b'<clipPath id="p0"/><path id="m1"/><g clip-path="url(#p0)"><use xlink:href="#m1"/></g>'
                   b'<text>pabcdef0123 stays</text><path id="DejaVuSans-31"/>')


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


def _legend_looks(fig: Figure) -> dict[str, tuple]:
    """Label -> (RGB, marker, line style, marker face) of every legend entry (figure and axes legends): how a
    reader tells entries apart. Bars have only a colour; a ring (a scatter proxy) its edge colour."""
    from matplotlib.colors import to_rgb

    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    out: dict[str, tuple] = {}
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if isinstance(handle, PathCollection):
                face = handle.get_facecolor()
                color, look = (face[0] if len(face) else handle.get_edgecolor()[0]), ("ring",)
            elif hasattr(handle, "get_facecolor") and not hasattr(handle, "get_markerfacecolor"):
                color, look = handle.get_facecolor(), ()
            else:
                color = handle.get_color()
                look = (handle.get_marker(), handle.get_linestyle(), str(handle.get_markerfacecolor()))
            out[text.get_text()] = (tuple(round(float(c), 4) for c in to_rgb(color)), *look)
    return out


def _legend_colors(fig: Figure) -> dict[str, tuple]:
    """Label -> RGB of every legend entry of a figure."""
    return {label: look[0] for label, look in _legend_looks(fig).items()}


ALL_METHODS = [
    "chance", "default", "greedy", "random", "zero_shot", "zero_shot_json", "task_oracle", "best_single_config",
    "item_oracle", "hag", "hag_seed0", "hag_seed1", "hag_seed2", "min_p", "edt", "top_nsigma", "hag_train25", "hag_train50",
    "hag_random_search_labels", "hag_tpe_labels", "hag_per_task_labels", "hag_temperature_only", "hag_adapter_stage2",
    "hag_shuffled_labels", "hag_denoised_labels", "hag_unchecked_labels",
    "some_new_arm", "another_arm",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_two_legend_entries_look_the_same(name) -> None:
    looks = _legend_looks(BUILDERS[name]())
    seen: dict[tuple, str] = {}
    for label, look in looks.items():  # an adapter's train and eval lines share a colour, not a marker
        assert look not in seen, f"{name}: {label!r} and {seen[look]!r} look the same: {look}"
        seen[look] = label


def test_every_method_keeps_one_colour_across_figures() -> None:
    one = main_frame()
    rows = [(t, m, 0.4 + 0.001 * i, 0.3, 0.5, 20, 3) for t in TASKS for i, m in enumerate(ALL_METHODS)]
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
        plots.method_colors([f"x{i}" for i in range(len(figstyle.FALLBACK) + 1)])


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
    assert "over 10 items" in plots.sensitivity_curves(frame.assign(n_items=10)).get_suptitle()


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
    rings = [c for c in fig.axes[1].collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    found = sorted(tuple(o) for c in rings for o in c.get_offsets())
    # the adapters are dodged sideways by a little, so the ring sits at its step give or take that
    assert np.allclose(found, [(12.0, 0.5), (24.0, 0.7)], atol=0.5)


def test_main_bars_name_a_method_scored_on_fewer_items() -> None:
    frame = main_frame()
    frame.loc[frame["method"] == "random", "n_items"] = 8
    fig = plots.main_bars(frame)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "random (first 8 items)" in labels and "hag" in labels and "random" not in labels


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_figures_series_are_colours_apart(name) -> None:
    by_colour = {rgb: label for label, rgb in _legend_colors(BUILDERS[name]()).items()}  # one entry per colour
    assert figstyle.too_close({label: rgb for rgb, label in by_colour.items()}) == [], name


def test_too_close_names_the_pair_under_the_minimum() -> None:
    assert figstyle.too_close({"a": "#000000", "b": "#050505", "c": "#ffffff"}) == [("a", "b", 0.034)]
    assert figstyle.too_close({"a": "#000000", "c": "#ffffff"}) == []


def test_same_series_finds_a_method_equal_to_an_earlier_one_on_every_task() -> None:
    frame = pd.DataFrame({"task": ["a", "a", "a", "b", "b", "b"], "method": ["x", "y", "z"] * 2,
                          "mean": [0.1, 0.1, 0.1, 0.2, 0.2, 0.3]})
    assert figstyle.same_series(frame, "method", ["mean"], over="task") == {"y": "x"}  # z differs on b
    assert figstyle.joint_labels(["x", "y", "z"], {"y": "x"}) == {"x": "x = y", "z": "z"}
    with pytest.raises(ValueError, match="missing column"):
        figstyle.same_series(frame, "method", ["score"])


def _forest_segments(fig: Figure) -> int:
    return sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection))


def test_forest_draws_one_ci_per_row_and_repeats_once() -> None:
    frame = relative_frame()
    fig = plots.forest(frame)
    drawn = frame.loc[frame["baseline"] != "zero_shot"]  # zero_shot repeats default everywhere: drawn once
    assert _forest_segments(fig) == len(drawn)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "default = zero_shot" in labels and "zero_shot" not in labels
    ax = [a for a in fig.axes if a.get_title() == "taboo"][0]
    spans = sorted(tuple(np.round(seg[:, 0], 4)) for c in ax.collections if isinstance(c, LineCollection)
                   for seg in c.get_segments())
    expected = sorted(tuple(np.round(r, 4)) for r in drawn.loc[drawn["task"] == "taboo", ["diff_ci_low", "diff_ci_high"]]
                      .to_numpy())
    assert spans == expected  # the segments are the table's CIs
    # a different verdict on one task (another Holm family) makes them two series again
    frame.loc[(frame["task"] == "taboo") & (frame["baseline"] == "zero_shot"), "verdict"] = "not significant"
    assert _forest_segments(plots.forest(frame)) == len(frame)


def test_forest_fills_by_verdict_and_greys_tasks_at_chance() -> None:
    chance = pd.DataFrame({"task": TASKS, "at_chance": ["False", "True", "False"]})
    fig = plots.forest(relative_frame(), chance)
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(axes) == {"taboo", "coinflip (at chance)", "strategyqa"}
    assert axes["coinflip (at chance)"].get_facecolor() != axes["taboo"].get_facecolor()
    faces = {}
    for line in axes["taboo"].get_lines():
        if len(line.get_xdata()) == 1 and line.get_marker() not in ("None", None, ""):
            faces[float(line.get_xdata()[0])] = line.get_markerfacecolor()
    from matplotlib.colors import to_rgba

    assert to_rgba(faces[0.1]) == to_rgba(plots.METHOD_COLORS["default"])  # better: filled in its colour
    assert to_rgba(faces[-0.01]) == to_rgba("white")  # not significant: hollow
    assert to_rgba(faces[0.0]) == to_rgba("0.65")  # equivalent: grey


def test_forest_honours_same_as_and_rejects_bad_tables() -> None:
    """A table that merged its duplicates (``same_as`` on the kept row, the copy's row gone) draws every row, and the
    kept row's label names what it stands for in that task's panel only."""
    frame = relative_frame().assign(same_as="")
    on_taboo = frame["task"] == "taboo"
    frame = frame.loc[~(on_taboo & (frame["baseline"] == "zero_shot"))].copy()
    frame.loc[(frame["task"] == "taboo") & (frame["baseline"] == "default"), "same_as"] = "zero_shot; best_single_config"
    fig = plots.forest(frame)
    assert _forest_segments(fig) == len(frame)
    ticks = {ax.get_title(): [t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes if ax.get_visible()}
    assert "default = zero_shot = best_single_config" in ticks["taboo"] and "default" in ticks["coinflip"]
    with pytest.raises(ValueError, match="verdict"):
        plots.forest(frame.drop(columns=["verdict"]))
    with pytest.raises(ValueError, match="appears twice"):
        plots.forest(pd.concat([frame, frame.iloc[:1]]))


def test_main_bars_draw_a_repeated_method_once() -> None:
    frame = main_frame()
    copy = frame.loc[frame["method"] == "default"].assign(method="zero_shot")
    fig = plots.main_bars(pd.concat([frame, copy], ignore_index=True))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "default = zero_shot" in labels and "zero_shot" not in labels
    bars = sum(len(ax.patches) for ax in fig.axes)
    assert bars == len(frame)


def test_wilson_interval_stays_in_0_1_and_holds_the_rate() -> None:
    from hagstudy.report.stats import wilson_interval

    rates = np.array([0.0, 0.02, 0.5, 0.97, 1.0])
    low, high = wilson_interval(rates, 46)
    assert ((0 <= low) & (low <= rates) & (rates <= high) & (high <= 1)).all()
    assert high[0] > 0 and low[-1] < 1  # never a zero-width interval at the edges
    assert np.isclose(high[2] - low[2], 2 * 0.1385, atol=0.002)  # about +-1.96 * sqrt(.25 / 46) near 0.5
    assert np.isnan(wilson_interval(0.5, 0)[0])
    with pytest.raises(ValueError, match="rates must lie"):
        wilson_interval(1.2, 10)


def test_stage1_curve_draws_wilson_cis_from_the_gates_rows() -> None:
    fig = plots.stage1_curve(curve_frame(), gates_frame())
    ax = fig.axes[1]  # exact match
    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    assert len(segments) == len(curve_frame())  # one whisker per snapshot and adapter
    for seg in segments:
        lo, hi = sorted(seg[:, 1])
        assert 0 <= lo <= hi <= 1
    rates = set(np.round(curve_frame()["exact_match"], 4))
    assert all(any(lo <= r <= hi for r in rates) for lo, hi in (sorted(s[:, 1]) for s in segments))
    assert "Wilson 95% CI, n = 20" in ax.get_title()
    no_n = plots.stage1_curve(curve_frame())
    assert not [c for c in no_n.axes[1].collections if isinstance(c, LineCollection)]  # no n, no CI drawn


def test_loss_curve_gives_each_adapter_its_panel_and_line_style() -> None:
    fig = plots.loss_curve(adapters_log())
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["hag_seed0", "hag_seed1", "hag_seed2"]
    assert all(ax.get_yscale() == "log" for ax in axes)
    styles = {ax.get_title(): [ln.get_linestyle() for ln in ax.get_lines() if ln.get_label().startswith("train")][0]
              for ax in axes}
    assert len(set(styles.values())) == 3


def test_forest_keeps_a_family_together() -> None:
    frame = relative_frame().assign(family=lambda d: d["baseline"].map(
        {"default": "weak", "random": "weak", "zero_shot": "stage 1", "greedy": "fixed"}))
    frame = frame.loc[frame["baseline"] != "zero_shot"]
    order = ["default", "greedy", "random"]  # table order would split the weak family around greedy
    frame = frame.set_index("baseline").loc[order].reset_index()
    ticks = [t.get_text() for t in plots.forest(frame).axes[0].get_yticklabels()]
    assert ticks == ["default", "random", "greedy"]
