"""A search killed midway resumes from the completion cache and writes byte-identical files."""

from pathlib import Path

import pytest

from hagstudy import generation, models, search, tasks
from hagstudy.cache import CompletionCache
from hagstudy.config import Profile, SearchSettings
from hagstudy.decoding import TRANSFORMERS_DEFAULT, SearchSpace
from test_cache import Crash, CrashingModel

FILES = ("evaluations.jsonl", "labels.csv", "prune.json")  # budget.json holds wall time and cache misses
SPACE = SearchSpace(coarse={"temperature": (0.0, 1.0), "top_p": (0.9, 1.0), "top_k": (0, 50), "repetition_penalty": (1.0,)})
PROFILE = Profile(name="unit", n_search=3, search=SearchSettings(prune_items=2, draws=2))


def _search(engine, out: Path):
    task = tasks.get("arithmetic")
    default = TRANSFORMERS_DEFAULT.with_(max_new_tokens=task.max_new_tokens)
    return search.run_search(engine, task, PROFILE, out, default=default, space=SPACE)


@pytest.mark.slow
def test_a_search_killed_midway_resumes_to_the_same_files(tiny, tmp_path):
    model, tok = tiny
    ident = models.identity(model)

    clean = generation.Engine(model, tok, CompletionCache(tmp_path / "a.sqlite"), progress=False, max_batch_size=8)
    _search(clean, tmp_path / "clean")

    cache = CompletionCache(tmp_path / "b.sqlite")
    crashing = generation.Engine(CrashingModel(model, limit=45), tok, cache, progress=False, max_batch_size=8,
                                 flush_rows=2, identity=ident)
    with pytest.raises(Crash):
        _search(crashing, tmp_path / "resumed")
    saved = len(cache)
    assert saved > 0

    resumed = generation.Engine(model, tok, cache, progress=False, max_batch_size=8, identity=ident)
    result = _search(resumed, tmp_path / "resumed")
    assert resumed.stats["hits"] >= saved and result.budget.generated < result.budget.requested
    for name in FILES:
        assert (tmp_path / "resumed" / "arithmetic" / name).read_bytes() == (tmp_path / "clean" / "arithmetic" / name).read_bytes()
