"""Grid-edge checks: does a tuned baseline's answer move when its grid is extended past the edge it chose?

A setting tuned on a grid can only be as good as the grid: min-p chose its largest value (0.3) on half the
tasks, EDT never starts below T0 = 0.7 (so it cannot approach greedy), top-nσ can choose its smallest n (0.5),
and the task oracle's top_p can sit at the coarse grid's smallest value. For each (task, method) whose choice sits at that edge, the grid is extended
past it (``extension``) and re-tuned on the search split as notebook 01 tuned it (``oracles.tune_adaptive``: the
same items and draws, so the original choice comes from the completion cache). The candidates are the original
choice first, then the extensions: the other original settings lost to it on these very draws in notebook 01,
so they cannot win now, and ``pick_best`` gives a tie to the first candidate (the nearest to it), so an
extension moves the choice only when it scores strictly better. When the choice moves, the new and the original
choice are scored on the test split with the evaluation seeds (``methods.fixed``) and compared paired over items
(``contrasts.paired_contrast``, the study's one paired path, ``N_BOOT`` resamples). Choices inside their grid are listed, not re-tuned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from hagstudy.decoding import DecodingConfig
from hagstudy.method import oracles
from hagstudy.methods import fixed
from hagstudy.registry import EDT, MIN_P, TASK_ORACLE, TOP_NSIGMA
from hagstudy.report.contrasts import paired_contrast
from hagstudy.report.stats import N_BOOT, validate_scores
from hagstudy.scoring import Engine, Task

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item

MIN_P_EXTENSION = (0.4, 0.5)  # past min-p's largest setting, 0.3
EDT_T0_EXTENSION = (0.1, 0.2, 0.3, 0.4, 0.5)  # below EDT's smallest T0, 0.7, at theta = 1.0
EDT_THETA = 1.0
TOP_P_EXTENSION = (0.2, 0.3, 0.4)  # below the coarse grid's smallest top_p (0.5 by default)
TOP_NSIGMA_EXTENSION = (0.1, 0.25)  # below top-nσ's smallest n, 0.5 (a smaller n keeps fewer tokens)
METHODS = (MIN_P.name, EDT.name, TOP_NSIGMA.name, TASK_ORACLE.name)
COLUMNS = ["task", "method", "grid_edge", "original", "extended", "moved", "search_original", "search_extended",
           "test_original", "test_extended", "diff", "diff_ci_low", "diff_ci_high"]


def at_edge(method: str, chosen: DecodingConfig, top_p_grid: Sequence[float]) -> bool:
    """Whether ``chosen`` sits at the edge its extension goes past: min-p's largest value, EDT's smallest T0,
    the task oracle's smallest top_p of ``top_p_grid`` (the coarse search grid's)."""
    if method == MIN_P.name:
        return chosen.min_p >= max(c.min_p for c in oracles.ADAPTIVE[method])
    if method == EDT.name:
        return chosen.temperature <= min(c.temperature for c in oracles.ADAPTIVE[method])
    if method == TOP_NSIGMA.name:
        return chosen.top_nsigma <= min(c.top_nsigma for c in oracles.ADAPTIVE[method])
    if method == TASK_ORACLE.name:
        return chosen.top_p <= min(top_p_grid)
    raise ValueError(f"grid_edges: no grid extension for method {method!r}; known: {list(METHODS)}")


def extension(method: str, chosen: DecodingConfig) -> tuple[DecodingConfig, ...]:
    """The settings added past the edge, each ``chosen`` with one value changed (min_p; T0 at theta 1; top_p)."""
    if method == MIN_P.name:
        return tuple(chosen.with_(min_p=v) for v in MIN_P_EXTENSION)
    if method == EDT.name:
        return tuple(chosen.with_(temperature=t0, edt_theta=EDT_THETA) for t0 in EDT_T0_EXTENSION)
    if method == TOP_NSIGMA.name:
        return tuple(chosen.with_(top_nsigma=v) for v in TOP_NSIGMA_EXTENSION)
    if method == TASK_ORACLE.name:
        return tuple(chosen.with_(top_p=v) for v in TOP_P_EXTENSION)
    raise ValueError(f"grid_edges: no grid extension for method {method!r}; known: {list(METHODS)}")


def tuned_for(task: str, adaptive: Mapping[str, Mapping[str, DecodingConfig]], oracle: Mapping[str, DecodingConfig]
              ) -> dict[str, DecodingConfig]:
    """The task's tuned min-p, EDT, top-nσ and task-oracle configs, from ``read_adaptive`` and ``read_oracles``."""
    samplers = (MIN_P.name, EDT.name, TOP_NSIGMA.name)
    missing = [m for m in samplers if task not in adaptive.get(m, {})]
    missing += [] if task in oracle else [TASK_ORACLE.name]
    if missing:
        raise ValueError(f"grid_edges: task {task!r} has no tuned config for {missing}: run notebook 01_search for it")
    return {**{m: adaptive[m][task] for m in samplers}, TASK_ORACLE.name: oracle[task]}


def check(
    engine: Engine,
    task: Task,
    search_items: Sequence[Item],
    test_items: Sequence[Item],
    draws: int,
    seeds: Sequence[int],
    tuned: Mapping[str, DecodingConfig],
    top_p_grid: Sequence[float],
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """One row per method of ``tuned`` (``COLUMNS``): at its grid's edge or not, and if so the re-tuned choice
    on the extended grid (search means of both) and, when it moved, both on the test split with the paired
    difference extended - original and its percentile CI. Rows not at an edge keep only the original's
    search mean; rows that did not move have no test columns (NaN)."""
    rows = []
    for method, chosen in tuned.items():
        edge = at_edge(method, chosen, top_p_grid)
        grid = (chosen, *extension(method, chosen)) if edge else (chosen,)
        best, table = oracles.tune_adaptive(engine, task, search_items, draws, methods={method: grid})
        means = {c: m for c, m in zip(table["config"], table["search_mean"])}
        new = best[method] if edge else chosen
        row = {"task": task.name, "method": method, "grid_edge": edge, "original": chosen.to_json(),
               "extended": new.to_json() if edge else "", "moved": new.identity() != chosen.identity(),
               "search_original": means[chosen.to_json()], "search_extended": means[new.to_json()] if edge else np.nan,
               "test_original": np.nan, "test_extended": np.nan, "diff": np.nan, "diff_ci_low": np.nan,
               "diff_ci_high": np.nan}
        if row["moved"]:
            scores = pd.concat([fixed(engine, task, test_items, seeds, chosen, "original"),
                                fixed(engine, task, test_items, seeds, new, "extended")], ignore_index=True)
            c = paired_contrast(validate_scores(scores), "extended", "original", task.name, n_boot=n_boot)
            row.update(test_original=c["base_mean"], test_extended=c["target_mean"], diff=c["diff"],
                       diff_ci_low=c["diff_ci_low"], diff_ci_high=c["diff_ci_high"])
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def setting(method: str, config_json: str) -> str:
    """The value a method's grid varies, for a sentence: ``min_p 0.3``, ``T0 0.7``, ``top_p 0.5``."""
    cfg = DecodingConfig.from_json(config_json)
    if method == MIN_P.name:
        return f"min_p {cfg.min_p:g}"
    if method == EDT.name:
        return f"T0 {cfg.temperature:g} (theta {cfg.edt_theta:g})"
    if method == TOP_NSIGMA.name:
        return f"n {cfg.top_nsigma:g}"
    return f"top_p {cfg.top_p:g}"


def sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per row of ``check``'s table, as notebook 05 prints them."""
    out = []
    for r in table.itertuples():
        was = setting(r.method, r.original)
        if not r.grid_edge:
            out.append(f"{r.task} / {r.method}: {was} is inside its grid (search {r.search_original:.3f}); not extended.")
        elif not r.moved:
            out.append(f"{r.task} / {r.method}: {was} is at its grid's edge; the extended grid keeps it "
                       f"(search {r.search_original:.3f}, best extension no better).")
        else:
            shown = "shown" if r.diff_ci_low > 0 or r.diff_ci_high < 0 else "not shown"
            out.append(f"{r.task} / {r.method}: {was} is at its grid's edge; the extended grid moves it to "
                       f"{setting(r.method, r.extended)} (search {r.search_original:.3f} -> {r.search_extended:.3f}); "
                       f"on the test split {r.test_original:.3f} -> {r.test_extended:.3f}, difference {r.diff:+.3f} "
                       f"[{r.diff_ci_low:+.3f}, {r.diff_ci_high:+.3f}] ({shown}).")
    return out
