"""Run a notebook with papermill into the profile's results folder, then make the copy diff-friendly.

``python -m hagstudy.render notebooks/01_search.ipynb --profile default`` executes the notebook with
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
from typing import Any

from hagstudy.config import Paths, load_profile, repo_root
from hagstudy.files import atomic_write

# nbformat validates with jsonschema, which imports rfc3987_syntax when installed (JupyterLab pulls it
# in) to check "iri" formats; that import compiles a grammar, ~2 s per render process here. The
# notebook schema has no format checks at all, so the renderer goes without it.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

KERNEL = "hagstudy"
_VOLATILE_CELL_KEYS = ("start_time", "end_time", "duration", "exception", "status")


def strip_volatile(nb: dict[str, Any]) -> dict[str, Any]:
    """Drop what changes on every run though the results do not: papermill times, execution timing."""
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
    from hagstudy.cache import CompletionCache

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


def write_readme(profile: str = "default") -> Path:
    """results/README.md: the main table, the figures and the run metadata, all read from files."""
    import pandas as pd

    from hagstudy.evaluation import to_markdown

    p = load_profile(profile)
    paths = p.paths
    out = paths.results / "README.md"
    meta_path = paths.results / "run_metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    lines = [
        "# Rendered results",
        "",
        "Written by `make all` (`python -m hagstudy.render --readme`) from the files in this folder; do not edit by hand.",
        "",
        f"- profile: `{p.name}`; model: `{p.model}` ({p.dtype}); evaluation seeds: {list(p.seeds)}",
        f"- commit: `{meta.get('commit', 'unknown')}`; machine: {meta.get('machine', 'unknown')}",
        "",
    ]
    tables = paths.results / "tables"
    sections = [  # (file, heading, columns or None for all): what a reader needs first comes first
        ("train_gate.csv", "Did HAG's stage 1 learn its labels? (notebook 03's gate, validation rows)",
         ["adapter", "seed", "steps", "parse_rate", "exact_match", "majority_exact_match", "distance",
          "majority_distance", "passed", "beats_majority"]),
        ("label_check.csv", "Labels kept per item after the held-out check (notebook 01)", None),
    ]
    for name, heading, columns in sections:
        if (tables / name).is_file():
            df = pd.read_csv(tables / name)
            lines += [f"## {heading}", "", to_markdown(df[columns] if columns else df, decimals=3)]
    main = paths.results / "tables" / "main.csv"
    if main.is_file():
        df = pd.read_csv(main)
        lines += ["## Main table (95 % bootstrap CIs over items and seeds)", "", to_markdown(df, decimals=3)]
    compared = ["task", "baseline", "target_mean", "base_mean", "diff", "diff_ci_low", "diff_ci_high", "p_holm",
                "p_tost_holm", "verdict"]
    for name, heading in (("relative.csv", "HAG against default and random"),
                          ("relative_strong.csv", "HAG against the strong baselines")):
        if (tables / name).is_file():
            df = pd.read_csv(tables / name)
            lines += [f"## {heading} (Holm per table; TOST at ±0.02)", "",
                      to_markdown(df[[c for c in compared if c in df.columns]], decimals=3)]
    if (tables / "headroom.csv").is_file():
        df = pd.read_csv(tables / "headroom.csv")
        lines += [f"## Headroom: item oracle - task oracle on the first {p.oracle_items} test items per task "
                  "(95 % paired CI; shown when above 0)", "", to_markdown(df, decimals=3)]
    if (tables / "ablation_gate.csv").is_file():
        df = pd.read_csv(tables / "ablation_gate.csv")
        lines += ["## Ablation arms: did each adapter learn its labels? (notebook 05)", "",
                  to_markdown(df[["method", "status", "parse_rate", "exact_match", "majority_exact_match", "distance",
                                  "majority_distance"]], decimals=3)]
    figures = sorted((paths.results / "figures").glob("*.png")) if (paths.results / "figures").is_dir() else []
    if figures:
        lines += ["## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in figures] + [""]
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


if __name__ == "__main__":
    main()
