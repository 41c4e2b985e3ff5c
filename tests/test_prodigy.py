"""Prodigy: the rule with a reduction, against prodigyopt and a NumPy reference.

* The goldens of ``tests/data/goldens_prodigy`` (recorded from prodigyopt 1.1.2 by
  ``tests/data/make_goldens_prodigy.py``): float64 within ``FLOAT64_ROUNDINGS`` roundings
  of the scale over 200 steps (prodigyopt's torch kernels fuse multiply-adds and sum in
  another order; the worst measured is about 17), float32 within the foundation's bound
  (16 roundings per step); ``d`` within the same relative bounds.  Run this file as a
  script to print the worst differences.
* The NumPy reference (``prodigy_reference.py``) across sizes, dtypes and settings, the
  serial and the parallel kernels, hypothesis' settings step by step.
* The machine code: both passes inline their per-element function into a loop with no
  reference counting, and vectorise.
* Checkpoints resume bit for bit; ``nonfinite``; groups share ``d``; ``lr`` schedules;
  ``minimize`` (Python and compiled loops agree with each other and the class);
  ``MLP.fit``; the paths that refuse the rule.
"""

import json
import math
import pathlib

import numba
import numpy as np
import pytest
from conftest import DTYPES, rosenbrock, rosenbrock_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prodigy_reference import ProdigyReference
from reference import load_golden, param_scale, relative_tolerance

import nbadam
from nbadam import _config

GOLDENS = sorted((pathlib.Path(__file__).parent / "data" / "goldens_prodigy").glob("*.npz"))
FLOAT64_ROUNDINGS = 32
UNIT = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}
OTHER = {"lr": 0.5, "betas": (0.8, 0.99), "beta3": 0.9, "eps": 1e-6, "weight_decay": 0.05,
         "decouple": False, "use_bias_correction": True, "safeguard_warmup": True,
         "d0": 1e-3, "d_coef": 0.7, "growth_rate": 1.5}


def build(config, params):
    kwargs = dict(config["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    groups = kwargs.pop("groups", None)
    if groups is not None:
        kwargs["groups"] = [{"params": slice(lo, hi), **extra} for lo, hi, extra in groups]
    return nbadam.Prodigy(params, **kwargs)


def replay(path):
    config, arrays = load_golden(path)
    params = arrays["params0"].copy()
    opt = build(config, params)
    trajectory = np.empty_like(arrays["params"])
    for t, grad in enumerate(arrays["grads"]):
        assert opt.step(grad)
        trajectory[t] = params
    return config, arrays, opt, trajectory


def tolerance(config, steps):
    if config["dtype"] == "float64":
        return FLOAT64_ROUNDINGS * 2.0**-53 + 0.0 * np.asarray(steps)
    return relative_tolerance(config, steps)


def test_goldens_cover_the_settings():
    names = {path.stem.rsplit("_", 1)[0] for path in GOLDENS}
    assert len(GOLDENS) == 2 * len(names) >= 12
    keys = set()
    for path in GOLDENS:
        keys |= set(load_golden(path)[0]["kwargs"])
    assert {"beta3", "weight_decay", "decouple", "use_bias_correction", "safeguard_warmup",
            "growth_rate", "d_coef", "groups"} <= keys


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: p.stem)
def test_matches_prodigyopt_golden(path):
    config, arrays, opt, trajectory = replay(path)
    steps = np.arange(1, config["steps"] + 1)[:, None]
    error = np.abs(trajectory.astype(np.float64) - arrays["params"])
    allowed = tolerance(config, steps) * param_scale(arrays)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert np.all(error <= allowed), (
        f"step {worst[0] + 1}, element {worst[1]}: {error[worst]:.3e} > {allowed[worst]:.3e}")
    rtol = tolerance(config, config["steps"])
    for name in ("d", "d_max", "d_numerator"):
        assert abs(getattr(opt, name) - arrays[name]) <= rtol * abs(arrays[name]), name
    assert opt.k == arrays["k"] == config["steps"]
    for name in ("exp_avg", "exp_avg_sq", "s", "p0"):
        if name in arrays:
            value = opt.state[name]
            assert value.dtype == arrays[name].dtype
            scale = np.abs(arrays[name]).max()
            assert np.abs(value.astype(np.float64) - arrays[name]).max() <= rtol * scale, name


def worst_differences():
    """``{case: (max |nbadam - prodigyopt| / scale in roundings, relative error of d)}``."""
    out = {}
    for path in GOLDENS:
        config, arrays, opt, trajectory = replay(path)
        unit = UNIT[np.dtype(config["dtype"])]
        error = np.abs(trajectory.astype(np.float64) - arrays["params"]) / param_scale(arrays)
        out[path.stem] = (float(error.max()) / unit,
                          abs(opt.d - float(arrays["d"])) / float(arrays["d"]) / unit)
    return out


# -- the NumPy reference --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", [0, 1, 7, None, 200_001], ids=lambda s: f"n{s}")
@pytest.mark.parametrize("hyper", [{}, OTHER, {**OTHER, "decouple": True, "maximize": True},
                                   {"betas": (0.0, 0.9)}], ids=["default", "other",
                                                                "decoupled_max", "beta1_0"])
def test_matches_reference_across_sizes(hyper, size, dtype):
    size = _config.PARALLEL_MIN_SIZE + 1 if size is None else size
    rng = np.random.default_rng(size)
    params = rng.standard_normal(size).astype(dtype)
    ours = nbadam.Prodigy(params, **hyper)
    ref = ProdigyReference(params, **hyper)
    unit = np.finfo(dtype).eps / 2
    for step in range(1, 9):
        grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 1, size)).astype(dtype)
        grad[::11] = 0.0
        ours.step(grad)
        ref.step(grad)
        scale = np.abs(ref.params.astype(np.float64)) + np.abs(ref.params - ref.p0) + 1e-30
        np.testing.assert_array_less(np.abs(params - ref.params.astype(np.float64)),
                                     64 * step * unit * scale + np.finfo(dtype).tiny)
        assert abs(ours.d - ref.d) <= 64 * step * unit * ref.d
    assert ours.k == ref.k and params.dtype == dtype


def test_serial_and_parallel_kernels_agree_bit_for_bit(monkeypatch):
    rng = np.random.default_rng(3)
    start = rng.standard_normal(50_000)
    results = []
    for threshold in (10**9, 0):
        monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", threshold)
        x = start.copy()
        opt = nbadam.Prodigy(x, weight_decay=0.01)
        for k in range(5):
            opt.step(np.sin(x * (k + 1)))
        results.append((x.copy(), opt.d, opt.d_numerator))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1:] == results[1][1:]


def pass_ir(which, parallel, decouple):
    """LLVM IR of a float32 pass (``"update"``, or ``"reduce"``: its chunk function, the
    loop over the elements), compiled afresh (Numba cannot inspect code loaded from cache)."""
    from nbadam._kernels import cpu
    from nbadam.optimizers import _reduction
    size = 64
    grad = np.ones(size, np.float32)
    opt = nbadam.Prodigy(np.ones(size, np.float32), weight_decay=0.1, decouple=decouple)
    opt.step(grad)
    update, group = opt._update, opt._groups[0]
    if which == "update":
        scalars = update.finish(group.hyper(), group.running.copy(), 1.0, 2, np.ones(2))
        source = getattr(cpu.kernels(update), "parallel" if parallel else "serial").py_func
        args = (opt._params, grad, opt._state_arrays)
        options = {"parallel": parallel, "nogil": True}
    else:
        scalars = update.scalars(group.hyper(), group.running.copy(), 1.0, 2)
        loop = cpu.reduction_kernels(update).serial.py_func
        source = loop.__globals__["chunk_sums"].py_func
        args = (0, size, opt._params, grad, opt._state_arrays)
        options = {"fastmath": {"reassoc"}}
    fresh = numba.njit(error_model="numpy", **options)(source)
    fresh(*args, _reduction._in_dtype(scalars, np.dtype(np.float32)))
    (signature,) = fresh.signatures
    return fresh.inspect_llvm(signature)


@pytest.mark.parametrize("decouple", [True, False], ids=["decoupled", "coupled"])
@pytest.mark.parametrize(("which", "parallel"),
                         [("update", False), ("update", True), ("reduce", False)])
def test_both_passes_vectorise_without_reference_counting(which, parallel, decouple):
    """Each pass's per-element function inlines into a loop with no reference counting
    (an array whose last use falls in one branch keeps ``NRT_incref`` in the loop, which
    then runs scalar at about 50x the cost) and vectorises; the update pass does no
    float64 arithmetic.  The reduction's chunk loop serves the serial and parallel builds."""
    ir = pass_ir(which, parallel, decouple)
    assert "call void @NRT_incref" not in ir
    assert "<8 x float>" in ir or "<4 x float>" in ir or (parallel and which == "update")
    if which == "update":
        for token in ("fpext", "fadd double", "fmul double", "fdiv double", "llvm.sqrt.f64"):
            assert token not in ir, token


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=40)
@given(dtype=st.sampled_from(DTYPES), size=st.integers(1, 5_000),
       lr=st.floats(1e-3, 2.0), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.999),
       weight_decay=st.floats(0.0, 0.5), decouple=st.booleans(), bias=st.booleans(),
       safeguard=st.booleans(), d_coef=st.floats(0.1, 2.0), growth=st.floats(1.0, 10.0),
       maximize=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_property_matches_reference(dtype, size, lr, beta1, beta2, weight_decay, decouple,
                                    bias, safeguard, d_coef, growth, maximize, seed):
    hyper = {"lr": lr, "betas": (beta1, beta2), "weight_decay": weight_decay,
             "decouple": decouple, "use_bias_correction": bias,
             "safeguard_warmup": safeguard, "d_coef": d_coef, "growth_rate": growth,
             "maximize": maximize}
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size).astype(dtype)
    ours, ref = nbadam.Prodigy(params, **hyper), ProdigyReference(params, **hyper)
    unit = np.finfo(dtype).eps / 2
    for step in range(1, 4):
        grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-2, 2, size)).astype(dtype)
        ours.step(grad)
        ref.step(grad)
        scale = np.abs(ref.params.astype(np.float64)) + np.abs(ref.params - ref.p0) + 1e-30
        assert np.all(np.abs(params - ref.params.astype(np.float64))
                      <= 64 * step * unit * scale + np.finfo(dtype).tiny)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), lr=st.sampled_from([1e-3, 1.0, 1e10]),
       beta1=st.sampled_from([0.0, 0.9]), eps=st.sampled_from([1e-30, 1e-8]),
       weight_decay=st.sampled_from([0.0, 0.1]), decouple=st.booleans())
def test_extreme_values_match_the_reference(data, dtype, lr, beta1, eps, weight_decay, decouple):
    """Zeros, subnormals, values near overflow, infinities and NaN, a huge lr, beta1 = 0
    and a tiny eps (Prodigy needs eps > 0): where the reference's result is NaN or infinite,
    so is nbadam's, with the same signs, and the finite results agree within the reference
    test's bound.  (Not bit for bit: the two sum the vector in different orders, and ``d``
    carries the sums into every element.)"""
    finfo = np.finfo(dtype)
    specials = [0.0, -0.0, float(finfo.smallest_subnormal), -float(finfo.tiny), 1.0, -3.5,
                float(finfo.max) / 4, -float(finfo.max) / 4, math.inf, -math.inf, math.nan]
    size = 6
    params = np.array(data.draw(st.lists(st.sampled_from(specials[:8]), min_size=size,
                                         max_size=size)), dtype=dtype)
    hyper = {"lr": lr, "betas": (beta1, 0.999), "eps": eps, "weight_decay": weight_decay,
             "decouple": decouple}
    ours, ref = nbadam.Prodigy(params, **hyper), ProdigyReference(params, **hyper)
    unit = finfo.eps / 2
    with np.errstate(all="ignore"):
        for step in range(1, 4):
            grad = np.array(data.draw(st.lists(st.sampled_from(specials), min_size=size,
                                               max_size=size)), dtype=dtype)
            ours.step(grad)
            ref.step(grad)
            got, want = params.astype(np.float64), ref.params.astype(np.float64)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            infinite = np.isinf(want)
            np.testing.assert_array_equal(np.isinf(got), infinite)
            np.testing.assert_array_equal(got[infinite], want[infinite])
            finite = np.isfinite(want)
            scale = np.abs(want) + np.abs(want - ref.p0.astype(np.float64)) + 1e-30
            assert np.all(np.abs(got - want)[finite]
                          <= (64 * step * unit * scale + finfo.tiny)[finite])


# -- what is particular to Prodigy ----------------------------------------------------------
def test_p0_is_the_start_and_d_starts_at_d0():
    x = np.array([1.0, -2.0, 3.0])
    opt = nbadam.Prodigy(x, d0=1e-3)
    np.testing.assert_array_equal(opt.p0, [1.0, -2.0, 3.0])
    assert (opt.d, opt.d_max, opt.d_numerator, opt.k) == (1e-3, 1e-3, 0.0, 0.0)
    assert opt.beta3 is None and opt.growth_rate == math.inf


def test_no_gradient_changes_nothing_as_prodigyopt():
    x = np.array([1.0, -2.0])
    opt = nbadam.Prodigy(x)
    assert opt.step(np.zeros(2))
    np.testing.assert_array_equal(x, [1.0, -2.0])
    assert (opt.d, opt.k) == (1e-6, 0.0)
    opt.step(np.array([1.0, 0.5]))
    assert opt.k == 1.0 and not np.array_equal(x, [1.0, -2.0])


def test_lr_zero_is_a_step_that_changes_nothing():
    x = np.array([1.0, -2.0])
    opt = nbadam.Prodigy(x, lr=0.0)
    before = {k: v.copy() for k, v in opt.state.items()}
    opt.step(np.array([1.0, 0.5]))
    np.testing.assert_array_equal(x, [1.0, -2.0])
    for name, value in opt.state.items():
        np.testing.assert_array_equal(value, before[name])


def test_groups_share_d_and_refuse_different_rates():
    x = np.linspace(-1, 1, 10)
    opt = nbadam.Prodigy(x, groups=[{"params": slice(0, 4), "weight_decay": 0.1},
                                    {"params": slice(4, 10), "eps": 1e-6}])
    for _ in range(20):
        opt.step(2.0 * x)
    first, second = (group.scalars for group in opt.groups)
    assert first == second and first["d"] > 1e-6
    with pytest.raises(ValueError, match="shared by every group"):
        nbadam.Prodigy(x, groups=[{"params": slice(0, 4), "d_coef": 2.0}])
    opt.groups[0]["lr"] = 0.5
    before = x.copy()
    with pytest.raises(ValueError, match="lr must be the same or 0"):
        opt.step(2.0 * x)
    np.testing.assert_array_equal(x, before)
    opt.groups[0]["lr"] = 0.0   # frozen
    opt.step(2.0 * x)
    np.testing.assert_array_equal(x[:4], before[:4])
    assert not np.array_equal(x[4:], before[4:])


@pytest.mark.parametrize("name,value,match", [
    ("eps", 0.0, "eps must be > 0"), ("d0", -1.0, "d0 must be > 0"),
    ("d_coef", 0.0, "d_coef must be > 0"), ("growth_rate", 0.5, "growth_rate must be >= 1"),
    ("beta3", 1.0, r"beta3 must be in \[0, 1\)"), ("decouple", "yes", "decouple"),
])
def test_bad_hyperparameters_are_refused(name, value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nbadam.Prodigy(np.zeros(2), **{name: value})


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_checkpoint_resumes_bit_for_bit(tmp_path, dtype):
    rng = np.random.default_rng(0)
    start = rng.standard_normal(40).astype(dtype)
    grads = rng.standard_normal((12, 40)).astype(dtype)
    x = start.copy()
    opt = nbadam.Prodigy(x, weight_decay=0.01)
    for g in grads[:6]:
        opt.step(g * (1 + x))
    opt.save(tmp_path / "opt.npz")
    snapshot = opt.state_dict()
    assert set(snapshot["scalars"]) == {"d", "d_max", "d_numerator", "k"}
    y = x.copy()
    for g in grads[6:]:
        opt.step(g * (1 + x))
    twin = nbadam.Prodigy(y, weight_decay=0.01)
    twin.load(tmp_path / "opt.npz")
    for g in grads[6:]:
        twin.step(g * (1 + y))
    np.testing.assert_array_equal(x, y)
    assert twin.d == opt.d and twin.k == opt.k
    bad = {**snapshot, "scalars": {**snapshot["scalars"], "d": -1.0}}
    with pytest.raises(ValueError, match="d must be > 0"):
        twin.load_state_dict(bad)


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nonfinite_gradient_changes_nothing(policy):
    x = np.array([1.0, 2.0, 3.0])
    opt = nbadam.Prodigy(x, nonfinite=policy)
    opt.step(np.ones(3))
    before = x.copy(), {k: v.copy() for k, v in opt.state.items()}, opt.d
    bad = np.array([1.0, np.nan, 0.0])
    if policy == "raise":
        with pytest.raises(FloatingPointError):
            opt.step(bad)
    else:
        assert not opt.step(bad)
    np.testing.assert_array_equal(x, before[0])
    assert opt.d == before[2]


def test_clipping_is_the_clipped_gradient_and_ema_follows():
    x = np.linspace(-1, 1, 8)
    y = x.copy()
    clipped = nbadam.Prodigy(x, clip_grad_norm=0.5, ema=0.5)
    plain = nbadam.Prodigy(y)
    for _ in range(5):
        g = 3.0 * x
        coef = 0.5 / (float(np.sqrt(np.sum(g * g))) + 1e-6)
        clipped.step(g)
        plain.step(3.0 * y * coef)
    np.testing.assert_allclose(x, y, rtol=1e-13)
    assert np.all(clipped.ema_params != x) and np.all(np.isfinite(clipped.ema_params))


# -- minimize, the MLP and the refusals -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("hyper", [{}, {"weight_decay": 0.01, "betas": (0.0, 0.99)}],
                         ids=["default", "other"])
def test_minimize_loops_agree_with_each_other_and_the_class(hyper, dtype):
    start = np.linspace(-1.2, 1.0, 6).astype(dtype)
    options = {**hyper, "maxiter": 150, "gtol": 0, "ftol": 0, "return_best": False}
    python = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad, method="prodigy",
                             options={**options, "compiled": False})
    compiled = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad, method="Prodigy",
                               options={**options, "compiled": True})
    assert python.nit == compiled.nit == 150 and python.x.dtype == dtype
    np.testing.assert_array_equal(python.x, compiled.x)
    x = start.copy()
    opt = nbadam.Prodigy(x, **hyper)
    for _ in range(150):
        opt.step(rosenbrock_grad(x).astype(dtype))
    np.testing.assert_array_equal(python.x, x)


def test_minimize_reaches_the_minimum_with_a_schedule():
    schedule = nbadam.schedules.exponential_decay(1.0, 0.5, transition_steps=1500)
    res = nbadam.minimize(rosenbrock, np.array([-1.2, 1.0]), jac=rosenbrock_grad,
                          method="prodigy", options={"lr": schedule, "maxiter": 8000,
                                                     "gtol": 0})
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=5e-2)


def test_minimize_batch_and_the_sharded_optimizer_refuse_it():
    with pytest.raises(ValueError, match="minimize_batch does not run method 'prodigy'"):
        nbadam.minimize_batch(rosenbrock, np.zeros((2, 3)), jac=rosenbrock_grad,
                              method="prodigy")
    from nbadam import distributed
    with pytest.raises(ValueError, match="ShardedOptimizer does not run Prodigy"):
        distributed.ShardedOptimizer(nbadam.Prodigy, np.zeros(4), comm=None)


def test_options_are_listed():
    text = nbadam.show_options("prodigy", disp=False)
    assert "growth_rate : float, default inf" in text
    assert "beta3 : float or None, default None" in text


def test_mlp_fit_with_prodigy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = nbadam.MLP([4, 8, 2], seed=0)
    model.fit(X, y, optimizer="prodigy", epochs=20, batch_size=50, lr=1.0, seed=0,
              progress=False)
    assert model.evaluate(X, y)["accuracy"] > 0.9


if __name__ == "__main__":
    for case, (worst, d_error) in worst_differences().items():
        print(f"{case:50s} {worst:6.1f} roundings of the scale; d {d_error:5.1f}")
    print(json.dumps({"FLOAT64_ROUNDINGS": FLOAT64_ROUNDINGS}))
