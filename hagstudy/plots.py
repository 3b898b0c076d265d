"""Figures for the study, drawn from result tables only (never recomputing a result).

Each helper takes DataFrames (or the trainer's log history) and returns a ``matplotlib.figure.Figure``
built on the Agg canvas without pyplot, so nothing touches global figure state, nothing leaks when
many figures are made, and it works headless. In a notebook, a returned figure displays inline once
the inline backend is active (``%matplotlib inline`` or importing ``matplotlib.pyplot``).
:func:`save` writes PNG and SVG so that rerunning with the same tables gives the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hagstudy.evaluation import method_key
from hagstudy.files import atomic_open

HYPERPARAMETERS: tuple[str, ...] = ("temperature", "top_p", "top_k", "repetition_penalty")
DPI = 150
_RC: dict[str, Any] = {
    "svg.hashsalt": "hagstudy",  # fixed ids in SVG output instead of random ones
    "svg.fonttype": "path",  # glyphs as paths: no dependence on the viewer's fonts
    "path.simplify": True,
}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Seaborn look for the figures made inside, without changing global rcParams."""
    with matplotlib.rc_context(_RC), sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        yield


@contextlib.contextmanager
def _seeded_global_rng(seed: int = 0) -> Iterator[None]:
    """Seaborn's strip jitter draws from numpy's global RNG: seed it for this block, then restore."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what}: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{what}: the table is empty")


def _tasks(values: pd.Series) -> list[str]:
    """Tasks in the order of the table (evaluation's tables already come in the study's task order)."""
    return list(pd.unique(values))


def _methods(values: pd.Series) -> list[str]:
    return sorted(pd.unique(values), key=method_key)


def _palette(names: Sequence[str]) -> dict[str, Any]:
    return dict(zip(names, sns.color_palette("colorblind", n_colors=max(len(names), 1))))


def main_bars(main_table: pd.DataFrame, ylabel: str = "score") -> Figure:
    """Grouped bars: one group per task, one bar per method, error bars from ci_low / ci_high."""
    _require(main_table, ["task", "method", "mean", "ci_low", "ci_high"], "main_bars")
    tasks, methods = _tasks(main_table["task"]), _methods(main_table["method"])
    colors = _palette(methods)
    width = 0.8 / len(methods)
    with _style():
        fig = _figure(max(5.0, 1.1 * len(tasks) * max(1.0, len(methods) / 4) + 2.0), 3.6)
        ax = fig.add_subplot()
        by_key = main_table.set_index(["task", "method"])
        for j, method in enumerate(methods):
            xs, ys, lo, hi = [], [], [], []
            for i, task in enumerate(tasks):
                if (task, method) not in by_key.index:
                    continue  # a method not run on this task: leave the slot empty
                row = by_key.loc[(task, method)]
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(row["mean"]))
                lo.append(float(row["mean"] - row["ci_low"]))
                hi.append(float(row["ci_high"] - row["mean"]))
            ax.bar(xs, ys, width=width * 0.95, color=colors[method], label=method)
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="0.2", elinewidth=0.8, capsize=2)
        ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max(1.0, float(main_table["ci_high"].max()) * 1.05))
        ax.legend(title="method", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_title("Score per task and method (95% CI)")
    return fig


def config_distributions(
    configs_frame: pd.DataFrame, hyperparameters: Sequence[str] = HYPERPARAMETERS
) -> Figure:
    """Per task, distributions of decoding hyperparameters, one panel per hyperparameter.

    Boxes summarise each (task, source), e.g. search labels vs HAG's generated configs; points show
    every config (with a fixed jitter, so the figure is reproducible).
    """
    _require(configs_frame, ["task", *hyperparameters], "config_distributions")
    frame = configs_frame.copy()
    if "source" not in frame.columns:
        frame["source"] = "config"
    tasks = _tasks(frame["task"])
    sources = sorted(pd.unique(frame["source"]), key=str)
    palette = _palette(sources)
    n = len(hyperparameters)
    with _style(), _seeded_global_rng(0):
        fig = _figure(max(6.0, 0.9 * len(tasks) * 2 + 1.5), 2.4 * n)
        axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
        for ax, name in zip(axes, hyperparameters):
            common = dict(
                data=frame, x="task", y=name, hue="source", order=tasks, hue_order=sources,
                palette=palette, ax=ax,
            )  # fmt: skip
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated `vert`
                warnings.filterwarnings("ignore", message=".*vert: bool was deprecated", category=DeprecationWarning)
                sns.boxplot(**common, showfliers=False, fill=False, legend=False)
            sns.stripplot(**common, dodge=len(sources) > 1, size=2.5, alpha=0.5, jitter=0.2, legend=ax is axes[0])
            ax.set_ylabel(name)
            ax.set_xlabel("")
        if axes[0].get_legend() is not None:
            sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title="source")
        axes[-1].tick_params(axis="x", labelrotation=20)
        fig.suptitle("Decoding hyperparameters per task")
    return fig


def sensitivity_curves(sens_frame: pd.DataFrame, defaults: Mapping[str, float] | None = None) -> Figure:
    """Score (and self-BLEU if present) vs each hyperparameter moved alone from the default.

    Columns: task, hyperparameter, value, score_mean, score_ci_low, score_ci_high, optionally
    self_bleu. One column of panels per hyperparameter, one line per task with its CI band;
    ``defaults`` (hyperparameter -> default value) adds a dotted vertical line at the default.
    """
    _require(
        sens_frame,
        ["task", "hyperparameter", "value", "score_mean", "score_ci_low", "score_ci_high"],
        "sensitivity_curves",
    )
    known = [h for h in HYPERPARAMETERS if h in set(sens_frame["hyperparameter"])]
    hparams = known + sorted(set(sens_frame["hyperparameter"]) - set(known), key=str)
    tasks = _tasks(sens_frame["task"])
    colors = _palette(tasks)
    rows = ["score_mean"] + (["self_bleu"] if "self_bleu" in sens_frame.columns else [])
    with _style():
        fig = _figure(2.8 * len(hparams) + 1.6, 2.5 * len(rows))
        axes = fig.subplots(len(rows), len(hparams), squeeze=False, sharey="row")
        for c, hp in enumerate(hparams):
            sub = sens_frame.loc[sens_frame["hyperparameter"] == hp]
            for task in tasks:
                line = sub.loc[sub["task"] == task].sort_values("value")
                if line.empty:
                    continue
                x = line["value"].to_numpy(dtype=float)
                ax = axes[0, c]
                ax.plot(x, line["score_mean"], marker="o", ms=3, color=colors[task], label=task)
                ax.fill_between(x, line["score_ci_low"], line["score_ci_high"], color=colors[task], alpha=0.15)
                if len(rows) > 1 and line["self_bleu"].notna().any():
                    axes[1, c].plot(x, line["self_bleu"], marker="o", ms=3, color=colors[task], label=task)
            if defaults is not None and hp in defaults:
                for ax in axes[:, c]:
                    ax.axvline(float(defaults[hp]), color="0.4", lw=0.8, ls=":")
            axes[0, c].set_title(hp)
            axes[-1, c].set_xlabel(hp)
        axes[0, 0].set_ylabel("score")
        if len(rows) > 1:
            axes[1, 0].set_ylabel("self-BLEU (lower = more diverse)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        for c in range(1, len(hparams)):  # tasks missing from the first panel
            for h, lab in zip(*axes[0, c].get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, title="task", loc="outside right upper", frameon=False)
        fig.suptitle("Sensitivity to one hyperparameter at a time (others at default)")
    return fig


def improvement_vs_difficulty(
    frame: pd.DataFrame, x: str = "base_mean", y: str = "improvement", label: str = "task"
) -> Figure:
    """RQ4 scatter: baseline score (x) vs the target's improvement (y), one labelled point per task.

    Draws error bars when ``{y}_ci_low`` / ``{y}_ci_high`` columns are present (as produced by
    ``evaluation.difficulty_vs_improvement``).
    """
    _require(frame, [x, y, label], "improvement_vs_difficulty")
    lo_col, hi_col = f"{y}_ci_low", f"{y}_ci_high"
    data = frame
    with _style():
        fig = _figure(5.0, 4.0)
        ax = fig.add_subplot()
        xs = data[x].to_numpy(dtype=float)
        ys = data[y].to_numpy(dtype=float)
        if lo_col in data.columns and hi_col in data.columns:
            yerr = [ys - data[lo_col].to_numpy(dtype=float), data[hi_col].to_numpy(dtype=float) - ys]
            ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor="0.5", elinewidth=0.8, capsize=2)
        ax.scatter(xs, ys, s=30, color=sns.color_palette("colorblind")[0], zorder=3)
        for xi, yi, name in zip(xs, ys, data[label]):
            ax.annotate(str(name), (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
        ax.margins(x=0.15)  # room for the labels of the outermost points
        ax.set_xlabel("baseline score (higher = easier)" if x == "base_mean" else x)
        ax.set_ylabel("improvement over baseline" if y == "improvement" else y)
        ax.set_title("Improvement vs task difficulty")
    return fig


def cost_vs_quality(
    frame: pd.DataFrame, x: str = "generations", y: str = "quality", hue: str = "strategy"
) -> Figure:
    """Search cost (generations spent) vs label quality, one line per strategy; a panel per task.

    Optional ``{y}_ci_low`` / ``{y}_ci_high`` columns give error bars. The x axis is logarithmic when
    costs span more than a factor of 20.
    """
    _require(frame, [x, y, hue], "cost_vs_quality")
    tasks = _tasks(frame["task"]) if "task" in frame.columns else [None]
    strategies = sorted(pd.unique(frame[hue]), key=str)
    colors = _palette(strategies)
    has_ci = f"{y}_ci_low" in frame.columns and f"{y}_ci_high" in frame.columns
    with _style():
        fig = _figure(3.2 * len(tasks) + 1.8, 3.2)
        axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
        for ax, task in zip(axes, tasks):
            sub = frame if task is None else frame.loc[frame["task"] == task]
            for s in strategies:
                pts = sub.loc[sub[hue] == s].sort_values(x)
                if pts.empty:
                    continue
                xs, ys = pts[x].to_numpy(dtype=float), pts[y].to_numpy(dtype=float)
                ax.plot(xs, ys, marker="o", ms=4, color=colors[s], label=str(s))
                if has_ci:
                    yerr = [ys - pts[f"{y}_ci_low"].to_numpy(float), pts[f"{y}_ci_high"].to_numpy(float) - ys]
                    ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor=colors[s], elinewidth=0.8, capsize=2)
            positive = frame[x].to_numpy(dtype=float)
            positive = positive[positive > 0]
            if positive.size and positive.max() / positive.min() > 20:
                ax.set_xscale("log")
            ax.set_xlabel(f"search cost ({x})")
            if task is not None:
                ax.set_title(str(task))
        axes[0].set_ylabel(f"label {y}")
        handles, labels = [], []
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, title=hue, loc="outside right upper", frameon=False)
        fig.suptitle("Search cost vs label quality")
    return fig


def loss_curve(log_history: Sequence[Mapping[str, Any]] | pd.DataFrame) -> Figure:
    """Training (and evaluation, if logged) loss vs step from ``trainer.state.log_history``.

    With an ``adapter`` column (notebook 03's ``train_log.csv``: several adapters), one line per adapter.
    """
    history = log_history if isinstance(log_history, pd.DataFrame) else pd.DataFrame(list(log_history))
    if history.empty or "step" not in history.columns:
        raise ValueError("loss_curve: log history needs 'step' entries (trainer.state.log_history)")
    series = [c for c in ("loss", "eval_loss") if c in history.columns and history[c].notna().any()]
    if not series:
        raise ValueError(f"loss_curve: no 'loss' or 'eval_loss' in log history; keys: {list(history.columns)}")
    colors = sns.color_palette("colorblind")
    runs = list(history.groupby("adapter", sort=True)) if "adapter" in history.columns else [("", history)]
    with _style():
        fig = _figure(5.0, 3.2)
        ax = fig.add_subplot()
        for j, (run, frame) in enumerate(runs):
            for k, name in enumerate(series):
                pts = frame.loc[frame[name].notna(), ["step", name]].sort_values("step")
                if pts.empty:
                    continue
                label = ("train" if name == "loss" else "eval") + (f" {run}" if run else "")
                ax.plot(pts["step"], pts[name], marker="o" if len(pts) < 30 else None, ms=3,
                        color=colors[(j * len(series) + k) % len(colors)], label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(frameon=False)
        ax.set_title("SFT loss")
    return fig


def search_vs_fresh(checked: pd.DataFrame) -> Figure:
    """Per task: mean search score against mean fresh-draw score of the labels, before and after the check.

    ``checked`` is ``label_check.frame_of`` (or its CSV). Before: every item's searched config. After:
    the searched config where it was kept, else the task's start config. Points under the diagonal
    are labels that look better on the draws they were selected on than on fresh ones.
    """
    _require(checked, ["task", "kept", "search_searched", "search_start", "heldout_searched", "heldout_start"],
             "search_vs_fresh")
    frame = checked.assign(
        search_after=checked["search_searched"].where(checked["kept"], checked["search_start"]),
        fresh_after=checked["heldout_searched"].where(checked["kept"], checked["heldout_start"]),
    )
    means = frame.groupby("task", sort=False)[["search_searched", "heldout_searched", "search_after", "fresh_after"]].mean()
    tasks = _tasks(frame["task"])
    colors = _palette(tasks)
    with _style():
        fig = _figure(5.5, 4.5)
        ax = fig.add_subplot()
        for t in tasks:
            b = means.loc[t]
            ax.annotate("", xy=(b.search_after, b.fresh_after), xytext=(b.search_searched, b.heldout_searched),
                        arrowprops={"arrowstyle": "->", "color": colors[t], "lw": 1.2})
            ax.scatter([b.search_searched], [b.heldout_searched], color=colors[t], marker="o", s=30, label=t)
            ax.scatter([b.search_after], [b.fresh_after], color=colors[t], marker="s", s=30)
        lims = [0, max(1e-3, float(np.nanmax(means.to_numpy())) * 1.05)]
        ax.plot(lims, lims, color="grey", lw=0.8, ls="--")
        ax.set(xlim=lims, ylim=lims, xlabel="search score (draws the label was chosen on)",
               ylabel="fresh-draw score (held-out draws)",
               title="Labels before (o) and after (square) the held-out check")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def stage1_curve(curve: pd.DataFrame, gates: pd.DataFrame | None = None) -> Figure:
    """Stage-1 quality on the validation rows against training steps, one line per adapter.

    ``curve`` has columns step, parse_rate, exact_match, distance, adapter (``gate.learning_curve``);
    ``gates`` (``gate.frame``) adds the per-task majority label's exact match and distance as lines.
    """
    _require(curve, ["step", "parse_rate", "exact_match", "distance", "adapter"], "stage1_curve")
    metrics = [("parse_rate", "parse rate"), ("exact_match", "exact match"), ("distance", "config distance")]
    with _style():
        fig = _figure(10, 3.2)
        axes = fig.subplots(1, 3)
        for ax, (col, label) in zip(axes, metrics):
            for name, group in curve.groupby("adapter", sort=True):
                ax.plot(group["step"], group[col], marker="o", ms=3, label=str(name))
            if gates is not None and len(gates):
                ref = {"exact_match": "majority_exact_match", "distance": "majority_distance",
                       "parse_rate": "min_parse_rate"}[col]
                ax.axhline(float(gates[ref].iloc[0]), color="black", ls="--", lw=0.9,
                           label="gate" if col == "parse_rate" else "per-task majority")
            ax.set(xlabel="training step", title=label)
            ax.legend(fontsize=7)
    return fig


def save(fig: Figure, stem: str, folder: str | os.PathLike, dpi: int = DPI) -> tuple[Path, Path]:
    """Write ``folder/stem.png`` and ``folder/stem.svg`` atomically, byte-stable across reruns.

    SVG ids come from a fixed hash salt and the date is dropped; the PNG carries no timestamp.
    Returns the two paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = folder / f"{stem}.{fmt}"
        with atomic_open(path, "wb") as fh, matplotlib.rc_context(_RC):
            fig.savefig(fh, format=fmt, dpi=dpi, metadata=metadata)
        paths.append(path)
    return paths[0], paths[1]


__all__ = [
    "config_distributions",
    "cost_vs_quality",
    "improvement_vs_difficulty",
    "loss_curve",
    "main_bars",
    "save",
    "sensitivity_curves",
]


def draw_saved(draw: Any, table: str | Path, stem: str, folder: str | Path, **kwargs: Any) -> Figure | None:
    """Read ``table`` (CSV), draw it with ``draw`` and save PNG + SVG; None with a note if it is missing or empty.

    A missing table means the notebook that writes it has not run at this profile: the figures notebook
    says so instead of failing, so the figures that can be drawn still are.
    """
    path = Path(table)
    if not path.is_file():
        print(f"{stem}: skipped, {path.name} is missing (run the notebook that writes it first)")
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a table written with no rows and no columns
        frame = pd.DataFrame()
    if frame.empty:
        print(f"{stem}: skipped, {path.name} has no rows (e.g. no HAG adapter passed the gate at this profile)")
        return None
    fig = draw(frame, **kwargs)
    save(fig, stem, folder)
    return fig
