"""Shared fixtures: the tiny-random model (3M parameters, the real tokenizer) loads in well under a second."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny():
    from hagstudy import models

    return models.load(models.TINY, dtype="float32")


@pytest.fixture(scope="session")
def tokenizer(tiny):
    return tiny[1]
