"""The main figure: HAG minus each baseline per task, with its paired CI and its verdict (a forest plot).

Bars of mean scores make a reader compare two bars and guess whether their CIs overlap enough; the
question is the paired difference, so that is what is drawn: one row per baseline, one panel per task
(each on its own scale: tasks score on different metrics), a zero line, and the verdict of the table
(Holm-corrected, TOST for ties) in the marker's fill, so the figure says no more than the tests do.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from hagstudy.report.evaluation import flags
from hagstudy.report.figstyle import (
    MARKERS,
    in_order,
    joint_labels,
    method_colors,
    new_figure,
    require,
    same_series,
    style,
)

COLUMNS = ("task", "baseline", "diff", "diff_ci_low", "diff_ci_high", "verdict")
SIGNIFICANT = ("better", "worse")  # verdicts that passed the Holm-corrected test: a filled marker
EQUIVALENT = "equivalent"  # TOST showed a tie within the margin: a grey marker
VERDICT_KEY = (("significant after Holm (better / worse)", "full"),
               ("not significant, no tie shown", "none"),
               ("equivalent within the margin (TOST)", "grey"))


def _repeats(relative: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, baseline) -> the baseline it repeats there: a baseline whose difference, CI and verdict equal an
    earlier one's on every task. A table with a ``same_as`` column has merged its duplicates already (the kept
    row names the ones it stands for, ``contrasts.same_scores``): nothing repeats, every row is drawn."""
    out: dict[tuple[str, str], str] = {}
    if "same_as" not in relative.columns:
        coded = relative.assign(verdict_code=pd.factorize(relative["verdict"].astype(str))[0])
        # the verdict too: default (relative.csv) and zero_shot (relative_strong.csv) share numbers but
        # not their Holm family, so their verdicts can differ, and then both are drawn
        copies = same_series(coded, "baseline", ["diff", "diff_ci_low", "diff_ci_high", "verdict_code"])
        for task, baseline in relative[["task", "baseline"]].itertuples(index=False):
            if str(baseline) in copies:
                out[(str(task), str(baseline))] = copies[str(baseline)]
    return out


def _chance_tasks(at_chance: pd.DataFrame | None) -> set[str]:
    if at_chance is None or at_chance.empty:
        return set()
    require(at_chance, ["task", "at_chance"], "forest: at_chance")
    return set(at_chance.loc[flags(at_chance["at_chance"]), "task"].astype(str))


def _marker_face(verdict: str, color: Any) -> Any:
    if verdict in SIGNIFICANT:
        return color
    return "0.65" if verdict == EQUIVALENT else "white"


def forest(relative: pd.DataFrame, at_chance: pd.DataFrame | None = None, ncols: int = 3,
           target: str = "HAG") -> Any:
    """HAG - baseline per task: a dot at the difference, a segment over its paired 95 % CI, zero dashed.

    ``relative`` has the columns of ``relative*.csv`` (task, baseline, diff, diff_ci_low, diff_ci_high,
    verdict; optionally family, same_as, margin). A baseline that repeats another (the same numbers and verdict
    on every task) is drawn once, labelled ``first = copy``; rows merged upstream keep their ``same_as`` names
    in the panel's label. Filled marker: significant
    after Holm; grey: equivalent within the margin (TOST), whose band is shaded when a ``margin``
    column is given; hollow: neither. Tasks ``at_chance`` marks get a grey panel and say so in the title.
    """
    require(relative, COLUMNS, "forest")
    frame = relative.assign(task=relative["task"].astype(str), baseline=relative["baseline"].astype(str))
    if frame.duplicated(["task", "baseline"]).any():
        dup = frame.loc[frame.duplicated(["task", "baseline"]), ["task", "baseline"]].iloc[0].tolist()
        raise ValueError(f"forest: (task, baseline) {dup} appears twice: concatenate tables without overlap")
    repeats = _repeats(frame)
    if "family" in frame.columns:  # baselines of one family next to each other, families in table order
        rank = {f: i for i, f in enumerate(in_order(frame["family"].astype(str)))}
        order = sorted(in_order(frame["baseline"]), key=lambda b: rank[str(frame.loc[frame["baseline"] == b, "family"].iloc[0])])
    else:
        order = in_order(frame["baseline"])
    drawn = [b for b in order if not all((t, b) in repeats for t in frame.loc[frame["baseline"] == b, "task"])]
    colors = method_colors(drawn)
    markers = {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(drawn)}
    labels = joint_labels(drawn, {c: f for (_, c), f in repeats.items()})
    y = {b: i for i, b in enumerate(drawn)}
    chance = _chance_tasks(at_chance)
    tasks = in_order(frame["task"])
    ncols = max(1, min(ncols, len(tasks)))
    nrows = -(-len(tasks) // ncols)
    with style():
        fig = new_figure(3.3 * ncols + 2.6, 0.28 * len(drawn) * nrows + 1.3 * nrows + 0.5)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, task in zip(axes, tasks):
            rows = frame.loc[(frame["task"] == task)
                             & ~frame["baseline"].map(lambda b, t=task: (t, b) in repeats)]
            rows = rows.loc[rows["baseline"].isin(y)]
            grey = task in chance
            alpha = 0.45 if grey else 1.0
            if "margin" in rows.columns and rows["margin"].notna().any():
                m = float(rows["margin"].dropna().iloc[0])
                ax.axvspan(-m, m, color="0.85", lw=0, zorder=0)
            ax.axvline(0.0, color="0.25", lw=0.9, ls="--", zorder=1)
            ys = [y[b] for b in rows["baseline"]]
            ax.hlines(ys, rows["diff_ci_low"].astype(float), rows["diff_ci_high"].astype(float),
                      colors=[colors[b] for b in rows["baseline"]], lw=1.8, alpha=alpha, zorder=2)
            for r in rows.itertuples(index=False):
                c = colors[r.baseline]
                ax.plot([float(r.diff)], [y[r.baseline]], ls="none", marker=markers[r.baseline], ms=6, mec=c, mew=1.3,
                        mfc=_marker_face(str(r.verdict), c), alpha=alpha, zorder=3)
            here = {b: b for b in drawn}
            for (t, copy), first in repeats.items():
                if t == task and first in here:
                    here[first] += f" = {copy}"
            for r in rows.itertuples(index=False):  # merged duplicates (same_as): "greedy = task_oracle" here
                merged = getattr(r, "same_as", None)
                if isinstance(merged, str) and merged.strip():
                    here[r.baseline] += " = " + " = ".join(m.strip() for m in merged.split(";"))
            ax.set_yticks(range(len(drawn)), [here[b] for b in drawn], fontsize=6)
            ax.set_ylim(len(drawn) - 0.5, -0.5)
            ax.tick_params(axis="x", labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.set_xlabel(f"{target} \u2212 baseline (paired 95% CI)", fontsize=7)
            ax.set_title(f"{task} (at chance)" if grey else task, fontsize=8, color="0.45" if grey else "black")
            if grey:
                ax.set_facecolor("0.93")
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        handles = [Line2D([], [], ls="-", lw=1.8, marker=markers[b], color=colors[b], mfc=colors[b], label=labels[b])
                   for b in drawn]
        handles += [Line2D([], [], ls="none", marker="o", color="0.3", mfc={"full": "0.3", "none": "white"}.get(f, "0.65"),
                           label=text) for text, f in VERDICT_KEY]
        fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=7, title="baseline; verdict")
        fig.suptitle(f"{target} minus each baseline, per task (right of the dashed line: {target} scores higher)"
                     + ("; grey panels: task at chance" if chance & set(tasks) else ""), fontsize=9)
    return fig
