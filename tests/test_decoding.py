import json
import random

import numpy as np
import pytest

from hagstudy.decoding import (
    GREEDY,
    HYPERPARAMETERS,
    TRANSFORMERS_DEFAULT,
    ConfigError,
    DecodingConfig,
    SearchSpace,
    default_config,
    parse_config,
)


@pytest.mark.parametrize(
    "field, value",
    [("temperature", -0.1), ("temperature", 2.5), ("top_p", 0.0), ("top_p", 1.2), ("top_k", -1),
     ("top_k", 2.5), ("repetition_penalty", 0.9), ("repetition_penalty", 2.1), ("max_new_tokens", 0),
     ("temperature", float("nan")), ("temperature", True)],
)
def test_out_of_range_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DecodingConfig(**{field: value})


def test_canonical_json_is_fixed_order_and_rounded():
    cfg = DecodingConfig(temperature=0.7000001, top_p=0.9, top_k=40, repetition_penalty=1.1)
    assert cfg.to_json() == '{"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}'
    assert list(json.loads(cfg.to_json())) == list(HYPERPARAMETERS)
    assert parse_config(cfg.to_json()).config == cfg


def test_greedy_configs_share_a_cache_key():
    a = DecodingConfig(temperature=0.0, top_p=0.5, top_k=10)
    assert a.key() == GREEDY.key() and a.effective() == GREEDY
    assert DecodingConfig(temperature=0.5).key() != DecodingConfig(temperature=0.6).key()


def test_grid_has_no_greedy_duplicates():
    grid = SearchSpace().grid()
    keys = [c.key() for c in grid]
    assert len(keys) == len(set(keys)) == 3 * 3 * 3 * 3 + 3
    assert TRANSFORMERS_DEFAULT.with_(top_k=50).key() in keys or any(c.temperature == 1.0 for c in grid)


def test_sample_is_in_range_and_seeded():
    import numpy as np

    space = SearchSpace()
    a = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    assert a == b


def test_from_json_inverts_to_json():
    cfg = DecodingConfig(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1)
    assert DecodingConfig.from_json(cfg.to_json()) == cfg
    assert DecodingConfig.from_json(cfg.to_json(), max_new_tokens=9) == cfg.with_(max_new_tokens=9)
    with pytest.raises(TypeError):
        DecodingConfig.from_json('{"temperature": 0.7, "beam": 2}')


def test_default_config_source():
    cfg, source = default_config(None)
    assert cfg == TRANSFORMERS_DEFAULT and "transformers" in source

    class GC:
        do_sample, temperature, top_p, top_k, repetition_penalty = True, 0.2, 0.9, 50, 1.0

    cfg, source = default_config(GC())
    assert cfg.temperature == 0.2 and cfg.top_p == 0.9 and "model" in source


@pytest.mark.parametrize(
    "text, expected, status",
    [
        ('{"temperature": 0.3, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.2}', (0.3, 0.8, 20, 1.2), "ok"),
        ('Here you go:\n```json\n{"temperature": 0.3, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.2}\n```',
         (0.3, 0.8, 20, 1.2), "ok"),
        ("temperature: 0.5, top-p = 0.7, top_k: 5, repetition penalty: 1.05", (0.5, 0.7, 5, 1.05), "ok"),
        ('{"temperature": 5, "top_p": 0, "top_k": -3, "repetition_penalty": 0.5}', (2.0, 0.01, 0, 1.0), "clamped"),
        ('{"temp": 0.2}', (0.2, 1.0, 50, 1.0), "partial"),
    ],
)
def test_parser_is_tolerant(text, expected, status):
    result = parse_config(text)
    assert result.status == status
    assert tuple(result.config.hyperparameters().values()) == expected


@pytest.mark.parametrize("text", ["", "I cannot decide.", "{not json}", "🙂" * 50, "{'x': 1}"])
def test_parser_failure_is_reported_not_hidden(text):
    result = parse_config(text)
    assert result.status == "failed" and result.config is None and not result.ok


def test_parser_never_raises_on_noise():
    rng = random.Random(0)
    alphabet = '{}":,.0123456789 temperaturtop_pkrepetition'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        result = parse_config(text)
        assert result.status in {"ok", "clamped", "partial", "failed"}


def test_distance_zero_to_self_and_symmetric():
    a, b = DecodingConfig(temperature=0.3, top_k=0), DecodingConfig(temperature=1.3, top_p=0.5)
    assert a.distance(a) == 0 and a.distance(b) > 0
    assert a.distance(b) == pytest.approx(b.distance(a))


@pytest.mark.parametrize(
    "text, field, value",
    [
        ('{"top_k": ' + "1" * 310 + "}", "top_k", 1000),  # used to raise OverflowError
        ('{"temperature": -' + "9" * 310 + "}", "temperature", 0.0),
        ("temperature: " + "9" * 400, "temperature", 2.0),
        ('{"repetition_penalty": 1e999, "top_p": 0.5}', "top_p", 0.5),  # inf is not a JSON number: skipped
        ("top_p: 1e999", "top_p", 1.0),
    ],
)
def test_huge_numbers_are_clamped_and_counted(text, field, value):
    result = parse_config(text)
    assert result.ok and result.config.hyperparameters()[field] == value
    assert result.status in ("clamped", "partial")


@pytest.mark.parametrize("text", ['{"temperature": -0.0, "top_p": 0.9, "top_k": 0, "repetition_penalty": 1.0}',
                                  "temperature: -0, top_p: 0.9, top_k: -0, repetition_penalty: 1"])
def test_negative_zero_is_zero(text):
    result = parse_config(text)
    assert result.status == "ok" and result.config == GREEDY.with_(top_p=0.9)
    assert result.config.to_json() == '{"temperature": 0.0, "top_p": 0.9, "top_k": 0, "repetition_penalty": 1.0}'
    assert result.config.key() == GREEDY.with_(top_p=0.9).key()


def test_config_built_with_negative_zero_is_zero():
    assert str(DecodingConfig(temperature=-0.0).temperature) == "0.0"
    assert str(DecodingConfig(temperature=-0.001).temperature) == "0.0"  # rounds to -0.0


def test_parser_survives_pathological_json():
    assert parse_config('{"a": ' + "[" * 100_000 + "}").status == "failed"  # RecursionError inside json
    assert parse_config('{"top_k": ' + "7" * 5000 + "}").config.top_k == 1000  # over int-parsing's digit limit
    assert parse_config(None).status == "failed"  # type: ignore[arg-type]


# -- the adaptive baselines (min_p, EDT): off by default, in the text and key only when on ---------


@pytest.mark.parametrize(
    "field, value", [("min_p", -0.1), ("min_p", 1.0), ("min_p", float("nan")), ("edt_theta", -0.5), ("edt_theta", 10.5),
                     ("edt_theta", True)],
)
def test_adaptive_out_of_range_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DecodingConfig(**{field: value})


def test_existing_texts_and_keys_are_unchanged_by_the_adaptive_fields():
    """Pinned strings (and a cache key, computed before min_p/edt_theta existed): every stored text and
    cached completion of a config without them stays valid."""
    from hagstudy.engine.requests import Request, request_key

    cfg = DecodingConfig(0.7, 0.9, 40, 1.1, 32)
    assert cfg.to_json() == '{"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}'
    assert cfg.key() == '{"max_new_tokens": 32, "repetition_penalty": 1.1, "temperature": 0.7, "top_k": 40, "top_p": 0.9}'
    assert request_key("tiny", Request("p", cfg, seed=3)) == "160dde8901ba1b54418b18ef6d5bc24238acd4f60b9608d03f2fe59c15b80943"
    assert cfg.with_(min_p=0.0, edt_theta=0.0) == cfg and cfg.adaptive() == {}


def test_adaptive_fields_enter_text_and_key_only_when_on_and_round_trip():
    base = DecodingConfig(1.0, 1.0, 0, 1.0)
    mp, edt, both = base.with_(min_p=0.1), base.with_(edt_theta=1.5), base.with_(min_p=0.05, edt_theta=0.5)
    assert mp.to_json() == '{"temperature": 1.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "min_p": 0.1}'
    assert both.to_json().endswith('"min_p": 0.05, "edt_theta": 0.5}')
    assert len({base.key(), mp.key(), edt.key(), both.key()}) == 4
    for cfg in (mp, edt, both):
        assert DecodingConfig.from_json(cfg.to_json()) == cfg
    assert mp.distance(base) == 0.0  # distance is over the four searched hyperparameters only


def test_greedy_drops_the_adaptive_fields():
    g = GREEDY.with_(min_p=0.2, edt_theta=2.0)
    assert g.effective() == GREEDY and g.key() == GREEDY.key()
    assert DecodingConfig(temperature=0.5, min_p=0.2).effective().min_p == 0.2


# -- top-nσ: a third adaptive field, off by default; every existing text, identity and key unchanged ---------


@pytest.mark.parametrize("value", [-0.5, 10.5, float("inf"), True, "1"])
def test_top_nsigma_out_of_range_names_the_field(value):
    with pytest.raises(ConfigError, match="top_nsigma"):
        DecodingConfig(top_nsigma=value)


def test_top_nsigma_off_leaves_existing_texts_identities_and_keys_byte_identical():
    """Pinned before top_nsigma existed (the same strings and sha256 as the min_p/EDT pin above, and a tuned
    min-p and EDT config's text as adaptive.json holds it): no stored text or cached completion moves."""
    from hagstudy.engine.requests import Request, request_key

    cfg = DecodingConfig(0.7, 0.9, 40, 1.1, 32)
    assert cfg.with_(top_nsigma=0.0) == cfg and "top_nsigma" not in cfg.to_json() + cfg.identity() + cfg.key()
    assert request_key("tiny", Request("p", cfg, seed=3)) == "160dde8901ba1b54418b18ef6d5bc24238acd4f60b9608d03f2fe59c15b80943"
    edt = DecodingConfig(0.7, 1.0, 0, 1.0, edt_theta=1.0)
    assert edt.to_json() == '{"temperature": 0.7, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "edt_theta": 1.0}'
    assert edt.key() == ('{"edt_theta": 1.0, "max_new_tokens": 64, "repetition_penalty": 1.0, "temperature": 0.7, '
                         '"top_k": 0, "top_p": 1.0}')


def test_top_nsigma_enters_text_and_key_when_on_round_trips_and_greedy_ignores_it():
    base = DecodingConfig(1.0, 1.0, 0, 1.0)
    ns = base.with_(top_nsigma=1.5)
    assert ns.to_json() == '{"temperature": 1.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "top_nsigma": 1.5}'
    assert base.with_(min_p=0.1, top_nsigma=1.0).to_json().endswith('"min_p": 0.1, "top_nsigma": 1.0}')
    assert DecodingConfig.from_json(ns.to_json()) == ns and ns.key() != base.key() and ns.adaptive() == {"top_nsigma": 1.5}
    assert ns.distance(base) == 0.0
    g = GREEDY.with_(top_nsigma=2.0)
    assert g.effective() == GREEDY and g.identity() == GREEDY.identity() and g.key() == GREEDY.key()


def _identity_configs() -> list[DecodingConfig]:
    """Many configs for the identity check: the grid, seeded draws, greedy variants, float noise (0.1 + 0.2),
    ints where floats go and floats where ints go, the adaptive fields, other budgets, and parsed partial texts
    (missing values, None in the JSON, filled in from the fallback)."""
    rng = random.Random(0)
    out = list(SearchSpace().grid()) + [TRANSFORMERS_DEFAULT, GREEDY, DecodingConfig()]
    out += [SearchSpace().sample(np.random.default_rng(s)) for s in range(50)]
    out += [
        DecodingConfig(temperature=0.1 + 0.2, top_p=0.1 + 0.2, repetition_penalty=1 + 0.1 + 0.2),
        DecodingConfig(temperature=1, top_p=1, top_k=50.0, repetition_penalty=1, max_new_tokens=16.0),
        DecodingConfig(temperature=0, top_p=0.5, top_k=7, min_p=0.3, edt_theta=2),
        DecodingConfig(temperature=-0.0, repetition_penalty=1.004999),
        GREEDY.with_(min_p=0.2, edt_theta=2.0, max_new_tokens=128),
    ]
    for _ in range(300):
        out.append(DecodingConfig(
            temperature=rng.choice([0, 0.0, rng.uniform(0, 2)]), top_p=rng.uniform(0.01, 1.0), top_k=rng.randint(0, 1000),
            repetition_penalty=rng.uniform(1.0, 2.0), max_new_tokens=rng.randint(1, 512),
            min_p=rng.choice([0.0, rng.uniform(0, 0.99)]), edt_theta=rng.choice([0.0, rng.uniform(0, 10)]),
            top_nsigma=rng.choice([0.0, rng.uniform(0, 10)]),
        ))
    for text in ('{"temperature": 0.7}', '{"temperature": null, "top_k": 5}', "top_p = 0.3", '{"t": 1e999}'):
        parsed = parse_config(text)
        assert parsed.config is not None
        out.append(parsed.config)
    return out


def test_identity_and_key_are_byte_identical_to_the_formulas_they_replace():
    """``identity`` replaces the search's, ablations' and label check's ``_key`` (``effective().to_json()``) and
    ``key`` is now built from it: both strings feed seeds, file keys and the cache, so they must not move."""

    def old_key(c: DecodingConfig) -> str:
        eff = c.effective()
        return json.dumps({**eff.hyperparameters(), **eff.adaptive(), "max_new_tokens": eff.max_new_tokens}, sort_keys=True)

    configs = _identity_configs()
    assert len(configs) > 400
    for c in configs:
        assert c.identity() == c.effective().to_json()
        assert c.key() == old_key(c)
    assert DecodingConfig(temperature=0.1 + 0.2).identity() == DecodingConfig(temperature=0.3).identity()
    assert GREEDY.with_(top_k=40, top_p=0.5, min_p=0.1).identity() == GREEDY.identity()
    assert GREEDY.with_(max_new_tokens=8).identity() == GREEDY.identity() != GREEDY.with_(max_new_tokens=8).key()
    with pytest.raises(ConfigError):
        DecodingConfig(temperature=None)


def test_the_default_config_is_defined_once():
    assert TRANSFORMERS_DEFAULT == DecodingConfig() and default_config(None)[0] is TRANSFORMERS_DEFAULT
