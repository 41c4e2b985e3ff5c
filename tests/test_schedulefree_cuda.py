"""AdamWScheduleFree with ``device="cuda"`` against the CPU: the step, ``z`` starting at
the parameters, ``eval_params``, groups, checkpoints and ``minimize``'s GPU loop.

Without a GPU these tests need Numba's CUDA simulator, in a pytest process of its own::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_schedulefree_cuda.py

Tolerances are those of ``tests/test_cuda.py`` (float64 ``1e-12`` of the scale, float32
16 roundings per step; under the simulator bit for bit).  Grids are small (32 threads a
block, at most 3 blocks), so n = 100 wraps the grid-stride loop.
"""

import numpy as np
import pytest
from conftest import DTYPES
from test_cuda import (  # noqa: F401 (small_grid is an autouse fixture)
    assert_matches_cpu,
    host,
    needs_cuda,
    small_grid,
    to_device,
)

import nbadam

pytestmark = [pytest.mark.cudasim, needs_cuda]
OTHER = {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
         "warmup_steps": 3, "r": 0.5, "weight_lr_power": 1.0}


def pair(size, dtype, hyper, steps, seed=0, **extra):
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(size).astype(dtype)
    cpu = nbadam.AdamWScheduleFree(start.copy(), **hyper, **extra)
    gpu = nbadam.AdamWScheduleFree(start.copy(), device="cuda", **hyper, **extra)
    for group in gpu.groups:               # z starts at each group's parameters
        np.testing.assert_array_equal(host(gpu.z)[group.start:group.stop],
                                      start[group.start:group.stop])
    for _ in range(steps):
        grad = rng.standard_normal(size).astype(dtype)
        assert cpu.step(grad) and gpu.step(to_device(grad))
    return cpu, gpu


def assert_same(cpu, gpu, dtype, steps):
    assert_matches_cpu(gpu.params_host(), cpu.params, dtype, steps, "params")
    for name in ("z", "exp_avg_sq"):
        assert_matches_cpu(gpu.state[name], cpu.state[name], dtype, steps, name)
    point = gpu.eval_params()
    assert not isinstance(point, np.ndarray)      # a device array, like ema_params
    assert_matches_cpu(point, cpu.eval_params(), dtype, steps, "eval_params")
    assert (gpu.lr_max, gpu.weight_sum) == (cpu.lr_max, cpu.weight_sum)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", [0, 1, 33, 100])
@pytest.mark.parametrize("settings_", ["default", "other"])
def test_cuda_matches_cpu(settings_, size, dtype):
    hyper = {} if settings_ == "default" else OTHER
    cpu, gpu = pair(size, dtype, hyper, steps=4)
    assert_same(cpu, gpu, dtype, 4)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cuda_groups_and_eval_params_leave_the_rest_alone(dtype):
    groups = [{"params": slice(0, 40), "betas": (0.7, 0.99)},
              {"params": slice(50, 100), "lr": 1e-2}]
    cpu, gpu = pair(100, dtype, {}, steps=3, groups=groups)
    assert_same(cpu, gpu, dtype, 3)
    start = np.random.default_rng(0).standard_normal(100).astype(dtype)
    np.testing.assert_array_equal(host(gpu.eval_params())[40:50], start[40:50])


def test_cuda_checkpoint_resumes_bit_for_bit():
    cpu, gpu = pair(33, np.float64, OTHER, steps=3)
    twin = nbadam.AdamWScheduleFree(gpu.params_host(), device="cuda", **OTHER)
    twin.load_state_dict(gpu.state_dict())     # the state holds z; params are the caller's
    grad = np.linspace(-1.0, 1.0, 33)
    gpu.step(to_device(grad))
    twin.step(to_device(grad))
    np.testing.assert_array_equal(twin.params_host(), gpu.params_host())
    np.testing.assert_array_equal(host(twin.eval_params()), host(gpu.eval_params()))


def _square_grad(x, out):
    i = cuda.grid(1)  # noqa: F821 (the module's cuda, bound in the test)
    if i < x.shape[0]:
        out[i] = 2.0 * (x[i] - 1.0)


def test_cuda_minimize_returns_the_averaged_point():
    from numba import cuda
    globals()["cuda"] = cuda
    kernel = cuda.jit(_square_grad)

    def fun(x):
        host_x = x.copy_to_host()
        return float(np.sum((host_x - 1.0) ** 2))

    def jac(x):
        out = cuda.device_array_like(x)
        kernel[1, 32](x, out)
        return out

    start = np.linspace(-1.0, 2.0, 5)
    options = {"lr": 0.1, "maxiter": 30, "gtol": 0, "ftol": 0}
    gpu = nbadam.minimize(fun, start, jac=jac, method="adamwschedulefree",
                          options={**options, "device": "cuda"})
    y = start.copy()
    opt = nbadam.AdamWScheduleFree(y, lr=0.1)
    for _ in range(30):
        opt.step(2.0 * (y - 1.0))
    x = opt.eval_params()
    assert gpu.nit == 30 and gpu.nfev == gpu.njev == 32
    np.testing.assert_allclose(gpu.x, x, rtol=1e-12, atol=1e-15)
    assert gpu.fun == pytest.approx(float(np.sum((x - 1.0) ** 2)), rel=1e-10, abs=1e-15)
