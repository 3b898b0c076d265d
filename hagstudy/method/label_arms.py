"""Three label arms of notebook 05: is there no per-query signal, or does the pipeline throw it away?

Most checked labels are the task's start config, so a HAG adapter may reduce to a per-task lookup. That
can describe the labels' *source* (no query carries signal) or the *pipeline* (the search's 4 noisy
draws and the check's +0.1 margin on 4 held-out draws discard what signal there is). Each arm here
changes only the training labels; ``ablations.gated_arm`` trains, gates and scores it like every other
arm (same settings, equal steps, same test items and seeds):

* ``shuffled``: the checked labels permuted within each task (seeded). The task's label mix stays, any
  link between a query and its label goes. As good as HAG means HAG used no per-query signal.
* ``denoised``: per item, the search's top ``denoise_top`` distinct configs re-scored on
  ``denoise_draws`` fresh draws (``seeds.OFFSET_DENOISE``); the best wins (``scoring.pick_best``, ties
  to the start config). Better than HAG means the noisy search threw signal away.
* ``unchecked``: the label check without its margin (``label_check.keeps`` with 0), from the held-out
  means the check already recorded: no new generations. Better than HAG means the margin threw it away.

``label_mix`` says per arm and task how often a label differs from the task's most common one (does an
arm's labels vary per query at all?), and ``verdict_lines`` turns the comparisons into sentences.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from hagstudy import registry, stages
from hagstudy.decoding import DecodingConfig
from hagstudy.engine.pool import map_pooled
from hagstudy.method import dataset, search
from hagstudy.method.label_check import keeps
from hagstudy.scoring import Engine, Task, evaluate, pick_best
from hagstudy.seeds import OFFSET_DENOISE, stable_hash

if TYPE_CHECKING:
    from hagstudy import study
    from hagstudy.tasks.base import Item

# Each arm's method name -> its adapter's folder (the name its fingerprint and receipt are stored under).
ADAPTERS: dict[str, str] = {
    registry.SHUFFLED_LABELS.name: "shuffled_labels",
    registry.DENOISED_LABELS.name: "denoised_labels",
    registry.UNCHECKED_LABELS.name: "unchecked_labels",
}
DENOISE_COLUMNS = ("task", "item_id", "query", "config", "start", "searched", "n_candidates", "denoise_mean")
MIX_COLUMNS = ("method", "task", "items", "distinct_labels", "majority_label", "label_mix", "differs_from_reference")


def _canonical(text: str) -> str:
    return DecodingConfig.from_json(str(text)).to_json()


# ---------------------------------------------------------------------------------------------
# The arms' labels
# ---------------------------------------------------------------------------------------------


def shuffled(labels: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A copy of ``labels`` whose configs are permuted within each task (seeded by ``seed`` and the task).

    The permutation is over the items sorted by id, so it does not depend on the frame's row order;
    each task keeps exactly its label counts. Only ``config`` changes: the other columns still describe
    the original label (the dataset reads task, item_id, query and config).
    """
    stages.require_columns(labels, ("task", "item_id", "config"), "shuffled: the labels frame")
    frame = labels.reset_index(drop=True).copy()
    for task, group in frame.groupby("task", sort=False):
        rows = sorted(group.index, key=lambda i: str(frame.at[i, "item_id"]))
        configs = [frame.at[i, "config"] for i in rows]
        random.Random(stable_hash("shuffle labels", seed, str(task))).shuffle(configs)
        frame.loc[rows, "config"] = configs
    return frame


def unchecked(checked: pd.DataFrame) -> pd.DataFrame:
    """The label check with no margin: an item keeps its searched label when its held-out mean is at least
    the start config's. ``checked`` is ``label_check.read``'s frame (its recorded held-out means)."""
    stages.require_columns(checked, ("searched", "start", "heldout_searched", "heldout_start", "config"), "unchecked: the checked labels")
    frame = checked.reset_index(drop=True).copy()
    kept = [
        keeps(_canonical(a) != _canonical(b), float(hs), float(h0), 0.0)
        for a, b, hs, h0 in zip(frame["searched"], frame["start"], frame["heldout_searched"], frame["heldout_start"])
    ]
    frame["kept"] = kept
    frame["config"] = [s if k else b for s, b, k in zip(frame["searched"], frame["start"], kept)]
    return frame


def candidates(
    evaluations: Sequence[Mapping[str, Any]], item_id: str, start: DecodingConfig, top: int, stage: str = "greedy"
) -> list[DecodingConfig]:
    """An item's ``top`` distinct configs by search mean among the configs the greedy stage scored on it.

    ``evaluations`` are the search log's rows (``search.read_evaluations``). Every config greedy scored on
    the item counts (its start, its trials and the default it is measured against, all on the same
    draws). Means equal to 9 decimals tie; ties go to the config nearer ``start``, then to the earlier.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    rows = [r for r in evaluations if str(r["item_id"]) == item_id and r["stage"] == stage]
    if not rows:
        raise ValueError(f"item {item_id!r}: no {stage!r} rows in the search log (run notebook 01)")
    best: dict[str, tuple[DecodingConfig, float, int]] = {}
    for k, r in enumerate(rows):
        config = DecodingConfig.from_json(r["config"]).effective()
        best.setdefault(config.identity(), (config, float(r["mean"]), k))
    ranked = sorted(best.values(), key=lambda t: (-round(t[1], 9), round(t[0].distance(start), 12), t[2]))
    return [config for config, _, _ in ranked[:top]]


def denoise(
    engine: Engine,
    task: Task,
    items: Sequence[Item],
    labels: pd.DataFrame,
    evaluations: Sequence[Mapping[str, Any]],
    start: DecodingConfig,
    top: int,
    draws: int,
) -> pd.DataFrame:
    """Each labelled item's ``candidates`` re-scored on ``draws`` fresh draws (``seeds.OFFSET_DENOISE``);
    the best is its label (``scoring.pick_best``, ties to ``start``).

    One ``scoring.evaluate`` call for the task (content-cached): at most items x ``top`` x ``draws``
    generations. ``labels`` are the task's checked labels (task, item_id, query; ``searched`` if present).
    """
    stages.require_columns(labels, ("task", "item_id", "query"), "denoise: the labels frame")
    by_id = {it.id: it for it in items}
    missing = [i for i in labels["item_id"] if i not in by_id]
    if missing:
        raise ValueError(f"task {task.name}: labels for items that were not given: {missing[:3]}")
    start = start.effective()
    wanted = [(row, candidates(evaluations, str(row["item_id"]), start, top)) for row in labels.to_dict("records")]
    pairs = [(by_id[row["item_id"]], c) for row, configs in wanted for c in configs]
    evals, _ = evaluate(engine, task, pairs, draws, OFFSET_DENOISE, stage="denoise")
    means = {(ev.item_id, ev.config.identity()): ev.mean for ev in evals}
    out = []
    for row, configs in wanted:
        options = [(c, means[(row["item_id"], c.identity())]) for c in configs]
        chosen, mean = options[pick_best(options, start)]
        out.append({"task": task.name, "item_id": row["item_id"], "query": row["query"], "config": chosen.to_json(),
                    "start": start.to_json(), "searched": row.get("searched", ""), "n_candidates": len(configs),
                    "denoise_mean": mean})
    return pd.DataFrame(out, columns=list(DENOISE_COLUMNS))


def denoised(run: study.Run, checked: pd.DataFrame) -> pd.DataFrame:
    """``denoise`` on every task of the run: its search log, its search items and its start config
    (the checked labels' ``start``), with the profile's ``ablation.denoise_top`` and ``denoise_draws``."""
    stages.require_columns(checked, ("task", "start"), "denoised: the checked labels")
    p, base, folder = run.profile, run.engine(), stages.SEARCH.find(run)
    tasks = [task for task in run.tasks() if (checked["task"] == task.name).any()]
    for task in tasks:
        starts = sorted(set(checked.loc[checked["task"] == task.name, "start"]))
        if len(starts) != 1:
            raise ValueError(f"task {task.name}: the checked labels name {len(starts)} start configs, expected one")

    def one(task: Task) -> pd.DataFrame:
        own = checked[checked["task"] == task.name]
        return denoise(base, task, task.items("search", p.n_search), own, search.read_evaluations(folder, task.name),
                       DecodingConfig.from_json(own["start"].iloc[0]), p.ablation.denoise_top, p.ablation.denoise_draws)

    frames = map_pooled(base, one, tasks)  # the tasks' re-scoring calls pooled
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(DENOISE_COLUMNS))


def arm_labels(run: study.Run, checked: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three arms' training labels from HAG's checked labels, by method name (``ADAPTERS``' order)."""
    return {
        registry.SHUFFLED_LABELS.name: shuffled(checked, run.profile.seed),
        registry.DENOISED_LABELS.name: denoised(run, checked),
        registry.UNCHECKED_LABELS.name: unchecked(checked),
    }


# ---------------------------------------------------------------------------------------------
# What the labels look like, and what the comparisons say
# ---------------------------------------------------------------------------------------------


def label_mix(arms: Mapping[str, pd.DataFrame], reference: str = registry.HAG.name) -> pd.DataFrame:
    """Per arm and task: items, distinct labels, the most common label (``dataset.per_task_labels``, the
    gate's majority rule), ``label_mix`` (share of items whose label is not it) and
    ``differs_from_reference`` (share of items whose label differs from the ``reference`` arm's; NaN
    without one). A label mix of 0 means one config for the whole task: nothing per query to learn."""
    ref: dict[tuple[str, str], str] = {}
    if reference in arms:
        ref = {(str(t), str(i)): _canonical(c) for t, i, c in zip(arms[reference]["task"], arms[reference]["item_id"],
                                                                   arms[reference]["config"])}
    rows = []
    for method, labels in arms.items():
        stages.require_columns(labels, ("task", "item_id", "config"), f"label_mix: the labels of {method!r}")
        majority = dataset.per_task_labels(labels)
        for task, group in labels.groupby("task", sort=False):
            configs = [_canonical(c) for c in group["config"]]
            top = majority[str(task)].to_json()
            pairs = [(ref[(str(task), str(i))], c) for i, c in zip(group["item_id"], configs) if (str(task), str(i)) in ref]
            rows.append({
                "method": method, "task": task, "items": len(configs), "distinct_labels": len(set(configs)),
                "majority_label": top, "label_mix": sum(c != top for c in configs) / len(configs),
                "differs_from_reference": sum(a != b for a, b in pairs) / len(pairs) if pairs else float("nan"),
            })
    return pd.DataFrame(rows, columns=list(MIX_COLUMNS))


_MEANING = {
    registry.SHUFFLED_LABELS.name: {
        "better": "the per-item labels cost score: HAG's item-level labels fit noise here",
        "equivalent": "no sign that HAG uses per-query signal: its labels' task-level mix explains its score",
        "worse": "HAG uses per-query information in its labels",
    },
    registry.DENOISED_LABELS.name: {
        "better": "the noisy search was throwing per-query signal away",
        "equivalent": "re-scoring the search's best configs recovers no signal the pipeline lost",
        "worse": "the re-scored labels are worse: the search's labels lost no signal to noise here",
    },
    registry.UNCHECKED_LABELS.name: {
        "better": "the check's margin was throwing per-query signal away",
        "equivalent": "dropping the check's margin recovers no signal the pipeline lost",
        "worse": "the margin removed labels that hurt: it threw away noise, not signal",
    },
}


def _share(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.0%}"


def _numbers(row: Mapping[str, Any]) -> str:
    return (f"{row['target_mean']:.3f} vs HAG's {row['base_mean']:.3f} (difference {row['diff']:+.3f}, 95% CI "
            f"[{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}], Holm p={row['p_holm']:.3f})")


def verdict_lines(versus: pd.DataFrame, mix: pd.DataFrame, gates: pd.DataFrame | None = None,
                  reference: str = registry.HAG.name) -> list[str]:
    """Per label arm and task, what its comparison with HAG (``ablation_vs_hag.csv``) means, read with the
    label mix (``label_mix``): a comparison between identical label sets, or against labels that are
    one config per task, tests nothing and says so. Unlearned arms (``ablation_gate.csv``) come first."""
    stages.require_columns(mix, ("method", "task", "label_mix", "differs_from_reference"), "verdict_lines: the label mix")
    out = []
    if gates is not None and not gates.empty:
        stages.require_columns(gates, ("method", "status", "reason"), "verdict_lines: the ablation gate")
        for row in gates[gates["method"].isin(list(_MEANING)) & (gates["status"] != "learned")].itertuples():
            out.append(f"{row.method} did not learn its labels ({row.reason}): no verdict.")
    if versus is None or versus.empty:
        return out + ["No label arm was compared with HAG."]
    stages.require_columns(versus, ("variant", "task", "verdict", "margin", "target_mean", "base_mean", "diff", "diff_ci_low",
                   "diff_ci_high", "p_holm"), "verdict_lines: the comparison with HAG")
    shares = {(str(r.method), str(r.task)): (float(r.label_mix), float(r.differs_from_reference)) for r in mix.itertuples()}
    for arm, meaning in _MEANING.items():
        for row in versus[versus["variant"] == arm].to_dict("records"):
            task, verdict = str(row["task"]), str(row["verdict"])
            arm_mix, differs = shares.get((arm, task), (float("nan"), float("nan")))
            ref_mix = shares.get((reference, task), (float("nan"), float("nan")))[0]
            head = f"{task}: {arm} {verdict if verdict != 'not significant' else 'not significantly different'}"
            if verdict == "equivalent":
                head += f" (within ±{row['margin']:g}, TOST)"
            text = f"{head}, {_numbers(row)}; label mix {_share(arm_mix)} (HAG's {_share(ref_mix)})"
            if differs == 0:
                text += ": its labels are HAG's own on this task, so this tests nothing."
            elif arm == registry.SHUFFLED_LABELS.name and ref_mix == 0:
                text += ": HAG's labels are one config here, so shuffling cannot show per-query signal."
            elif verdict in meaning:
                text += f": {meaning[verdict]}."
            else:
                text += ": equivalence is not shown either, so this is no evidence either way."
            out.append(text)
    return out
