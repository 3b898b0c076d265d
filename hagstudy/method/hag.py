"""HAG inference in two stages: the model writes a decoding config for a query, then the answer uses it.

Stage 1 (``propose``/``propose_configs``) renders ``dataset.stage1_messages(query)`` and decodes greedily
(seed 0) in one batched ``engine.generate`` call; ``decoding.parse_config`` reads each text. ``resolve``
turns parse results into stage-2 configs: a failed parse falls back to the ``default`` config and is
counted and logged, never hidden, so every evaluation can report its parse rate per task.

Stage 2 is ``methods.stage1_then_answer``: the answers run through the same code as every baseline
(same items, same sampling seeds), by default on the BASE model's engine, so only the
hyperparameters differ from the baselines; passing the tuned engine instead is the adapter-on
ablation. The ``zero_shot`` baseline is the same stage 1 on the untuned base model.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from hagstudy.decoding import (
    GREEDY,
    HYPERPARAMETERS,
    TRANSFORMERS_DEFAULT,
    DecodingConfig,
    ParseResult,
    parse_config,
)
from hagstudy.method import dataset
from hagstudy.scoring import Engine

log = logging.getLogger(__name__)

STAGE1_MAX_NEW_TOKENS = 48  # the longest canonical config JSON is 44 tokens plus <|im_end|>
STAGE1_SEED = 0
STATUSES = ("ok", "clamped", "partial", "failed")
# The config-yielding zero-shot: the untuned model's answer starts inside the JSON object, so it only has
# to continue it (a free-text reply from the 135M model never parses).
JSON_PREFILL = '{"temperature": '

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Proposal:
    """One stage-1 generation: the query, the raw text, whether the model stopped by itself, the parse,
    and the tokens it generated (the prefill excluded: what stage 1 costs per query)."""

    query: str
    text: str
    finished: bool
    parse: ParseResult
    n_tokens: int = 0


def stage1_config(max_new_tokens: int = STAGE1_MAX_NEW_TOKENS) -> DecodingConfig:
    """Greedy: the config a model proposes must not depend on a sampling seed."""
    return GREEDY.with_(max_new_tokens=max_new_tokens)


def stage1_requests(
    engine: Engine,
    queries: Sequence[str],
    max_new_tokens: int = STAGE1_MAX_NEW_TOKENS,
    *,
    messages_fn: Callable[[str], Messages] | None = None,
    prefill: str = "",
) -> list[Any]:
    """One greedy request per query, prompt = the instruction set's [system, user] rendered by ``engine``,
    followed by ``prefill`` (the start of the assistant's reply, which the model continues)."""
    from hagstudy.engine.requests import Request

    to_messages = messages_fn or dataset.stage1_messages
    config = stage1_config(max_new_tokens)
    return [Request(prompt=engine.render(to_messages(q)) + prefill, config=config, seed=STAGE1_SEED) for q in queries]


def propose(
    engine: Engine,
    queries: Sequence[str],
    max_new_tokens: int = STAGE1_MAX_NEW_TOKENS,
    *,
    fallback: DecodingConfig = TRANSFORMERS_DEFAULT,
    messages_fn: Callable[[str], Messages] | None = None,
    desc: str = "HAG stage 1",
    prefill: str = "",
) -> list[Proposal]:
    """Stage 1 for many queries in one ``engine.generate`` call; ``fallback`` fills missing hyperparameters.

    With a ``prefill`` the reply starts with it; the parsed text is ``prefill`` + what the model wrote.
    """
    requests = stage1_requests(engine, queries, max_new_tokens, messages_fn=messages_fn, prefill=prefill)
    completions = engine.generate(requests, desc=desc) if requests else []
    return [
        Proposal(query=q, text=prefill + c.text, finished=bool(c.finished),
                 parse=parse_config(prefill + c.text, fallback=fallback), n_tokens=int(c.n_tokens))
        for q, c in zip(queries, completions, strict=True)
    ]


def propose_configs(
    engine: Engine,
    queries: Sequence[str],
    max_new_tokens: int = STAGE1_MAX_NEW_TOKENS,
    *,
    fallback: DecodingConfig = TRANSFORMERS_DEFAULT,
    messages_fn: Callable[[str], Messages] | None = None,
    desc: str = "HAG stage 1",
) -> list[ParseResult]:
    """Stage 1: the parsed config of each query (``ParseResult.status`` says how it went); ``desc`` names the log line."""
    return [p.parse for p in propose(engine, queries, max_new_tokens, fallback=fallback, messages_fn=messages_fn, desc=desc)]


class Resolution(NamedTuple):
    """Stage-2 configs and each row's parse status; unpacks as ``configs, status = resolve(...)``."""

    configs: list[DecodingConfig]
    status: list[str]  # "ok" | "clamped" | "partial" | "failed" (failed rows use the default config)

    @property
    def n_failed(self) -> int:
        return self.status.count("failed")

    @property
    def parse_rate(self) -> float:
        """Share of rows whose config came from the model (not the default); 1.0 for no rows."""
        return 1.0 - self.n_failed / len(self.status) if self.status else 1.0

    def counts(self) -> dict[str, int]:
        c = Counter(self.status)
        return {s: c.get(s, 0) for s in STATUSES}


def resolve(parse_results: Sequence[ParseResult], default: DecodingConfig, label: str = "HAG stage 1") -> Resolution:
    """The config stage 2 uses for each row: the parsed one (already clamped by the parser), else ``default``.

    Failures are counted and logged as a warning that names ``label`` (the method and task).
    """
    configs: list[DecodingConfig] = []
    status: list[str] = []
    for result in parse_results:
        if result.config is None or result.status == "failed":
            configs.append(default)
            status.append("failed")
        else:
            configs.append(result.config)
            status.append(result.status if result.status in STATUSES else "ok")
    out = Resolution(configs, status)
    if out.n_failed:
        log.warning(
            "%s: %d of %d proposals did not parse; they use the default config %s",
            label, out.n_failed, len(status), default.to_json(),
        )
    return out


def config_quality(proposed: Sequence[ParseResult], labels: Sequence[DecodingConfig]) -> dict[str, Any]:
    """How close stage 1 comes to the search labels (03_train compares tuned vs untuned with it).

    Configs are compared in effective form (greedy ignores top_p/top_k). ``parse_rate``: any config
    came out; ``valid_rate``: status "ok" (all four values present and in range); exact matches count a
    failed parse as a miss; ``mean_distance`` (``DecodingConfig.distance``) is over parsed rows only.
    """
    if len(proposed) != len(labels):
        raise ValueError(f"{len(proposed)} proposals but {len(labels)} labels")
    n = len(proposed)
    parsed = [(p.config.effective(), l.effective()) for p, l in zip(proposed, labels) if p.config is not None]
    status = Counter(p.status for p in proposed)
    out: dict[str, Any] = {
        "n": n,
        "parse_rate": len(parsed) / n if n else float("nan"),
        "valid_rate": status.get("ok", 0) / n if n else float("nan"),
        **{f"n_{s}": status.get(s, 0) for s in STATUSES},
        "mean_distance": sum(a.distance(b) for a, b in parsed) / len(parsed) if parsed else float("nan"),
    }
    for h in HYPERPARAMETERS:
        hits = sum(getattr(a, h) == getattr(b, h) for a, b in parsed)
        out[f"exact_{h}"] = hits / n if n else float("nan")
    out["exact_all"] = sum(a.hyperparameters() == b.hyperparameters() for a, b in parsed) / n if n else float("nan")
    return out
