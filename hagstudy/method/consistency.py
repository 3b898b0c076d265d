"""Stage-1 consistency: does the config a model writes survive a harmless change to the query's wording?

HAG's claim is a config *per query*. If stage 1 writes one config whatever the query says, the method is a
task-level lookup; if small rewordings that leave the question the same flip the config, the per-query
choice is noise. Each test query is varied in ways that keep its meaning (``VARIATIONS``), stage 1 is run
on every version (only the query text inside stage 1's prompt changes: ``hag.propose`` renders it with the
instruction set's own prompt and parses it with the study's parser), and we count how often the parsed
config differs from the one written for the original query.

Stage 1 is greedy and every generation is content-cached, so asking the *identical* query twice returns
the identical text by construction: that repeat is not measured here, it cannot differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import pandas as pd

from hagstudy.decoding import DecodingConfig
from hagstudy.method import hag
from hagstudy.scoring import Engine

if TYPE_CHECKING:
    from hagstudy.tasks.base import Item

ORIGINAL = "original"
PARAPHRASE_TEMPLATE = "Here is a question for you: {query}"
# "Answer Yes or No." (coinflip, strategyqa): the answer options the query lists, in its own order.
OPTIONS = re.compile(r"\b(Answer) (\w+) or (\w+)([.?!]?)")
FAILED = "failed"  # the key of a proposal that did not parse: two failures count as the same outcome
TASK_ONLY = "task only"
QUERY_DEPENDENT = "query-dependent"
NONE_PARSED = "no config parsed"
COLUMNS = ["task", "method", "variation", "n", "changed", "parse_rate", "stage1_tokens", "distinct_configs", "reading"]


def whitespace(query: str) -> str:
    """Every space doubled and a trailing newline: the same words, other whitespace."""
    return query.replace(" ", "  ") + "\n"


def casing(query: str) -> str:
    """The query lower-cased (deterministic; the words are the same for a reader)."""
    return query.lower()


def paraphrase(query: str) -> str:
    """A fixed template around the query (a templated rewording, not a model's paraphrase)."""
    return PARAPHRASE_TEMPLATE.format(query=query)


def options(query: str) -> str | None:
    """The listed answer options swapped ("Answer Yes or No." -> "Answer No or Yes."); None when the
    query lists none (taboo's forbidden words are a list, but not answer options, and are left alone)."""
    if not OPTIONS.search(query):
        return None
    return OPTIONS.sub(lambda m: f"{m[1]} {m[3]} or {m[2]}{m[4]}", query, count=1)


# name -> the variation of a query (None: the variation does not apply to this query)
VARIATIONS: dict[str, Callable[[str], str | None]] = {
    "whitespace": whitespace,
    "casing": casing,
    "paraphrase": paraphrase,
    "options": options,
}


def variants(query: str, variations: Mapping[str, Callable[[str], str | None]] | None = None) -> dict[str, str]:
    """The original query and each variation that applies to it, by name (original first)."""
    out = {ORIGINAL: query}
    for name, vary in (VARIATIONS if variations is None else variations).items():
        varied = vary(query)
        if varied is not None:
            out[name] = varied
    return out


@dataclass(frozen=True)
class Stage1:
    """A model that writes stage-1 configs: its engine and the start of its reply (zero_shot_json's prefill)."""

    engine: Engine
    prefill: str = ""


def config_key(status: str, config: DecodingConfig | None) -> str:
    """What two proposals are compared by: the parsed config's canonical JSON, or ``failed``."""
    return FAILED if status == FAILED or config is None else config.to_json()


def proposals(
    models: Mapping[str, Stage1],
    items: Mapping[str, Sequence[Item]],
    default: DecodingConfig,
    variations: Mapping[str, Callable[[str], str | None]] | None = None,
) -> pd.DataFrame:
    """Stage 1 on every item's original query and its variations: one ``engine.generate`` call per model.

    ``items`` maps task name -> its items. ``default`` fills hyperparameters a proposal leaves out (as
    in ``methods.stage1_then_answer``). One row per (task, method, item, variation): the query sent, the
    parse status, the parsed config's key (``config_key``) and the stage-1 tokens generated.
    """
    plan = [(task, it, name, text) for task, its in items.items() for it in its
            for name, text in variants(it.query, variations).items()]
    rows = []
    for method, model in models.items():
        got = hag.propose(model.engine, [text for *_, text in plan], fallback=default,
                          desc=f"{method} stage-1 consistency", prefill=model.prefill)
        for (task, it, name, text), p in zip(plan, got, strict=True):
            rows.append({"task": task, "method": method, "item_id": it.id, "variation": name, "query": text,
                         "status": p.parse.status, "config": config_key(p.parse.status, p.parse.config),
                         "n_tokens": p.n_tokens})
    return pd.DataFrame(rows, columns=["task", "method", "item_id", "variation", "query", "status", "config", "n_tokens"])


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method, variation): ``n`` items, ``changed`` (share whose config differs from the original
    query's; empty for the original itself), ``parse_rate`` and mean ``stage1_tokens``; per (task, method),
    repeated on its rows: ``distinct_configs`` parsed from the original queries (failures left out) and the
    ``reading``: one config for every query is ``task only``, none parsed is ``no config parsed``."""
    missing = [c for c in ("task", "method", "item_id", "variation", "status", "config", "n_tokens") if c not in rows]
    if missing:
        raise ValueError(f"consistency rows lack column(s) {missing}")
    keys = ["task", "method", "item_id"]
    original = rows[rows["variation"] == ORIGINAL].set_index(keys)["config"]
    if original.index.duplicated().any():
        raise ValueError("consistency rows hold an item's original query twice")
    out = []
    for (task, method), group in rows.groupby(["task", "method"], sort=False):
        first = group.loc[group["variation"] == ORIGINAL, "config"]
        distinct = int(first[first != FAILED].nunique())
        reading = NONE_PARSED if distinct == 0 else TASK_ONLY if distinct == 1 else QUERY_DEPENDENT
        for variation, sub in group.groupby("variation", sort=False):
            base = original.reindex(pd.MultiIndex.from_frame(sub[keys]))
            if base.isna().any():
                raise ValueError(f"{task}/{method}: variation {variation!r} has items without an original query")
            changed = float((sub["config"].to_numpy() != base.to_numpy()).mean())
            out.append({
                "task": task, "method": method, "variation": variation, "n": len(sub),
                "changed": float("nan") if variation == ORIGINAL else changed,
                "parse_rate": float((sub["status"] != FAILED).mean()),
                "stage1_tokens": float(sub["n_tokens"].mean()),
                "distinct_configs": distinct, "reading": reading,
            })
    return pd.DataFrame(out, columns=COLUMNS)


def lines(table: pd.DataFrame) -> list[str]:
    """One sentence per method, from the table: how often a variation changed its config, and how many
    tasks it answers with one config whatever the query."""
    out = []
    varied = table[table["variation"] != ORIGINAL]
    for method, group in table.groupby("method", sort=False):
        per_task = group.drop_duplicates("task")
        task_only = per_task.loc[per_task["reading"] == TASK_ONLY, "task"].tolist()
        sub = varied[varied["method"] == method]
        if sub.empty:
            continue
        worst = sub.loc[sub["changed"].idxmax()]
        mean = (sub["changed"] * sub["n"]).sum() / sub["n"].sum()
        most = f" (most: {worst['variation']} on {worst['task']}, {worst['changed']:.0%})" if worst["changed"] > 0 else ""
        none = int((per_task["reading"] == NONE_PARSED).sum())
        out.append(
            f"{method}: a meaning-preserving variation changed the stage-1 config on {mean:.0%} of the varied "
            f"queries{most}; {len(task_only)} of {len(per_task)} tasks get one config for every original query"
            + (f" ({', '.join(task_only)})" if task_only else "")
            + (f", and on {none} no original query's config parsed." if none else ".")
        )
    return out
