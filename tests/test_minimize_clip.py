"""``minimize``'s ``clip_grad_norm`` option: the steps of the optimizers' ``clip_grad_norm``.

``nbadam.Optimizer(..., clip_grad_norm=c)`` is tested against
``torch.nn.utils.clip_grad_norm_`` in ``tests/test_groups.py``; here the
Python and compiled loops of ``minimize`` must take the same steps as that
optimizer, bit for bit, while the stopping tests, the result's ``jac`` and
the callback keep seeing the unclipped gradient.
"""

import numba
import numpy as np
import pytest

import nbadam
from nbadam.optimizers import make_optimizer

N = 24
RNG = np.random.default_rng(7)
CENTER = RNG.standard_normal(N)
SCALE = np.linspace(0.5, 3.0, N)


def fun(x):
    return float(np.sum(SCALE * (x - CENTER) ** 2) + 0.1 * np.sum(np.cos(3.0 * x)))


def jac(x):
    return 2.0 * SCALE * (x - CENTER) - 0.3 * np.sin(3.0 * x)


@numba.njit
def fun_nb(x):
    return np.sum(SCALE_NB * (x - CENTER_NB) ** 2) + 0.1 * np.sum(np.cos(3.0 * x))


@numba.njit
def jac_nb(x):
    return 2.0 * SCALE_NB * (x - CENTER_NB) - 0.3 * np.sin(3.0 * x)


SCALE_NB, CENTER_NB = SCALE.copy(), CENTER.copy()
MAX_NORM = 2.0   # the gradient's norm starts near 17 and falls below 2 within the run


def optimizer_run(method, x0, steps, gradient, **options):
    """``steps`` steps of the rule's optimizer with ``clip_grad_norm``: the points and norms."""
    x = x0.copy()
    opt = make_optimizer(method, x, clip_grad_norm=MAX_NORM, **options)
    norms = []
    for _ in range(steps):
        opt.step(gradient(x).astype(x.dtype))
        norms.append(opt.last_grad_norm)
    return x, np.array(norms)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["adam", "adamw", "nadam", "lion", "yogi"])
@pytest.mark.parametrize("compiled", [False, True])
def test_steps_are_those_of_the_optimizer(method, dtype, compiled):
    x0 = np.zeros(N, dtype)
    steps = 120
    options = {"lr": 0.05}
    f, g = (fun_nb, jac_nb) if compiled else (fun, jac)
    expected, norms = optimizer_run(method, x0, steps, g, **options)
    assert (norms > MAX_NORM).any() and (norms < MAX_NORM).any()  # clipped on some steps only
    res = nbadam.minimize(f, x0, method=method, jac=g,
                          options={**options, "maxiter": steps, "gtol": 0, "ftol": 0,
                                   "return_best": False, "clip_grad_norm": MAX_NORM,
                                   "compiled": compiled})
    assert res.nit == steps
    np.testing.assert_array_equal(res.x, expected)
    np.testing.assert_array_equal(res.jac, g(res.x).astype(dtype))  # the unclipped gradient
    unclipped = nbadam.minimize(f, x0, method=method, jac=g,
                                options={**options, "maxiter": steps, "gtol": 0, "ftol": 0,
                                         "return_best": False, "compiled": compiled})
    assert not np.array_equal(unclipped.x, res.x)


def test_gtol_and_the_callback_see_the_unclipped_gradient():
    seen = []

    def callback(intermediate_result):
        seen.append(np.max(np.abs(intermediate_result.jac)))

    # The clipped gradient's norm is at most 1e-3 < gtol: were gtol judged on it, the run
    # would stop before its first step.
    res = nbadam.minimize(fun, np.zeros(N), jac=jac, callback=callback,
                          options={"lr": 0.05, "maxiter": 3000, "gtol": 1e-2, "ftol": 0,
                                   "clip_grad_norm": 1e-3})
    assert res.status == 0 and res.success and res.nit > 10
    assert np.max(np.abs(res.jac)) <= 1e-2
    assert seen[0] > 1.0                      # not the clipped gradient (norm <= 1e-3)
    np.testing.assert_array_equal(res.jac, jac(res.x))


def test_the_callers_gradient_is_not_scaled():
    buffer = np.empty(N)
    handed = []

    def jac_into_buffer(x):
        buffer[:] = jac(x)
        handed.append(buffer.copy())
        return buffer   # the caller's own array, handed over each step

    nbadam.minimize(fun, np.zeros(N), jac=jac_into_buffer,
                    options={"lr": 0.05, "maxiter": 5, "clip_grad_norm": 0.1})
    assert np.linalg.norm(handed[-1]) > 0.1   # would have been scaled in place
    np.testing.assert_array_equal(buffer, handed[-1])


def test_a_nonfinite_gradient_still_stops_the_run_before_the_step():
    def bad_jac(x):
        g = jac(x)
        g[3] = np.inf
        return g

    res = nbadam.minimize(fun, np.zeros(N), jac=bad_jac,
                          options={"lr": 0.05, "maxiter": 5, "clip_grad_norm": 1.0})
    assert not res.success   # the infinite gradient stops the run before any step
    assert res.nit == 0


@pytest.mark.parametrize("value, message", [
    (-1.0, "clip_grad_norm"), (float("nan"), "clip_grad_norm"), ("big", "clip_grad_norm")])
def test_bad_max_norm_is_refused(value, message):
    x0 = np.zeros(N)
    with pytest.raises((ValueError, TypeError), match=message):
        nbadam.minimize(fun, x0, jac=jac, options={"clip_grad_norm": value})
    assert not x0.any()


def test_minimize_batch_refuses_it_clearly():
    with pytest.raises(ValueError, match=r"clip_grad_norm'\] is not supported by minimize_batch"):
        nbadam.minimize_batch(lambda X: np.sum(X ** 2, axis=1), np.zeros((2, 3)),
                              jac=lambda X: 2 * X, options={"clip_grad_norm": 1.0})


def test_show_options_documents_it():
    assert "clip_grad_norm : float or None, default None" in nbadam.show_options(
        "adam", disp=False)
