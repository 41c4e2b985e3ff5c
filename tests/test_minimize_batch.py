"""``nbadam.minimize_batch``: each row is ``nbadam.minimize`` on its problem, bit for bit.

The batch problems are K small, differently scaled quartics (one row of
``CENTERS`` and ``SCALES`` each), one of which reaches a region where its
value is NaN, so that the problems stop at different steps and for different
reasons.  Their values are summed left to right in both forms, so that row
``k`` of the batch objective and the objective of problem ``k`` alone agree to
the last bit; every comparison with :func:`nbadam.minimize` is then exact.
"""

from __future__ import annotations

import importlib
import warnings

import numba
import numpy as np
import pytest
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning

import nbadam
from nbadam import _config, rules, schedules
from nbadam.minimize import _status, minimize, minimize_batch

batch_module = importlib.import_module("nbadam.minimize._batch")

K, N = 5, 3
CENTERS = np.array([[0.5, -0.3, 0.8], [1.0, 2.0, -1.0], [-0.2, 0.1, 0.3], [2.0, -2.0, 1.5],
                    [3.0, 0.0, 0.0]])
SCALES = np.array([[1.0], [0.5], [4.0], [0.1], [1.0]])
#: Stops within the run for most rules: gtol, ftol, maxiter and (row 4) NaN.
OPTIONS = {"lr": 0.2, "maxiter": 120, "gtol": 1e-3, "ftol": 1e-6, "ftol_window": 5}
SHARED_BOUNDS = [(-1.0, 1.5), (-1.5, 1.0), (None, 0.9)]
ROW_BOUNDS = Bounds(np.full((K, N), -1.0), np.linspace(0.5, 2.5, K)[:, None] * np.ones(N))


# -- the objectives: a batch form and a one-problem form that agree bit for bit ------------
def _terms(X, C, S):
    d = X - C
    return S * d * d + 0.05 * X ** 4


def batch_f(X, C=CENTERS, S=SCALES):
    t = _terms(X, C, S)
    values = (t[:, 0] + t[:, 1]) + t[:, 2]
    return np.where(X[:, 0] > 2.5, np.nan, values)  # problem 4 walks into NaN


def batch_g(X, C=CENTERS, S=SCALES):
    return 2.0 * S * (X - C) + 0.2 * X ** 3


def batch_fg(X, C=CENTERS, S=SCALES):
    return batch_f(X, C, S), batch_g(X, C, S)


def active_f(X, rows, C=CENTERS, S=SCALES):
    return batch_f(X, C[rows], S[rows])


def active_g(X, rows, C=CENTERS, S=SCALES):
    return batch_g(X, C[rows], S[rows])


def one_f(k):
    return lambda x: float(batch_f(x[None], CENTERS[k:k + 1], SCALES[k:k + 1])[0])


def one_g(k):
    return lambda x: batch_g(x[None], CENTERS[k:k + 1], SCALES[k:k + 1])[0]


@numba.njit(cache=True)
def nb_f(X, C, S):
    out = np.empty(X.shape[0])
    for k in range(X.shape[0]):
        total = 0.0
        for i in range(X.shape[1]):
            d = X[k, i] - C[k, i]
            total += S[k, 0] * d * d + 0.05 * X[k, i] ** 4
        out[k] = np.nan if X[k, 0] > 2.5 else total
    return out


@numba.njit(cache=True)
def nb_g(X, C, S):
    return 2.0 * S * (X - C) + 0.2 * X ** 3


@numba.njit(cache=True)
def nb_fg(X, C, S, shrink=0):
    # With shrink = 1 (2), one value (one gradient column) too few after a few steps.
    values, grads = nb_f(X, C, S), nb_g(X, C, S)
    if shrink and X[0, 0] > 0.2:
        if shrink == 1:
            return values[1:], grads
        return values, grads[:, 1:]
    return values, grads


@numba.njit(cache=True)
def nb_active_f(X, rows, C, S):
    return nb_f(X, C[rows], S[rows])


@numba.njit(cache=True)
def nb_active_g(X, rows, C, S):
    return nb_g(X, C[rows], S[rows])


def assert_row_is(res, k, ref):
    """Row ``k`` of a batch result is the single-problem result ``ref``, bit for bit."""
    np.testing.assert_array_equal(res.x[k], ref.x)
    np.testing.assert_array_equal(res.jac[k], ref.jac)
    assert res.x.dtype == ref.x.dtype and res.jac.dtype == ref.jac.dtype
    got = (res.fun[k], res.nit[k], res.nfev[k], res.njev[k], res.status[k], res.success[k],
           res.message[k])
    assert got == (ref.fun, ref.nit, ref.nfev, ref.njev, ref.status, ref.success,
                   ref.message) or (np.isnan(ref.fun) and np.isnan(res.fun[k])
                                    and got[1:] == (ref.nit, ref.nfev, ref.njev, ref.status,
                                                    ref.success, ref.message))


def assert_same(a, b):
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success", "message"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype, key


def row_options(options, k):
    """The options of problem ``k`` alone: per-problem values replaced by row ``k``'s."""
    return {name: (value[k] if isinstance(value, np.ndarray) and name != "betas"
                   else tuple(value[k]) if name == "betas" and np.ndim(value) == 2 else value)
            for name, value in options.items()}


def row_bounds(bounds, k):
    if isinstance(bounds, Bounds) and np.ndim(bounds.lb) == 2:
        return Bounds(bounds.lb[k], bounds.ub[k])
    return bounds


# -- each row is minimize on its problem ----------------------------------------------------
def _batched(name):
    """Whether minimize_batch runs rule ``name`` (not the rules whose state starts at the
    parameters, which report another point or need sums over the vector: minimize_batch
    refuses those, tested below)."""
    update = rules.get(name).update(dict(rules.get(name).defaults))
    return not (update.from_params or update.evaluation is not None
                or update.reduce is not None)


BATCH_RULES = [name for name in rules.names() if _batched(name)]


@pytest.mark.parametrize("method", [name for name in rules.names() if not _batched(name)])
def test_rules_it_cannot_run_are_refused_clearly(method):
    with pytest.raises(ValueError, match=f"minimize_batch does not run method {method!r}"):
        nbadam.minimize_batch(lambda X: np.sum(X ** 2, axis=1), np.ones((2, 3)),
                              method=method, jac=lambda X: 2 * X)


@pytest.mark.parametrize("bounds", [None, SHARED_BOUNDS, ROW_BOUNDS],
                         ids=["unbounded", "shared-bounds", "per-problem-bounds"])
@pytest.mark.parametrize("method", BATCH_RULES)
def test_every_row_is_minimize_on_its_problem(method, bounds):
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N)
    res = minimize_batch(batch_f, x0, args=(CENTERS, SCALES), jac=batch_g, method=method,
                         bounds=bounds, options=OPTIONS)
    assert isinstance(res, OptimizeResult)
    for k in range(K):
        ref = minimize(one_f(k), x0[k], jac=one_g(k), method=method,
                       bounds=row_bounds(bounds, k), options=OPTIONS)
        assert_row_is(res, k, ref)
        one = res.problem(k)
        assert one.keys() == ref.keys()
        np.testing.assert_array_equal(one.x, ref.x)
        assert (one.nit, one.status, one.message) == (ref.nit, ref.status, ref.message)
    if bounds is not None:
        lower, upper = ((ROW_BOUNDS.lb, ROW_BOUNDS.ub) if bounds is ROW_BOUNDS else
                        (np.array([-1.0, -1.5, -np.inf]), np.array([1.5, 1.0, 0.9])))
        assert np.all(res.x >= lower) and np.all(res.x <= upper)


def test_the_problems_stop_at_different_steps_for_different_reasons():
    res = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, method="adamw",
                         options=OPTIONS)
    assert set(res.status.tolist()) == {0, 1, 2, 3}
    assert len(set(res.nit.tolist())) > 2
    assert res.status[4] == 3 and np.isfinite(res.fun[4])  # return_best: the last good point
    np.testing.assert_array_equal(res.success, np.isin(res.status, (0, 2)))


@pytest.mark.parametrize("method", ["adam", "nadam"])
def test_float32_and_a_schedule(method):
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N).astype(np.float32)
    options = {**OPTIONS, "lr": schedules.exponential_decay(0.3, 0.5, 20)}
    res = minimize_batch(batch_f, x0, jac=batch_g, method=method, options=options)
    assert res.x.dtype == np.float32 and res.jac.dtype == np.float32
    for k in range(K):
        assert_row_is(res, k, minimize(one_f(k), x0[k], jac=one_g(k), method=method,
                                       options=options))


@pytest.mark.parametrize("method, options", [
    ("adam", {"lr": np.array([0.01, 0.05, 0.1, 0.2, 0.4])}),
    ("adam", {"betas": np.array([[0.9, 0.999], [0.5, 0.9], [0.8, 0.99], [0.0, 0.5],
                                 [0.95, 0.9999]]), "weight_decay": [0.0, 0.1, 0.0, 0.2, 0.0]}),
    ("adamw", {"lr": [0.05, 0.1, 0.2, 0.3, 0.4], "eps": np.logspace(-8, -2, K),
               "amsgrad": True}),
    ("nadam", {"momentum_decay": np.linspace(0.0, 0.01, K),
               "decoupled_weight_decay": [True, False, True, False, True],
               "weight_decay": 0.05}),
], ids=["lr", "betas+weight_decay", "lr+eps", "nadam-own"])
def test_hyperparameters_per_problem(method, options):
    options = {**OPTIONS, **options}
    res = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, method=method,
                         options=options)
    for k in range(K):
        one = {name: value[k] if isinstance(value, list) else value
               for name, value in row_options(options, k).items()}
        assert_row_is(res, k, minimize(one_f(k), np.zeros(N), jac=one_g(k), method=method,
                                       options=one))


@pytest.mark.parametrize("scheme", [None, "3-point"], ids=["2-point", "3-point"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_finite_differences_match_minimize(scheme, dtype):
    # Starts on and near the bounds: the steps turn one-sided there.
    x0 = np.array([[1.5, 1.0, 0.9], [1.5 - 1e-9, -1.5, 0.0], [0.0, 0.0, 0.0],
                   [-1.0, 0.5, -3.0], [1.2, 1.0, 0.8]], dtype=dtype)
    options = {**OPTIONS, "maxiter": 25}
    res = minimize_batch(batch_f, x0, jac=scheme, bounds=SHARED_BOUNDS, options=options)
    calls = 1 + (N if scheme is None else 2 * N)
    np.testing.assert_array_equal(res.nfev, (res.nit + 1) * calls)
    for k in range(K):
        assert_row_is(res, k, minimize(one_f(k), x0[k], jac=scheme, bounds=SHARED_BOUNDS,
                                       options=options))


# -- stopped problems, active_only, callbacks -------------------------------------------
def test_a_stopped_problem_no_longer_moves_and_fun_still_sees_it():
    seen = []

    def recording_f(X, C, S):
        seen.append(X.copy())
        return batch_f(X, C, S)

    res = minimize_batch(recording_f, np.zeros((K, N)), args=(CENTERS, SCALES), jac=batch_g,
                         method="nadam", options={**OPTIONS, "return_best": False})
    assert len(seen) == res.nit.max() + 1 and all(x.shape == (K, N) for x in seen)
    for k in range(K):
        later = np.array([x[k] for x in seen[res.nit[k]:]])
        assert (later == seen[res.nit[k]][k]).all()  # frozen from the point where it stopped
        np.testing.assert_array_equal(res.x[k], seen[res.nit[k]][k])


@pytest.mark.parametrize("jac", ["analytic", "2-point"])
def test_active_only_evaluates_the_running_problems_only(jac):
    shapes = []

    def recording_f(X, rows, C, S):
        assert X.shape == (rows.size, N) and rows.dtype == np.int64
        shapes.append(rows.tolist())
        return active_f(X, rows, C, S)

    grad = active_g if jac == "analytic" else None
    options = {**OPTIONS, "maxiter": 60}
    res = minimize_batch(recording_f, np.zeros((K, N)), args=(CENTERS, SCALES), jac=grad,
                         method="nadam", options={**options, "active_only": True})
    ref = minimize_batch(batch_f, np.zeros((K, N)), args=(CENTERS, SCALES),
                         jac=batch_g if jac == "analytic" else None, method="nadam",
                         options=options)
    assert_same(res, ref)
    calls = 1 if jac == "analytic" else 1 + N
    assert len(shapes) == (res.nit.max() + 1) * calls
    assert shapes[0] == list(range(K))
    for step, rows in enumerate(shapes[::calls]):
        assert rows == [k for k in range(K) if res.nit[k] >= step]


def test_callback_forms_and_stop_iteration():
    points = []
    seen = []

    def callback(intermediate_result):
        r = intermediate_result
        assert r.x.shape == (K, N) and r.fun.shape == (K,) and r.jac.shape == (K, N)
        assert r.nit.shape == (K,) and r.active.dtype == bool
        seen.append((r.nit.copy(), r.active.copy()))
        if r.nit.max() == 30:
            raise StopIteration

    options = {**OPTIONS, "maxiter": 100}
    res = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, method="adamw",
                         callback=callback, options=options)
    free = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, method="adamw",
                          options=options)
    stopped_before = free.nit < 30
    assert stopped_before.any() and not stopped_before.all()
    np.testing.assert_array_equal(res.status[stopped_before], free.status[stopped_before])
    assert (res.status[~stopped_before] == 99).all() and (res.nit[~stopped_before] == 30).all()
    assert not res.success[~stopped_before].any()
    nit, active = seen[-1]
    np.testing.assert_array_equal(active, ~stopped_before)
    np.testing.assert_array_equal(nit, np.where(stopped_before, free.nit, 30))

    def plain(xk):
        points.append(xk)
        if len(points) == 3:
            raise StopIteration

    res = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, callback=plain,
                         options=OPTIONS)
    assert (res.nit == 3).all() and (res.status == 99).all()
    assert all(p.shape == (K, N) for p in points)
    assert points[0] is not points[1]


def test_return_best_per_problem():
    options = {"lr": 2.0, "maxiter": 15, "gtol": 0, "ftol": 0}
    best = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, options=options)
    last = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g,
                          options={**options, "return_best": False})
    finite = np.isfinite(last.fun)  # problem 4 ends at NaN: its best is the last good point
    assert (best.fun[finite] <= last.fun[finite]).all() and (best.fun < last.fun).any()
    assert np.isfinite(best.fun).all()
    for k in range(K):
        assert_row_is(best, k, minimize(one_f(k), np.zeros(N), jac=one_g(k), options=options))


# -- the compiled loop ---------------------------------------------------------------------
# Each loop compiled here takes seconds, so the cases share them: every nb_fg case
# (shrink = 0 or not, bounds or not, chunks) runs one loop.
@pytest.mark.parametrize("case", ["adam, jac=True, bounds, schedule in chunks",
                                  "nadam, jac, lr per problem", "active_only, float32"])
def test_compiled_loop_matches_python_loop(case, monkeypatch):
    method, fun, jac, bounds = "adam", nb_fg, True, None
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N)
    args = (CENTERS, SCALES, 0)
    options = dict(OPTIONS)
    if case.startswith("adam"):
        monkeypatch.setattr(batch_module, "LR_CHUNK", 7)
        options["lr"] = schedules.step_decay(0.3, 10, 0.5)
        bounds = ROW_BOUNDS
    elif case.startswith("nadam"):
        method, fun, jac, args = "nadam", nb_f, nb_g, args[:2]
        options["lr"] = np.linspace(0.05, 0.4, K)
    else:
        fun, jac = nb_active_f, nb_active_g
        x0 = x0.astype(np.float32)
        args = (CENTERS.astype(np.float32), SCALES.astype(np.float32))
        options["active_only"] = True
    compiled, python = (minimize_batch(fun, x0, args=args, jac=jac, method=method,
                                       bounds=bounds, options={**options, "compiled": c})
                        for c in (True, False))
    assert_same(compiled, python)
    assert len(set(compiled.nit.tolist())) > 1


@numba.njit(cache=True)
def nb_fg_nan_gradient(X, C, S):
    # Problem 1's value keeps falling past x[0] = 0.6, where its gradient turns NaN: the
    # point is finite and lower, yet not the best (minimize's rule), so the compiled loop's
    # early copy of it must not replace the best.
    values, grads = nb_f(X, C, S), nb_g(X, C, S)
    if X[1, 0] > 0.6:
        grads[1, 2] = np.nan
    return values, grads


@pytest.mark.parametrize("lr", [0.2, 3.0])  # 3.0 overshoots: the best stays behind for a while
def test_compiled_loop_keeps_each_best_point(lr, monkeypatch):
    monkeypatch.setattr(batch_module, "LR_CHUNK", 4)  # best points held across chunks
    options = {"lr": lr, "maxiter": 30, "gtol": 0, "ftol": 0}
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N)
    compiled, python = (minimize_batch(nb_fg_nan_gradient, x0, args=(CENTERS, SCALES),
                                       jac=True, options={**options, "compiled": c})
                        for c in (True, False))
    assert_same(compiled, python)
    last = minimize_batch(nb_fg_nan_gradient, x0, args=(CENTERS, SCALES), jac=True,
                          options={**options, "return_best": False})
    assert compiled.status[1] == last.status[1] == _status.NONFINITE
    assert np.isfinite(compiled.jac[1]).all() and np.isnan(last.jac[1]).any()
    assert (compiled.fun != last.fun).any()


@numba.njit(cache=True)
def nb_fg_wide_gradient(X):
    # float64 gradients for float32 problems: 0.7 rounds below itself, 1e39 to infinity.
    values, grads = np.empty(X.shape[0]), np.empty(X.shape)
    for k in range(X.shape[0]):
        values[k] = -float(k + 1) * X[k, 0]  # falls each step: every point is the best
        grads[k, 0] = (0.7, 1e39)[k] if X[k, 0] > 0 else -1.0
    return values, grads


@numba.njit(cache=True)
def nb_fg_points_as_gradient(X, C):
    # The gradient of sum((x - C)**2) / 2 + sum(C * x) is x itself: the array returned as
    # the gradient is the array of the points, which the step then updates.
    values = np.empty(X.shape[0])
    for k in range(X.shape[0]):
        total = 0.0
        for i in range(X.shape[1]):
            d = X[k, i] - C[k, i]
            total += 0.5 * d * d + C[k, i] * X[k, i]
        values[k] = total
    return values, X


@pytest.mark.parametrize("return_best", [True, False])
def test_compiled_loop_reads_a_gradient_that_is_the_points(return_best):
    # The compiled loop steps on fun's own gradient array when its type allows: here it
    # is X, which the step rewrites in place.
    options = {**OPTIONS, "return_best": return_best}
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N)
    compiled, python = (minimize_batch(nb_fg_points_as_gradient, x0, args=(CENTERS,),
                                       jac=True, options={**options, "compiled": c})
                        for c in (True, False))
    assert_same(compiled, python)
    np.testing.assert_array_equal(compiled.jac, compiled.x)
    assert len(set(compiled.nit.tolist())) > 1


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_compiled_loop_tests_the_gradient_in_the_iterate_dtype():
    options = {"lr": 0.1, "maxiter": 5, "gtol": 0.69999999, "return_best": True}
    compiled, python = (minimize_batch(nb_fg_wide_gradient, np.zeros((2, 1), np.float32),
                                       jac=True, options={**options, "compiled": c})
                        for c in (True, False))
    assert_same(compiled, python)
    assert compiled.status.tolist() == [_status.CONVERGED_GTOL, _status.NONFINITE]
    assert compiled.nit.tolist() == [1, 1]


def test_compiled_loop_reports_a_wrong_shape():
    for shrink, message in ((1, "one value per problem; at iteration [1-9]"),
                            (2, r"one gradient per problem, shape \(rows, 3\); at iteration")):
        with pytest.raises(ValueError, match=message):
            minimize_batch(nb_fg, np.zeros((K, N)), args=(CENTERS, SCALES, shrink), jac=True,
                           options={**OPTIONS, "compiled": True})


def test_parallel_builds_match_the_serial_ones(monkeypatch):
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N)
    args = (CENTERS, SCALES, 0)
    serial = minimize_batch(nb_fg, x0, args=args, jac=True, options=OPTIONS)
    assert_same(minimize_batch(nb_fg, x0, args=args, jac=True,
                               options={**OPTIONS, "compiled": False, "parallel": True}), serial)
    # parallel=None: chosen by size.
    monkeypatch.setattr(batch_module, "PARALLEL_MIN_PROBLEMS", 1)
    monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", 1)
    assert_same(minimize_batch(nb_fg, x0, args=args, jac=True, options=OPTIONS), serial)
    # The compiled loop's parallel passes over the running problems only (chunks of rows).
    active = {**OPTIONS, "active_only": True}
    assert_same(minimize_batch(nb_active_f, x0, args=args[:2], jac=nb_active_g,
                               options=active), serial)


@pytest.mark.parametrize("threads", [2, 3, K])
@pytest.mark.parametrize("case", [
    {},
    {"bounds": ROW_BOUNDS, "return_best": False},
    {"bounds": SHARED_BOUNDS, "lr": schedules.exponential_decay(0.3, 0.5, 20)},
    {"lr": np.array([0.01, 0.05, 0.1, 0.2, 0.4]), "betas": np.array(
        [[0.9, 0.999], [0.5, 0.9], [0.8, 0.99], [0.0, 0.5], [0.9, 0.9]])},
], ids=["plain", "row-bounds", "schedule+bounds", "per-problem"])
def test_threads_run_shares_of_the_problems_as_the_whole_batch(monkeypatch, threads, case):
    # parallel=True with active_only: each thread runs the compiled loop on its share of
    # the problems, fun given their numbers in the batch (nb_active_f indexes C by them).
    case = dict(case)
    bounds = case.pop("bounds", None)
    options = {**OPTIONS, "active_only": True, **case}
    x0 = np.linspace(-0.5, 0.5, K * N).reshape(K, N)
    args = (CENTERS, SCALES)
    serial, python = (minimize_batch(nb_active_f, x0, args=args, jac=nb_active_g,
                                     bounds=bounds, options={**options, "parallel": False,
                                                             "compiled": compiled})
                      for compiled in (True, False))
    assert_same(serial, python)
    calls = []
    run = batch_module._run_compiled_threads
    monkeypatch.setattr(batch_module, "_threads", lambda opts, K: threads)
    monkeypatch.setattr(batch_module, "_run_compiled_threads",
                        lambda *a, **kw: calls.append(a[-1]) or run(*a, **kw))
    threaded = minimize_batch(nb_active_f, x0, args=args, jac=nb_active_g, bounds=bounds,
                              options={**options, "parallel": True})
    assert calls == [threads]
    assert_same(threaded, serial)
    assert len(set(serial.status.tolist())) > 1


def test_threads_are_asked_for_only_with_active_only_and_parallel_true():
    threads = batch_module._threads
    assert threads({"parallel": True, "active_only": True}, K) == min(numba.get_num_threads(), K)
    assert threads({"parallel": True, "active_only": True}, 1) == 1
    for parallel, active_only in ((None, True), (False, True), (True, False)):
        assert threads({"parallel": parallel, "active_only": active_only}, 10 ** 6) == 1


@numba.njit(cache=True)
def nb_active_fg_short(X, rows, C, S):
    # One value too few once problem 3 has moved: raised by the thread that runs it.
    values, grads = nb_f(X, C[rows], S[rows]), nb_g(X, C[rows], S[rows])
    for j in range(rows.size):
        if rows[j] == 3 and X[j, 0] > 0.2:
            return values[1:], grads
    return values, grads


def test_threads_report_a_wrong_shape(monkeypatch):
    monkeypatch.setattr(batch_module, "_threads", lambda opts, K: 2)
    with pytest.raises(ValueError, match="one value per problem; at iteration [1-9]"):
        minimize_batch(nb_active_fg_short, np.zeros((K, N)), args=(CENTERS, SCALES),
                       jac=True, options={**OPTIONS, "active_only": True, "parallel": True})


def test_compiled_true_needs_numba_functions_and_no_callback(monkeypatch):
    args = (CENTERS, SCALES)
    with pytest.raises(ValueError, match="fun is not a Numba"):
        minimize_batch(batch_f, np.zeros((K, N)), args=args, jac=batch_g,
                       options={"compiled": True})
    with pytest.raises(ValueError, match="callback"):
        minimize_batch(nb_f, np.zeros((K, N)), args=args, jac=nb_g, callback=print,
                       options={"compiled": True})
    with pytest.raises(ValueError, match="jac is neither"):
        minimize_batch(nb_f, np.zeros((K, N)), args=args, options={"compiled": True})

    def refuse(*arguments):
        raise numba.core.errors.TypingError("cannot type this")

    expected = minimize_batch(nb_f, np.zeros((K, N)), args=args, jac=nb_g,
                              options={"maxiter": 10, "compiled": False})
    monkeypatch.setattr(batch_module._compiled, "run_batch", refuse)
    assert_same(minimize_batch(nb_f, np.zeros((K, N)), args=args, jac=nb_g,
                               options={"maxiter": 10}), expected)
    with pytest.raises(TypeError, match="cannot type this"):
        minimize_batch(nb_f, np.zeros((K, N)), args=args, jac=nb_g,
                       options={"maxiter": 10, "compiled": True})


# -- the result ----------------------------------------------------------------------------
def test_result_fields_and_problem():
    res = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, options=OPTIONS)
    assert res.x.shape == (K, N) and res.jac.shape == (K, N)
    for key, dtype in (("fun", np.float64), ("nit", np.int64), ("nfev", np.int64),
                       ("njev", np.int64), ("status", np.int64), ("success", np.bool_)):
        assert res[key].shape == (K,) and res[key].dtype == dtype, key
    assert res.message.shape == (K,) and res.message.dtype.kind == "U"
    np.testing.assert_array_equal(res.nfev, res.nit + 1)
    last = res.problem(-1)
    assert isinstance(last, OptimizeResult) and not hasattr(last, "problem")
    assert isinstance(last.fun, float) and isinstance(last.nit, int)
    np.testing.assert_array_equal(last.x, res.x[K - 1])
    last.x[0] = 99.0
    assert res.x[K - 1, 0] != 99.0  # a copy
    with pytest.raises(IndexError, match="out of range for a batch of 5"):
        res.problem(K)
    with pytest.raises(TypeError):
        res.problem(1.5)


def test_an_empty_batch_calls_nothing():
    def fail(X):
        raise AssertionError("fun called")

    res = minimize_batch(fail, np.zeros((0, 3)), jac=fail)
    assert res.x.shape == (0, 3) and res.status.shape == (0,) and res.message.shape == (0,)


def test_tol_disp_and_method_names(capsys):
    options = {key: value for key, value in OPTIONS.items() if key != "gtol"}
    res = minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, method="NAdam", tol=0.1,
                         options={**options, "disp": True})
    assert_same(res, minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g, method="nadam",
                                    options={**options, "gtol": 0.1}))
    assert (res.status == 0).any()
    out = capsys.readouterr().out
    assert "of 5 problems converged" in out and "status 0 (" in out


# -- bad input -----------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors_and_change_nothing():
    x0 = np.zeros((K, N))
    lrs = np.full(K, 0.1)
    options = {"lr": lrs, "maxiter": 5}
    cases = [
        (dict(x0=np.zeros(N)), ValueError, r"x0 must be two-dimensional.*got shape \(3,\)"),
        (dict(x0=np.zeros((2, 2, 2))), ValueError, "two-dimensional"),
        (dict(x0=np.ones((K, N)) * 1j), TypeError, "x0 must be real"),
        (dict(x0=np.array([[0.0, np.inf]])), ValueError, r"x0\[0, 1\] = inf"),
        (dict(fun=lambda X: 1.0), ValueError, "one value per problem.*scalar"),
        (dict(fun=lambda X: np.zeros(K - 1)), ValueError, r"shape \(5,\); got shape \(4,\)"),
        (dict(fun=lambda X: np.zeros((K, 1))), ValueError, r"got shape \(5, 1\)"),
        (dict(fun=lambda X: np.array(["a"] * K)), ValueError, "real values"),
        (dict(jac=lambda X: np.zeros(K)), ValueError, r"shape \(5, 3\) like x0; got shape"),
        (dict(jac=lambda X: np.zeros((N, K))), ValueError, r"got shape \(3, 5\)"),
        (dict(jac=True), ValueError, "must return a tuple"),
        (dict(jac="central"), ValueError, "jac must be a callable"),
        (dict(fun="f"), TypeError, "fun must be callable"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(method="sgd"), ValueError, "unknown method 'sgd'"),
        (dict(options={"lr": [0.1, 0.2]}), ValueError,
         r"options\['lr'\] holds 2 values, one per problem, but x0 has K = 5 problems"),
        (dict(options={"lr": [0.1, 0.2, -0.3, 0.4, 0.5]}), ValueError,
         r"options\['lr'\]\[2\]: lr must be"),
        (dict(options={"betas": np.full((K, 3), 0.5)}), ValueError, r"options\['betas'\]\[0\]"),
        (dict(options={"betas": np.full((2, 2), 0.5)}), ValueError, "holds 2 values"),
        (dict(options={"amsgrad": [True, False, True, False, True]}), ValueError,
         "one value for every problem"),
        (dict(options={"lr": np.array([schedules.constant(0.1)] * K)}), TypeError,
         "a schedule applies to every problem"),
        (dict(options={"active_only": 1}), TypeError, "active_only must be True or False"),
        (dict(options={"parallel": "yes"}), TypeError, "parallel must be True or False"),
        (dict(options={"maxiter": -1}), ValueError, "maxiter must be >= 0"),
        (dict(bounds=[(0, 1)] * (N + 1)), ValueError, "one .low, high. pair per variable: 3"),
        (dict(bounds=Bounds(np.zeros((2, N)), 1.0)), ValueError, r"shape \(5, 3\) like x0"),
        (dict(bounds=Bounds(np.ones((K, N)), np.zeros((K, N)))), ValueError,
         "low > high for variable 0 of problem 0"),
    ]
    for overrides, error, message in cases:
        kwargs = {"fun": batch_f, "x0": x0, "jac": batch_g, "options": options, **overrides}
        given = {key: value for key, value in kwargs["options"].items()}
        with pytest.raises(error, match=message):
            minimize_batch(kwargs.pop("fun"), kwargs.pop("x0"), **kwargs)
        assert kwargs["options"] == given  # the options dict is not changed
    assert (x0 == 0).all() and (lrs == 0.1).all()


def test_x0_is_copied_and_float32_kept():
    x0 = np.zeros((K, N), dtype=np.float32)
    res = minimize_batch(batch_f, x0, jac=batch_g, options={"maxiter": 3})
    assert (x0 == 0).all() and res.x.dtype == np.float32
    assert minimize_batch(batch_f, [[0, 0, 0]] * K, jac=batch_g,
                          options={"maxiter": 3}).x.dtype == np.float64


def test_unknown_options_warn_at_the_caller():
    with pytest.warns(OptimizeWarning, match="Unknown solver options: momentum_decay") as record:
        minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g,
                       options={"momentum_decay": 1e-3, "maxiter": 2})
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minimize_batch(batch_f, np.zeros((K, N)), jac=batch_g,
                       options={"active_only": False, "maxiter": 2})


def test_exported():
    assert nbadam.minimize_batch is minimize_batch
    assert "minimize_batch" in nbadam.__all__
