"""Run a notebook with papermill into the profile's results folder, then make the copy diff-friendly.

``python -m hagstudy.report.render notebooks/01_search.ipynb --profile default`` executes the notebook with
the ``hagstudy`` kernel, strips papermill's volatile metadata (timestamps, durations) so a rerun with
the same numbers diffs empty, writes an HTML copy beside it (``--no-html``: leave that to
``--readme``) and records the wall time and the number of generations it decoded (cache misses) in
``run_metadata.json``. ``--readme`` brings every HTML copy up to date and writes ``results/README.md``
from the tables and that metadata. ``make all`` renders HTML once, in the ``--readme`` step: each
nbconvert start costs seconds, which matter when a rerun comes entirely from the caches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagstudy import stages
from hagstudy.config import Paths, load_profile, repo_root
from hagstudy.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

# nbformat validates with jsonschema, which imports rfc3987_syntax when installed (JupyterLab pulls it
# in) to check "iri" formats; that import compiles a grammar, ~2 s per render process here. The
# notebook schema has no format checks at all, so the renderer goes without it.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

KERNEL = "hagstudy"
_VOLATILE_CELL_KEYS = ("start_time", "end_time", "duration", "exception", "status")


def strip_volatile(nb: dict[str, Any]) -> dict[str, Any]:
    """Drop what changes on every run though the results do not: papermill times, execution timing, and
    the random id papermill gives its injected-parameters cell (it gets a fixed one)."""
    meta = nb.get("metadata", {})
    pm = meta.get("papermill")
    if isinstance(pm, dict):
        for key in (*_VOLATILE_CELL_KEYS, "input_path", "output_path", "environment_variables", "version"):
            pm.pop(key, None)
    for cell in nb.get("cells", []):
        cmeta = cell.get("metadata", {})
        cpm = cmeta.get("papermill")
        if isinstance(cpm, dict):
            for key in _VOLATILE_CELL_KEYS:
                cpm.pop(key, None)
        cmeta.pop("execution", None)
        if "injected-parameters" in cmeta.get("tags", []):
            cell["id"] = "injected-parameters"
        for out in cell.get("outputs", []):
            out.get("metadata", {}).pop("execution", None)
    return nb


def execute(notebook: Path, profile: str, kernel: str = KERNEL, html: bool = True) -> Path:
    """Execute ``notebook`` at ``profile`` into that profile's results folder; return the rendered path."""
    import papermill

    paths = Paths.for_profile(profile)
    out_dir = paths.results
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / notebook.name
    tmp = out_dir / f".{notebook.stem}.running.ipynb"
    cached_before = _completions(paths)
    start = time.time()
    papermill.execute_notebook(
        str(notebook), str(tmp), parameters={"profile": profile}, kernel_name=kernel, cwd=str(repo_root()),
        progress_bar=False,
    )
    wall = time.time() - start
    nb = strip_volatile(json.loads(tmp.read_text(encoding="utf-8")))
    atomic_write(target, json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.unlink()
    decoded = _completions(paths) - cached_before
    if html:
        write_html(target)
    record_run(out_dir, notebook.stem, wall, decoded)
    print(f"{notebook.name}: {wall:.0f} s, {decoded} generations decoded -> {target}")
    return target


def write_html(notebook: Path) -> Path:
    """The rendered notebook as a standalone HTML page beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.reads(notebook.read_text(encoding="utf-8"), as_version=4))
    return atomic_write(notebook.with_suffix(".html"), body)


def update_html(results: Path) -> list[Path]:
    """Write the HTML copy of every rendered notebook whose copy is missing or older than it."""
    stale = [nb for nb in sorted(results.glob("[0-9][0-9]_*.ipynb"))
             if not nb.with_suffix(".html").is_file() or nb.with_suffix(".html").stat().st_mtime < nb.stat().st_mtime]
    return [write_html(nb) for nb in stale]


def _completions(paths: Paths) -> int:
    """Rows in the completion cache: their growth during a notebook is what it decoded."""
    from hagstudy.engine.cache import CompletionCache

    db = paths.cache / "completions.sqlite"
    if not db.is_file():
        return 0
    with CompletionCache(db) as cache:
        return len(cache)


def record_run(out_dir: Path, name: str, wall_s: float, decoded: int) -> None:
    path = out_dir / "run_metadata.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    meta.setdefault("wall_s", {})[name] = round(wall_s, 1)
    meta.setdefault("decoded", {})[name] = decoded
    meta["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or 'cpu'}"
    meta["commit"] = _git_commit()
    atomic_write(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=repo_root())
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


# A caption per figure stem (the notebooks' names), in the order the README shows them; a figure without one
# says so in the README. ``{name}`` fields are facts read from the tables (:func:`caption_facts`), never typed in.
FIGURE_CAPTIONS: dict[str, str] = {
    "forest": "The main result: HAG's mean minus each baseline's, one panel per task on its own scale, with the "
              "item-paired 95 % bootstrap CI ({n_items} test items x {n_seeds} seeds per task). Filled marker: "
              "significant after Holm (each of the two tables is its own family); grey: equivalent within the "
              "margin by TOST (shaded band); hollow: neither, which is not a tie. Grey panels: tasks at chance; a "
              "baseline with the same numbers and verdict as another on every task is drawn once (`a = b`).",
    "main": "Mean score per method ({n_items} test items x {n_seeds} seeds per task), one panel per task on its own "
            "y axis (labelled with the task's metric); whiskers: 95 % bootstrap CIs (items, then seeds). A method "
            "with the same mean and CI as another on every task is drawn once, its legend label naming both. `hag` "
            "is the pooled adapters, `hag_seed*` the single adapters (shades of one blue); hatched bars (the item "
            "oracle) cover the first items of the test split only, as their legend says.",
    "stage1_curve": "Stage-1 quality on the {n_validation} validation rows against training steps, one line "
                    "(colour, line style, marker) per adapter: parse rate and exact match of the whole config with "
                    "Wilson 95 % binomial CIs, and the mean config distance (parsed rows; no CI). Ringed: the "
                    "snapshot `train.select` chose, which notebook 04 uses; dotted: the gate's parse rate; dashed: the "
                    "per-task majority label's exact match and distance.",
    "config_distributions": "How many configs chose each hyperparameter value, per task and source (checked labels "
                            "from notebook 01, HAG's adapters, the untuned model). Colour: share of the row. "
                            "*fallback*: the config did not parse and the default was used, so it is not a choice; "
                            "*other*: values outside the most common nine.",
    "sensitivity": "Score (one row per task) and self-BLEU (last row, lower = more diverse) when one hyperparameter "
                   "moves from the default while the others stay at it. The 95 % CI bands rest on only "
                   "{sensitivity_items} items per point, so they are wide: read this as where to search, not as a "
                   "result. The ringed point is the default config; top_k *off* (top_k = 0) is drawn apart on the right.",
    "improvement_vs_difficulty": "RQ4: HAG's improvement over the default config (95 % CI) against the default "
                                 "config's score (higher = easier task), one point per task; the title gives "
                                 "Spearman's rho between difficulty and improvement ({n_tasks} points: little power).",
    "search_vs_fresh": "Per task, the labels' mean score on the draws they were selected on (x) against fresh draws "
                       "(y), before (o) and after (square) the held-out check; points under the diagonal are "
                       "labels that looked better than they are.",
    "loss_curve": "SFT training loss (line) and evaluation loss (points) against steps on a log scale, one panel per "
                  "adapter with the other adapters' training loss in grey behind it; logged values, no CIs.",
}


class _Facts(dict):
    """Caption facts; a fact whose table is missing reads "?" rather than breaking the README."""

    def __missing__(self, key: str) -> str:
        return "?"


def _span(values: Any) -> str:
    distinct = sorted({int(v) for v in values})
    return str(distinct[0]) if len(distinct) == 1 else f"{distinct[0]}-{distinct[-1]}"


def caption_facts(main: pd.DataFrame | None, sensitivity: pd.DataFrame | None,
                  gates: pd.DataFrame | None) -> dict[str, str]:
    """The numbers the captions quote (items, seeds, validation rows, tasks), from the tables that hold them."""
    facts: dict[str, str] = _Facts()
    if main is not None and {"task", "method", "n_items", "n_seeds"} <= set(main.columns):
        from hagstudy.registry import HAG

        own = main.loc[main["method"] == HAG.name]
        own = own if not own.empty else main
        facts.update(n_items=_span(own["n_items"]), n_seeds=_span(own["n_seeds"]), n_tasks=str(main["task"].nunique()))
    if sensitivity is not None and "n_items" in sensitivity.columns:
        facts["sensitivity_items"] = _span(sensitivity["n_items"])
    if gates is not None and "n_validation" in gates.columns:
        facts["n_validation"] = _span(gates["n_validation"])
    return facts


def caption(stem: str, facts: dict[str, str]) -> str:
    """A figure's caption with its facts filled in, or a note that it has none."""
    if stem not in FIGURE_CAPTIONS:
        return "(no caption: add one to `hagstudy.report.render.FIGURE_CAPTIONS`)"
    return FIGURE_CAPTIONS[stem].format_map(facts if isinstance(facts, _Facts) else _Facts(facts))


def parse_rate_table(parse_rates: pd.DataFrame) -> pd.DataFrame:
    """Stage-1 outcome counts per task and method with shares: ok, clamped into range, failed (default used)."""

    missing = [c for c in ("task", "method", "ok", "clamped", "failed") if c not in parse_rates.columns]
    if missing:
        raise ValueError(f"parse_rates.csv: missing column(s) {missing}; got {list(parse_rates.columns)}")
    out = parse_rates[["task", "method", "ok", "clamped", "failed"]].copy()
    out["n"] = out[["ok", "clamped", "failed"]].sum(axis=1)
    n = out["n"].where(out["n"] > 0)
    out["parsed_share"] = (out["ok"] + out["clamped"]) / n
    out["fallback_share"] = out["failed"] / n
    return out[["task", "method", "n", "ok", "clamped", "failed", "parsed_share", "fallback_share"]]


def config_counts(hag_configs: pd.DataFrame, top: int = 3, prefix: str | None = None) -> pd.DataFrame:
    """The configs HAG wrote per task and adapter: the ``top`` most frequent, with counts and shares.

    Rows of methods not starting with ``prefix`` (HAG's name by default), such as the zero-shot baselines, are
    left out; their parse outcomes are in :func:`parse_rate_table`. ``distinct`` counts every different config the adapter wrote.
    """
    import pandas as pd  # noqa: F811

    from hagstudy.decoding import HYPERPARAMETERS
    from hagstudy.registry import HAG

    prefix = HAG.name if prefix is None else prefix
    missing = [c for c in ("task", "method", *HYPERPARAMETERS) if c not in hag_configs.columns]
    if missing:
        raise ValueError(f"hag_configs.csv: missing column(s) {missing}; got {list(hag_configs.columns)}")
    frame = hag_configs.loc[hag_configs["method"].astype(str).str.startswith(prefix)].copy()
    frame["config"] = [
        f"T={t:g} p={p:g} k={int(k)} rp={r:g}"
        for t, p, k, r in frame[list(HYPERPARAMETERS)].itertuples(index=False, name=None)
    ]
    rows = []
    for (task, method), group in frame.groupby(["task", "method"], sort=False):
        counts = group["config"].value_counts()
        counts = counts.sort_index().sort_values(ascending=False, kind="mergesort")  # ties: alphabetical
        for config, n in counts.iloc[:top].items():
            rows.append((task, method, config, int(n), n / len(group), len(counts), len(group)))
    return pd.DataFrame(rows, columns=["task", "method", "config", "count", "share", "distinct", "n"])


def _read_optional(tables: Path, table: stages.Handoff) -> pd.DataFrame | None:
    """A result table, or None when its notebook has not written it or wrote no rows (an empty file:
    e.g. difficulty.csv when no adapter passed the gate)."""
    import pandas as pd  # noqa: F811

    path = tables / table.name
    return pd.read_csv(path) if path.is_file() and path.read_text().strip() else None


def _read_declared(tables: Path, stem: str) -> pd.DataFrame | None:
    """A table another analysis adds to the manifest (the confirmatory comparison, the minimum detectable
    effects), looked up by stem so that the README uses it once it is declared and written, and goes without it
    until then."""
    declared = {h.stem: h for h in stages.handoffs() if h.label.startswith("tables/")}
    return _read_optional(tables, declared[stem]) if stem in declared else None


def _answer_lines(tables: Path) -> list[str]:
    """``findings.answer`` from confirmatory.csv, mde.csv, relative_strong.csv, headroom.csv and at_chance.csv
    (those present)."""
    from hagstudy.report import findings

    strong, headroom, at_chance, confirmatory, mde = (
        _read_optional(tables, t)
        for t in (stages.RELATIVE_STRONG, stages.HEADROOM, stages.AT_CHANCE, stages.CONFIRMATORY, stages.MDE)
    )
    return findings.answer(strong, headroom, at_chance, confirmatory=confirmatory, mde=mde)


def _findings_lines(tables: Path, target: str = "HAG") -> list[str]:
    """The findings sentences from relative*.csv, at_chance.csv, train_gate.csv and headroom.csv."""
    from hagstudy.report import findings

    relative, strong, at_chance, gates, headroom, difficulty = (
        _read_optional(tables, t) for t in (stages.RELATIVE, stages.RELATIVE_STRONG, stages.AT_CHANCE, stages.TRAIN_GATE,
                                             stages.HEADROOM, stages.DIFFICULTY)
    )
    out: list[str] = []
    if relative is not None:
        gate_map = None
        if gates is not None and {"adapter", "passed", "reason"} <= set(gates.columns):
            gate_map = findings.gate_outcomes(gates)
        out += findings.lines(relative, strong, target=target, at_chance=at_chance, gates=gate_map)
    if headroom is not None:
        out += findings.headroom_lines(headroom)
    if difficulty is not None and not difficulty.empty:
        out.append(findings.difficulty_line(difficulty, target=target))
    return out


def write_readme(profile: str = "default") -> Path:
    """results/README.md: findings, tables, captioned figures and the run metadata, all read from files."""

    from hagstudy.report import summary
    from hagstudy.report.evaluation import sort_canonical, to_markdown
    from hagstudy.tasks import selected

    p = load_profile(profile)
    paths = p.paths
    out = paths.results / "README.md"
    meta_path = paths.results / "run_metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    tables = paths.results / "tables"
    main, at_chance, strong, headroom, sensitivity, gates = (
        _read_optional(tables, t) for t in (stages.MAIN, stages.AT_CHANCE, stages.RELATIVE_STRONG, stages.HEADROOM,
                                             stages.SENSITIVITY, stages.TRAIN_GATE))
    lines = ["# Rendered results", ""]
    if main is not None:
        confirmatory, mde = (_read_declared(tables, stem) for stem in ("confirmatory", "mde"))
        lines += [" ".join(summary.opening(main, at_chance, confirmatory=confirmatory, mde=mde, headroom=headroom,
                                           strong=strong)), ""]
    lines += [
        "Written by `make all` (`python -m hagstudy.report.render --readme`) from the files in this folder; do not edit by hand.",
        "",
        f"- profile: `{p.name}`; model: `{p.model}` ({p.dtype}); evaluation seeds: {list(p.seeds)}",
        f"- commit: `{meta.get('commit', 'unknown')}`; machine: {meta.get('machine', 'unknown')}",
        "",
    ]
    answer = _answer_lines(tables)
    if answer:
        lines += ["## The answer, per group of baselines", "", "Does choosing the decoding config per query beat the best "
                  "fixed config? Generated from the tables below (Holm-corrected verdicts; a tie only where TOST shows it).", ""]
        lines += [f"- {line}" for line in answer] + [""]
    found = _findings_lines(tables)
    if found:
        lines += ["## Findings", "", "Generated from the tables below (`hagstudy.report.findings`), grouped by task; "
                  "tasks with a loss first.", ""]
        for task, said in summary.by_task(found, list(selected(p)) + [str(t) for t in (main["task"] if main is not None else [])]):
            lines += [f"**{task or 'Across tasks'}**", ""] + [f"- {line}" for line in said] + [""]
    sections = [  # (file, heading, columns or None for all): what a reader needs first comes first
        (stages.TRAIN_GATE, "Did HAG's stage 1 learn its labels? (notebook 03's gate, validation rows)",
         ["adapter", "seed", "steps", "selected_step", "parse_rate", "exact_match", "majority_exact_match", "distance",
          "majority_distance", "passed", "beats_majority"]),
        (stages.LABEL_CHECK, "Labels kept per item after the held-out check (notebook 01)", None),
    ]
    for table, heading, columns in sections:
        if (df := _read_optional(tables, table)) is not None:
            lines += [f"## {heading}", "", to_markdown(df[[c for c in columns if c in df.columns]] if columns else df, decimals=3)]
    if (df := _read_optional(tables, stages.MAIN)) is not None:
        lines += ["## Main table (95 % bootstrap CIs over items and seeds)", "", to_markdown(df, decimals=3)]
    compared = ["task", "baseline", "same_as", "target_mean", "base_mean", "diff", "diff_ci_low", "diff_ci_high",
                "largest_gain", "p_holm", "margin", "p_tost_holm", "verdict"]
    for table, heading in ((stages.CONFIRMATORY, "The confirmatory family: HAG against the task oracle and greedy on "
                            "the tasks above chance (declared before the run; Holm within it)"),
                           (stages.RELATIVE, "HAG against default and random (exploratory; Holm within the table)"),
                           (stages.RELATIVE_STRONG, "HAG against the strong baselines (exploratory; Holm within the table)"),
                           (stages.RELATIVE_ITEM_ORACLE, "HAG against the item oracle, on its items (exploratory)")):
        if (df := _read_optional(tables, table)) is not None:
            lines += [f"## {heading}", "", "Permutation p over items; TOST against each task's margin (10 % of its "
                      "best fixed config's mean, at least 0.01); `same_as`: baselines with identical scores, tested once.",
                      "", to_markdown(df[[c for c in compared if c in df.columns]], decimals=3)]
    if (df := _read_optional(tables, stages.MDE)) is not None:
        lines += ["## What each confirmatory test could detect (MDE at 80 % power, Bonferroni level)", "",
                  to_markdown(df, decimals=3)]
    if (df := _read_optional(tables, stages.HEADROOM)) is not None:
        lines += [f"## Headroom: item oracle - task oracle on the first {p.oracle_items} test items of each task above "
                  f"chance ({p.oracle_draws} selection draws; 95 % paired CI, permutation p and TOST, Holm across tasks)",
                  "", to_markdown(df, decimals=3)]
    if (df := _read_optional(tables, stages.ABLATION_GATE)) is not None:
        lines += ["## Ablation arms: did each adapter learn its labels? (notebook 05)", "",
                  to_markdown(df[["method", "status", "parse_rate", "exact_match", "majority_exact_match", "distance",
                                  "majority_distance"]], decimals=3)]
    lines += _ablation_sections(tables)
    if (df := _read_optional(tables, stages.PARSE_RATES)) is not None:
        lines += ["## Stage 1: did the generated configs parse? (notebook 04, test queries)", "",
                  "*ok*: parsed and in range; *clamped*: parsed, a value moved into its range; *failed*: no config "
                  "parsed, so the default config was used (a fallback, counted here, not a choice).", "",
                  to_markdown(sort_canonical(parse_rate_table(df),
                                             task_order=list(selected(p))), decimals=3)]
    if (df := _read_optional(tables, stages.HAG_CONFIGS)) is not None:
        lines += ["## Configs HAG wrote per task (the three most frequent per adapter)", "",
                  "*distinct*: how many different configs the adapter wrote for the task's *n* test queries; "
                  "T = temperature, p = top_p, k = top_k (0 = off), rp = repetition_penalty.", "",
                  to_markdown(config_counts(df), decimals=3)]
    if (df := _read_optional(tables, stages.ABLATION_SEARCH)) is not None:
        lines += ["## Search strategies: cost and label quality (notebook 05)", "",
                  to_markdown(df, decimals=3)]
    figures = sorted((paths.results / "figures").glob("*.png")) if (paths.results / "figures").is_dir() else []
    known = list(FIGURE_CAPTIONS)  # the main figure first, then in the captions' order, unknown ones last
    figures.sort(key=lambda f: (known.index(f.stem) if f.stem in known else len(known), f.stem))
    if figures:
        facts = caption_facts(main, sensitivity, gates)
        lines += ["## Figures", ""]
        for f in figures:
            lines += [f"![{f.stem}](figures/{f.name})", "", f"*Figure `{f.stem}`.* {caption(f.stem, facts)}", ""]
    if meta.get("wall_s"):
        wall, decoded = meta["wall_s"], meta.get("decoded", {})
        lines += [
            "## Wall time per notebook (this machine)",
            "",
            "From each notebook's last execution. *Decoded* counts the generations it ran (completion cache"
            " misses); 0 means everything came from the caches, so its seconds are a rerun's, not a cold run's"
            " (the repository README's Timing section has the cold run's).",
            "",
            "| notebook | seconds | decoded |",
            "|---|---:|---:|",
        ]
        lines += [f"| {k} | {v:.0f} | {decoded.get(k, 'n/a')} |" for k, v in sorted(wall.items())]
        lines += [f"| total | {sum(wall.values()):.0f} | {sum(decoded.values()) if decoded else 'n/a'} |", ""]
    notebooks = sorted(paths.results.glob("[0-9][0-9]_*.html"))
    if notebooks:
        lines += ["## Rendered notebooks", ""] + [f"- [{n.stem}]({n.name}) ([ipynb]({n.stem}.ipynb))" for n in notebooks]
    atomic_write(out, "\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--profile", default=os.environ.get("HAGSTUDY_PROFILE", "default"))
    parser.add_argument("--kernel", default=KERNEL)
    parser.add_argument("--no-html", action="store_true")
    parser.add_argument("--readme", action="store_true", help="write the profile's results README")
    args = parser.parse_args()
    from hagstudy import tasks

    tasks.selected(load_profile(args.profile))  # fail fast on a bad profile name, value or task name
    for nb in args.notebooks:
        execute(nb, args.profile, kernel=args.kernel, html=not args.no_html)
    if args.readme:
        for page in update_html(Paths.for_profile(args.profile).results):
            print(f"wrote {page}")
        print(f"wrote {write_readme(args.profile)}")


def _ablation_sections(tables: Path) -> list[str]:
    """Notebook 05's readings of HAG and its baselines: the label arms, stage-1 consistency, cost, grid edges."""
    from hagstudy import registry
    from hagstudy.report.evaluation import flags, to_markdown

    lines: list[str] = []
    if (df := _read_optional(tables, stages.ABLATION_VS_HAG)) is not None and "variant" in df.columns:
        arms = df.loc[df["variant"].isin(registry.names(registry.LABEL_ARMS))]
        if len(arms):
            lines += ["## Label arms against HAG (notebook 05; exploratory, Holm within the ablation table)", "",
                      "Labels shuffled within each task, denoised on fresh draws, or kept without the check's margin; "
                      "an arm that did not learn its labels (gate above) has no rows.", "",
                      to_markdown(arms[[c for c in ("variant", "task", "target_mean", "base_mean", "diff", "diff_ci_low",
                                                    "diff_ci_high", "p_holm", "verdict") if c in arms.columns]], decimals=3)]
    if (df := _read_optional(tables, stages.CONSISTENCY)) is not None and "variation" in df.columns:
        varied = df.loc[df["variation"] != "original"].pivot_table(index=["method", "variation"], columns="task",
                                                                   values="changed", sort=False).reset_index()
        lines += ["## Stage-1 consistency: share of items whose config changes when the query is reworded (notebook 05)",
                  "", to_markdown(varied, decimals=2)]
    if (df := _read_optional(tables, stages.OVERHEAD)) is not None:
        lines += ["## What each method costs (notebook 05, from the run's own counts)", "", to_markdown(df, decimals=1)]
    if (df := _read_optional(tables, stages.GRID_EDGES)) is not None and "grid_edge" in df.columns:
        edges = df.loc[flags(df["grid_edge"])]
        lines += ["## Tuned baselines at their grid's edge, re-tuned on an extended grid (notebook 05)", "",
                  "*diff*: the new choice minus the original on the test split, with its paired 95 % CI (empty when "
                  "the choice did not move).", "",
                  to_markdown(edges[[c for c in ("task", "method", "moved", "search_original", "search_extended",
                                                 "test_original", "test_extended", "diff", "diff_ci_low", "diff_ci_high")
                                     if c in edges.columns]], decimals=3)]
    return lines


if __name__ == "__main__":
    main()

