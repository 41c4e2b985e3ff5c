"""Shared fixtures: optimizer factories by name, used across the test modules."""

import inspect
import os

import numba
import numpy as np
import pytest

import nbadam

# Scripts, not tests: the generators of the committed data (they need torch or optax) and the
# programs that tests/test_distributed.py starts under mpiexec.
collect_ignore_glob = ["data/*.py", "mpi/*.py"]

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
#: The rules that follow optax (tests/test_beyond_rules.py).  They are kept out of RULES,
#: whose tests give every rule torch's hyperparameters (eps, weight_decay) and compare it
#: with torch's reference; the tests that suit any rule run over ALL_RULES.
OPTAX_RULES = [
    ("lion", nbadam.Lion, {}),
    ("adabelief", nbadam.AdaBelief, {}),
    ("adan", nbadam.Adan, {}),
    ("yogi", nbadam.Yogi, {}),
]
OPTAX_RULE_IDS = [rule[0] for rule in OPTAX_RULES]
#: The rules with a reduction (two passes a step; tests/test_prodigy.py).
REDUCTION_RULES = [
    ("prodigy", nbadam.Prodigy, {}),
]
REDUCTION_RULE_IDS = [rule[0] for rule in REDUCTION_RULES]
ALL_RULES = RULES + OPTAX_RULES + REDUCTION_RULES
ALL_RULE_IDS = RULE_IDS + OPTAX_RULE_IDS + REDUCTION_RULE_IDS
DTYPES = [np.float32, np.float64]


def accepted(cls, hyper):
    """The entries of ``hyper`` that optimizer class ``cls`` takes.

    Not every rule has every hyperparameter (Lion has no ``eps``, Yogi no
    ``weight_decay``); a test written for all rules passes what applies.
    """
    parameters = inspect.signature(cls).parameters
    return {name: value for name, value in hyper.items() if name in parameters}


@pytest.fixture(params=RULES, ids=RULE_IDS)
def rule(request):
    """(id, class, kwargs) for each update rule."""
    return request.param


# Hypothesis: "ci" replays a fixed set of examples (reproducible CI runs); "soak" explores
# many more (HYPOTHESIS_PROFILE=soak python -m pytest -k "property or extreme").
from hypothesis import settings  # noqa: E402

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          print_blob=True)
settings.register_profile("soak", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else
                                    "default"))


# -- objectives shared by the minimize tests of several rules -----------------------------
@numba.njit
def rosenbrock(x):
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


@numba.njit
def rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g
