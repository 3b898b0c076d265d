"""The compared methods, each named once: name, kind, colour in every figure, place in every table, scorer.

Tables (``report.evaluation``), figures (``report.plots``), findings, the oracles and notebook 04 take
method names and their order from here, so a method is added in one place (plus, if no function of
``hagstudy.methods`` fits, one scoring function there). This module imports nothing of the study: the
report wing, which reads tables only, may use it.

A HAG adapter's rows (``hag_seed0``, ...) are instances of ``hag`` (``Method.instance``), not methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

# Kinds of method: what each one is, for a reader of the tables.
REFERENCE = "reference"  # no decoding at all (the best constant answer)
FIXED_CONFIG = "fixed config"  # one config for every query, set without search
RANDOM_CONFIG = "random config"  # a uniform draw per (item, seed)
TUNED = "tuned baseline"  # one config per task (or for all tasks), chosen on the search split
ORACLE = "oracle"  # chosen with knowledge HAG lacks: a ceiling, not a competitor
ADAPTIVE_SAMPLER = "adaptive sampler"  # training-free per-step adaptation, tuned per task
STAGE1 = "stage-1 config"  # the untuned model writes its own config (HAG without training)
HAG_ADAPTER = "HAG adapter"  # the trained stage-1 adapters, pooled over training seeds
ABLATION = "ablation arm"  # a HAG variant of notebook 05 that changes one thing


@dataclass(frozen=True)
class Method:
    """One compared method: its name in every table, what it is, its colour, and what scores it.

    ``ranked`` methods sit in tables in registry order; the others follow them sorted by name (with
    any name the registry does not know, such as a HAG adapter's ``hag_seed0``). ``shades`` colour a
    method's instances (one per trained adapter: ``instance(k)``), lighter first.
    """

    name: str
    kind: str
    colour: str
    scored_by: str
    ranked: bool = True
    shades: tuple[str, ...] = ()

    def instance(self, k: int) -> str:
        """The name of the method's ``k``-th trained instance (one adapter, one training seed)."""
        return f"{self.name}_seed{k}"


CHANCE = Method("chance", REFERENCE, "#8c8c8c", "methods.chance")
DEFAULT = Method("default", FIXED_CONFIG, "#ca9161", "methods.fixed with the model's default config")
GREEDY = Method("greedy", FIXED_CONFIG, "#de8f05", "methods.fixed with decoding.GREEDY")
RANDOM = Method("random", RANDOM_CONFIG, "#ece133", "methods.random_configs")
BEST_SINGLE_CONFIG = Method("best_single_config", TUNED, "#029e73", "methods.fixed with oracles.best_single_config")
TASK_ORACLE = Method("task_oracle", TUNED, "#cc78bc", "methods.fixed with oracles.task_oracle")
ITEM_ORACLE = Method("item_oracle", ORACLE, "#fbafe4", "oracles.item_oracle (on the test items of the tasks above chance)")
STATIC_HINDSIGHT = Method("static_hindsight", ORACLE, "#b15928", "oracles.item_oracle's best fixed candidate on the test items")
ZERO_SHOT = Method("zero_shot", STAGE1, "#d55e00", "methods.stage1_then_answer with the untuned model")
ZERO_SHOT_JSON = Method("zero_shot_json", STAGE1, "#7f3c8d",
                        "methods.stage1_then_answer with the untuned model, prefilled with hag.JSON_PREFILL")
HAG = Method("hag", HAG_ADAPTER, "#08519c", "methods.stage1_then_answer per adapter, then methods.pooled",
             shades=("#9ecae1", "#6baed6", "#3182bd"))
# min_p, edt and top_nsigma have no fixed rank: they sort by name among the unranked names (edt, hag_seed0, ...,
# min_p, top_nsigma), where every committed table has them; a rank would reorder those tables.
MIN_P = Method("min_p", ADAPTIVE_SAMPLER, "#e7298a", "methods.fixed with oracles.tune_adaptive's setting", ranked=False)
EDT = Method("edt", ADAPTIVE_SAMPLER, "#66a61e", "methods.fixed with oracles.tune_adaptive's setting", ranked=False)
TOP_NSIGMA = Method("top_nsigma", ADAPTIVE_SAMPLER, "#7570b3", "methods.fixed with oracles.tune_adaptive's setting",
                    ranked=False)

_ARM = "ablations.gated_arm or ablations.hag_arm"
ARMS: tuple[Method, ...] = (
    Method("hag_train25", ABLATION, "#17becf", _ARM, ranked=False),
    Method("hag_train50", ABLATION, "#0e7c86", _ARM, ranked=False),
    Method("hag_random_search_labels", ABLATION, "#bcbd22", _ARM, ranked=False),  # labels from random search
    Method("hag_tpe_labels", ABLATION, "#8c6d31", _ARM, ranked=False),
    Method("hag_per_task_labels", ABLATION, "#393b79", _ARM, ranked=False),
    Method("hag_temperature_only", ABLATION, "#ad494a", _ARM, ranked=False),
    Method("hag_adapter_stage2", ABLATION, "#000000", _ARM, ranked=False),
)
# The label arms (method.label_arms): is there per-query signal in the labels, and does the pipeline keep it?
SHUFFLED_LABELS = Method("hag_shuffled_labels", ABLATION, "#d6616b", _ARM, ranked=False)
DENOISED_LABELS = Method("hag_denoised_labels", ABLATION, "#31a354", _ARM, ranked=False)
UNCHECKED_LABELS = Method("hag_unchecked_labels", ABLATION, "#fd8d3c", _ARM, ranked=False)
LABEL_ARMS: tuple[Method, ...] = (SHUFFLED_LABELS, DENOISED_LABELS, UNCHECKED_LABELS)

REGISTRY: tuple[Method, ...] = (
    CHANCE, DEFAULT, GREEDY, RANDOM, BEST_SINGLE_CONFIG, TASK_ORACLE, ITEM_ORACLE, STATIC_HINDSIGHT, ZERO_SHOT, ZERO_SHOT_JSON, HAG,
    MIN_P, EDT, TOP_NSIGMA, *ARMS, *LABEL_ARMS,
)  # fmt: skip
ORDER: tuple[str, ...] = tuple(m.name for m in REGISTRY if m.ranked)  # the tables' method order
BY_NAME: dict[str, Method] = {m.name: m for m in REGISTRY}

# Groups the notebooks and findings compare HAG against, in the order their sentences name them.
WEAK: tuple[Method, ...] = (DEFAULT, RANDOM)
BEST_FIXED: tuple[Method, ...] = (TASK_ORACLE, BEST_SINGLE_CONFIG)  # the best fixed choices a per-query method must beat
ADAPTIVE: tuple[Method, ...] = tuple(m for m in REGISTRY if m.kind == ADAPTIVE_SAMPLER)  # min_p, edt, top_nsigma
STAGE1_BASELINES: tuple[Method, ...] = tuple(m for m in REGISTRY if m.kind == STAGE1)  # zero_shot, zero_shot_json
STRONG: tuple[Method, ...] = (GREEDY, TASK_ORACLE, BEST_SINGLE_CONFIG, *ADAPTIVE, *STAGE1_BASELINES)


def names(group: Sequence[Method]) -> tuple[str, ...]:
    """The names of a group of methods, in the group's order."""
    return tuple(m.name for m in group)


def colours() -> dict[str, str]:
    """Every method's colour, and each instance's shade (``hag_seed0`` ...), for the figures."""
    out = {m.name: m.colour for m in REGISTRY}
    for m in REGISTRY:
        out.update({m.instance(k): shade for k, shade in enumerate(m.shades)})
    return out
