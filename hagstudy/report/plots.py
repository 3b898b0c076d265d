"""Figures for the study, drawn from result tables only (never recomputing a result).

Each helper takes DataFrames (or the trainer's log history) and returns a ``matplotlib.figure.Figure``
built on the Agg canvas without pyplot, so nothing touches global figure state, nothing leaks when
many figures are made, and it works headless. In a notebook, a returned figure displays inline once
the inline backend is active (``%matplotlib inline`` or importing ``matplotlib.pyplot``).
:func:`save` writes PNG and SVG so that rerunning with the same tables gives the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hagstudy import registry
from hagstudy.decoding import HYPERPARAMETERS
from hagstudy.files import atomic_open
from hagstudy.report.evaluation import difficulty_correlation, flags, method_key

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


# One colour per method in every figure, from the registry: "hag" is the same blue in main.png as in any
# ablation figure; HAG and its seeds are shades of one hue.
METHOD_COLORS: dict[str, str] = registry.colours()
_MIN_DISTANCE = 0.12  # RGB distance under which two colours read as the same in a legend


def _rgb(color: Any) -> np.ndarray:
    return np.asarray(mcolors.to_rgb(color))


def _fallback_colors() -> list[str]:
    """Spare colours for names outside METHOD_COLORS, none close to a fixed one (tab20, tab20b, tab20c)."""
    fixed = [_rgb(c) for c in METHOD_COLORS.values()]
    spare: list[str] = []
    for cmap in ("tab20", "tab20b", "tab20c"):
        for rgb in matplotlib.colormaps[cmap].colors:
            c = np.asarray(rgb[:3])
            if all(np.linalg.norm(c - f) >= _MIN_DISTANCE for f in fixed) and all(
                np.linalg.norm(c - _rgb(s)) >= _MIN_DISTANCE for s in spare
            ):
                spare.append(mcolors.to_hex(c))
    return spare


_FALLBACK: list[str] = _fallback_colors()


def method_colors(names: Sequence[str]) -> dict[str, str]:
    """Colour per name: METHOD_COLORS where fixed, else a spare colour picked by a stable hash of the name.

    A spare is never one of the fixed colours, and two unknown names in one figure never share one
    (the later probes on); with more unknown names than spares, an error says so.
    """
    out = {n: METHOD_COLORS[n] for n in names if n in METHOD_COLORS}
    used = set(out.values())
    for name in sorted({n for n in names if n not in METHOD_COLORS}, key=str):
        start = int(hashlib.sha256(str(name).encode()).hexdigest(), 16) % len(_FALLBACK)
        for k in range(len(_FALLBACK)):
            color = _FALLBACK[(start + k) % len(_FALLBACK)]
            if color not in used:
                break
        else:
            raise ValueError(f"method_colors: more than {len(_FALLBACK)} methods without a fixed colour: give them one in hagstudy.registry")
        out[name] = color
        used.add(color)
    return out


def _palette(names: Sequence[str]) -> dict[str, Any]:
    """Colours for things that are not methods (tasks, search strategies, sources): distinct, by position."""
    return dict(zip(names, sns.color_palette("colorblind", n_colors=max(len(names), 1))))


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
    flattens the small ones. Colours come from :func:`method_colors`; one legend serves every facet.
    """
    _require(main_table, ["task", "method", "mean", "ci_low", "ci_high"], "main_bars")
    tasks, methods = _tasks(main_table["task"]), _methods(main_table["method"])
    colors = method_colors(methods)
    ncols = max(1, min(ncols, len(tasks)))
    nrows = -(-len(tasks) // ncols)
    by_key = main_table.set_index(["task", "method"])
    names = _subset_names(main_table, methods)
    with _style():
        fig = _figure(3.0 * ncols + 2.2, 2.6 * nrows + 0.4)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, task in zip(axes, tasks):
            for j, method in enumerate(methods):
                if (task, method) not in by_key.index:
                    continue  # a method not run on this task: leave its slot empty
                row = by_key.loc[(task, method)]
                mean = float(row["mean"])
                ax.bar([j], [mean], width=0.8, color=colors[method], label=names[method],
                       hatch="///" if names[method] != method else None, edgecolor="white", linewidth=0)
                ax.errorbar([j], [mean], yerr=[[mean - float(row["ci_low"])], [float(row["ci_high"]) - mean]],
                            fmt="none", ecolor="0.2", elinewidth=0.8, capsize=2)
            ax.set_xticks([])
            ax.set_xlim(-0.7, len(methods) - 0.3)
            ax.set_ylim(0, float(main_table.loc[main_table["task"] == task, "ci_high"].max()) * 1.08 or 1.0)
            ax.set_title(str(task))
            ax.set_ylabel(_metric_of(main_table, task, metrics))
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        handles, labels = _legend_entries(axes[: len(tasks)])
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


def _legend_entries(axes: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """Legend handles and labels over several panels, each label once, in first-seen order."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    return handles, labels


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
    _require(configs_frame, ["task", *hyperparameters], "config_distributions")
    frame = configs_frame.copy()
    if "source" not in frame.columns:
        frame["source"] = "config"
    failed = frame["status"].astype(str).eq("failed") if "status" in frame.columns else pd.Series(False, frame.index)
    rows = list(frame.groupby(["task", "source"], sort=False).groups)
    order = {t: i for i, t in enumerate(_tasks(frame["task"]))}
    rows.sort(key=lambda k: (order[k[0]], str(k[1])))
    has_fallback = bool(failed.any())
    cmap = matplotlib.colormaps["Blues"]
    panels = []
    for name in hyperparameters:
        columns = _value_columns(frame.loc[~failed, name]) if (~failed).any() else []
        other = bool((~frame.loc[~failed, name].astype(float).isin(columns)).any())
        panels.append((name, columns, other))
    widths = [len(c) + int(o) + (1.5 if has_fallback else 0) for _, c, o in panels]
    with _style():
        fig = _figure(0.42 * sum(widths) + 2.8, 0.24 * len(rows) + 1.4)
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
    _require(
        sens_frame,
        ["task", "hyperparameter", "value", "score_mean", "score_ci_low", "score_ci_high"],
        "sensitivity_curves",
    )
    known = [h for h in HYPERPARAMETERS if h in set(sens_frame["hyperparameter"])]
    hparams = known + sorted(set(sens_frame["hyperparameter"]) - set(known), key=str)
    tasks = _tasks(sens_frame["task"])
    colors = _palette(tasks)
    bleu = "self_bleu" in sens_frame.columns and sens_frame["self_bleu"].notna().any()
    nrows = len(tasks) + (1 if bleu else 0)
    with _style():
        fig = _figure(2.5 * len(hparams) + 1.8, 1.55 * nrows + 0.6)
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
                for part, style in ((on, "-"), (line.loc[~line.index.isin(on.index)], "none")):
                    if part.empty:
                        continue
                    ax.plot(part["_x"], part["score_mean"], marker="o", ms=3, ls=style, color=colors[task],
                            label=task if style == "-" else None)
                    ax.fill_between(part["_x"], part["score_ci_low"], part["score_ci_high"], color=colors[task],
                                    alpha=0.2, lw=0)
                    if style == "none":  # a lone point: its CI as a whisker, a band has no width
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
                ax.plot(dflt["_x"], dflt["score_mean"], ls="none", marker="o", ms=8, mfc="none", mec="black",
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
        handles, labels = _legend_entries(list(axes.ravel()))
        last = sorted(range(len(labels)), key=lambda i: labels[i] == "default config")  # the ring after the tasks
        fig.legend([handles[i] for i in last], [labels[i] for i in last], loc="outside right upper", frameon=False)
        fig.suptitle("Sensitivity to one hyperparameter at a time (others at default; bands: 95% CI)")
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
    """Training (and evaluation, if logged) loss vs step from ``trainer.state.log_history``.

    With an ``adapter`` column (notebook 03's ``train_log.csv``: several adapters), one line per adapter.
    """
    history = log_history if isinstance(log_history, pd.DataFrame) else pd.DataFrame(list(log_history))
    if history.empty or "step" not in history.columns:
        raise ValueError("loss_curve: log history needs 'step' entries (trainer.state.log_history)")
    series = [c for c in ("loss", "eval_loss") if c in history.columns and history[c].notna().any()]
    if not series:
        raise ValueError(f"loss_curve: no 'loss' or 'eval_loss' in log history; keys: {list(history.columns)}")
    runs = list(history.groupby("adapter", sort=True)) if "adapter" in history.columns else [("", history)]
    colors = method_colors([str(run) for run, _ in runs])  # an adapter is a method: its colour everywhere
    with _style():
        fig = _figure(5.0, 3.2)
        ax = fig.add_subplot()
        for run, frame in runs:
            for k, name in enumerate(series):
                pts = frame.loc[frame[name].notna(), ["step", name]].sort_values("step")
                if pts.empty:
                    continue
                label = ("train" if name == "loss" else "eval") + (f" {run}" if run else "")
                color = colors[str(run)] if run else sns.color_palette("colorblind")[k]
                ax.plot(pts["step"], pts[name], marker="o" if len(pts) < 30 else None, ms=3, color=color,
                        ls="-" if name == "loss" else "--", label=label)
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
    ``gates`` (``gate.frame``) adds the per-task majority label's exact match and distance as lines. A
    ``selected`` column rings each adapter's snapshot that ``train.select`` picked (the one 04 uses).
    """
    _require(curve, ["step", "parse_rate", "exact_match", "distance", "adapter"], "stage1_curve")
    metrics = [("parse_rate", "parse rate"), ("exact_match", "exact match"), ("distance", "config distance")]
    with _style():
        fig = _figure(10, 3.2)
        axes = fig.subplots(1, 3)
        for ax, (col, label) in zip(axes, metrics):
            groups = list(curve.groupby("adapter", sort=True))
            colors = method_colors([str(name) for name, _ in groups])
            for name, group in groups:
                ax.plot(group["step"], group[col], marker="o", ms=3, color=colors[str(name)], label=str(name))
                if "selected" in group.columns:  # the snapshot the selection rule picked: ringed
                    chosen = group.loc[flags(group["selected"])]
                    ax.scatter(chosen["step"], chosen[col], s=90, facecolors="none", edgecolors=colors[str(name)],
                               linewidths=1.4, zorder=4)
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
