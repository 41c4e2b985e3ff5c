"""The CUDA kernels of the blockwise 8-bit state against the CPU kernels.

Run under Numba's CUDA simulator without a GPU (set before numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_blockwise_cuda.py

The device kernel runs one thread block of 256 threads per block of 256
elements, the rule's rewritten per-element function in each thread, and a
shared-memory maximum for the blocks' new scales; under the simulator its
codec is the NumPy reference, so codes, scales and parameters must be the CPU
kernel's bit for bit.  On a GPU, fused multiply-adds move the float32 values
by an ulp or so before they are encoded, which may move a code by one step,
so there the comparison is to the codes' spacing.  The PTX check compiles the
real device code without a GPU (where NVVM is installed, outside the
simulator).

The simulator runs every thread as a Python thread: the vectors are a few
blocks long (n = 520 and 700), enough for a partial last block, a block that
a NaN gradient poisons, one that an infinite gradient poisons and a block of
zeros.
"""

import re

import numba
import numpy as np
import pytest
from test_cuda import CUDA_USABLE, _device_functions_without_a_gpu, _instructions

import nbadam
from nbadam import _launch
from nbadam._kernels import blockwise
from nbadam.rules.adam import ADAM_UPDATE, AMSGRAD_UPDATE
from nbadam.rules.adan import ADAN_UPDATE
from nbadam.rules.schedulefree import UPDATE as SCHEDULEFREE_UPDATE

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
needs_kernels = pytest.mark.skipif(not (SIMULATED or CUDA_USABLE),
                                   reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
STEPS = 3
#: The block of zeros, where the gradient turns NaN at step 2 (in the partial last block
#: of the vectors that have one there) and where it turns infinite at the last step.
ZEROS = slice(256, 512)
NAN_AT = 650
INF_AT = 100


def flags_of(update):
    return tuple(name in update.compact for name in update.state)


class Problem:
    """One update's arrays on the host (the CPU kernel's) and on the device."""

    def __init__(self, rule_name, update, hyper, n, averaged=False, seed=0):
        from numba import cuda

        self.rule = nbadam.rules.get(rule_name)
        self.update = update
        self.hyper = self.rule.hyper(hyper)
        self.lr = hyper["lr"]
        self.running = np.array(self.rule.initial_running(self.hyper), dtype=np.float64)
        self.flags = flags_of(update)
        self.kinds = blockwise.kinds(update, self.flags)
        self.n = n
        self.nan_at = min(NAN_AT, n - 1)
        self.rng = np.random.default_rng(seed)
        param = self.rng.standard_normal(n).astype(np.float32)
        param[ZEROS] = 0.0
        state, absmax = [], []
        for j, (name, value) in enumerate(zip(update.state,
                                              update.initial_values(self.hyper),
                                              strict=True)):
            start = param.copy() if name in update.from_params else np.full(n, value,
                                                                              np.float32)
            if j in self.kinds:
                codes, scales = blockwise.quantize(start, self.kinds[j])
                state.append(codes)
                absmax.append(scales)
            else:
                state.append(start)
        self.host = {"param": param, "state": tuple(state), "absmax": tuple(absmax)}
        self.averaged = averaged
        if averaged:
            self.host["ema"] = param.copy()
            w = np.float32(0.25)
            self.weights = (w, np.float32(1.0) - w, np.float32(1.0))
        self.device = {key: (tuple(cuda.to_device(a) for a in value)
                             if isinstance(value, tuple) else cuda.to_device(value))
                       for key, value in self.host.items()}

    def gradient(self, t):
        scale = 10.0 ** self.rng.uniform(-5, 2, self.n)   # codes from subnormal to top
        grad = (self.rng.standard_normal(self.n) * scale).astype(np.float32)
        grad[ZEROS] = 0.0
        if t == 2:
            grad[self.nan_at] = np.nan
        if t == 3:
            grad[INF_AT] = np.inf
        return grad

    def scalars(self, t):
        values = self.update.scalars(self.hyper, self.running, self.lr, t)
        return tuple(np.float32(value) for value in values)

    def cpu_step(self, grad, scalars):
        h = self.host
        if self.averaged:
            blockwise.averaged_kernels(self.update, self.flags).serial(
                h["param"], grad, h["state"], scalars, h["absmax"], h["ema"], self.weights)
        else:
            blockwise.kernels(self.update, self.flags).serial(
                h["param"], grad, h["state"], scalars, h["absmax"])

    def device_args(self, grad, scalars):
        from numba import cuda
        d = self.device
        args = (d["param"], cuda.to_device(grad), d["state"], scalars, d["absmax"])
        return args + ((d["ema"], self.weights) if self.averaged else ())

    def launch(self, grad, scalars):
        """Through the launcher, as the optimizers call it."""
        from numba import cuda
        d = self.device
        _launch.step(self.update, self.n, d["param"], cuda.to_device(grad), d["state"],
                     scalars, device="cuda", ema=d.get("ema"),
                     ema_weights=self.weights if self.averaged else None,
                     compact=("8bit", self.flags), absmax=d["absmax"])

    def assert_same(self, t):
        h, d = self.host, self.device
        assert_floats(d["param"], h["param"], f"param, step {t}", self.lr * t)
        if self.averaged:
            assert_floats(d["ema"], h["ema"], f"ema, step {t}", self.lr * t)
        for k, (j, kind) in enumerate(self.kinds.items()):
            assert_codes(d["state"][j], d["absmax"][k], h["state"][j], h["absmax"][k], kind,
                         f"{self.update.state[j]}, step {t}")
        for j, array in enumerate(h["state"]):
            if j not in self.kinds:
                assert_floats(d["state"][j], array, f"{self.update.state[j]}, step {t}",
                              self.lr * t)


def assert_floats(got, expected, what, atol):
    got = got.copy_to_host()
    if SIMULATED:   # bit for bit; a NaN is a NaN (its sign follows the order of operations)
        nan = np.isnan(expected)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaN")
        np.testing.assert_array_equal(got.view(np.uint32)[~nan],
                                      expected.view(np.uint32)[~nan], err_msg=what)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=atol, err_msg=what)


def assert_codes(codes, absmax, expected_codes, expected_absmax, kind, what):
    codes, absmax = codes.copy_to_host(), absmax.copy_to_host()
    if SIMULATED:   # the codes of a block whose absmax is not finite all decode as NaN
        finite = np.repeat(np.isfinite(expected_absmax), blockwise.BLOCK)[:codes.size]
        np.testing.assert_array_equal(codes[finite], expected_codes[finite], err_msg=what)
        nan = np.isnan(expected_absmax)
        np.testing.assert_array_equal(np.isnan(absmax), nan, err_msg=f"{what}: absmax NaN")
        np.testing.assert_array_equal(absmax.view(np.uint32)[~nan],
                                      expected_absmax.view(np.uint32)[~nan],
                                      err_msg=f"{what}: absmax")
        return
    np.testing.assert_allclose(absmax, expected_absmax, rtol=1e-5, err_msg=f"{what}: absmax")
    got = blockwise.dequantize(codes, absmax, kind)
    wanted = blockwise.dequantize(expected_codes, expected_absmax, kind)
    # one code apart at most: a quarter of the value, or a few of the smallest codes
    top = float(np.nanmax(expected_absmax, initial=0.0))
    top = top * top if kind == "root" else top
    np.testing.assert_allclose(got, wanted, rtol=2 ** -2, atol=2 ** -14 * top, err_msg=what)


def run(problem, launch=None, steps=STEPS, first=1):
    launch = launch or problem.launch
    for t in range(first, steps + 1):
        grad = problem.gradient(t)
        scalars = problem.scalars(t)
        problem.cpu_step(grad, scalars)
        launch(grad, scalars)
        problem.assert_same(t)


#: (rule, update, hyperparameters, thread blocks): None launches through the launcher
#: (one thread block per block), a number launches the kernel on that many, whose
#: block-stride loop covers the three blocks (and the simulator starts fewer threads).
CASES = {
    "adam": ("adam", ADAM_UPDATE, {"lr": 1e-2, "weight_decay": 0.01}, None),
    "adamw_maximize": ("adamw", ADAM_UPDATE, {"lr": 1e-2, "weight_decay": 0.1,
                                              "maximize": True}, None),
    "amsgrad": ("amsgrad", AMSGRAD_UPDATE, {"lr": 1e-2}, 2),
    "adan": ("adan", ADAN_UPDATE, {"lr": 1e-2}, 1),      # prev_grad stays float32
    "schedulefree": ("adamwschedulefree", SCHEDULEFREE_UPDATE,   # and z
                     {"lr": 1e-2, "warmup_steps": 2}, 1),
}


@needs_kernels
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the simulator's NumPy NaN arithmetic
@pytest.mark.parametrize("case", list(CASES))
def test_the_device_kernel_matches_the_cpu(case):
    rule_name, update, hyper, grid = CASES[case]
    problem = Problem(rule_name, update, hyper, 700)
    launch = None
    if grid is not None:
        from nbadam._kernels import cuda_blockwise
        kernel = cuda_blockwise.kernel(update, np.float32, False, problem.flags)

        def launch(grad, scalars):
            kernel[grid, cuda_blockwise.THREADS](*problem.device_args(grad, scalars))

    run(problem, launch, steps=2)
    scales = problem.host["absmax"][0]
    assert np.isfinite(scales[0]) and scales[0] > 0
    run(problem, launch, first=3)
    scales = problem.host["absmax"][0]
    assert np.isnan(scales[NAN_AT // blockwise.BLOCK]), "the NaN block stays poisoned"
    assert scales[ZEROS.start // blockwise.BLOCK] == 0.0, "the block of zeros stays zero"
    assert not np.isfinite(scales[INF_AT // blockwise.BLOCK])


@needs_kernels
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_averaged_kernel_matches_the_cpu():
    problem = Problem("adam", ADAM_UPDATE, {"lr": 1e-2}, 520, averaged=True, seed=1)
    run(problem)


def test_the_device_root_code_is_the_reference():
    """The root encoder the GPU compiles too (max() written as a comparison) gives the
    reference's codes."""
    encode = numba.njit(blockwise._root_code)
    rng = np.random.default_rng(3)
    roots = np.concatenate([np.float32([0.0, -0.0, 1e-45, 1e-30, 1.0, 1.9375, np.inf, np.nan]),
                            np.abs(rng.standard_normal(2000) * 10.0 ** rng.uniform(-8, 1, 2000))
                            ]).astype(np.float32)
    for inv in (np.float32(0.0), np.float32(1.0), np.float32(3.7e4)):
        got = np.array([encode(s, inv) for s in roots], dtype=np.uint8)
        with np.errstate(invalid="ignore"):   # inf * 0
            wanted = blockwise.encode_codes(roots, np.full(roots.size, inv), "root")
        np.testing.assert_array_equal(got, wanted)


def test_launch_shape_and_signature():
    from nbadam._kernels import cuda_blockwise

    assert cuda_blockwise.launch_shape(1) == (1, 256)
    assert cuda_blockwise.launch_shape(512) == (2, 256)
    assert cuda_blockwise.launch_shape(513) == (3, 256)
    flags = flags_of(ADAN_UPDATE)
    sig = cuda_blockwise.signature(ADAN_UPDATE, np.float32, True, flags)
    assert [str(t) for t in sig.args[2]] == ["array(uint8, 1d, C)"] * 3 \
        + ["array(float32, 1d, C)"]
    assert str(sig.args[4]) == "UniTuple(array(float32, 1d, C) x 3)"
    assert len(sig.args) == 7


@pytest.mark.parametrize("update", [ADAM_UPDATE, AMSGRAD_UPDATE, ADAN_UPDATE,
                                    SCHEDULEFREE_UPDATE], ids=lambda u: u.name)
@pytest.mark.parametrize("averaged", [False, True], ids=["plain", "averaged"])
def test_float32_ptx_has_no_float64_instructions(update, averaged, monkeypatch):
    """The real device code (bit casts, shared memory, syncthreads) compiles to PTX."""
    from test_cuda import _ptx_compiler

    compile_ptx = _ptx_compiler()
    _device_functions_without_a_gpu(monkeypatch)
    from nbadam._kernels import cuda_blockwise

    flags = flags_of(update)
    func = cuda_blockwise.python_kernel(update, "float32", averaged, flags)
    ptx, _ = compile_ptx(func, cuda_blockwise.signature(update, np.float32, averaged, flags),
                         cc=(8, 0))
    lines = _instructions(ptx)
    wide = [line for line in lines if re.search(r"\.f64\b", line)]
    assert not wide, f"float64 instructions in the 8-bit {update.name} kernel: {wide[:5]}"
    assert sum(line.startswith("bar.sync") for line in lines) >= 2
    assert ".shared" in ptx
    assert any(line.startswith("fma.rn.f32") for line in lines)   # the decode's fused step
