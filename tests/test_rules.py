"""The rule registry: lookups, and a rule added by a test alone that works everywhere.

The toy rule of ``tests/toy_rule.py`` is registered here, not in the package,
and must then work as an optimizer class (serial and parallel kernels,
checkpoints), as a ``minimize`` method (Python and compiled loops) and, in
``tests/test_cuda.py`` under the CUDA simulator, with ``device="cuda"``.
"""

import inspect

import numba
import numpy as np
import pytest
from conftest import DTYPES
from toy_rule import TOY, reference_steps

import nbadam
from nbadam import _config, rules
from nbadam.optimizers import make_optimizer, optimizer_class


@pytest.fixture
def toy():
    rules.register(TOY)
    yield TOY
    rules.unregister("toy")


def test_names_and_lookups():
    assert rules.names()[:6] == ("adam", "adamw", "amsgrad", "nadam", "adamax", "radam")
    assert rules.get("RAdam") is rules.get("radam")
    with pytest.raises(ValueError, match=r"unknown method 'adamm'.*'adam', 'adamw'"):
        rules.get("adamm", "method")
    with pytest.raises(ValueError, match="already registered"):
        rules.register(rules.get("adam"))


@pytest.mark.parametrize("name", rules.names())
def test_class_signatures_carry_the_registry_defaults(name):
    """The documented signatures of the classes and the registry agree."""
    rule = rules.get(name)
    parameters = inspect.signature(optimizer_class(name)).parameters
    for key, default in rule.defaults.items():
        assert parameters[key].default == default, (name, key)
    for key, value in rule.pinned.items():
        assert parameters[key].default != value   # the name pins what the class leaves open


def test_unknown_names_are_errors_everywhere():
    with pytest.raises(ValueError, match="unknown method"):
        nbadam.minimize(lambda x: float(x @ x), np.ones(2), method="sgd")
    with pytest.raises(ValueError, match="unknown rule"):
        optimizer_class("sgd")


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_toy_rule_as_an_optimizer(toy, dtype, parallel, monkeypatch):
    if parallel:
        monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", 0)
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal(37).astype(dtype)
    grads = [rng.standard_normal(37).astype(dtype) for _ in range(5)]
    cls = optimizer_class("toy")
    assert cls.__name__ == "ToyMomentum" and issubclass(cls, nbadam.Optimizer)
    opt = make_optimizer("toy", x0.copy(), lr=0.05, beta=0.5)
    for grad, expected in zip(grads, reference_steps(x0, grads, 0.05, 0.5, dtype), strict=True):
        assert opt.step(grad)
        np.testing.assert_array_equal(opt.params, expected)
    assert opt.steps == 5.0 and sorted(opt.state) == ["velocity"]
    with pytest.raises(ValueError, match="beta"):
        opt.beta = 1.5
    # Checkpoints: a reloaded optimizer continues exactly like the original.
    clone = cls(opt.params.copy(), lr=0.05, beta=0.5)
    clone.load_state_dict(opt.state_dict())
    assert clone.steps == 5.0 and clone.step_count == 5
    opt.step(grads[0])
    clone.step(grads[0])
    np.testing.assert_array_equal(opt.params, clone.params)


def _quadratic():
    target = np.linspace(-1.0, 2.0, 5)

    @numba.njit
    def fun(x):
        return float(np.sum((x - target) ** 2))

    @numba.njit
    def jac(x):
        return 2.0 * (x - target)
    return fun, jac


def test_toy_rule_as_a_minimize_method(toy):
    fun, jac = _quadratic()
    options = {"lr": 0.05, "beta": 0.5, "maxiter": 300, "gtol": 0, "ftol": 0,
               "return_best": False}
    python = nbadam.minimize(fun, np.zeros(5), jac=jac, method="TOY",
                             options={**options, "compiled": False})
    compiled = nbadam.minimize(fun, np.zeros(5), jac=jac, method="toy",
                               options={**options, "compiled": True})
    np.testing.assert_array_equal(python.x, compiled.x)
    assert python.nit == compiled.nit == 300
    np.testing.assert_allclose(python.x, np.linspace(-1.0, 2.0, 5), atol=1e-6)
    # The same steps as the optimizer class.
    x = np.zeros(5)
    opt = make_optimizer("toy", x, lr=0.05, beta=0.5)
    for _ in range(300):
        opt.step(jac(x))
    np.testing.assert_array_equal(x, python.x)
    assert "beta : default 0.9" in nbadam.show_options("toy", disp=False)
    with pytest.raises(ValueError, match="beta"):
        nbadam.minimize(fun, np.zeros(5), jac=jac, method="toy", options={"beta": 2.0})


def test_state_that_starts_at_a_hyperparameter():
    """Update.initial: every target starts the state there (optimizer and minimize)."""
    from toy_rule import TOY_STARTED

    rules.register(TOY_STARTED)
    try:
        opt = make_optimizer("toy_started", np.zeros(4, np.float32), start=0.25)
        assert opt.velocity.dtype == np.float32
        np.testing.assert_array_equal(opt.velocity, 0.25)
        opt.step(np.zeros(4, np.float32))
        np.testing.assert_array_equal(opt.params, np.float32(-0.1) * (np.float32(0.25)
                                      + np.float32(0.1) * (np.float32(0) - np.float32(0.25))))
        fun, jac = _quadratic()
        options = {"lr": 0.05, "start": 0.25, "maxiter": 5, "gtol": 0, "ftol": 0,
                   "return_best": False}
        res = nbadam.minimize(fun, np.zeros(5), jac=jac, method="toy_started", options=options)
        x = np.zeros(5)
        twin = make_optimizer("toy_started", x, lr=0.05, start=0.25)
        for _ in range(5):
            twin.step(jac(x))
        np.testing.assert_array_equal(res.x, x)
    finally:
        rules.unregister("toy_started")
