"""``state_precision="bfloat16"`` with ``device="cuda"``, against the CPU kernels.

Run under Numba's CUDA simulator without a GPU (set before numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_compact_cuda.py

The device kernel runs the same rewritten per-element function; its codec is
the CPU's bit arithmetic on a GPU and the NumPy reference under the
simulator, so under the simulator the codes and parameters match the CPU's
bit for bit.  On a GPU, fused multiply-adds move the float32 values by an ulp
or so before they are rounded, so the comparison is to the bfloat16 spacing.
"""

import numba
import numpy as np
import pytest
from test_cuda import host

import nbadam
from nbadam import _config
from nbadam._kernels import compact
from nbadam.optimizers import make_optimizer

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
pytestmark = pytest.mark.skipif(
    not (SIMULATED or __import__("test_cuda").CUDA_USABLE),
    reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 32)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)


def assert_same(got, expected, what):
    got = host(got)
    if SIMULATED or got.dtype == np.uint16 and np.array_equal(got, expected):
        np.testing.assert_array_equal(got, expected, err_msg=what)
        return
    values = compact.bf16_decode(got) if got.dtype == np.uint16 else got
    wanted = compact.bf16_decode(expected) if expected.dtype == np.uint16 else expected
    np.testing.assert_allclose(values, wanted, rtol=2 ** -7, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("name, extra", [("adam", {}), ("amsgrad", {"weight_decay": 0.01}),
                                         ("lion", {}), ("adan", {}), ("yogi", {})])
def test_the_device_kernel_matches_the_cpu(name, extra):
    rng = np.random.default_rng(5)
    start = rng.standard_normal(150).astype(np.float32)
    cpu = make_optimizer(name, start.copy(), state_precision="bfloat16", lr=1e-2, **extra)
    gpu = make_optimizer(name, start.copy(), state_precision="bfloat16", lr=1e-2,
                         device="cuda", **extra)
    for _ in range(6):
        grad = rng.standard_normal(150).astype(np.float32)
        cpu.step(grad)
        gpu.step(grad)
    assert_same(gpu.params, cpu.params, "params")
    for key, array in cpu.state.items():
        assert_same(gpu.state[key], array, key)


def test_groups_and_the_average_on_the_device():
    rng = np.random.default_rng(6)
    start = rng.standard_normal(150).astype(np.float32)
    groups = [{"params": slice(0, 60), "lr": 0.0}, {"params": slice(60, 140), "betas": (0.8, 0.99)}]
    kwargs = {"lr": 1e-2, "groups": groups, "ema": 0.9, "state_precision": "bfloat16"}
    cpu = nbadam.Adam(start.copy(), **kwargs)
    gpu = nbadam.Adam(start.copy(), device="cuda", **kwargs)
    for _ in range(5):
        grad = rng.standard_normal(150).astype(np.float32)
        cpu.step(grad)
        gpu.step(grad)
    assert_same(gpu.params, cpu.params, "params")
    assert_same(gpu.ema_params, cpu.ema_params, "ema")
    for key, array in cpu.state.items():
        assert_same(gpu.state[key], array, key)
    np.testing.assert_array_equal(host(gpu.params)[:60], start[:60])


def test_a_device_checkpoint_loads_on_the_cpu(tmp_path):
    rng = np.random.default_rng(7)
    start = rng.standard_normal(100).astype(np.float32)
    gpu = nbadam.Adam(start.copy(), device="cuda", state_precision="bfloat16")
    for _ in range(3):
        gpu.step(rng.standard_normal(100).astype(np.float32))
    gpu.save(tmp_path / "gpu.npz")
    cpu = nbadam.Adam(gpu.params_host(), state_precision="bfloat16")
    cpu.load(tmp_path / "gpu.npz")
    for key in cpu.state:
        np.testing.assert_array_equal(cpu.state[key], host(gpu.state[key]))
