"""Shared fixtures: optimizer factories by name, used across the test modules."""

import numpy as np
import pytest

import nbadam

#: Every update rule, as (id, class, extra keyword arguments).
RULES = [
    ("adam", nbadam.Adam, {}),
    ("amsgrad", nbadam.Adam, {"amsgrad": True}),
    ("adamw", nbadam.AdamW, {}),
    ("nadam", nbadam.NAdam, {}),
    ("adamax", nbadam.Adamax, {}),
    ("radam", nbadam.RAdam, {}),
]
RULE_IDS = [rule[0] for rule in RULES]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=RULES, ids=RULE_IDS)
def rule(request):
    """(id, class, kwargs) for each update rule."""
    return request.param
