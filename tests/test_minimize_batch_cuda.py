"""``nbadam.minimize_batch(..., options={"device": "cuda"})`` against the CPU batch.

Without a GPU the runs need Numba's CUDA simulator, switched on before numba
is first imported, in a pytest process of its own::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_minimize_batch_cuda.py

In the ordinary run (no simulator, no GPU) only the checks that need no
kernel run: the clear error for ``device="cuda"`` without a GPU and the
options the device loop refuses.  On a machine with a GPU every test runs on it.

The K problems are shifted quadratics of different scales (one of them walks
into NaN), whose gradients a kernel computes on the device, so that they stop
at different steps: the first steps run the rule's own kernel over all K * n
elements, the later ones the masked kernel.  The device run must match the
CPU batch with the same options: same ``nit`` and ``status`` per problem, and
``x``, ``fun``, ``jac`` within ``1e-12`` relative in float64 (FMA on a GPU; the
simulator matches bit for bit in float64, which is checked too).
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
pytestmark = pytest.mark.cudasim

K, N = 4, 3
CENTERS = np.array([[0.5, -0.3, 0.8], [1.0, 2.0, -1.0], [-0.2, 0.1, 0.3], [3.0, 0.0, 0.0]])
SCALES = np.array([[1.0], [0.2], [5.0], [1.0]])
X0 = np.zeros((K, N))
#: Problem 1 meets gtol, problem 3 walks into NaN, the others run all 30 steps.
OPTIONS = {"lr": 0.3, "maxiter": 30, "gtol": 0.05, "ftol": 0}


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    # The simulator runs one Python thread per CUDA thread: keep the grid small.
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 2)


def cpu_f(X):
    X = X.astype(np.float64)
    values = np.sum(SCALES * (X - CENTERS) ** 2, axis=1)
    return np.where(X[:, 0] > 2.5, np.nan, values)


def cpu_g(X):
    return 2.0 * SCALES * (X - CENTERS)


@pytest.fixture(scope="module")
def device_problem():
    """``(fun, jac, fun_and_grad)`` taking device arrays, ``jac`` returning them."""
    @cuda.jit
    def gradient(x, c, s, out):
        for i in range(cuda.grid(1), x.shape[0] * x.shape[1], cuda.gridsize(1)):
            k, j = i // x.shape[1], i % x.shape[1]
            out[k, j] = 2.0 * s[k, 0] * (x[k, j] - c[k, j])

    data = {}

    def jac(X):
        dtype = np.dtype(X.dtype)
        if dtype not in data:
            data[dtype] = (cuda.to_device(CENTERS.astype(dtype)),
                           cuda.to_device(SCALES.astype(dtype)))
        out = cuda.device_array(X.shape, dtype)
        gradient[2, 8](X, *data[dtype], out)
        return out

    def fun(X):  # the values may be computed on the host
        return cpu_f(X.copy_to_host())

    def fun_and_grad(X):
        return fun(X), jac(X)

    return fun, jac, fun_and_grad


def assert_same(res, ref, rtol=1e-12):
    for key in ("nit", "nfev", "njev", "status", "success", "message"):
        np.testing.assert_array_equal(res[key], ref[key], err_msg=key)
    assert res.x.dtype == ref.x.dtype and res.jac.dtype == ref.jac.dtype
    scale = max(np.max(np.abs(ref.x)), 1.0)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(res.jac, ref.jac, rtol=0,
                               atol=rtol * max(np.max(np.abs(ref.jac)), 1.0))
    np.testing.assert_allclose(res.fun, ref.fun, rtol=rtol, atol=0)
    if SIMULATED and ref.x.dtype == np.float64:
        # The simulator does the CPU's IEEE operations in the same order (in float32 its
        # math.sqrt returns a float64, so only the tolerance holds there).
        for key in ("x", "jac", "fun"):
            np.testing.assert_array_equal(res[key], ref[key], err_msg=key)


def both(fun, jac, method="adam", callback=None, x0=X0, **options):
    """The device run and the CPU run of the same batch."""
    res = nbadam.minimize_batch(fun, x0, method=method, jac=jac, callback=callback,
                                options={**options, "device": "cuda"})
    ref = nbadam.minimize_batch(cpu_f, x0, method=method, jac=cpu_g, callback=callback,
                                options=options)
    return res, ref


# -- no GPU needed ---------------------------------------------------------------------
@pytest.mark.skipif(GPU, reason="checks the error raised where no GPU is usable")
def test_without_a_gpu_the_error_says_what_is_missing():
    with pytest.raises(RuntimeError, match="GPU.*driver"):
        nbadam.minimize_batch(cpu_f, X0, jac=cpu_g, options={"device": "cuda"})


@pytest.mark.parametrize("jac", [None, "3-point"])
def test_finite_differences_are_refused(jac):
    with pytest.raises(ValueError, match=r"jac .*n times per step on the host"):
        nbadam.minimize_batch(cpu_f, X0, jac=jac, options={"device": "cuda"})


@pytest.mark.parametrize("options, message", [
    ({"compiled": True}, r"compiled'\]=True does not apply"),
    ({"active_only": True}, r"active_only'\]=True does not apply"),
])
def test_options_the_device_loop_refuses(options, message):
    with pytest.raises(ValueError, match=message):
        nbadam.minimize_batch(cpu_f, X0, jac=cpu_g, options={**options, "device": "cuda"})
    with pytest.raises(ValueError, match="bounds are not supported"):
        nbadam.minimize_batch(cpu_f, X0, jac=cpu_g, bounds=[(-1, 1)] * N,
                              options={"device": "cuda"})


# -- on the device (GPU or simulator) -----------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("method", RULE_IDS)
def test_every_rule_matches_the_cpu(device_problem, method):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, method, **OPTIONS)
    assert_same(res, ref)


@needs_gpu
def test_the_problems_stop_apart_and_the_stopped_ones_stay(device_problem):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, "adam", return_best=False, **OPTIONS)
    assert_same(res, ref)
    assert res.status.tolist() == [1, 0, 1, 3]
    assert len(set(res.nit.tolist())) == 3 and res.nit.max() == 30


@needs_gpu
@pytest.mark.parametrize("method", ["adam", "nadam"])
def test_hyperparameters_per_problem_and_a_schedule(device_problem, method):
    fun, _, fun_and_grad = device_problem
    res, ref = both(fun_and_grad, True, method, **{**OPTIONS,
                                                     "lr": [0.05, 0.1, 0.3, 0.5],
                                                     "betas": [[0.9, 0.999], [0.5, 0.9],
                                                               [0.8, 0.99], [0.9, 0.9]]})
    assert_same(res, ref)
    lr = nbadam.schedules.exponential_decay(0.5, 0.5, 10)
    res, ref = both(fun_and_grad, True, method, **{**OPTIONS, "lr": lr,
                                                     "weight_decay": 0.05})
    assert_same(res, ref)


@needs_gpu
def test_float32_stays_float32(device_problem):
    fun, jac, _ = device_problem
    res, ref = both(fun, jac, "adam", x0=X0.astype(np.float32), **OPTIONS)
    assert res.x.dtype == np.float32
    assert_same(res, ref, rtol=16 * 30 * 2.0 ** -24)


@needs_gpu
def test_callback_stop_iteration_and_return_best(device_problem):
    fun, jac, _ = device_problem
    seen = []

    def callback(intermediate_result):
        r = intermediate_result
        assert isinstance(r.x, np.ndarray) and r.x.shape == (K, N)
        seen.append(r.nit.max())
        if r.nit.max() == 5:
            raise StopIteration

    res, ref = both(fun, jac, "radam", callback=callback, **{**OPTIONS, "lr": 2.0})
    assert seen == [1, 2, 3, 4, 5] * 2
    assert (res.status[res.nit == 5] == 99).all()
    assert_same(res, ref)


@needs_gpu
def test_device_values_and_bad_gradients(device_problem):
    fun, jac, _ = device_problem
    res = nbadam.minimize_batch(lambda X: cuda.to_device(fun(X)), X0, jac=jac,
                                options={**OPTIONS, "device": "cuda"})
    ref = nbadam.minimize_batch(cpu_f, X0, jac=cpu_g, options=OPTIONS)
    assert_same(res, ref)
    with pytest.raises(ValueError, match="jac must return a device array.*numpy.ndarray"):
        nbadam.minimize_batch(fun, X0, jac=lambda X: cpu_g(X.copy_to_host()),
                              options={"device": "cuda"})
    with pytest.raises(ValueError, match=r"shape \(4, 3\) like x0; got shape \(4,\)"):
        nbadam.minimize_batch(fun, X0, jac=lambda X: cuda.device_array(K),
                              options={"device": "cuda"})
    with pytest.raises(ValueError, match="dtype"):
        nbadam.minimize_batch(fun, X0, jac=lambda X: cuda.device_array((K, N), np.float32),
                              options={"device": "cuda"})
    with pytest.raises(ValueError, match=r"one value per problem.*shape \(4,\)"):
        nbadam.minimize_batch(lambda X: cuda.device_array(2), X0, jac=jac,
                              options={"device": "cuda"})
