"""What the notebooks hand each other: every file one notebook writes and a later one (or the README) reads.

Each hand-off is declared once, here, with its home (the run's ``tables/`` or ``figures/``, or the
profile's ``artifacts/<run>/``), its path there and its format: a typed reader and writer (CSV table <->
DataFrame, JSON <-> dict/list, JSON lines <-> list of dicts). ``STAGES`` lists, per notebook, what it reads
and writes, so the chain's inputs can be checked (tests/test_stages.py) and listed (docs/stages.md).
Modules with a richer view of a file (``gate.read`` -> Gates, ``oracles.read_oracles`` -> configs) take
its path from here; their bytes are the formats' bytes.

Under ``make lab`` ($HAGSTUDY_OUTPUT set) a notebook writes tables and figures into the lab folder only,
and a reader falls back to the run's committed outputs (``results/`` for the default profile) when the
lab has not written the file yet: exploring starts from the committed run. Artifacts stay the run's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import pandas as pd

from hagstudy.config import Paths
from hagstudy.files import atomic_write

TABLES, FIGURES, ARTIFACTS = "tables", "figures", "artifacts"


class HasPaths(Protocol):
    @property
    def paths(self) -> Paths: ...


Where = Paths | HasPaths  # a study.Run, a Profile or their Paths


def paths_of(where: Where) -> Paths:
    return where if isinstance(where, Paths) else where.paths


# ------------------------------------------------------------------------------------------------ formats


def rounded(df: pd.DataFrame, decimals: int) -> pd.DataFrame:
    """Round float columns and turn -0.0 into 0.0, so equal numbers always print identically."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(decimals) + 0.0
    return out


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Refuse a table without the columns its reader needs, naming the table, the missing columns and what it has
    (a table from an older run, or the wrong file), rather than failing later on a KeyError."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; got {list(frame.columns)}")


def write_table(df: pd.DataFrame, path: str | Path, decimals: int = 4) -> Path:
    """Write ``df`` as CSV with fixed float formatting, atomically (temp file + os.replace).

    Same numbers give a byte-identical file (fixed decimals, no index, "\\n" line endings), and an
    interrupted run never leaves a half-written table behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = rounded(df, decimals).to_csv(index=False, float_format=f"%.{decimals}f", lineterminator="\n")
    atomic_write(path, text)
    return path


@dataclass(frozen=True)
class Format:
    """How a hand-off is stored: ``kind`` names the Python type its reader returns and its writer takes."""

    kind: str

    def read(self, path: Path, **kwargs: Any) -> Any:
        if self.kind in ("table", "frame"):
            return pd.read_csv(path, **kwargs)
        if self.kind == "json":
            return json.loads(path.read_text())
        if self.kind == "jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if self.kind == "figure":
            return path.read_bytes()
        raise TypeError(f"{path}: a {self.kind} is not read as one file")

    def write(self, path: Path, data: Any, **kwargs: Any) -> Path:
        if self.kind == "table":  # a committed table: fixed decimals (byte-stable across reruns)
            return write_table(data, path, **kwargs)
        if self.kind == "frame":  # a working frame: pandas' own float format (full precision)
            return atomic_write(path, data.to_csv(index=False))
        if self.kind == "json":
            return atomic_write(path, json.dumps(data, indent=2) + "\n")
        if self.kind == "jsonl":
            return atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in data))
        raise TypeError(f"{path}: a {self.kind} is written by its own module (plots.save, search, training)")


TABLE = Format("table")  # DataFrame <-> CSV, floats to 4 decimals
FRAME = Format("frame")  # DataFrame <-> CSV, floats as pandas writes them
JSON = Format("json")  # dict or list <-> JSON, indent 2
JSONL = Format("jsonl")  # list of dicts <-> JSON lines
FIGURE = Format("figure")  # PNG (+ SVG beside it), written by plots.save; read as bytes
FOLDER = Format("folder")  # a folder another module lays out (search logs per task, adapters)


# ----------------------------------------------------------------------------------------------- hand-offs


@dataclass(frozen=True)
class Handoff:
    """One file (or folder) a notebook writes for a later one: ``home``/``parts`` in its run, in ``fmt``."""

    home: str
    parts: tuple[str, ...]
    fmt: Format
    about: str = ""

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def stem(self) -> str:
        """The name without its suffix (a figure's stem for ``plots.save``)."""
        return Path(self.name).stem

    @property
    def label(self) -> str:
        """``tables/main.csv`` (in the run's results folder), ``artifacts/<run>/search/`` (a folder)."""
        home = "artifacts/<run>" if self.home == ARTIFACTS else self.home
        return "/".join((home, *self.parts)) + ("/" if self.fmt is FOLDER else "")

    def _under(self, results: Path, paths: Paths) -> Path:
        if self.home == ARTIFACTS:
            return paths.artifacts.joinpath(*self.parts)
        return results.joinpath(self.home, *self.parts)

    def path(self, where: Where) -> Path:
        """Where this run writes it (the lab folder under ``make lab``); its folder is made."""
        paths = paths_of(where)
        path = self._under(paths.results, paths)
        (path if self.fmt is FOLDER else path.parent).mkdir(parents=True, exist_ok=True)
        return path

    def find(self, where: Where) -> Path:
        """Where a reader finds it: this run's file, else (under ``make lab``) the committed run's.

        When neither exists, this run's path: the error then names where the writing notebook puts it.
        """
        paths = paths_of(where)
        own = self._under(paths.results, paths)
        if own.exists() or self.home == ARTIFACTS:
            return own
        committed = self._under(paths.committed, paths)
        return committed if committed.exists() else own

    def read(self, where: Where, **kwargs: Any) -> Any:
        return self.fmt.read(self.find(where), **kwargs)

    def write(self, where: Where, data: Any, **kwargs: Any) -> Path:
        return self.fmt.write(self.path(where), data, **kwargs)


def table(name: str, about: str = "") -> Handoff:
    return Handoff(TABLES, (name,), TABLE, about)


def figure(stem: str, about: str = "") -> Handoff:
    return Handoff(FIGURES, (f"{stem}.png",), FIGURE, about)


def artifact(*parts: str, fmt: Format, about: str = "") -> Handoff:
    return Handoff(ARTIFACTS, parts, fmt, about)


# 00_preliminary
SENSITIVITY = table("sensitivity.csv", "score and Self-BLEU per task, hyperparameter and value")
SENSITIVITY_INFLUENCE = table("sensitivity_influence.csv", "each hyperparameter's score spread per task")
ZERO_SHOT_CONFIGS = table("zero_shot_configs.csv", "configs the untuned model writes, parsed")
# 01_search
SEARCH = artifact("search", fmt=FOLDER, about="per task: evaluations, labels, pruning, budget, checked labels")
ORACLES = artifact("search", "oracles.json", fmt=JSON, about="task oracle per task, best single config ('*')")
ADAPTIVE = artifact("search", "adaptive.json", fmt=JSON, about="min_p, edt and top_nsigma tuned per task")
SEARCH_PRUNE = table("search_prune.csv", "the coarse grid's configs per task, and which survived")
SEARCH_LABELS = table("search_labels.csv", "the searched label per item")
SEARCH_BUDGET = table("search_budget.csv", "evaluations the search spent")
ADAPTIVE_TUNING = table("adaptive_tuning.csv", "min_p, edt and top_nsigma candidates and the chosen one")
LABEL_CHECK = table("label_check.csv", "labels kept per task after the held-out check")
LABEL_CHECK_ITEMS = table("label_check_items.csv", "the held-out check per item")
SEARCH_RELIABILITY = table("search_reliability.csv", "a repeated search's agreement with the first")
SEARCH_VS_FRESH = figure("search_vs_fresh", "search score against fresh draws")
# 02_dataset
TRAIN_ROWS = artifact("dataset", "train.jsonl", fmt=JSONL, about="chat rows: query -> config JSON")
VALIDATION_ROWS = artifact("dataset", "validation.jsonl", fmt=JSONL, about="held-out chat rows (the gate's)")
LABEL_DISTRIBUTION = table("label_distribution.csv", "how often each label occurs")
LABEL_PER_TASK = table("label_per_task.csv", "each task's majority label")
# 03_train
ADAPTERS = artifact("adapters", fmt=FOLDER, about="one LoRA adapter (or its receipt) per name; 05 adds its arms'")
GATES = artifact("adapters", "gate.json", fmt=JSON, about="each adapter's gate verdict")
TRAIN_LOG = table("train_log.csv", "loss per logged step")
STAGE1_CURVE = table("stage1_curve.csv", "stage-1 quality per snapshot")
TRAIN_GATE = table("train_gate.csv", "the gate per adapter")
TRAIN_CONFIG_QUALITY = table("train_config_quality.csv", "parse rate, exact match, distance per model")
TRAIN_CONFIG_QUALITY_PER_TASK = table("train_config_quality_per_task.csv", "the same per task")
STAGE1_CURVE_FIGURE = figure("stage1_curve", "the learning curve and the selected snapshot")
# 04_inference
SCORES = artifact("eval", "scores.csv", fmt=FRAME, about="one score row per method, task, item and seed")
ITEM_ORACLE_SCORES = artifact("eval", "item_oracle_scores.csv", fmt=FRAME, about="the item oracle's score rows")
HAG_CONFIGS = table("hag_configs.csv", "configs stage 1 wrote per method and item")
ITEM_ORACLE_CHOICES = table("item_oracle_choices.csv", "the item oracle's config per item")
HEADROOM = table("headroom.csv", "room above default: task and item oracles")
PARSE_RATES = table("parse_rates.csv", "stage-1 parse status counts")
MAIN = table("main.csv", "mean score per method and task, with CIs")
AT_CHANCE = table("at_chance.csv", "tasks where the default is at chance")
RELATIVE = table("relative.csv", "HAG against default and random")
RELATIVE_STRONG = table("relative_strong.csv", "HAG against the strong baselines")
RELATIVE_ITEM_ORACLE = table("relative_item_oracle.csv", "HAG against the item oracle")
DIFFICULTY = table("difficulty.csv", "HAG's gain over default by item difficulty")
CONFIRMATORY = table("confirmatory.csv", "the confirmatory family: HAG vs task oracle and greedy above chance")
MDE = table("mde.csv", "the smallest difference each confirmatory test could detect")
# 05_ablations
ABLATION_SCORES = artifact("eval", "ablation_scores.csv", fmt=FRAME, about="the ablation arms' score rows")
ABLATION_SEARCH = table("ablation_search.csv", "label quality per search strategy")
ABLATION_GATE = table("ablation_gate.csv", "the gate per ablation arm")
ABLATION = table("ablation.csv", "mean score per arm and task")
ABLATION_VS_HAG = table("ablation_vs_hag.csv", "each arm against HAG")
CONSISTENCY = table("consistency.csv", "stage-1 configs under meaning-preserving query variations")
OVERHEAD = table("overhead.csv", "what each method costs to set up and per query")
ABLATION_LABELS = table("ablation_labels.csv", "per arm and task: how often a label differs from the most common")
GRID_EDGES = table("grid_edges.csv", "tuned baselines at their grid's edge, re-tuned on an extended grid")
# 06_figures
FIGURE_CONFIGS = artifact("06_figures", "configs.csv", fmt=FRAME, about="checked labels and stage-1 configs")
FOREST_FIGURE = figure("forest", "HAG minus each baseline per task, with paired CIs and verdicts")
MAIN_FIGURE = figure("main", "mean score per method and task")
CONFIG_DISTRIBUTIONS = figure("config_distributions", "labels against the configs stage 1 wrote")
SENSITIVITY_FIGURE = figure("sensitivity", "score per hyperparameter value")
IMPROVEMENT_VS_DIFFICULTY = figure("improvement_vs_difficulty", "HAG's gain by difficulty")
LOSS_CURVE = figure("loss_curve", "training and validation loss")


@dataclass(frozen=True)
class Stage:
    """A notebook's declared inputs and outputs."""

    notebook: str
    reads: tuple[Handoff, ...]
    writes: tuple[Handoff, ...]


STAGES: tuple[Stage, ...] = (
    Stage("00_preliminary", (), (SENSITIVITY, SENSITIVITY_INFLUENCE, ZERO_SHOT_CONFIGS)),
    Stage("01_search", (), (SEARCH, ORACLES, ADAPTIVE, SEARCH_PRUNE, SEARCH_LABELS, SEARCH_BUDGET, ADAPTIVE_TUNING,
                            LABEL_CHECK, LABEL_CHECK_ITEMS, SEARCH_RELIABILITY, SEARCH_VS_FRESH)),
    Stage("02_dataset", (SEARCH,), (TRAIN_ROWS, VALIDATION_ROWS, LABEL_DISTRIBUTION, LABEL_PER_TASK)),
    Stage("03_train", (TRAIN_ROWS, VALIDATION_ROWS),
          (ADAPTERS, GATES, TRAIN_LOG, STAGE1_CURVE, TRAIN_GATE, TRAIN_CONFIG_QUALITY, TRAIN_CONFIG_QUALITY_PER_TASK,
           STAGE1_CURVE_FIGURE)),
    Stage("04_inference", (ORACLES, ADAPTIVE, GATES, ADAPTERS),
          (SCORES, ITEM_ORACLE_SCORES, HAG_CONFIGS, ITEM_ORACLE_CHOICES, HEADROOM, PARSE_RATES, MAIN, AT_CHANCE,
           RELATIVE, RELATIVE_STRONG, RELATIVE_ITEM_ORACLE, DIFFICULTY, CONFIRMATORY, MDE)),
    Stage("05_ablations", (SEARCH, ORACLES, ADAPTIVE, GATES, ADAPTERS, SEARCH_BUDGET, SEARCH_PRUNE, ADAPTIVE_TUNING, LABEL_CHECK_ITEMS,
                           SCORES),
          (ABLATION_SEARCH, ABLATION_GATE, ABLATION_SCORES, ABLATION, ABLATION_VS_HAG, ABLATION_LABELS, CONSISTENCY, OVERHEAD,
           GRID_EDGES)),
    Stage("06_figures", (RELATIVE, RELATIVE_STRONG, AT_CHANCE, MAIN, LABEL_CHECK_ITEMS, HAG_CONFIGS, SENSITIVITY,
                         DIFFICULTY, ABLATION_SEARCH, TRAIN_LOG),
          (FIGURE_CONFIGS, FOREST_FIGURE, MAIN_FIGURE, CONFIG_DISTRIBUTIONS, SENSITIVITY_FIGURE,
           IMPROVEMENT_VS_DIFFICULTY, LOSS_CURVE)),
)
# What results/README.md (hagstudy.report.render) reads from the run's tables.
README_READS = (TRAIN_GATE, LABEL_CHECK, MAIN, RELATIVE, RELATIVE_STRONG, RELATIVE_ITEM_ORACLE, HEADROOM, AT_CHANCE,
                DIFFICULTY, CONFIRMATORY, MDE, ABLATION_GATE, PARSE_RATES, HAG_CONFIGS, ABLATION_SEARCH, SENSITIVITY,
                ABLATION_VS_HAG, CONSISTENCY, OVERHEAD, GRID_EDGES)


def handoffs() -> list[Handoff]:
    """Every declared hand-off once, in the order the notebooks write them."""
    seen: dict[Handoff, None] = {}
    for stage in STAGES:
        seen.update(dict.fromkeys(stage.writes))
    return list(seen)


def unwritten_reads(stages: tuple[Stage, ...] = STAGES) -> list[str]:
    """Reads no earlier notebook writes (an empty list when the chain is whole)."""
    written: set[Handoff] = set()
    problems = []
    for stage in stages:
        problems += [f"{stage.notebook} reads {h.label}, which no earlier notebook writes"
                     for h in stage.reads if h not in written]
        written.update(stage.writes)
    return problems


def markdown_table(stages: tuple[Stage, ...] = STAGES) -> str:
    """The manifest as a Markdown table (docs/stages.md)."""
    def cell(hs: tuple[Handoff, ...]) -> str:
        return ", ".join(f"`{h.label}`" for h in hs) or "-"

    lines = ["| notebook | reads | writes |", "|---|---|---|"]
    lines += [f"| {s.notebook} | {cell(s.reads)} | {cell(s.writes)} |" for s in stages]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
