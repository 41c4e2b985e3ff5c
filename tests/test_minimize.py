"""``nbadam.minimize``: convergence, the SciPy contract, both loops, stochastic use.

Convergence tolerances (``TOL_X`` on ``max|x - x*|``, ``TOL_F`` on ``f - f*``)
are stated with the problems below.  Every method runs through one
parametrized test; AdamW runs with ``weight_decay=0`` where its decay would
move the minimum (everywhere but at the origin).
"""

from __future__ import annotations

import importlib

import numba
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, OptimizeWarning, rosen, rosen_der

from benchmarks.scripts.minimize_speed import rosen_der_nb, rosen_nb
from nbadam import schedules
from nbadam.minimize import METHODS, minimize, scipy_method, show_options

minimize_module = importlib.import_module("nbadam.minimize")
_compiled = importlib.import_module("nbadam.minimize._compiled")

#: Convergence tolerances: max|x - x*| and f - f* (f*: the known minimum).
TOL_X = 1e-6
TOL_F = 1e-12
#: Logistic regression: agreement with L-BFGS-B's optimum, in loss.
TOL_LOSS = 1e-6


# -- test problems ----------------------------------------------------------------------
# SciPy's Rosenbrock function and gradient (scipy.optimize.rosen, rosen_der), compiled
# (shared with benchmarks/scripts/minimize_speed.py) so that the long Rosenbrock runs take the
# compiled loop; test_rosen_port checks them.
@numba.njit(cache=True)
def rosen_fg_nb(x):
    return rosen_nb(x), rosen_der_nb(x)


@numba.njit(cache=True)
def shifted_square_nb(x, center, scale):
    return scale * np.sum((x - center) ** 2)


@numba.njit(cache=True)
def shifted_square_der_nb(x, center, scale):
    return 2.0 * scale * (x - center)


def booth(x):
    return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2


def booth_der(x):
    a, b = x[0] + 2 * x[1] - 7, 2 * x[0] + x[1] - 5
    return np.array([2 * a + 4 * b, 4 * a + 2 * b])


def beale(x):
    u, v = x
    return ((1.5 - u + u * v) ** 2 + (2.25 - u + u * v ** 2) ** 2
            + (2.625 - u + u * v ** 3) ** 2)


def beale_der(x):
    u, v = x
    a, b, c = 1.5 - u + u * v, 2.25 - u + u * v ** 2, 2.625 - u + u * v ** 3
    return np.array([2 * a * (v - 1) + 2 * b * (v ** 2 - 1) + 2 * c * (v ** 3 - 1),
                     2 * a * u + 4 * b * u * v + 6 * c * u * v ** 2])


ILL_DIAGONAL = np.logspace(0, 3, 10)  # condition number 1e3


def logistic_problem():
    """L2-regularised logistic regression and L-BFGS-B's optimum of it."""
    rng = np.random.default_rng(0)
    features = rng.standard_normal((200, 5))
    labels = np.where(features @ rng.standard_normal(5) + 0.5 * rng.standard_normal(200) > 0,
                      1.0, -1.0)
    penalty = 1e-2

    def loss_and_grad(w):
        margin = labels * (features @ w)
        loss = np.logaddexp(0.0, -margin).mean() + 0.5 * penalty * (w @ w)
        weight = -labels * np.exp(-np.logaddexp(0.0, margin))  # -y * sigmoid(-margin)
        return loss, features.T @ weight / labels.size + penalty * w

    best = scipy.optimize.minimize(loss_and_grad, np.zeros(5), jac=True, method="L-BFGS-B",
                                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
    assert best.success
    return loss_and_grad, best.x, best.fun


# name: (fun, jac, x0, x*, f*, peak lr, steps)
PROBLEMS = {
    "rosen2": (rosen_nb, rosen_der_nb, [-1.2, 1.0], np.ones(2), 0.0, 0.05, 20_000),
    "rosen5": (rosen_nb, rosen_der_nb, [1.3, 0.7, 0.8, 1.9, 1.2], np.ones(5), 0.0, 0.05, 20_000),
    "rosen10": (rosen_nb, rosen_der_nb, np.full(10, 0.5), np.ones(10), 0.0, 0.05, 20_000),
    "booth": (booth, booth_der, [0.0, 0.0], np.array([1.0, 3.0]), 0.0, 0.05, 4000),
    "beale": (beale, beale_der, [1.0, 1.0], np.array([3.0, 0.5]), 0.0, 0.05, 4000),
    "sphere": (lambda x: x @ x, lambda x: 2 * x, np.arange(1.0, 6.0), np.zeros(5), 0.0, 0.05,
               4000),
    "asymmetric": (lambda x: x @ x + x[0], lambda x: 2 * x + np.eye(3)[0], np.ones(3),
                   np.array([-0.5, 0.0, 0.0]), -0.25, 0.05, 4000),
    "ill-conditioned": (lambda x: 0.5 * x @ (ILL_DIAGONAL * x), lambda x: ILL_DIAGONAL * x,
                        np.ones(10), np.zeros(10), 0.0, 0.05, 4000),
}


def converging_options(method, peak, steps, x_star):
    """Warm-up then cosine decay of lr: every rule converges to high accuracy with it."""
    if method == "amsgrad" and steps > 10_000:
        peak *= 10  # AMSGrad keeps the largest v of the steep start; it needs a larger lr
    options = {"lr": schedules.warmup_cosine_decay(peak, 100, steps, end_value=peak * 1e-4),
               "maxiter": steps, "gtol": 1e-8, "ftol": 0}
    if method == "adamw" and np.any(x_star != 0):
        options["weight_decay"] = 0.0
    return options


#: Rules that reach gtol=1e-8 on these problems.  Lion's fixed-size sign steps and
#: Yogi's eps=1e-3 stall short of it (their convergence is tested at their own tolerance
#: in tests/test_beyond_rules.py).  Schedule-free AdamW averages every iterate with weight
#: lr_max**2, so under a decaying schedule its average keeps the early iterates' weight and
#: approaches the minimum slowly (tests/test_schedulefree.py tests its convergence).
CONVERGING = [method for method in METHODS
              if method not in ("lion", "yogi", "adamwschedulefree")]


@pytest.mark.parametrize("method", CONVERGING)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_converges_to_known_minimum(problem, method):
    fun, jac, x0, x_star, f_star, peak, steps = PROBLEMS[problem]
    res = minimize(fun, x0, jac=jac, method=method,
                   options=converging_options(method, peak, steps, x_star))
    assert res.success and res.status == 0, res.message
    assert np.max(np.abs(res.x - x_star)) <= TOL_X
    assert res.fun - f_star <= TOL_F
    assert np.max(np.abs(res.jac)) <= 1e-8


@pytest.fixture(scope="module")
def logistic():
    return logistic_problem()


@pytest.mark.parametrize("method", CONVERGING)
def test_logistic_regression_matches_lbfgsb(logistic, method):
    loss_and_grad, w_star, loss_star = logistic
    res = minimize(loss_and_grad, np.zeros(5), jac=True, method=method,
                   options=converging_options(method, 0.05, 5000, w_star))
    assert res.success, res.message
    assert abs(res.fun - loss_star) <= TOL_LOSS
    assert np.max(np.abs(res.x - w_star)) <= 1e-4


def test_rosen_port_matches_scipy():
    rng = np.random.default_rng(1)
    for n in (2, 5, 10):
        for x in rng.uniform(-2, 2, size=(5, n)):
            assert rosen_nb(x) == pytest.approx(rosen(x), rel=1e-13)
            np.testing.assert_allclose(rosen_der_nb(x), rosen_der(x), rtol=1e-12, atol=1e-12)


def test_scipy_rosen_through_the_python_loop():
    lr = schedules.warmup_cosine_decay(0.05, 100, 10_000, end_value=5e-6)
    res = minimize(rosen, [-1.2, 1.0], jac=rosen_der,
                   options={"lr": lr, "maxiter": 10_000, "gtol": 1e-8, "ftol": 0})
    assert res.status == 0
    assert np.max(np.abs(res.x - 1.0)) <= TOL_X


# -- the updates are those of the optimizer classes -----------------------------------
def _quadratic(x):
    return float(np.sum((x.astype(np.float64) - 0.5) ** 2 * np.arange(1, x.size + 1)))


def _quadratic_der(x):
    return 2.0 * (x.astype(np.float64) - 0.5) * np.arange(1, x.size + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("lr", [0.05, schedules.exponential_decay(0.1, 0.5, 10)],
                         ids=["constant", "schedule"])
def test_steps_are_bit_identical_to_optimizer_step(rule, dtype, lr):
    method, cls, kwargs = rule
    extra = {"weight_decay": 0.1} if method != "adamw" else {}
    if method in ("nadam", "radam"):
        extra["decoupled_weight_decay"] = True
    x0 = np.linspace(-2.0, 3.0, 7).astype(dtype)
    steps = 40
    res = minimize(_quadratic, x0, jac=_quadratic_der, method=method,
                   options={"lr": lr, "maxiter": steps, "gtol": 0, "ftol": 0,
                            "return_best": False, **extra})
    params = x0.copy()
    opt = cls(params, lr=lr, **kwargs, **extra)
    for _ in range(steps):
        opt.step(_quadratic_der(params).astype(dtype))
    assert res.nit == steps and res.status == 1
    assert res.x.dtype == dtype
    np.testing.assert_array_equal(res.x, params)


# -- the compiled loop gives the Python loop's result ------------------------------------
def assert_same_result(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.jac, b.jac)
    assert a.x.dtype == b.x.dtype
    assert (a.fun, a.nit, a.nfev, a.njev, a.status, a.message) == (
        b.fun, b.nit, b.nfev, b.njev, b.status, b.message)


@pytest.mark.parametrize("method", METHODS)
def test_compiled_loop_is_bit_identical_to_python_loop(method):
    options = {"lr": schedules.warmup_cosine_decay(0.05, 10, 300), "maxiter": 300}
    x0 = np.array([-1.2, 1.0, 0.3, 2.0])
    compiled = minimize(rosen_nb, x0, jac=rosen_der_nb, method=method,
                        options={**options, "compiled": True})
    python = minimize(rosen_nb, x0, jac=rosen_der_nb, method=method,
                      options={**options, "compiled": False})
    assert_same_result(compiled, python)


@pytest.mark.parametrize("case", ["jac=True", "float32+args", "bounds", "ftol+return_best",
                                  "chunks"])
def test_compiled_loop_variants_match_python_loop(case, monkeypatch):
    fun, jac, args, x0 = rosen_nb, rosen_der_nb, (), np.array([-1.2, 1.0, 0.3])
    options, bounds = {"lr": 0.01, "maxiter": 400}, None
    if case == "jac=True":
        fun, jac = rosen_fg_nb, True
    elif case == "float32+args":
        fun, jac, x0 = shifted_square_nb, shifted_square_der_nb, x0.astype(np.float32)
        args = (np.array([0.5, -1.0, 2.0], dtype=np.float32), 3.0)
    elif case == "bounds":
        bounds = [(-1.0, 0.5), (None, 0.8), (0.0, None)]
    elif case == "ftol+return_best":
        options = {"lr": 0.05, "maxiter": 5000, "ftol": 1e-6, "gtol": 0}
    else:
        monkeypatch.setattr(minimize_module, "_LR_CHUNK", 7)
        options["lr"] = schedules.step_decay(0.02, 50, 0.5)
    results = [minimize(fun, x0, args=args, jac=jac, bounds=bounds,
                        options={**options, "compiled": compiled})
               for compiled in (True, False)]
    assert_same_result(*results)
    if case == "ftol+return_best":
        assert results[0].status == 2
    if case == "float32+args":
        assert results[0].x.dtype == np.float32


def test_compiled_loop_reports_nonfinite_and_wrong_gradient():
    @numba.njit
    def log_barrier(x):
        return np.sum(x ** 2) - np.log(x[0])

    @numba.njit
    def log_barrier_der(x):
        grad = 2.0 * x
        grad[0] -= 1.0 / x[0]
        return grad

    for compiled in (True, False):
        res = minimize(log_barrier, [2.0, 1.0], jac=log_barrier_der,
                       options={"lr": 5.0, "maxiter": 50, "compiled": compiled})
        assert res.status == 3 and not res.success
        assert np.isfinite(res.fun)  # return_best: the last good point

    @numba.njit
    def short_der(x):
        if x[0] < 0.5:
            return 2.0 * x[1:]
        return 2.0 * x

    @numba.njit
    def square(x):
        return np.sum(x * x)

    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        minimize(square, [1.0, 1.0], jac=short_der, options={"lr": 0.1, "compiled": True})


def test_compiled_true_needs_numba_functions_and_no_callback():
    with pytest.raises(ValueError, match="Numba"):
        minimize(rosen, [1.0, 2.0], jac=rosen_der, options={"compiled": True})
    with pytest.raises(ValueError, match="callback"):
        minimize(rosen_nb, [1.0, 2.0], jac=rosen_der_nb, callback=lambda x: None,
                 options={"compiled": True})
    with pytest.raises(ValueError, match="Numba"):
        minimize(rosen_nb, [1.0, 2.0], options={"compiled": True})  # finite differences


def test_a_loop_that_does_not_compile_falls_back_unless_required(monkeypatch):
    def refuse(*args):
        raise numba.core.errors.TypingError("cannot type this")

    expected = minimize(rosen_nb, [-1.2, 1.0], jac=rosen_der_nb,
                        options={"maxiter": 30, "compiled": False})
    monkeypatch.setattr(minimize_module._compiled, "run", refuse)
    assert_same_result(minimize(rosen_nb, [-1.2, 1.0], jac=rosen_der_nb,
                                options={"maxiter": 30}), expected)
    with pytest.raises(TypeError, match="cannot type this"):
        minimize(rosen_nb, [-1.2, 1.0], jac=rosen_der_nb, options={"compiled": True})


def test_numba_fun_with_callback_runs_the_python_loop():
    seen = []
    res = minimize(rosen_nb, [-1.2, 1.0], jac=rosen_der_nb, callback=seen.append,
                   options={"maxiter": 20})
    assert len(seen) == res.nit == 20


# -- the SciPy contract -----------------------------------------------------------------
def test_scipy_custom_method_gives_the_same_result():
    for method in METHODS:
        betas = (0.8, 0.99, 0.9) if method == "adan" else (0.8, 0.99)   # Adan has three
        options = {"lr": 0.02, "maxiter": 300, "betas": betas}
        ours = minimize(rosen, [-1.2, 1.0], jac=rosen_der, method=method, tol=1e-4,
                        options=options)
        theirs = scipy.optimize.minimize(rosen, [-1.2, 1.0], jac=rosen_der, tol=1e-4,
                                         method=scipy_method,
                                         options={"rule": method, **options})
        assert_same_result(ours, theirs)


def test_scipy_custom_method_with_fun_returning_gradient_calls_fun_once_per_step():
    calls = []

    def fun_and_grad(x):
        calls.append(x.copy())
        return rosen(x), rosen_der(x)

    theirs = scipy.optimize.minimize(fun_and_grad, [-1.2, 1.0], jac=True, method=scipy_method,
                                     options={"lr": 0.01, "maxiter": 50})
    assert len(calls) == theirs.nfev == theirs.nit + 1 == 51
    calls.clear()
    ours = minimize(fun_and_grad, [-1.2, 1.0], jac=True, options={"lr": 0.01, "maxiter": 50})
    assert len(calls) == 51
    assert_same_result(ours, theirs)


def test_scipy_custom_method_finite_differences_bounds_and_callbacks():
    bounds = Bounds([-1.0, -1.0], [0.8, 2.0])
    seen_ours, seen_theirs = [], []
    ours = minimize(rosen, [-1.2, 1.0], bounds=bounds, callback=seen_ours.append,
                    options={"lr": 0.01, "maxiter": 100})
    theirs = scipy.optimize.minimize(rosen, [-1.2, 1.0], bounds=bounds,
                                     callback=seen_theirs.append, method=scipy_method,
                                     options={"lr": 0.01, "maxiter": 100})
    assert_same_result(ours, theirs)
    np.testing.assert_array_equal(seen_ours, seen_theirs)

    def stop(intermediate_result):
        if intermediate_result.nit == 7:
            raise StopIteration

    theirs = scipy.optimize.minimize(rosen, [-1.2, 1.0], jac=rosen_der, callback=stop,
                                     method=scipy_method)
    assert (theirs.status, theirs.nit, theirs.success) == (99, 7, False)
    assert theirs.message == "`callback` raised `StopIteration`."


def test_scipy_custom_method_refuses_constraints_and_warns():
    constraint = {"type": "ineq", "fun": lambda x: x[0]}
    with pytest.raises(ValueError, match="constraints"):
        scipy.optimize.minimize(rosen, [1.0, 2.0], method=scipy_method, constraints=constraint)
    with pytest.warns(RuntimeWarning, match="hess"):
        scipy.optimize.minimize(rosen, [1.0, 2.0], jac=rosen_der, hess=lambda x: np.eye(2),
                                method=scipy_method, options={"maxiter": 3})
    with pytest.warns(OptimizeWarning, match="Unknown solver options: xtol"):
        scipy.optimize.minimize(rosen, [1.0, 2.0], jac=rosen_der, method=scipy_method,
                                options={"maxiter": 3, "xtol": 1e-3})
    with pytest.raises(ValueError, match="unknown rule 'sgd'"):
        scipy.optimize.minimize(rosen, [1.0, 2.0], method=scipy_method, options={"rule": "sgd"})


def test_result_fields_and_counts():
    res = minimize(rosen, [-1.2, 1.0], jac=rosen_der, options={"maxiter": 25})
    assert set(res) >= {"x", "fun", "jac", "nit", "nfev", "njev", "status", "success",
                        "message"}
    assert (res.nit, res.nfev, res.njev, res.status, res.success) == (25, 26, 26, 1, False)
    assert res.message == "Maximum number of iterations has been exceeded."
    assert res.fun == rosen(res.x)
    np.testing.assert_array_equal(res.jac, rosen_der(res.x))


@pytest.mark.parametrize("jac, per_gradient", [(None, 3), (False, 3), ("2-point", 3),
                                               ("3-point", 6)])
def test_finite_differences_count_every_call(jac, per_gradient):
    calls = []

    def fun(x):
        calls.append(1)
        return float(np.sum((x - 1.0) ** 2) + x[0] * x[1] * x[2])

    res = minimize(fun, np.zeros(3), jac=jac, options={"lr": 0.05, "maxiter": 30})
    assert res.nfev == len(calls) == (res.nit + 1) * (1 + per_gradient)
    assert res.njev == res.nit + 1


def test_tol_sets_gtol():
    loose = minimize(rosen, [-1.2, 1.0], jac=rosen_der, tol=1e-1,
                     options={"lr": 0.05, "maxiter": 5000, "ftol": 0})
    assert loose.status == 0 and np.max(np.abs(loose.jac)) <= 1e-1
    tight = minimize(rosen, [-1.2, 1.0], jac=rosen_der, tol=1e-1,
                     options={"lr": 0.05, "maxiter": 5000, "ftol": 0, "gtol": 1e-3})
    assert tight.nit > loose.nit and np.max(np.abs(tight.jac)) <= 1e-3


def test_maxiter_zero_evaluates_x0_only():
    res = minimize(rosen, [-1.2, 1.0], jac=rosen_der, options={"maxiter": 0})
    assert (res.nit, res.nfev, res.status) == (0, 1, 1)
    np.testing.assert_array_equal(res.x, [-1.2, 1.0])


def test_ftol_ends_a_settled_run_and_not_a_diverged_one():
    settled = minimize(lambda x: x @ x, np.ones(3), jac=lambda x: 2 * x,
                       options={"lr": 0.01, "gtol": 0, "maxiter": 10_000})
    assert settled.status == 2 and settled.success and settled.fun < 1e-8
    # RAdam's unrectified first steps with this lr throw x far away, where f
    # stalls at a huge value: no improvement, but no convergence either.
    diverged = minimize(rosen, [-1.2, 1.0], jac=rosen_der, method="radam",
                        options={"lr": 0.02, "maxiter": 200})
    assert diverged.status == 1 and not diverged.success


@given(base=st.floats(-1e6, 1e6), ftol=st.floats(1e-16, 0.49),
       spread=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12),
       reach=st.floats(0.9, 1.1))
@settings(max_examples=400, deadline=None)
def test_a_settled_window_passes_the_two_point_test(base, ftol, spread, reach):
    # ftol's one-test shortcut (_may_settle) must never reject a window that _settled
    # accepts: windows spread over about their whole allowance, so some settle barely.
    width = reach * ftol * max(abs(base), 1.0)
    history = np.array([base + width * u for u in spread])
    if not _compiled._settled(history, ftol, history.min()):
        return
    for a in history:
        for b in history:
            assert _compiled._may_settle(a, b, ftol)


def test_the_two_point_test_rejects_a_spread_window():
    assert not _compiled._may_settle(1.0, 1.1, 1e-3)
    assert not _compiled._may_settle(-5e8, -5e8 + 3e3, 2.2e-9 * 1e3)
    assert _compiled._may_settle(1.0, 1.0 + 1e-9, 1e-8)
    assert _compiled._may_settle(1.0, 1e300, 0.5)  # never False for ftol >= 0.5


def test_return_best_keeps_the_lowest_point():
    def oscillating(x):
        return float(x @ x), 2 * x

    options = {"lr": 0.5, "maxiter": 60, "gtol": 0, "ftol": 0}
    best = minimize(oscillating, [1.0, -1.0], jac=True, options=options)
    last = minimize(oscillating, [1.0, -1.0], jac=True, options={**options,
                                                                 "return_best": False})
    assert best.fun < last.fun and best.nit == last.nit == 60
    assert best.fun == oscillating(best.x)[0]


def test_nonfinite_value_stops_with_status_3():
    def fun(x):
        return float(np.sum(x ** 2) - np.log(x[0]))

    def jac(x):
        return 2 * x - np.array([1 / x[0], 0.0])

    with np.errstate(invalid="ignore", divide="ignore"):
        best = minimize(fun, [2.0, 1.0], jac=jac, options={"lr": 5.0, "maxiter": 50})
        last = minimize(fun, [2.0, 1.0], jac=jac, options={"lr": 5.0, "maxiter": 50,
                                                           "return_best": False})
    assert best.status == last.status == 3 and not best.success
    assert "not finite" in best.message
    assert np.isfinite(best.fun) and best.x[0] > 0
    assert not np.isfinite(last.fun)


def test_disp_prints_a_summary(capsys):
    minimize(rosen, [-1.2, 1.0], jac=rosen_der, options={"maxiter": 3, "disp": True})
    out = capsys.readouterr().out
    assert out.startswith("Warning: Maximum number of iterations")
    for line in ("Current function value:", "Iterations: 3", "Function evaluations: 4",
                 "Gradient evaluations: 4"):
        assert line in out


# -- callbacks ----------------------------------------------------------------------------
def test_callback_forms_and_stop_iteration():
    seen_x, seen_results = [], []
    minimize(rosen, [-1.2, 1.0], jac=rosen_der, callback=seen_x.append,
             options={"maxiter": 5})

    def new_style(intermediate_result):
        seen_results.append(intermediate_result)

    res = minimize(rosen, [-1.2, 1.0], jac=rosen_der, callback=new_style,
                   options={"maxiter": 5})
    assert len(seen_x) == len(seen_results) == 5
    for k, (x, result) in enumerate(zip(seen_x, seen_results, strict=True), start=1):
        assert isinstance(x, np.ndarray) and result.nit == k
        np.testing.assert_array_equal(x, result.x)
        assert result.fun == rosen(result.x)
        np.testing.assert_array_equal(result.jac, rosen_der(result.x))
    assert not np.array_equal(seen_x[0], seen_x[1])  # copies, not the live iterate

    def both(xk, intermediate_result=None):  # not the new form: SciPy passes xk
        assert intermediate_result is None and isinstance(xk, np.ndarray)

    minimize(rosen, [-1.2, 1.0], jac=rosen_der, callback=both, options={"maxiter": 2})

    def stop_old(xk):
        seen_x.append(xk)
        if len(seen_x) == 4:
            raise StopIteration

    def stop_new(intermediate_result):
        if intermediate_result.nit == 4:
            raise StopIteration

    for callback in (stop_old, stop_new):
        seen_x.clear()
        res = minimize(rosen, [-1.2, 1.0], jac=rosen_der, callback=callback)
        assert (res.status, res.nit, res.success) == (99, 4, False)
        assert res.message == "`callback` raised `StopIteration`."


def test_args_are_passed_and_normalised():
    def fun(x, center, scale):
        return scale * float(np.sum((x - center) ** 2))

    def jac(x, center, scale):
        return 2 * scale * (x - center)

    res = minimize(fun, np.zeros(2), args=(np.array([1.0, -2.0]), 3.0), jac=jac,
                   options={"lr": 0.1, "maxiter": 3000})
    np.testing.assert_allclose(res.x, [1.0, -2.0], atol=1e-5)
    single = minimize(lambda x, c: float(np.sum((x - c) ** 2)), np.zeros(2), args=4.0,
                      jac=lambda x, c: 2 * (x - c), options={"lr": 0.1, "maxiter": 3000})
    np.testing.assert_allclose(single.x, [4.0, 4.0], atol=1e-5)


# -- bounds -------------------------------------------------------------------------------
@pytest.mark.parametrize("bounds", [Bounds([-np.inf, 0.5, 0.0], [2.0, np.inf, 0.25]),
                                    [(None, 2.0), (0.5, None), (0.0, 0.25)]],
                         ids=["Bounds", "pairs"])
def test_bounds_clip_x0_and_project_every_step(bounds):
    target = np.array([3.0, 0.0, 1.0])
    seen = []
    res = minimize(lambda x: float(np.sum((x - target) ** 2)), [5.0, -1.0, 0.1],
                   jac=lambda x: 2 * (x - target), bounds=bounds, callback=seen.append,
                   options={"lr": 0.1, "maxiter": 2000})
    lower, upper = np.array([-np.inf, 0.5, 0.0]), np.array([2.0, np.inf, 0.25])
    assert all(np.all((lower <= x) & (x <= upper)) for x in seen)
    np.testing.assert_allclose(res.x, [2.0, 0.5, 0.25], atol=1e-6)


def test_bounds_with_finite_differences_stay_feasible():
    def fun(x):
        assert np.all(x >= 0.0), "evaluated outside the bounds"
        return float(np.sum(x - np.sqrt(x)))

    res = minimize(fun, [1.0, 2.0], bounds=[(0.0, 1.0)] * 2, options={"lr": 0.05})
    np.testing.assert_allclose(res.x, [0.25, 0.25], atol=1e-3)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match=r"low > high for variable 1 \(2.0 > 1.0\)"):
        minimize(rosen, [0.0, 0.0], bounds=[(0, 1), (2, 1)])
    with pytest.raises(ValueError, match="one .low, high. pair per variable"):
        minimize(rosen, [0.0, 0.0], bounds=[(0, 1)])
    with pytest.raises(ValueError, match="low > high"):
        minimize(rosen, [0.0, 0.0], bounds=Bounds([0, 3], [1, 2]))


# -- inputs -------------------------------------------------------------------------------
def test_x0_is_normalised_and_never_modified():
    x0 = np.array([-1.2, 1.0])
    res = minimize(rosen, x0, jac=rosen_der, options={"maxiter": 10})
    np.testing.assert_array_equal(x0, [-1.2, 1.0])
    assert res.x is not x0 and res.x.dtype == np.float64
    assert minimize(rosen, [1, 2], options={"maxiter": 2}).x.dtype == np.float64
    assert minimize(rosen, np.array([1, 2], np.float16), options={"maxiter": 2}).x.dtype == (
        np.float64)
    assert minimize(rosen, np.array([1, 2], np.float32), options={"maxiter": 2}).x.dtype == (
        np.float32)
    scalar = minimize(lambda x: float((x[0] - 2) ** 2), 0.0, jac=lambda x: 2 * (x - 2),
                      options={"lr": 0.1, "maxiter": 2000})
    assert scalar.x.shape == (1,) and abs(scalar.x[0] - 2) < 1e-4
    empty = minimize(lambda x: 0.0, np.empty(0), jac=lambda x: np.empty(0))
    assert (empty.status, empty.nit, empty.x.shape) == (0, 0, (0,))


@pytest.mark.parametrize("method", ["ADAM", "AdamW", "amsgrad", "NAdam", "adamax", "RAdam"])
def test_method_names_are_case_insensitive(method):
    assert minimize(rosen, [0.0, 0.0], jac=rosen_der, method=method,
                    options={"maxiter": 2}).nit == 2


def test_bad_inputs_raise_clear_errors():
    cases = [
        (dict(method="sgd"), ValueError, "'adam', 'adamw', 'amsgrad', 'nadam', 'adamax', "
                                         "'radam'"),
        (dict(fun=lambda x: x), ValueError, "must return a scalar"),
        (dict(jac=lambda x: np.zeros(3)), ValueError, r"shape \(2,\) like x0, got shape \(3,\)"),
        (dict(jac=lambda x: np.zeros((2, 1))), ValueError, r"shape \(2,\)"),
        (dict(x0=[1.0, np.nan]), ValueError, r"x0 must be finite; x0\[1\] = nan"),
        (dict(x0=np.ones((2, 2))), ValueError, "one-dimensional"),
        (dict(options={"maxiter": -1}), ValueError, "maxiter must be >= 0"),
        (dict(options={"maxiter": 2.5}), TypeError, "maxiter must be an integer"),
        (dict(options={"lr": -1e-300}), ValueError, "lr must be >= 0"),
        (dict(options={"lr": -1e-3}), ValueError, "lr must be >= 0"),
        (dict(options={"betas": (0.9, 1.0)}), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        (dict(options={"ftol_window": 0}), ValueError, "ftol_window must be >= 1"),
        (dict(jac="central"), ValueError, "jac must be a callable, True"),
        (dict(fun=lambda x: rosen(x), jac=True), ValueError, "must return a tuple"),
        (dict(fun="rosen"), TypeError, "fun must be callable"),
    ]
    for overrides, error, message in cases:
        kwargs = {"fun": rosen, "x0": [1.0, 2.0], "jac": rosen_der, **overrides}
        with pytest.raises(error, match=message):
            minimize(kwargs.pop("fun"), kwargs.pop("x0"), **kwargs)


def test_unknown_options_warn():
    with pytest.warns(OptimizeWarning, match="Unknown solver options: momentum_decay"):
        minimize(rosen, [1.0, 2.0], jac=rosen_der, method="adam",
                 options={"momentum_decay": 1e-3, "maxiter": 2})
    with pytest.warns(OptimizeWarning, match="amsgrad") as record:
        minimize(rosen, [1.0, 2.0], jac=rosen_der, method="nadam",
                 options={"amsgrad": True, "maxiter": 2})
    assert record[0].filename == __file__  # points at the caller


def test_show_options(capsys):
    assert show_options("nadam") is None
    printed = capsys.readouterr().out
    assert printed.startswith('Options for method "nadam"')
    assert "momentum_decay : float, default 0.004" in printed
    text = show_options(disp=False)
    for method in METHODS:
        assert f'Options for method "{method}"' in text
    adamw = show_options("AdamW", disp=False)
    assert "weight_decay : float, default 0.01" in adamw and "momentum_decay" not in adamw
    with pytest.raises(ValueError, match="unknown method"):
        show_options("lbfgs")


# -- stochastic objectives ----------------------------------------------------------------
def test_stochastic_minibatch_pattern_runs_every_step():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2000, 5))
    weights = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    targets = features @ weights + 0.1 * rng.standard_normal(2000)
    w_exact = np.linalg.lstsq(features, targets, rcond=None)[0]
    batches = np.random.default_rng(1)

    def batch_loss_and_grad(w):
        rows = batches.integers(0, targets.size, size=32)
        residual = features[rows] @ w - targets[rows]
        return 0.5 * residual @ residual / rows.size, features[rows].T @ residual / rows.size

    res = minimize(batch_loss_and_grad, np.zeros(5), jac=True, options={
        "lr": schedules.exponential_decay(0.05, 0.5, 500), "gtol": 0, "ftol": 0,
        "return_best": False, "maxiter": 3000})
    assert (res.status, res.nit, res.nfev) == (1, 3000, 3001)
    assert np.max(np.abs(res.x - w_exact)) < 0.02


def test_stochastic_run_with_validation_early_stopping():
    """A callback watching a held-out loss is the way to stop a noisy run early."""
    rng = np.random.default_rng(2)
    features = rng.standard_normal((600, 3))
    targets = features @ np.array([1.0, 2.0, -1.0]) + 0.5 * rng.standard_normal(600)
    train, valid = slice(0, 500), slice(500, 600)
    batches = np.random.default_rng(3)

    def batch_loss_and_grad(w):
        rows = batches.integers(0, 500, size=16)
        residual = features[train][rows] @ w - targets[train][rows]
        return 0.5 * residual @ residual / rows.size, features[train][rows].T @ residual / 16

    history = []

    def early_stopping(intermediate_result):
        if intermediate_result.nit % 50:
            return
        residual = features[valid] @ intermediate_result.x - targets[valid]
        history.append(0.5 * residual @ residual / residual.size)
        if len(history) > 5 and min(history[-5:]) > min(history[:-5]):
            raise StopIteration

    res = minimize(batch_loss_and_grad, np.zeros(3), jac=True, callback=early_stopping,
                   options={"lr": 0.05, "gtol": 0, "ftol": 0, "return_best": False,
                            "maxiter": 20_000})
    assert res.status == 99 and res.nit < 20_000
    np.testing.assert_allclose(res.x, [1.0, 2.0, -1.0], atol=0.2)


def test_device_cuda_without_a_gpu_says_what_is_missing():
    import numba

    import nbadam
    from nbadam import _launch

    if numba.config.ENABLE_CUDASIM or _launch.cuda_launcher().unavailable_reason() is None:
        pytest.skip("a GPU (or the simulator) is usable here: tests/test_minimize_cuda.py")
    with pytest.raises(RuntimeError, match="device='cuda' needs an NVIDIA GPU.*driver"):
        nbadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,
                        options={"device": "cuda"})
    res = nbadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,
                          options={"device": "cpu", "maxiter": 2})
    assert res.nit == 2
