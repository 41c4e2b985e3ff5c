"""Lion, AdaBelief, Adan and Yogi: the rules that follow optax.

* The goldens of ``tests/data/goldens_optax`` (recorded from optax by
  ``tests/data/make_goldens_optax.py``): float64 within a few roundings of the
  scale (``reference.FLOAT64_OPTAX_ROUNDINGS``), float32 within the foundation's
  bound, 16 roundings per step.  nbadam follows optax's order of operations, so
  both agree in practice bit for bit; run this file as a script to print the
  worst differences (``python tests/test_beyond_rules.py``).
* The NumPy reference (``reference.OptaxReference``) across sizes and dtypes, step by
  step for hypothesis' settings, and bit for bit on extreme values (zeros,
  subnormals, values near overflow, infinities, huge learning rates).
* ``minimize`` with each rule's name: the Python and the compiled loops agree bit
  for bit, and with the optimizer class.
* What is particular to each rule: Lion's sign of 0, Adan's first step and its
  three betas, Yogi's starting accumulators, AdaBelief's ``eps_root`` in the state.

The tests that suit every rule (serial = parallel, checkpoints, ``nonfinite``,
float32 machine code, bad inputs, ``lr=0``, the CUDA kernels) run over
``conftest.ALL_RULES`` in their own files.
"""

import numpy as np
import pytest
from conftest import DTYPES, OPTAX_RULE_IDS, OPTAX_RULES, rosenbrock, rosenbrock_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import (
    OPTAX_DEFAULTS,
    OptaxReference,
    load_golden,
    optax_golden_cases,
    optax_relative_tolerance,
    param_scale,
)
from scipy.optimize import OptimizeWarning

import nbadam
from nbadam import _config, rules

CASES = optax_golden_cases()
SIZES = [0, 1, 7, None, 200_001]


def build(config, params):
    """The nbadam optimizer a golden case's configuration describes."""
    kwargs = dict(config["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(nbadam, config["optimizer"])(params, **kwargs)


def replay(path):
    """nbadam on one golden case: config, golden arrays, optimizer, trajectory."""
    config, arrays = load_golden(path)
    params = arrays["params0"].copy()
    opt = build(config, params)
    trajectory = np.empty_like(arrays["params"])
    for t, grad in enumerate(arrays["grads"]):
        assert opt.step(grad)
        trajectory[t] = params
    return config, arrays, opt, trajectory


def reference_for(cls, params, **hyper):
    """The NumPy reference configured like ``cls(params, **hyper)``."""
    opt = cls(params.copy(), **hyper)
    settings_ = {key: getattr(opt, key) for key in OPTAX_DEFAULTS[cls.__name__]
                 if key != "rule"}
    return OptaxReference(cls.rule.name, params.copy(), maximize=opt.maximize, **settings_)


def other_hyperparameters(cls):
    """Settings other than the defaults, for each rule."""
    return {"Lion": {"lr": 1e-2, "betas": (0.8, 0.95), "weight_decay": 0.1},
            "AdaBelief": {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-8, "eps_root": 0.0},
            "Adan": {"lr": 1e-2, "betas": (0.9, 0.85, 0.95), "eps": 1e-6, "eps_root": 1e-10,
                     "weight_decay": 0.05},
            "Yogi": {"lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-4,
                     "initial_accumulator": 0.1}}[cls.__name__]


def assert_within(got, expected, allowed):
    """``|got - expected| <= allowed`` where finite; the same NaNs and infinities elsewhere."""
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(expected)],
                                  expected[~finite & ~np.isnan(expected)])
    np.testing.assert_array_less(np.abs(got[finite] - expected[finite]), allowed[finite])


# -- the goldens ----------------------------------------------------------------------------
def test_every_rule_has_goldens():
    names = {load_golden(path)[0]["optimizer"] for path in CASES}
    assert names == {cls.__name__ for _, cls, _ in OPTAX_RULES}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_matches_optax_golden(path):
    config, arrays, opt, trajectory = replay(path)
    assert trajectory.dtype == np.dtype(config["dtype"])
    steps = np.arange(1, config["steps"] + 1)[:, None]
    error = np.abs(trajectory.astype(np.float64) - arrays["params"])
    allowed = optax_relative_tolerance(config, steps) * param_scale(arrays)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert np.all(error <= allowed), (
        f"step {worst[0] + 1}, element {worst[1]}: {error[worst]:.3e} > {allowed[worst]:.3e}")
    assert opt.step_count == arrays["step"]
    rtol = optax_relative_tolerance(config, config["steps"])
    assert set(opt.state) == set(arrays) - {"params0", "grads", "params", "step"}
    for name, value in opt.state.items():
        assert value.dtype == arrays[name].dtype, name
        scale = np.abs(arrays[name]).max() + np.finfo(arrays[name].dtype).tiny
        assert np.abs(value.astype(np.float64) - arrays[name]).max() <= rtol * scale, name


def worst_differences():
    """``{case: (max |nbadam - optax| / scale, the same for jitted optax, dtype)}``.

    The scale is ``param_scale`` (``max|theta| + max|dtheta|`` per element).
    """
    out = {}
    for path in CASES:
        config, arrays, _, trajectory = replay(path)
        error = np.abs(trajectory.astype(np.float64) - arrays["params"]) / param_scale(arrays)
        out[path.stem] = (float(error.max()), config["jit_difference"], config["dtype"])
    return out


# -- the NumPy reference --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"n{s}")
@pytest.mark.parametrize("settings_", ["default", "other", "maximize"])
@pytest.mark.parametrize("rule", OPTAX_RULES, ids=OPTAX_RULE_IDS)
def test_matches_reference_across_sizes(rule, settings_, size, dtype):
    _, cls, _ = rule
    size = _config.PARALLEL_MIN_SIZE + 1 if size is None else size
    rng = np.random.default_rng(size)
    params = rng.standard_normal(size).astype(dtype)
    hyper = {"default": {}, "other": other_hyperparameters(cls),
             "maximize": {**other_hyperparameters(cls), "maximize": True}}[settings_]
    ours = cls(params, **hyper)
    ref = reference_for(cls, params, **hyper)
    unit = np.finfo(dtype).eps / 2
    for step in range(1, 9):
        grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 2, size)).astype(dtype)
        grad[::11] = 0.0
        ours.step(grad)
        ref.step(grad)
        scale = np.maximum(np.abs(ref.params.astype(np.float64)), 1.0)
        assert_within(params, ref.params, 16 * step * unit * scale + np.finfo(dtype).tiny)
    assert params.dtype == dtype and all(s.dtype == dtype for s in ours.state.values())
    for name, value in ours.state.items():
        expected = getattr(ref, name)
        assert_within(value, expected, 16 * 8 * unit * (np.abs(expected) + 1.0))


def _betas(rule_id):
    count = 3 if rule_id == "adan" else 2
    return st.tuples(*[st.floats(0.0, 0.999)] * count)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    rule=st.sampled_from(OPTAX_RULES),
    dtype=st.sampled_from(DTYPES),
    size=st.integers(0, 20_000),
    lr=st.floats(1e-5, 1.0),
    eps=st.floats(0.0, 1e-3),
    eps_root=st.floats(0.0, 1e-6),
    weight_decay=st.floats(0.0, 0.5),
    initial_accumulator=st.floats(0.0, 1.0),
    maximize=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(data, rule, dtype, size, lr, eps, eps_root, weight_decay,
                                    initial_accumulator, maximize, seed):
    """Each step, from the reference's state, lands within a few ulps of the reference's."""
    rule_id, cls, _ = rule
    offered = {"lr": lr, "betas": data.draw(_betas(rule_id)), "eps": eps, "eps_root": eps_root,
               "weight_decay": weight_decay, "initial_accumulator": initial_accumulator,
               "maximize": maximize}
    hyper = {k: v for k, v in offered.items()
             if k in OPTAX_DEFAULTS[cls.__name__] or k == "maximize"}
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size).astype(dtype)
    ours = cls(params, **hyper)
    ref = reference_for(cls, params, **hyper)
    unit = np.finfo(dtype).eps / 2
    with np.errstate(all="ignore"):
        for _ in range(3):
            before = ref.params.astype(np.float64)
            grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 3, size)).astype(dtype)
            ours.step(grad)
            ref.step(grad)
            after = ref.params.astype(np.float64)
            scale = np.abs(before) + np.abs(after - before)
            assert_within(params, ref.params, 16 * unit * scale + np.finfo(dtype).tiny)
            # Continue both from the reference's state.
            params[...] = ref.params
            for name, array in ours.state.items():
                array[...] = getattr(ref, name)


def extreme_values(dtype):
    info = np.finfo(dtype)
    return st.sampled_from([0.0, -0.0, float(info.smallest_subnormal), float(info.tiny), 1e-30,
                            1.0, -2.5, 1e20, float(info.max), -float(info.max), np.inf,
                            -np.inf])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rule=st.sampled_from(OPTAX_RULES), dtype=st.sampled_from(DTYPES),
       lr=st.sampled_from([1e-3, 1.0, 1e10, 1e30]), beta=st.sampled_from([0.0, 0.9]),
       eps=st.sampled_from([0.0, 1e-8]), weight_decay=st.sampled_from([0.0, 0.1]))
def test_extreme_values_match_the_reference_exactly(data, rule, dtype, lr, beta, eps,
                                                    weight_decay):
    """Zeros, subnormals, values near overflow, infinities, huge lr, beta = 0, eps = 0.

    The kernels and the reference perform the same IEEE operations in the same order,
    so they agree bit for bit, NaNs and infinities included (the sign of a zero aside:
    NumPy's ``sign(-0.0)`` is +0, optax's and nbadam's -0).
    """
    rule_id, cls, _ = rule
    size = 6
    values = extreme_values(dtype)
    params = np.array(data.draw(st.lists(values, min_size=size, max_size=size)), dtype=dtype)
    grads = [np.array(data.draw(st.lists(values, min_size=size, max_size=size)), dtype=dtype)
             for _ in range(3)]
    offered = {"lr": lr, "betas": (beta,) * (3 if rule_id == "adan" else 2), "eps": eps,
               "eps_root": eps, "weight_decay": weight_decay}
    hyper = {k: v for k, v in offered.items() if k in OPTAX_DEFAULTS[cls.__name__]}
    with np.errstate(all="ignore"):
        ref = reference_for(cls, params, **hyper)
        ours = cls(params, **hyper)
        for grad in grads:
            ref.step(grad)
            ours.step(grad)
            np.testing.assert_array_equal(params, ref.params)
            for name, value in ours.state.items():
                np.testing.assert_array_equal(value, getattr(ref, name), err_msg=name)


# -- minimize ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("settings_", ["default", "other"])
@pytest.mark.parametrize("rule", OPTAX_RULES, ids=OPTAX_RULE_IDS)
def test_minimize_loops_agree_with_each_other_and_the_class(rule, settings_, dtype):
    rule_id, cls, _ = rule
    hyper = {} if settings_ == "default" else other_hyperparameters(cls)
    start = np.linspace(-1.2, 1.0, 6).astype(dtype)
    options = {**hyper, "maxiter": 150, "gtol": 0, "ftol": 0, "return_best": False}
    method = cls.__name__ if settings_ == "default" else rule_id    # the name is case-blind
    python = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad, method=method,
                             options={**options, "compiled": False})
    compiled = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad, method=method,
                               options={**options, "compiled": True})
    assert python.nit == compiled.nit == 150 and python.x.dtype == dtype
    np.testing.assert_array_equal(python.x, compiled.x)
    x = start.copy()
    opt = cls(x, **hyper)
    for _ in range(150):
        opt.step(rosenbrock_grad(x).astype(dtype))
    np.testing.assert_array_equal(python.x, x)


@pytest.mark.parametrize("rule", OPTAX_RULES, ids=OPTAX_RULE_IDS)
def test_minimize_reaches_the_minimum(rule):
    _, cls, _ = rule
    lr = {"Lion": 1e-2, "AdaBelief": 2e-2, "Adan": 2e-2, "Yogi": 5e-2}[cls.__name__]
    schedule = nbadam.schedules.exponential_decay(lr, 0.5, transition_steps=1500)
    res = nbadam.minimize(rosenbrock, np.array([-1.2, 1.0]), jac=rosenbrock_grad,
                          method=cls.rule.name,
                          options={"lr": schedule, "maxiter": 8000, "gtol": 0})
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=5e-2)


def test_options_are_listed_and_checked():
    text = nbadam.show_options("adan", disp=False)
    assert "betas : (float, float, float), default (0.98, 0.92, 0.99)" in text
    assert "eps_root : float, default 1e-08" in text
    assert "initial_accumulator : float, default 1e-06" in nbadam.show_options("yogi",
                                                                               disp=False)
    assert "eps :" not in nbadam.show_options("lion", disp=False)
    with pytest.raises(ValueError, match="betas must be a triple"):
        nbadam.minimize(rosenbrock, np.zeros(2), jac=rosenbrock_grad, method="adan",
                        options={"betas": (0.9, 0.9)})
    with pytest.warns(OptimizeWarning, match="Unknown solver options: eps"):
        nbadam.minimize(rosenbrock, np.zeros(2), jac=rosenbrock_grad, method="lion",
                        options={"eps": 1e-8, "maxiter": 1})


# -- what is particular to each rule ---------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_lion_moves_every_element_by_lr_and_a_zero_not_at_all(dtype):
    x = np.array([1.0, -2.0, 0.5, 3.0], dtype=dtype)
    opt = nbadam.Lion(x, lr=0.25)
    opt.step(np.array([1e-30, -7.0, 0.0, np.inf], dtype=dtype))
    np.testing.assert_array_equal(x, np.array([0.75, -1.75, 0.5, 2.75], dtype=dtype))
    # sign(0) = 0: with no gradient and no momentum an element does not move.
    np.testing.assert_array_equal(opt.exp_avg[2], 0.0)
    opt = nbadam.Lion(x, lr=0.25, weight_decay=0.5)
    opt.step(np.zeros(4, dtype=dtype))
    np.testing.assert_array_equal(
        x, np.array([0.75, -1.75, 0.5, 2.75], dtype=dtype) * dtype(1.0 - 0.25 * 0.5))


def test_adan_first_step_has_no_gradient_difference():
    x = np.array([1.0, 2.0])
    opt = nbadam.Adan(x, lr=0.1)
    opt.step(np.array([3.0, -1.0]))
    np.testing.assert_array_equal(opt.exp_avg_diff, 0.0)
    np.testing.assert_array_equal(opt.prev_grad, [3.0, -1.0])
    opt.step(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(opt.exp_avg_diff, [(1 - 0.92) * -2.0, 0.0])


def test_adan_maximize_keeps_the_negated_gradient():
    opt = nbadam.Adan(np.zeros(2), maximize=True)
    opt.step(np.array([3.0, -1.0]))
    np.testing.assert_array_equal(opt.prev_grad, [-3.0, 1.0])


@pytest.mark.parametrize("betas,error,match", [
    ((0.9, 0.99), ValueError, r"betas must be a triple .* got 2 values"),
    ((0.9, 0.9, 0.9, 0.9), ValueError, "got 4 values"),
    ((0.9, 0.9, 1.0), ValueError, r"betas\[2\] must be in \[0, 1\)"),
    ((0.9, float("nan"), 0.9), ValueError, r"betas\[1\]"),
    (0.9, TypeError, "betas must be a triple"),
    ("abc", TypeError, "betas must be a triple"),
])
def test_adan_takes_three_betas(betas, error, match):
    with pytest.raises(error, match=match):
        nbadam.Adan(np.zeros(2), betas=betas)
    opt = nbadam.Adan(np.zeros(2), betas=[0.9, 0.8, 0.7])
    assert opt.betas == (0.9, 0.8, 0.7)
    with pytest.raises(error, match=match):
        opt.betas = betas
    assert opt.betas == (0.9, 0.8, 0.7)


def test_the_other_rules_take_a_pair():
    for cls in (nbadam.Lion, nbadam.AdaBelief, nbadam.Yogi):
        with pytest.raises(ValueError, match="pair"):
            cls(np.zeros(2), betas=(0.9, 0.9, 0.9))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_yogi_moments_start_at_the_accumulator(dtype):
    x = np.zeros(3, dtype=dtype)
    opt = nbadam.Yogi(x, initial_accumulator=0.25)
    np.testing.assert_array_equal(opt.exp_avg, dtype(0.25))
    np.testing.assert_array_equal(opt.exp_avg_sq, dtype(0.25))
    default = nbadam.Yogi(np.zeros(3, dtype=dtype))
    np.testing.assert_array_equal(default.exp_avg_sq, dtype(1e-6))
    # minimize starts there too: the same steps as the class.
    start = np.array([0.5, -0.5], dtype=dtype)
    res = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad, method="yogi",
                          options={"initial_accumulator": 0.25, "maxiter": 3, "gtol": 0,
                                   "ftol": 0, "return_best": False})
    y = start.copy()
    twin = nbadam.Yogi(y, initial_accumulator=0.25)
    for _ in range(3):
        twin.step(rosenbrock_grad(y))
    np.testing.assert_array_equal(res.x, y)


def test_yogi_groups_start_at_their_own_accumulator():
    opt = nbadam.Yogi(np.zeros(4), groups=[{"params": slice(0, 2)},
                                           {"params": slice(2, 4), "initial_accumulator": 0.5}])
    np.testing.assert_array_equal(opt.exp_avg_sq, [1e-6, 1e-6, 0.5, 0.5])


def test_adabelief_eps_root_is_kept_in_the_state():
    opt = nbadam.AdaBelief(np.zeros(2), eps_root=1e-3)
    opt.step(np.zeros(2))
    np.testing.assert_array_equal(opt.exp_avg_var, 1e-3)
    opt.step(np.zeros(2))
    np.testing.assert_array_equal(opt.exp_avg_var, 0.999 * 1e-3 + 1e-3)


@pytest.mark.parametrize("cls,name,value", [
    (nbadam.AdaBelief, "eps_root", -1e-16), (nbadam.Adan, "eps_root", float("nan")),
    (nbadam.Yogi, "initial_accumulator", -1e-6), (nbadam.Yogi, "initial_accumulator", "1"),
    (nbadam.Lion, "weight_decay", -0.1), (nbadam.Adan, "weight_decay", float("inf")),
])
def test_rule_hyperparameters_are_checked(cls, name, value):
    with pytest.raises((TypeError, ValueError), match=name):
        cls(np.zeros(2), **{name: value})


def test_a_negative_second_moment_in_a_checkpoint_is_refused():
    for cls, name in ((nbadam.Yogi, "exp_avg_sq"), (nbadam.AdaBelief, "exp_avg_var"),
                      (nbadam.Adan, "exp_avg_sq")):
        state = cls(np.zeros(3)).state_dict()
        state["state"][name][1] = -1.0
        with pytest.raises(ValueError, match=rf"{name}\[1\] = -1.0"):
            cls(np.zeros(3)).load_state_dict(state)


def test_registry_entries():
    assert rules.names()[6:10] == ("lion", "adabelief", "adan", "yogi")
    for _, cls, _ in OPTAX_RULES:
        rule = rules.get(cls.__name__)
        assert rule.optimizer == cls.__name__ and cls.rule is rule
        assert nbadam.optimizers.optimizer_class(rule.name) is cls
        assert rule.update({}).state == tuple(cls(np.zeros(1)).state)


if __name__ == "__main__":
    print("max |difference| / scale, in units of roundoff of the case's dtype")
    for case, (error, jitted, dtype) in worst_differences().items():
        unit = np.finfo(dtype).eps / 2
        print(f"{case:34s} nbadam vs optax: {error:.1e} ({error / unit:.1f} u); "
              f"jitted optax vs optax: {jitted:.1e} ({jitted / unit:.1f} u)")
