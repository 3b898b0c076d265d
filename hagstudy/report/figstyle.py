"""What every figure shares: the look, the colours, and one series per distinct set of numbers.

``plots`` and ``forest`` draw with these, so a method has one colour in every figure, two series a reader
must tell apart never get colours closer than :data:`MIN_DISTANCE`, and two methods that scored the same
(identical configs give identical scores) are drawn once, under a label that names both.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from typing import Any, Iterator, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hagstudy import registry

DPI = 150
RC: dict[str, Any] = {
    "svg.fonttype": "path",  # glyphs as paths: no dependence on the viewer's fonts
    "path.simplify": True,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Seaborn look for the figures made inside, without changing global rcParams."""
    with matplotlib.rc_context(RC), sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, so nothing global changes and nothing leaks."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail early, naming the figure and the missing columns, rather than deep inside matplotlib."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what}: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{what}: the table is empty")


def in_order(values: pd.Series) -> list[Any]:
    """Distinct values in the order of the table (evaluation's tables already come in the study's task order)."""
    return list(pd.unique(values))


# One colour per method in every figure, from the registry: "hag" is the same blue in main.png as in any
# ablation figure; HAG and its seeds are shades of one hue.
METHOD_COLORS: dict[str, str] = registry.colours()
MIN_DISTANCE = 0.12  # RGB distance under which two colours read as the same in a legend


def rgb(color: Any) -> np.ndarray:
    return np.asarray(mcolors.to_rgb(color))


def too_close(colors: Mapping[str, Any], minimum: float = MIN_DISTANCE) -> list[tuple[str, str, float]]:
    """Pairs of series whose colours are under ``minimum`` apart (RGB distance): what a legend cannot separate."""
    return [(a, b, round(float(np.linalg.norm(rgb(ca) - rgb(cb))), 3))
            for (a, ca), (b, cb) in itertools.combinations(colors.items(), 2)
            if np.linalg.norm(rgb(ca) - rgb(cb)) < minimum]


def _fallback_colors() -> list[str]:
    """Spare colours for names outside METHOD_COLORS, none close to a fixed one (tab20, tab20b, tab20c)."""
    fixed = [rgb(c) for c in METHOD_COLORS.values()]
    spare: list[str] = []
    for cmap in ("tab20", "tab20b", "tab20c"):
        for color in matplotlib.colormaps[cmap].colors:
            c = np.asarray(color[:3])
            if all(np.linalg.norm(c - f) >= MIN_DISTANCE for f in fixed) and all(
                np.linalg.norm(c - rgb(s)) >= MIN_DISTANCE for s in spare
            ):
                spare.append(mcolors.to_hex(c))
    return spare


FALLBACK: list[str] = _fallback_colors()


def method_colors(names: Sequence[str]) -> dict[str, str]:
    """Colour per name: METHOD_COLORS where fixed, else a spare colour picked by a stable hash of the name.

    A spare is never one of the fixed colours, and two unknown names in one figure never share one
    (the later probes on); with more unknown names than spares, an error says so.
    """
    out = {n: METHOD_COLORS[n] for n in names if n in METHOD_COLORS}
    used = set(out.values())
    for name in sorted({n for n in names if n not in METHOD_COLORS}, key=str):
        start = int(hashlib.sha256(str(name).encode()).hexdigest(), 16) % len(FALLBACK)
        for k in range(len(FALLBACK)):
            color = FALLBACK[(start + k) % len(FALLBACK)]
            if color not in used:
                break
        else:
            raise ValueError(f"method_colors: more than {len(FALLBACK)} methods without a fixed colour: give them one in hagstudy.registry")
        out[name] = color
        used.add(color)
    return out


def palette(names: Sequence[str]) -> dict[str, Any]:
    """Colours for things that are not methods (tasks, search strategies, sources): distinct, by position."""
    return dict(zip(names, sns.color_palette("colorblind", n_colors=max(len(names), 1))))


# Line styles and markers that separate series of one hue (a method's adapters) where colour alone cannot.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def legend_entries(axes: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """Legend handles and labels over several panels, each label once, in first-seen order."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    return handles, labels


def same_series(frame: pd.DataFrame, series: str, values: Sequence[str], over: str = "task") -> dict[str, str]:
    """Each series that repeats an earlier one -> that earlier one (table order), else nothing.

    A series repeats another when its ``values`` equal the other's in every ``over`` group where either
    has a row (and they share at least one): zero_shot's untuned config is the model's default, so
    its scores are the default's to the last digit, and drawing it again only adds a bar to tell apart.
    """
    require(frame, [series, over, *values], "same_series")
    table = {name: {k: tuple(np.round(g[list(values)].to_numpy(dtype=float), 9).ravel())
                    for k, g in rows.groupby(over, sort=False)}
             for name, rows in frame.groupby(series, sort=False)}
    out: dict[str, str] = {}
    kept: list[Any] = []
    for name in in_order(frame[series]):
        first = next((k for k in kept if table[k] == table[name]), None)
        if first is None:
            kept.append(name)
        else:
            out[str(name)] = str(first)
    return out


def joint_labels(names: Sequence[str], repeats: Mapping[str, str]) -> dict[str, str]:
    """Legend label per drawn series: its own name, followed by ``= other`` for each series it stands for."""
    out = {str(n): str(n) for n in names if str(n) not in repeats}
    for copy, first in repeats.items():
        if first in out:
            out[first] += f" = {copy}"
    return out
