"""Groups, clipping and the parameter average with ``device="cuda"``, against the CPU.

Run under Numba's CUDA simulator without a GPU (set before numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_groups_cuda.py

The clipped step's norm is summed in another order on the device (per-thread
partial sums, then atomic additions), so the comparison uses the CUDA tests'
bounds rather than bit equality.
"""

import numba
import numpy as np
import pytest
from conftest import DTYPES
from reference import FLOAT32_ROUNDINGS_PER_STEP, FLOAT32_UNIT_ROUNDOFF
from test_cuda import FLOAT64_RTOL, host, to_device

import nbadam
from nbadam import _config

pytestmark = pytest.mark.skipif(
    not (numba.config.ENABLE_CUDASIM or __import__("test_cuda").CUDA_USABLE),
    reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")


def assert_near_cpu(got, expected, dtype, steps, what):
    """The CUDA tests' bound (``tests/test_cuda.py``), without their bit-equality under the
    simulator: the device sums the gradient's norm in another order."""
    got = host(got)
    scale = float(np.abs(expected.astype(np.float64)).max()) + float(np.finfo(dtype).tiny)
    if np.dtype(dtype) == np.float64:
        bound = FLOAT64_RTOL * scale
    else:
        bound = FLOAT32_ROUNDINGS_PER_STEP * steps * FLOAT32_UNIT_ROUNDOFF * scale
    error = float(np.abs(got.astype(np.float64) - expected).max())
    assert error <= bound, (what, error, bound)


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 32)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cls, extra", [(nbadam.Adam, {"amsgrad": True}), (nbadam.NAdam, {}),
                                        (nbadam.RAdam, {"weight_decay": 0.01})],
                         ids=["amsgrad", "nadam", "radam"])
def test_groups_clipping_and_ema_on_the_gpu(cls, extra, dtype):
    rng = np.random.default_rng(4)
    start = rng.standard_normal(150).astype(dtype)
    groups = [{"params": slice(0, 70), "lr": 3e-2, "betas": (0.8, 0.99)},
              {"params": slice(70, 140), "weight_decay": 0.0}]
    kwargs = {"lr": 1e-2, "groups": groups, "clip_grad_norm": 1.0, "ema": 0.9, **extra}
    cpu = cls(start.copy(), **kwargs)
    gpu = cls(start.copy(), device="cuda", **kwargs)
    for step in range(8):
        grad = ((4.0 if step % 2 else 0.01) * rng.standard_normal(150)).astype(dtype)
        cpu.step(grad)
        gpu.step(to_device(grad))
        assert gpu.last_grad_norm == pytest.approx(cpu.last_grad_norm, rel=1e-12)
    assert_near_cpu(gpu.params_host(), cpu.params, dtype, 8, "params")
    assert_near_cpu(gpu.ema_params, cpu.ema_params, dtype, 8, "ema")
    np.testing.assert_array_equal(gpu.params_host()[140:], start[140:])   # in no group
    for name, value in cpu.state.items():
        assert_near_cpu(gpu.state[name], value, dtype, 8, name)
