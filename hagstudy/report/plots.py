"""Figures for the study, drawn from result tables only (never recomputing a result).

Each helper takes DataFrames (or the trainer's log history) and returns a ``matplotlib.figure.Figure``
built on the Agg canvas without pyplot, so nothing touches global figure state, nothing leaks when
many figures are made, and it works headless. In a notebook, a returned figure displays inline once
the inline backend is active (``%matplotlib inline`` or importing ``matplotlib.pyplot``).
:func:`save` writes PNG and SVG so that rerunning with the same tables gives the same bytes.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hagstudy.decoding import HYPERPARAMETERS
from hagstudy.files import atomic_open
from hagstudy.report.evaluation import difficulty_correlation, flags, method_key
from hagstudy.report.figstyle import (
    DPI,
    LINESTYLES,
    MARKERS,
    METHOD_COLORS,
    RC,
    in_order,
    joint_labels,
    legend_entries,
    method_colors,
    new_figure,
    palette,
    require,
    same_series,
    style,
)
from hagstudy.report.forest import forest
from hagstudy.report.stats import wilson_interval


def _methods(values: pd.Series) -> list[str]:
    return sorted(pd.unique(values), key=method_key)


def _metric_of(main_table: pd.DataFrame, task: str, metrics: Mapping[str, str] | None) -> str:
    """The task's metric name: the table's ``metric`` column, else ``metrics``, else the task registry."""
    if "metric" in main_table.columns:
        values = main_table.loc[main_table["task"] == task, "metric"].dropna().unique()
        if len(values):
            return str(values[0])
    if metrics is not None and task in metrics:
        return str(metrics[task])
    from hagstudy import tasks as task_registry

    try:
        return task_registry.get(str(task)).metric
    except KeyError:  # a task outside the registry (a synthetic table): a neutral label
        return "score"


def main_bars(main_table: pd.DataFrame, metrics: Mapping[str, str] | None = None, ncols: int = 3) -> Figure:
    """One facet per task (its own y axis, labelled with its metric), one bar per method, error bars = the CIs.

    Tasks score on different scales (BLEU/100 near 0.05, yes/no accuracy near 0.5), so a shared axis
    flattens the small ones. Colours come from :func:`method_colors`; one legend serves every facet. A
    method whose mean and CI equal an earlier method's on every task (zero_shot's config is the default)
    is drawn once, its legend label naming both (``default = zero_shot``).
    """
    require(main_table, ["task", "method", "mean", "ci_low", "ci_high"], "main_bars")
    tasks, methods = in_order(main_table["task"]), _methods(main_table["method"])
    rank = {m: i for i, m in enumerate(methods)}
    ordered = main_table.sort_values("method", key=lambda s: s.map(rank), kind="mergesort")
    repeats = same_series(ordered, "method", ["mean", "ci_low", "ci_high"])
    methods = [m for m in methods if m not in repeats]  # a method with another's numbers on every task: drawn once
    colors = method_colors(methods)
    ncols = max(1, min(ncols, len(tasks)))
    nrows = -(-len(tasks) // ncols)
    by_key = main_table.set_index(["task", "method"])
    subset = _subset_names(main_table, methods)
    names = {m: subset[m] + joint_labels([m], repeats)[m][len(m):] for m in methods}
    with style():
        fig = new_figure(3.0 * ncols + 2.2, 2.6 * nrows + 0.4)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, task in zip(axes, tasks):
            for j, method in enumerate(methods):
                if (task, method) not in by_key.index:
                    continue  # a method not run on this task: leave its slot empty
                row = by_key.loc[(task, method)]
                mean = float(row["mean"])
                ax.bar([j], [mean], width=0.8, color=colors[method], label=names[method],
                       hatch="///" if subset[method] != method else None, edgecolor="white", linewidth=0)
                ax.errorbar([j], [mean], yerr=[[mean - float(row["ci_low"])], [float(row["ci_high"]) - mean]],
                            fmt="none", ecolor="0.2", elinewidth=0.8, capsize=2)
            ax.set_xticks([])
            ax.set_xlim(-0.7, len(methods) - 0.3)
            ax.set_ylim(0, float(main_table.loc[main_table["task"] == task, "ci_high"].max()) * 1.08 or 1.0)
            ax.set_title(str(task))
            ax.set_ylabel(_metric_of(main_table, task, metrics))
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        handles, labels = legend_entries(axes[: len(tasks)])
        rank = {names[m]: i for i, m in enumerate(methods)}
        handles, labels = zip(*sorted(zip(handles, labels), key=lambda hl: rank[hl[1]]))
        fig.legend(handles, labels, title="method", loc="outside right upper", frameon=False)
        fig.suptitle("Score per task and method (bars: mean; whiskers: 95% CI); each task on its own scale")
    return fig


def _subset_names(main_table: pd.DataFrame, methods: Sequence[str]) -> dict[str, str]:
    """Legend names: a method scored on fewer items than its task's others (the item oracle's first 30) says
    so, and its bars are hatched, so it is not read as a like-for-like bar."""
    names = {m: m for m in methods}
    if "n_items" not in main_table.columns:
        return names
    full = main_table.groupby("task")["n_items"].transform("max")
    fewer = main_table.loc[main_table["n_items"] < full]
    for method, g in fewer.groupby("method"):
        counts = sorted(set(int(n) for n in g["n_items"]))
        names[str(method)] = f"{method} (first {counts[0]} items)" if len(counts) == 1 else f"{method} (fewer items)"
    return names


# Values that switch a hyperparameter off rather than set it: drawn apart, after a gap, labelled "off".
OFF_VALUES: dict[str, float] = {"top_k": 0.0}


_MAX_VALUE_COLUMNS = 10  # past this many distinct values a panel keeps the most common and lumps the rest


def _value_columns(values: pd.Series) -> list[float]:
    """The distinct values a panel gets a column for: all, or the most common ones when there are many."""
    counts = values.astype(float).value_counts()
    if len(counts) > _MAX_VALUE_COLUMNS:
        counts = counts.sort_index().sort_values(ascending=False, kind="mergesort").iloc[: _MAX_VALUE_COLUMNS - 1]
    return sorted(counts.index)


def config_distributions(
    configs_frame: pd.DataFrame, hyperparameters: Sequence[str] = HYPERPARAMETERS
) -> Figure:
    """Counts of each hyperparameter value per (task, source): a heatmap panel per hyperparameter.

    The configs take a handful of discrete values, so counts say more than boxes. A row is one task
    and source (e.g. the checked labels, a HAG seed, the untuned model); a cell is how many of that
    row's configs chose the value (colour: share of the row). With a ``status`` column, parse failures
    ("failed": the default config was used) are not choices: they are counted apart in a "fallback"
    column after a gap, and clamped values are counted where they were clamped to. With more than
    ten distinct values, the nine most common get columns and the rest are counted under "other".
    """
    require(configs_frame, ["task", *hyperparameters], "config_distributions")
    frame = configs_frame.copy()
    if "source" not in frame.columns:
        frame["source"] = "config"
    failed = frame["status"].astype(str).eq("failed") if "status" in frame.columns else pd.Series(False, frame.index)
    rows = list(frame.groupby(["task", "source"], sort=False).groups)
    order = {t: i for i, t in enumerate(in_order(frame["task"]))}
    rows.sort(key=lambda k: (order[k[0]], str(k[1])))
    has_fallback = bool(failed.any())
    cmap = matplotlib.colormaps["Blues"]
    panels = []
    for name in hyperparameters:
        columns = _value_columns(frame.loc[~failed, name]) if (~failed).any() else []
        other = bool((~frame.loc[~failed, name].astype(float).isin(columns)).any())
        panels.append((name, columns, other))
    widths = [len(c) + int(o) + (1.5 if has_fallback else 0) for _, c, o in panels]
    with style():
        fig = new_figure(0.42 * sum(widths) + 2.8, 0.24 * len(rows) + 1.4)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False, width_ratios=[max(w, 1) for w in widths])[0]
        for ax, (name, columns, other), width in zip(axes, panels, widths):
            labels = ["off" if v == OFF_VALUES.get(name) else f"{v:g}" for v in columns] + (["other"] if other else [])
            xs = list(range(len(labels)))
            if has_fallback:
                xs.append(len(labels) + 0.5)
                labels.append("fallback")
            for r, (task, source) in enumerate(rows):
                sel = (frame["task"] == task) & (frame["source"] == source)
                chosen = frame.loc[sel & ~failed, name].astype(float)
                counts = [int((chosen == v).sum()) for v in columns]
                if other:
                    counts.append(int((~chosen.isin(columns)).sum()))
                if has_fallback:
                    counts.append(int((sel & failed).sum()))
                total = max(int(sel.sum()), 1)
                for x, n, lab in zip(xs, counts, labels):
                    share = n / total
                    face = "0.55" if lab == "fallback" and n else cmap(0.08 + 0.92 * share) if n else "white"
                    ax.add_patch(Rectangle((x - 0.5, r - 0.5), 1, 1, facecolor=face,
                                                              edgecolor="white", lw=0.5))
                    if n:
                        ax.text(x, r, str(n), ha="center", va="center", fontsize=5,
                                color="white" if share > 0.55 else "black")
            ax.set_xlim(-0.5, max(xs, default=0) + 0.5)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xticks(xs, labels, rotation=90, fontsize=6)
            ax.set_title(name, fontsize=8)
            ax.grid(False)
            for r in range(1, len(rows)):  # a rule between tasks
                if rows[r][0] != rows[r - 1][0]:
                    ax.axhline(r - 0.5, color="0.3", lw=0.8)
        axes[0].set_yticks(range(len(rows)), [f"{t} · {s}" for t, s in rows], fontsize=6)
        fig.suptitle("Decoding hyperparameters per task and source: number of configs per value"
                     + (" (fallback: parse failed, default used)" if has_fallback else ""), fontsize=9)
    return fig


def _positions(hp: str, values: Sequence[float]) -> tuple[dict[float, float], list[float], list[str]]:
    """Evenly spaced x positions per distinct value, an "off" value last after a gap; ticks and labels."""
    distinct = sorted(set(float(v) for v in values))
    off = OFF_VALUES.get(hp)
    on = [v for v in distinct if v != off]
    pos = {v: float(i) for i, v in enumerate(on)}
    labels = [f"{v:g}" for v in on]
    if off is not None and off in distinct:
        pos[off] = len(on) + 0.5
        labels.append("off")
    return pos, [pos[v] for v in on] + ([pos[off]] if off in pos else []), labels


def sensitivity_curves(sens_frame: pd.DataFrame, defaults: Mapping[str, float] | None = None) -> Figure:
    """Score vs each hyperparameter moved alone from the default: a panel per (task, hyperparameter).

    Columns: task, hyperparameter, value, score_mean, score_ci_low, score_ci_high, optionally
    is_default and self_bleu. One row per task (its own y axis, one CI band per panel, so bands never
    overlap), one column per hyperparameter; values sit evenly spaced, and an "off" value (top_k=0)
    sits apart at the right. The default is the ringed point (``is_default``, else ``defaults``:
    hyperparameter -> value). With self_bleu, a last row shows it for every task.
    """
    require(
        sens_frame,
        ["task", "hyperparameter", "value", "score_mean", "score_ci_low", "score_ci_high"],
        "sensitivity_curves",
    )
    known = [h for h in HYPERPARAMETERS if h in set(sens_frame["hyperparameter"])]
    hparams = known + sorted(set(sens_frame["hyperparameter"]) - set(known), key=str)
    tasks = in_order(sens_frame["task"])
    colors = palette(tasks)
    bleu = "self_bleu" in sens_frame.columns and sens_frame["self_bleu"].notna().any()
    nrows = len(tasks) + (1 if bleu else 0)
    with style():
        fig = new_figure(2.5 * len(hparams) + 1.8, 1.55 * nrows + 0.6)
        axes = fig.subplots(nrows, len(hparams), squeeze=False, sharey="row")
        for c, hp in enumerate(hparams):
            sub = sens_frame.loc[sens_frame["hyperparameter"] == hp]
            pos, ticks, labels = _positions(hp, sub["value"].to_numpy(dtype=float))
            off = OFF_VALUES.get(hp)
            for r, task in enumerate(tasks):
                line = sub.loc[sub["task"] == task].assign(_x=lambda d: d["value"].astype(float).map(pos))
                line = line.sort_values("_x")
                ax = axes[r, c]
                on = line.loc[line["value"].astype(float) != off] if off is not None else line
                for part, dash in ((on, "-"), (line.loc[~line.index.isin(on.index)], "none")):
                    if part.empty:
                        continue
                    ax.plot(part["_x"], part["score_mean"], marker="o", ms=3, ls=dash, color=colors[task],
                            label=task if dash == "-" else None)
                    ax.fill_between(part["_x"], part["score_ci_low"], part["score_ci_high"], color=colors[task],
                                    alpha=0.2, lw=0)
                    if dash == "none":  # a lone point: its CI as a whisker, a band has no width
                        ax.errorbar(part["_x"], part["score_mean"],
                                    yerr=[part["score_mean"] - part["score_ci_low"],
                                          part["score_ci_high"] - part["score_mean"]],
                                    fmt="none", ecolor=colors[task], elinewidth=0.8, capsize=2)
                if "is_default" in line.columns:
                    dflt = line.loc[flags(line["is_default"])]
                elif defaults is not None and hp in defaults:
                    dflt = line.loc[np.isclose(line["value"].astype(float), float(defaults[hp]))]
                else:
                    dflt = line.iloc[0:0]
                ax.plot(dflt["_x"], dflt["score_mean"], ls="none", marker="o", ms=8, mfc="none", mec="black", color="black",
                        mew=1.0, label="default config")
                if bleu:
                    axes[-1, c].plot(on["_x"], on["self_bleu"], marker="o", ms=3, color=colors[task], label=task)
                    rest = line.loc[~line.index.isin(on.index)]
                    axes[-1, c].plot(rest["_x"], rest["self_bleu"], ls="none", marker="o", ms=3, color=colors[task])
                if c == 0:
                    ax.set_ylabel(f"{task}\nscore", fontsize=7)
            for ax in axes[:, c]:
                ax.set_xticks(ticks, labels if ax is axes[-1, c] else [""] * len(ticks))
                if off is not None and off in pos:
                    ax.axvline(pos[off] - 0.75, color="0.5", lw=0.8, ls=":")
            axes[0, c].set_title(hp)
            axes[-1, c].set_xlabel(hp)
        if bleu:
            axes[-1, 0].set_ylabel("self-BLEU\n(lower = more diverse)", fontsize=7)
        handles, labels = legend_entries(list(axes.ravel()))
        last = sorted(range(len(labels)), key=lambda i: labels[i] == "default config")  # the ring after the tasks
        fig.legend([handles[i] for i in last], [labels[i] for i in last], loc="outside right upper", frameon=False)
        items = sorted({int(n) for n in sens_frame["n_items"]}) if "n_items" in sens_frame.columns else []
        over = "" if not items else f" over {items[0]} items" if len(items) == 1 else f" over {items[0]}-{items[-1]} items"
        fig.suptitle(f"Sensitivity to one hyperparameter at a time (others at default; bands: 95% CI{over})")
    return fig


def improvement_vs_difficulty(
    frame: pd.DataFrame, x: str = "base_mean", y: str = "improvement", label: str = "task"
) -> Figure:
    """RQ4 scatter: baseline score (x) vs the target's improvement (y), one labelled point per task.

    Draws error bars when ``{y}_ci_low`` / ``{y}_ci_high`` columns are present (as produced by
    ``evaluation.difficulty_vs_improvement``).
    """
    require(frame, [x, y, label], "improvement_vs_difficulty")
    lo_col, hi_col = f"{y}_ci_low", f"{y}_ci_high"
    data = frame
    with style():
        fig = new_figure(5.0, 4.0)
        ax = fig.add_subplot()
        xs = data[x].to_numpy(dtype=float)
        ys = data[y].to_numpy(dtype=float)
        if lo_col in data.columns and hi_col in data.columns:
            yerr = [ys - data[lo_col].to_numpy(dtype=float), data[hi_col].to_numpy(dtype=float) - ys]
            ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor="0.5", elinewidth=0.8, capsize=2)
        ax.scatter(xs, ys, s=30, color=sns.color_palette("colorblind")[0], zorder=3)
        for (xi, yi, name), (dx, dy) in zip(zip(xs, ys, data[label]), _label_offsets(xs, ys)):
            ax.annotate(str(name), (xi, yi), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                        ha="left" if dx >= 0 else "right")
        ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
        ax.margins(x=0.2)  # room for the labels of the outermost points
        ax.set_xlabel("baseline score (higher = easier)" if x == "base_mean" else x)
        ax.set_ylabel("improvement over baseline" if y == "improvement" else y)
        title = "Improvement vs task difficulty"
        if {"difficulty", "improvement"} <= set(data.columns) and len(data) >= 3:
            rho, p = difficulty_correlation(data)
            title += f"\nSpearman \u03c1 = {rho:+.2f} (p = {p:.2f}, {len(data)} tasks)"
        ax.set_title(title)
    return fig


def _label_offsets(xs: np.ndarray, ys: np.ndarray, near: float = 0.08) -> list[tuple[int, int]]:
    """Label offsets (points) that keep the labels of nearby points apart: above-right first, then below,
    then to the left. Nearness is measured on axes scaled to [0, 1]."""
    span_x = float(np.ptp(xs)) or 1.0
    span_y = float(np.ptp(ys)) or 1.0
    choices = [(4, 4), (4, -11), (-4, 4), (-4, -11)]
    placed: list[tuple[float, float, tuple[int, int]]] = []
    out = []
    for xi, yi in zip(xs, ys):
        u, v = (xi - xs.min()) / span_x, (yi - ys.min()) / span_y
        taken = {o for pu, pv, o in placed if abs(pu - u) < near * 2 and abs(pv - v) < near}
        offset = next((o for o in choices if o not in taken), choices[0])
        placed.append((u, v, offset))
        out.append(offset)
    return out


def loss_curve(log_history: Sequence[Mapping[str, Any]] | pd.DataFrame) -> Figure:
    """Training (and evaluation, if logged) loss vs step from ``trainer.state.log_history``, on a log y axis.

    With an ``adapter`` column (notebook 03's ``train_log.csv``: several adapters), one panel per adapter
    (shared axes) with its train line and evaluation points in its colour and line style, and the other
    adapters' train losses faint grey behind: adapters of one hue drawn on one panel hide each other
    once their losses meet. The log scale keeps the steps after the first drop readable.
    """
    history = log_history if isinstance(log_history, pd.DataFrame) else pd.DataFrame(list(log_history))
    if history.empty or "step" not in history.columns:
        raise ValueError("loss_curve: log history needs 'step' entries (trainer.state.log_history)")
    series = [c for c in ("loss", "eval_loss") if c in history.columns and history[c].notna().any()]
    if not series:
        raise ValueError(f"loss_curve: no 'loss' or 'eval_loss' in log history; keys: {list(history.columns)}")
    runs = list(history.groupby("adapter", sort=True)) if "adapter" in history.columns else [("", history)]
    colors = method_colors([str(run) for run, _ in runs])  # an adapter is a method: its colour everywhere
    logged = history[series].to_numpy(dtype=float)
    log_y = bool((logged[~np.isnan(logged)] > 0).all())  # NaN: a row that logs something else
    with style():
        fig = new_figure(2.2 + 3.0 * len(runs), 3.2)
        axes = fig.subplots(1, len(runs), sharex=True, sharey=True, squeeze=False)[0]
        for r, (ax, (run, frame)) in enumerate(zip(axes, runs)):
            for other, rest in runs:
                if other != run and "loss" in series:
                    pts = rest.loc[rest["loss"].notna()].sort_values("step")
                    ax.plot(pts["step"], pts["loss"], color="0.82", lw=0.7, zorder=1)
            for k, name in enumerate(series):
                pts = frame.loc[frame[name].notna(), ["step", name]].sort_values("step")
                if pts.empty:
                    continue
                color = colors[str(run)] if run else sns.color_palette("colorblind")[k]
                ax.plot(pts["step"], pts[name], color=color, ls=LINESTYLES[r % len(LINESTYLES)] if name == "loss" else ":",
                        lw=1.2 if name == "loss" else 0.9, marker=None if name == "loss" else MARKERS[r % len(MARKERS)],
                        ms=5, label=("train" if name == "loss" else "eval") + (f" {run}" if run else ""), zorder=3)
            if log_y:
                ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_title(str(run) if run else "SFT loss", fontsize=8)
            ax.legend(frameon=False, fontsize=6)
        axes[0].set_ylabel("loss (log scale)" if log_y else "loss")
        if len(runs) > 1:
            fig.suptitle("SFT loss per adapter (grey: the other adapters' train loss)", fontsize=9)
    return fig


def search_vs_fresh(checked: pd.DataFrame) -> Figure:
    """Per task: mean search score against mean fresh-draw score of the labels, before and after the check.

    ``checked`` is ``label_check.frame_of`` (or its CSV). Before: every item's searched config. After:
    the searched config where it was kept, else the task's start config. Points under the diagonal
    are labels that look better on the draws they were selected on than on fresh ones.
    """
    require(checked, ["task", "kept", "search_searched", "search_start", "heldout_searched", "heldout_start"],
             "search_vs_fresh")
    frame = checked.assign(
        search_after=checked["search_searched"].where(checked["kept"], checked["search_start"]),
        fresh_after=checked["heldout_searched"].where(checked["kept"], checked["heldout_start"]),
    )
    means = frame.groupby("task", sort=False)[["search_searched", "heldout_searched", "search_after", "fresh_after"]].mean()
    tasks = in_order(frame["task"])
    colors = palette(tasks)
    with style():
        fig = new_figure(5.5, 4.5)
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


def _validation_rows(curve: pd.DataFrame, gates: pd.DataFrame | None) -> dict[str, float]:
    """Validation rows per adapter behind each rate: the curve's ``n``, else the gate's ``n_validation``."""
    if "n" in curve.columns:
        return {str(a): float(g["n"].iloc[0]) for a, g in curve.groupby("adapter")}
    if gates is not None and {"adapter", "n_validation"} <= set(gates.columns):
        return {str(a): float(n) for a, n in zip(gates["adapter"], gates["n_validation"])}
    return {}


def stage1_curve(curve: pd.DataFrame, gates: pd.DataFrame | None = None) -> Figure:
    """Stage-1 quality on the validation rows against training steps, one line per adapter.

    ``curve`` has columns step, parse_rate, exact_match, distance, adapter (``gate.learning_curve``);
    ``gates`` (``gate.frame``) adds the per-task majority label's exact match and distance as lines and
    the number of validation rows, from which parse rate and exact match get Wilson 95 % CIs (a share of
    n rows; the adapters are dodged sideways so their whiskers do not overlap). A ``selected`` column
    rings each adapter's snapshot that ``train.select`` picked (the one 04 uses). Adapters differ in
    colour, line style and marker.
    """
    require(curve, ["step", "parse_rate", "exact_match", "distance", "adapter"], "stage1_curve")
    metrics = [("parse_rate", "parse rate"), ("exact_match", "exact match"), ("distance", "config distance")]
    n_rows = _validation_rows(curve, gates)
    groups = list(curve.groupby("adapter", sort=True))
    colors = method_colors([str(name) for name, _ in groups])
    span = float(curve["step"].max() - curve["step"].min()) or 1.0
    with style():
        fig = new_figure(10.5, 3.4)
        axes = fig.subplots(1, 3)
        for ax, (col, label) in zip(axes, metrics):
            for k, (name, group) in enumerate(groups):
                c, n = colors[str(name)], n_rows.get(str(name))
                x = group["step"].to_numpy(dtype=float) + (k - (len(groups) - 1) / 2) * 0.012 * span
                y = group[col].to_numpy(dtype=float)
                ax.plot(x, y, marker=MARKERS[k % len(MARKERS)], ms=3.5, color=c, ls=LINESTYLES[k % len(LINESTYLES)],
                        label=str(name))
                if col != "distance" and n:
                    low, high = wilson_interval(y, n)
                    ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", ecolor=c, elinewidth=0.8, capsize=2)
                if "selected" in group.columns:  # the snapshot the selection rule picked: ringed
                    chosen = flags(group["selected"]).to_numpy()
                    ax.scatter(x[chosen], y[chosen], s=110, facecolors="none", edgecolors=c, linewidths=1.6, zorder=4)
            if gates is not None and len(gates):
                ref = {"exact_match": "majority_exact_match", "distance": "majority_distance",
                       "parse_rate": "min_parse_rate"}[col]
                ax.axhline(float(gates[ref].iloc[0]), color="black", ls=":" if col == "parse_rate" else "--", lw=0.9,
                           label="gate" if col == "parse_rate" else "per-task majority")
            if "selected" in curve.columns:
                ax.scatter([], [], s=110, facecolors="none", edgecolors="0.3", linewidths=1.6, label="selected snapshot")
            rows = sorted({int(n) for n in n_rows.values()})
            ci = f" (Wilson 95% CI, n = {rows[0] if len(rows) == 1 else f'{rows[0]}-{rows[-1]}'})" if rows else ""
            ax.set(xlabel="training step", title=label + (ci if col != "distance" else ""))
            ax.legend(fontsize=6)
    return fig


def save(fig: Figure, stem: str, folder: str | os.PathLike, dpi: int = DPI) -> tuple[Path, Path]:
    """Write ``folder/stem.png`` and ``folder/stem.svg`` atomically, byte-stable across reruns.

    SVG ids are numbered in order of definition (``stable_svg_ids``) and the date is dropped; the PNG
    carries no timestamp. Returns the two paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = folder / f"{stem}.{fmt}"
        buf = io.BytesIO()
        with matplotlib.rc_context(RC):
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
        data = stable_svg_ids(buf.getvalue()) if fmt == "svg" else buf.getvalue()
        with atomic_open(path, "wb") as fh:
            fh.write(data)
        paths.append(path)
    return paths[0], paths[1]


_SVG_ID = re.compile(rb'id="([a-z])([0-9a-f]{10})"')


def stable_svg_ids(svg: bytes) -> bytes:
    """Matplotlib's SVG ids renumbered in order of definition (``p0``, ``m1``, ...).

    It names clip paths and markers by a hash of their coordinates at full float precision, while the
    file prints them rounded to 6 decimals: two runs that draw the same picture could differ in their ids
    alone (seen on a clip box of notebook 06's config_distributions). Numbering removes that hidden input.
    """
    mapping: dict[bytes, bytes] = {}
    for m in _SVG_ID.finditer(svg):
        old = m.group(1) + m.group(2)
        mapping.setdefault(old, m.group(1) + str(len(mapping)).encode())
    if not mapping:
        return svg
    refs = re.compile(rb'(?<=[#"])(' + b"|".join(re.escape(k) for k in mapping) + rb')(?=[")])')
    return refs.sub(lambda m: mapping[m.group(1)], svg)


__all__ = [
    "METHOD_COLORS",
    "config_distributions",
    "forest",
    "improvement_vs_difficulty",
    "loss_curve",
    "main_bars",
    "method_colors",
    "save",
    "sensitivity_curves",
    "stable_svg_ids",
]


def read_optional(table: str | Path) -> pd.DataFrame | None:
    """A table, or None (with a note) when it is missing or has no rows: its notebook has not run here."""
    path = Path(table)
    if not path.is_file():
        print(f"{path.name} is missing (run the notebook that writes it first)")
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a table written with no rows and no columns
        frame = pd.DataFrame()
    if frame.empty:
        print(f"{path.name} has no rows (e.g. no HAG adapter passed the gate at this profile)")
        return None
    return frame


def draw_saved(draw: Any, table: str | Path | Sequence[str | Path], stem: str, folder: str | Path,
               **kwargs: Any) -> Figure | None:
    """Read ``table`` (CSV; several are concatenated), draw it with ``draw`` and save PNG + SVG; None with a
    note if none of them is there with rows.

    A missing table means the notebook that writes it has not run at this profile: the figures notebook
    says so instead of failing, so the figures that can be drawn still are.
    """
    paths = [table] if isinstance(table, (str, Path)) else list(table)
    frames = [f for f in (read_optional(p) for p in paths) if f is not None]
    if not frames:
        print(f"{stem}: skipped")
        return None
    fig = draw(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], **kwargs)
    save(fig, stem, folder)
    return fig
