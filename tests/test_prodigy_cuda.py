"""Prodigy's CUDA kernels (the reduction pass with block sums, then the update) against
the CPU kernels, under Numba's CUDA simulator or on a GPU::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_prodigy_cuda.py

Small grids (a few blocks of a few threads) make several blocks, a partial last block
and the grid-stride loop run.  Under the simulator the element maths is the CPU's, but
the sums are added in another order (per thread, per block), so the parameters agree
to a few roundings, not bit for bit; on a GPU NVVM also fuses multiply-adds: float64
within ``1e-12`` of the scale, float32 within the foundation's bound.
"""

import numba
import numpy as np
import pytest
from conftest import DTYPES
from reference import FLOAT32_ROUNDINGS_PER_STEP, FLOAT32_UNIT_ROUNDOFF

import nbadam
from nbadam import _config

SIMULATED = bool(numba.config.ENABLE_CUDASIM)


def _cuda_ready():
    try:
        from nbadam import _cuda
    except ImportError:
        return False
    return _cuda.unavailable_reason() is None


pytestmark = pytest.mark.skipif(not _cuda_ready(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")


@pytest.fixture
def small_grid(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8 if SIMULATED else 256)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3 if SIMULATED else 65_535)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", [0, 1, 7, 33, 100])
@pytest.mark.parametrize("hyper", [{}, {"weight_decay": 0.1, "decouple": False,
                                        "betas": (0.0, 0.99), "use_bias_correction": True}],
                         ids=["default", "other"])
def test_cuda_matches_cpu(small_grid, hyper, size, dtype):
    rng = np.random.default_rng(size)
    start = rng.standard_normal(size).astype(dtype)
    cpu = nbadam.Prodigy(start.copy(), **hyper)
    gpu = nbadam.Prodigy(start.copy(), device="cuda", **hyper)
    steps = 6
    for _ in range(steps):
        grad = (rng.standard_normal(size) * 2.0 + start).astype(dtype)
        cpu.step(grad)
        gpu.step(grad)
    host = gpu.params_host()
    scale = np.abs(cpu.params).max(initial=0.0) + np.abs(cpu.params - start).max(initial=0.0)
    if dtype == np.float64:
        allowed = 1e-12 * scale
    else:
        allowed = FLOAT32_ROUNDINGS_PER_STEP * steps * FLOAT32_UNIT_ROUNDOFF * scale
    assert np.abs(host.astype(np.float64) - cpu.params).max(initial=0.0) <= allowed
    assert abs(gpu.d - cpu.d) <= 1e-9 * cpu.d and gpu.k == cpu.k
    for name, value in gpu.state.items():
        assert value.copy_to_host().dtype == dtype, name


def test_reduction_sums_every_block(small_grid):
    from nbadam import _launch, rules
    update = rules.get("prodigy").updates[0]
    rng = np.random.default_rng(1)
    size = 1000   # more than 3 blocks of 8 threads: the grid-stride loop runs
    x = rng.standard_normal(size)
    g = rng.standard_normal(size)
    state_cpu = (np.zeros(size), np.zeros(size), np.zeros(size), np.zeros(size))
    scalars = (1.0, 0.0, 1.0, 0.9, 0.1, 0.99, 0.01, 0.9, 1.0)
    expected = _launch.reduce(update, size, x.copy(), g, state_cpu, scalars)
    from numba import cuda
    device = [cuda.to_device(a) for a in (x, g, *([np.zeros(size)] * 4))]
    got = _launch.reduce(update, size, device[0], device[1], tuple(device[2:]), scalars,
                         device="cuda")
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    np.testing.assert_allclose(got[0], -np.dot(g, x), rtol=1e-12)   # p0 = 0: sum of -g * x
    np.testing.assert_allclose(got[1], np.abs(g).sum(), rtol=1e-13)
