"""``nbadam.minimize(..., options={"device": "cuda"})`` against the CPU loop.

Without a GPU the runs need Numba's CUDA simulator, switched on before numba
is first imported, in a pytest process of its own::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_minimize_cuda.py

In the ordinary run (no simulator, no GPU) only the checks that need no
kernel run: the clear error for ``device="cuda"`` without a GPU and the
options the device loop refuses.  On a machine with a GPU every test runs on it.

The objective is a small quadratic whose gradient is computed on the device
by a kernel; the device run must match the CPU ``minimize`` run with the same
options: same ``nit`` and ``status``, and ``x``, ``fun``, ``jac`` within
``1e-12`` relative in float64 (FMA on a GPU; the simulator matches bit for bit).
"""

import os

import numba
import numpy as np
import pytest
from conftest import RULE_IDS

import nbadam
from nbadam import _config

try:
    from numba import cuda
except ImportError:  # a Numba without its CUDA target: only the no-GPU checks run
    cuda = None

SIMULATED = bool(numba.config.ENABLE_CUDASIM)


def _gpu_available():
    try:
        return cuda is not None and bool(cuda.is_available())
    except Exception:
        return False


GPU = SIMULATED or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or _gpu_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")

N = 8
C = np.linspace(-1.0, 1.5, N)
X0 = np.zeros(N)


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    # The simulator runs one Python thread per CUDA thread: keep the grid small.
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 2)


def cpu_fun(x):
    return float(np.sum((x - C) ** 2))


def cpu_jac(x):
    return 2.0 * (x - C)


@pytest.fixture(scope="module")
def device_problem():
    """``(fun, jac, fun_and_grad)`` taking and returning device arrays."""
    @cuda.jit
    def gradient(x, c, out):
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            out[i] = 2.0 * (x[i] - c[i])

    centers = {}

    def jac(x):
        dtype = np.dtype(x.dtype)
        if dtype not in centers:
            centers[dtype] = cuda.to_device(C.astype(dtype))
        out = cuda.device_array(x.shape[0], dtype)
        gradient[1, 8](x, centers[dtype], out)
        return out

    def fun(x):  # the value may be computed on the host
        return cpu_fun(x.copy_to_host())

    def fun_and_grad(x):
        return fun(x), jac(x)

    return fun, jac, fun_and_grad


def assert_same(res, ref, rtol=1e-12):
    assert (res.nit, res.status, res.success, res.message) == (
        ref.nit, ref.status, ref.success, ref.message)
    assert (res.nfev, res.njev) == (ref.nfev, ref.njev)
    assert isinstance(res.x, np.ndarray) and isinstance(res.jac, np.ndarray)
    assert res.x.dtype == ref.x.dtype and res.jac.dtype == ref.jac.dtype
    scale = max(np.max(np.abs(ref.x)), 1.0)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(res.jac, ref.jac, rtol=0,
                               atol=rtol * max(np.max(np.abs(ref.jac)), 1.0))
    assert abs(res.fun - ref.fun) <= rtol * max(abs(ref.fun), 1.0)


def both(fun, jac, method="adam", callback=None, x0=X0, **options):
    """The device run and the CPU run of the same problem."""
    res = nbadam.minimize(fun, x0, method=method, jac=jac, callback=callback,
                          options={**options, "device": "cuda"})
    ref = nbadam.minimize(cpu_fun, x0, method=method, jac=cpu_jac, callback=callback,
                          options=options)
    return res, ref


# -- no GPU needed ---------------------------------------------------------------------
@pytest.mark.skipif(GPU, reason="checks the error raised where no GPU is usable")
def test_without_a_gpu_the_error_says_what_is_missing():
    with pytest.raises(RuntimeError, match="GPU.*driver"):
        nbadam.minimize(cpu_fun, X0, jac=cpu_jac, options={"device": "cuda"})


@pytest.mark.parametrize("jac", [None, False, "2-point", "3-point"])
def test_finite_differences_are_refused(jac):
    with pytest.raises(ValueError, match=r"jac .*2n times per step on the host"):
        nbadam.minimize(cpu_fun, X0, jac=jac, options={"device": "cuda"})


def test_bounds_are_refused():
    with pytest.raises(ValueError, match="bounds are not supported"):
        nbadam.minimize(cpu_fun, X0, jac=cpu_jac, bounds=[(-1, 1)] * N,
                        options={"device": "cuda"})


def test_compiled_true_is_refused():
    with pytest.raises(ValueError, match=r"compiled'\]=True does not apply"):
        nbadam.minimize(cpu_fun, X0, jac=cpu_jac, options={"device": "cuda", "compiled": True})


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        nbadam.minimize(cpu_fun, X0, jac=cpu_jac, options={"device": "tpu"})


# -- on the device (GPU or simulator) -----------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("method", RULE_IDS)
def test_every_rule_matches_the_cpu(device_problem, method):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, method, lr=0.1, maxiter=30, gtol=0, ftol=0)
    assert res.status == 1 and res.nit == 30
    assert_same(res, ref)


@needs_gpu
def test_hyperparameters_and_schedule_reach_the_optimizer(device_problem):
    fun, _, fun_and_grad = device_problem
    lr = nbadam.schedules.exponential_decay(0.2, 0.5, 10)
    res, ref = both(fun_and_grad, True, "adam", lr=lr, betas=(0.8, 0.99), eps=1e-6,
                    weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True,
                    maxiter=25, gtol=0, ftol=0)
    assert_same(res, ref)
    res, ref = both(fun_and_grad, True, "nadam", lr=0.05, momentum_decay=0.01,
                    weight_decay=0.1, maxiter=25, gtol=0, ftol=0)
    assert_same(res, ref)
    assert res.fun == pytest.approx(cpu_fun(res.x))


@needs_gpu
def test_gtol_stop(device_problem):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, "adam", lr=0.1, gtol=0.5, ftol=0, maxiter=50)
    assert res.status == 0 and res.success and 0 < res.nit < 50
    assert np.max(np.abs(res.jac)) <= 0.5
    assert_same(res, ref)


@needs_gpu
def test_ftol_stop(device_problem):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, "adam", lr=0.5, gtol=0, ftol=0.5, ftol_window=3, maxiter=50)
    assert res.status == 2 and res.success and res.nit < 50
    assert_same(res, ref)


@needs_gpu
def test_maxiter_zero_and_return_best(device_problem):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, "adam", maxiter=0)
    assert res.nit == 0 and res.status == 1
    assert_same(res, ref)
    np.testing.assert_array_equal(res.x, X0)
    # A large step oscillates: the best point is not the last one.
    res, ref = both(fun, jac, "adam", lr=2.0, gtol=0, ftol=0, maxiter=10)
    last, _ = both(fun, jac, "adam", lr=2.0, gtol=0, ftol=0, maxiter=10, return_best=False)
    assert_same(res, ref)
    assert res.fun < last.fun


@needs_gpu
def test_callback_stop_iteration(device_problem):
    fun, jac, _ = device_problem
    seen = []

    def callback(intermediate_result):
        assert isinstance(intermediate_result.x, np.ndarray)
        seen.append(intermediate_result.nit)
        if intermediate_result.nit == 4:
            raise StopIteration

    res, ref = both(fun, jac, "radam", callback=callback, lr=0.1, gtol=0, ftol=0,
                    return_best=False, maxiter=50)
    assert res.status == 99 and res.nit == 4 and not res.success
    assert seen == [1, 2, 3, 4, 1, 2, 3, 4]
    assert_same(res, ref)


@needs_gpu
def test_nonfinite_stop(device_problem):
    _, jac, _ = device_problem
    calls = []

    def fun(x):
        calls.append(1)
        return float("nan") if len(calls) > 5 else cpu_fun(x.copy_to_host())

    res = nbadam.minimize(fun, X0, jac=jac, options={"device": "cuda", "lr": 0.1,
                                                     "gtol": 0, "ftol": 0})
    assert res.status == 3 and res.nit == 5 and not res.success
    assert np.isfinite(res.fun)  # the last good point


@needs_gpu
def test_float32_stays_float32(device_problem):
    fun, jac, _ = device_problem
    x0 = X0.astype(np.float32)
    res, ref = both(fun, jac, "adam", x0=x0, lr=0.1, gtol=0, ftol=0, maxiter=10)
    assert res.x.dtype == np.float32
    assert_same(res, ref, rtol=16 * 10 * 2.0 ** -24)


@needs_gpu
def test_jac_returning_numpy_is_refused(device_problem):
    fun, _, _ = device_problem
    with pytest.raises(ValueError, match="jac must return a device array.*numpy.ndarray"):
        nbadam.minimize(fun, X0, jac=lambda x: 2.0 * (x.copy_to_host() - C),
                        options={"device": "cuda"})


@needs_gpu
def test_bad_device_gradients_are_refused(device_problem):
    fun, jac, _ = device_problem
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        nbadam.minimize(fun, X0, jac=lambda x: cuda.device_array(3),
                        options={"device": "cuda"})
    with pytest.raises(ValueError, match="dtype"):
        nbadam.minimize(fun, X0, jac=lambda x: cuda.device_array(N, np.float32),
                        options={"device": "cuda"})
    with pytest.raises(ValueError, match="scalar"):
        nbadam.minimize(lambda x: cuda.device_array(2), X0, jac=jac,
                        options={"device": "cuda"})
    res = nbadam.minimize(lambda x: cuda.to_device(np.array([fun(x)])), X0, jac=jac,
                          options={"device": "cuda", "maxiter": 3})
    assert isinstance(res.fun, float) and res.nit == 3


@needs_gpu
@pytest.mark.parametrize("method", ["adam", "lion"])
def test_clip_grad_norm_matches_the_cpu(device_problem, method):
    # The gradient's norm starts near 3.6 and shrinks: clipped early, not late.
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, method, lr=0.1, maxiter=40, gtol=0, ftol=0, clip_grad_norm=1.0)
    assert res.nit == 40
    assert_same(res, ref)
    unclipped = nbadam.minimize(cpu_fun, X0, method=method, jac=cpu_jac,
                                options={"lr": 0.1, "maxiter": 40, "gtol": 0, "ftol": 0})
    assert not np.array_equal(ref.x, unclipped.x)
