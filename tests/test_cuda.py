"""The CUDA kernels and ``device="cuda"`` optimizers against the CPU kernels.

Without a GPU these tests need Numba's CUDA simulator, which must be switched
on before numba is first imported, so they run in a pytest process of their own::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py

In the ordinary run (no simulator, no GPU) only the checks that need no
kernel run here: the clear error for ``device="cuda"`` without a GPU, that
``import nbadam`` does not import ``numba.cuda``, and the PTX check, which
compiles the float32 kernels to PTX without a GPU when a CUDA toolkit (NVVM)
is installed.  On a machine with a GPU every test runs on the GPU.

Tolerances, CPU kernels vs CUDA kernels after ``k`` steps from the same start:

* float64: ``|gpu - cpu| <= 1e-12 * max|cpu|`` (elementwise, parameters and state);
* float32: ``|gpu - cpu| <= 16 * k * 2**-24 * max|cpu|``, the foundation's float32
  bound (``tests/reference.py``: 16 roundings of unit roundoff per step).

On a GPU the difference comes from NVVM fusing multiplies and adds (FMA); the
simulator performs the CPU kernels' IEEE operations in the same order, so under
it the results must also be identical bit for bit, which is checked too.
"""

import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest
from conftest import ALL_RULE_IDS, ALL_RULES, DTYPES, OPTAX_RULE_IDS, accepted
from reference import FLOAT32_ROUNDINGS_PER_STEP, FLOAT32_UNIT_ROUNDOFF

import nbadam
from nbadam import _config

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
SIZES = [0, 1, 7, 33, 100]
FLOAT64_RTOL = 1e-12
RUN_HINT = "NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py"


def _cuda_usable() -> bool:
    try:
        from numba import cuda
    except ImportError:
        return False
    return bool(cuda.is_available())


CUDA_USABLE = _cuda_usable()
needs_cuda = pytest.mark.skipif(
    not CUDA_USABLE, reason=f"no CUDA GPU and no simulator; run: {RUN_HINT}")
pytestmark = pytest.mark.cudasim


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    """32 threads a block and at most 3 blocks.

    So n = 33 runs two blocks, the last with one active thread, and n = 100
    wants four blocks, gets three, and the grid-stride loop wraps.
    """
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 32)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)


def to_device(array):
    from numba import cuda
    return cuda.to_device(array)


def host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def assert_matches_cpu(got, expected, dtype, steps, what=""):
    """Within the module docstring's bound of the CPU result (and equal under the simulator)."""
    got = host(got)
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    if expected.size == 0:
        return
    scale = float(np.abs(expected.astype(np.float64)).max()) + float(np.finfo(dtype).tiny)
    if np.dtype(dtype) == np.float64:
        bound = FLOAT64_RTOL * scale
    else:
        bound = FLOAT32_ROUNDINGS_PER_STEP * steps * FLOAT32_UNIT_ROUNDOFF * scale
    error = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    assert error.max() <= bound, f"{what}: {error.max():.3e} > {bound:.3e}"
    if SIMULATED:
        np.testing.assert_array_equal(got, expected, err_msg=what)


def run_pair(cls, kwargs, dtype, size, steps, seed=0, device_grad=True):
    """The same trajectory on the CPU and on the GPU; returns both optimizers."""
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(size).astype(dtype)
    cpu = cls(start.copy(), **kwargs)
    gpu = cls(start.copy(), device="cuda", **kwargs)
    for _ in range(steps):
        grad = rng.standard_normal(size).astype(dtype)
        assert cpu.step(grad)
        assert gpu.step(to_device(grad) if device_grad else grad)
    return cpu, gpu


def assert_same_trajectory(cpu, gpu, dtype, steps):
    assert gpu.step_count == cpu.step_count
    assert_matches_cpu(gpu.params_host(), cpu.params, dtype, steps, "params")
    assert set(gpu.state) == set(cpu.state)
    for name, value in cpu.state.items():
        assert_matches_cpu(gpu.state[name], value, dtype, steps, name)


# -- without a GPU -----------------------------------------------------------------
def test_import_does_not_need_cuda():
    code = ("import sys, numpy as np, nbadam\n"
            "opt = nbadam.Adam(np.zeros(3)); opt.step(np.ones(3)); opt.state_dict()\n"
            "print('numba.cuda' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(CUDA_USABLE, reason="a CUDA GPU (or the simulator) is available")
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_cuda_without_a_gpu_is_a_clear_error(rule):
    _, cls, kwargs = rule
    params = np.zeros(3)
    with pytest.raises(RuntimeError, match=r"device='cuda' needs an NVIDIA GPU .*"
                                           r"numba\.cuda\.is_available\(\) is False \(.+\)"):
        cls(params, device="cuda", **kwargs)


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match=r"device must be one of 'cpu', 'cuda'; got 'gpu'"):
        nbadam.Adam(np.zeros(3), device="gpu")


def test_cpu_optimizer_reports_its_device():
    opt = nbadam.Adam(np.zeros(3))
    assert opt.device == "cpu"
    host_copy = opt.params_host()
    assert host_copy is not opt.params and np.array_equal(host_copy, opt.params)


@pytest.mark.skipif(CUDA_USABLE and not SIMULATED, reason="a GPU is here: run the benchmark")
def test_gpu_benchmark_says_why_it_cannot_run():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "benchmarks.scripts.gpu_step", "--sizes", "1e3"],
                         capture_output=True, text=True, cwd=root)
    assert out.returncode == 1, out.stderr
    assert re.search(r"gpu_step: (numba.cuda sees no CUDA GPU|NUMBA_ENABLE_CUDASIM=1 is set)",
                     out.stderr), out.stderr


# -- PTX: compiled without a GPU when NVVM is installed ------------------------------
def _ptx_compiler():
    """``numba.cuda.compile_ptx``, or a skip saying why PTX cannot be made here."""
    if SIMULATED:
        pytest.skip("the simulator compiles no PTX; run this check without NUMBA_ENABLE_CUDASIM")
    try:
        from numba import cuda, void
        cuda.compile_ptx(lambda x: None, void(numba.float32[::1]), cc=(8, 0))
    except Exception as exc:  # no toolkit: the error type depends on numba vs numba-cuda
        pytest.skip(f"cannot compile PTX here (no CUDA toolkit / NVVM?): "
                    f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    return cuda.compile_ptx


def _device_functions_without_a_gpu(monkeypatch):
    """Let device functions compile for cc 8.0 with no GPU, as ``compile_ptx`` does.

    Numba compiles a device function that a kernel calls for the current
    device's compute capability; without a GPU there is none, so the test
    names the one ``compile_ptx`` targets."""
    import types

    from numba.cuda import dispatcher
    if CUDA_USABLE or not hasattr(dispatcher, "get_current_device"):
        return
    fake = types.SimpleNamespace(compute_capability=(8, 0))
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: fake)


def _instructions(ptx):
    # Instruction lines only: directives (.version, .target, .param ...) and comments dropped.
    lines = (line.split("//")[0].strip() for line in ptx.splitlines())
    return [line for line in lines if line and not line.startswith(".")]


def _updates():
    """Every update of every registered rule, once, and the roofline kernel's."""
    from nbadam._kernels.roofline import SAME_TRAFFIC
    found = {}
    for name in nbadam.rules.names():
        for update in nbadam.rules.get(name).updates:
            found.setdefault(update.name, update)
    return [*found.values(), SAME_TRAFFIC]


UPDATES = _updates()
UPDATE_IDS = [update.name for update in UPDATES]


@pytest.mark.parametrize("update", [*UPDATES, "first_nonfinite"],
                         ids=[*UPDATE_IDS, "first_nonfinite"])
def test_float32_ptx_has_no_float64_instructions(update, monkeypatch):
    compile_ptx = _ptx_compiler()
    _device_functions_without_a_gpu(monkeypatch)
    from nbadam._kernels import cuda as kernels

    func = kernels.python_kernel(update)
    ptx32, _ = compile_ptx(func, kernels.signature(update, np.float32), cc=(8, 0))
    wide = [line for line in _instructions(ptx32) if re.search(r"\.f64\b", line)]
    assert not wide, f"float64 instructions in the float32 {update} kernel: {wide[:5]}"
    assert any(re.search(r"\.f32\b", line) for line in _instructions(ptx32))
    # The check can see float64: the float64 build is full of it.
    ptx64, _ = compile_ptx(func, kernels.signature(update, np.float64), cc=(8, 0))
    assert any(re.search(r"\.f64\b", line) for line in _instructions(ptx64))


@pytest.mark.parametrize("update", UPDATES, ids=UPDATE_IDS)
def test_cpu_and_cuda_kernels_run_one_element_function(update):
    """The maths is written once: both targets compile copies of the rule's own
    per-element function (same code object) and differ only in the loop."""
    from nbadam._kernels import cpu
    from nbadam._kernels import cuda as kernels

    cpu_element = cpu.kernels(update).serial.py_func.__globals__["element"]
    cuda_element = kernels.python_kernel(update).__globals__["element"]
    assert cpu_element.py_func.__code__ is update.element.__code__
    assert getattr(cuda_element, "py_func", cuda_element).__code__ is update.element.__code__ \
        or getattr(cuda_element, "fn", None).__code__ is update.element.__code__


@pytest.mark.parametrize("update", UPDATES, ids=UPDATE_IDS)
def test_signatures_are_explicit_and_match_the_update(update):
    """``kernel(param, grad, state, scalars)``: two arrays, a tuple of one array per
    state array and a tuple of as many scalars as the rule's scalar function returns."""
    from nbadam._kernels import cuda as kernels

    for dtype in DTYPES:
        sig = kernels.signature(update, dtype)
        assert len(sig.args) == 4
        assert str(sig.args[0]) == str(sig.args[1]) == f"array({np.dtype(dtype).name}, 1d, C)"
        assert len(sig.args[2]) == len(update.state)
        assert len(sig.args[3]) == len(update.element_scalar_names)   # finish's, with a reduction
    if hasattr(update, "scalars"):
        rule = next(nbadam.rules.get(name) for name in nbadam.rules.names()
                    if update in nbadam.rules.get(name).updates)
        hyper = rule.hyper({})
        values = update.scalars(hyper, np.array(rule.initial_running(hyper)), 1e-3, 1)
        assert len(values) == len(update.scalar_names)


# -- the kernels, through the optimizers ------------------------------------------
@needs_cuda
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_matches_cpu_kernels(rule, dtype, size):
    """Eight steps: RAdam's first rectified step (t = 6) is among them."""
    _, cls, kwargs = rule
    cpu, gpu = run_pair(cls, {**accepted(cls, {"lr": 1e-2, "weight_decay": 0.1}), **kwargs},
                        dtype, size, 8, seed=size)
    assert_same_trajectory(cpu, gpu, dtype, 8)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_matches_cpu_kernels_other_hyperparameters(rule, dtype):
    """maximize, decoupled decay where the rule has it, other betas, eps, a schedule."""
    _, cls, kwargs = rule
    betas = (0.8, 0.99, 0.9) if cls is nbadam.Adan else (0.8, 0.99)
    hyper = {"lr": nbadam.schedules.warmup_cosine_decay(3e-2, 2, 10), "betas": betas,
             "eps": 1e-6, "eps_root": 1e-10, "weight_decay": 0.05, "initial_accumulator": 0.1,
             "maximize": True}
    if cls in (nbadam.Adam, nbadam.NAdam, nbadam.RAdam):
        hyper["decoupled_weight_decay"] = True
    hyper = {**accepted(cls, hyper), **kwargs}
    cpu, gpu = run_pair(cls, hyper, dtype, 33, 10, seed=1, device_grad=False)
    assert_same_trajectory(cpu, gpu, dtype, 10)


@needs_cuda
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's NumPy scalars
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_overflowed_and_extreme_values_match_cpu_kernels(rule, dtype):
    """Infinite and huge parameters, zeros, tiny gradients: the same NaN/inf pattern as
    the CPU (no ``0 * inf`` NaN from an unused L2 term) and the same finite values."""
    _, cls, kwargs = rule
    big = np.finfo(dtype).max
    start = np.array([np.inf, -np.inf, big, -big, 0.0, 1.0, np.finfo(dtype).tiny], dtype=dtype)
    grads = np.array([[1.0, -1.0, big, 1e-30, 0.0, -2.0, 1.0],
                      [0.5, 0.5, -big, 0.0, 1e-30, 3.0, -1.0]], dtype=dtype)
    for hyper in ({"lr": 1e-2}, accepted(cls, {"lr": 1e-2, "weight_decay": 0.1})):
        with np.errstate(all="ignore"):
            cpu = cls(start.copy(), **hyper, **kwargs)
            gpu = cls(start.copy(), device="cuda", **hyper, **kwargs)
            for grad in grads:
                cpu.step(grad)
                gpu.step(to_device(grad))
        got = gpu.params_host()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(cpu.params), err_msg=str(hyper))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(cpu.params), err_msg=str(hyper))
        finite = np.isfinite(cpu.params)
        assert_matches_cpu(got[finite], cpu.params[finite], dtype, 2, str(hyper))


@needs_cuda
def test_grid_sizing_reads_the_config_at_each_launch(monkeypatch):
    from nbadam import _cuda

    assert _cuda.grid(1) == (1, 32)
    assert _cuda.grid(33) == (2, 32)    # a partial last block
    assert _cuda.grid(100) == (3, 32)   # capped: the grid-stride loop covers the rest
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)
    assert _cuda.grid(100) == (1, 32)
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 65_535)
    assert _cuda.grid(100) == (13, 8)


@needs_cuda
def test_one_block_covers_the_vector(monkeypatch):
    """A single block of 8 threads still updates every element of 61."""
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)
    cpu, gpu = run_pair(nbadam.Adam, {"lr": 1e-2}, np.float64, 61, 2)
    assert_same_trajectory(cpu, gpu, np.float64, 2)


@needs_cuda
def test_same_traffic_kernel():
    from nbadam import _cuda
    from nbadam._kernels.roofline import SAME_TRAFFIC

    a, b, c, d = (np.arange(i, i + 40, dtype=np.float32) for i in (0, 100, 200, 300))
    arrays = [to_device(x) for x in (a, b, c, d)]
    _cuda.step(SAME_TRAFFIC, 40, arrays[0], arrays[1], (arrays[2], arrays[3]), ())
    got = [host(x) for x in arrays]
    np.testing.assert_array_equal(got[0], b)
    np.testing.assert_array_equal(got[2], d)
    np.testing.assert_array_equal(got[3], a)


# -- arrays in and out -----------------------------------------------------------------
@needs_cuda
def test_numpy_params_are_copied_to_the_device_once():
    params = np.ones(7, dtype=np.float32)
    opt = nbadam.Adam(params, lr=0.1, device="cuda")
    assert opt.device == "cuda"
    assert getattr(opt.params, "__cuda_ndarray__", False)
    opt.step(np.ones(7, dtype=np.float32))
    np.testing.assert_array_equal(params, 1.0)           # the host array is not touched
    np.testing.assert_allclose(opt.params_host(), 0.9, rtol=1e-6)
    for name, value in opt.state.items():
        assert getattr(value, "__cuda_ndarray__", False), name
        assert value.dtype == np.float32 and value.shape == (7,), name


@needs_cuda
def test_device_params_are_updated_in_place():
    device_params = to_device(np.ones(7))
    opt = nbadam.Adam(device_params, lr=0.1, device="cuda")
    assert opt.params is device_params
    opt.step(to_device(np.ones(7)))
    np.testing.assert_allclose(device_params.copy_to_host(), 0.9, rtol=1e-7)


class Exported:
    """A foreign device array that offers only ``__cuda_array_interface__``, as CuPy
    arrays and PyTorch CUDA tensors do."""

    def __init__(self, device_array, read_only=False, refuse=False):
        self.inner, self.read_only, self.refuse = device_array, read_only, refuse

    @property
    def __cuda_array_interface__(self):
        if self.refuse:   # as PyTorch does for a tensor that requires grad
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that "
                               "requires grad.")
        if SIMULATED:
            interface = {"shape": tuple(self.inner.shape), "typestr": self.inner.dtype.str,
                         "strides": None, "version": 3, "data": (0, False)}
        else:
            interface = dict(self.inner.__cuda_array_interface__)
        interface["data"] = (interface["data"][0], self.read_only)
        return interface


@pytest.fixture
def foreign_arrays(monkeypatch):
    """Under the simulator, which has no ``as_cuda_array``, a stand-in that reads the
    interface (as the real one does) and returns the wrapped device array."""
    if SIMULATED:
        from numba import cuda

        def as_cuda_array(obj, sync=True):
            obj.__cuda_array_interface__  # noqa: B018 -- raises as the exporter does
            return obj.inner

        monkeypatch.setattr(cuda, "as_cuda_array", as_cuda_array, raising=False)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cuda_array_interface_objects_are_updated_in_place(dtype, foreign_arrays):
    rng = np.random.default_rng(5)
    start = rng.standard_normal(33).astype(dtype)
    grads = rng.standard_normal((3, 33)).astype(dtype)
    expected = start.copy()
    cpu = nbadam.NAdam(expected, lr=1e-2)
    inner = to_device(start)
    exported = Exported(inner)
    gpu = nbadam.NAdam(exported, lr=1e-2, device="cuda")
    assert gpu.params is exported
    for grad in grads:
        cpu.step(grad)
        gpu.step(Exported(to_device(grad)))
    assert_matches_cpu(inner, expected, dtype, 3, "params")
    assert_matches_cpu(gpu.params_host(), expected, dtype, 3, "params_host")


@needs_cuda
def test_cuda_array_interface_errors(foreign_arrays):
    with pytest.raises(ValueError, match="read-only"):
        nbadam.Adam(Exported(to_device(np.ones(3)), read_only=True), device="cuda")
    with pytest.raises(TypeError, match="cannot view Exported as a CUDA array: .*requires grad"):
        nbadam.Adam(Exported(to_device(np.ones(3)), refuse=True), device="cuda")
    opt = nbadam.Adam(to_device(np.ones(3)), device="cuda")
    with pytest.raises(TypeError, match="cannot view Exported"):
        opt.step(Exported(to_device(np.ones(3)), refuse=True))


@pytest.mark.skipif(not SIMULATED, reason="simulator only")
def test_simulator_says_it_cannot_read_foreign_arrays():
    with pytest.raises(TypeError, match="simulator cannot read __cuda_array_interface__"):
        nbadam.Adam(Exported(to_device(np.ones(3))), device="cuda")


@needs_cuda
def test_params_are_checked_like_on_the_cpu():
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        nbadam.Adam(np.arange(3), device="cuda")
    with pytest.raises(ValueError, match="flat 1-D"):
        nbadam.Adam(np.zeros((2, 2)), device="cuda")
    with pytest.raises(ValueError, match="flat 1-D"):
        nbadam.Adam(to_device(np.zeros((2, 2))), device="cuda")
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        nbadam.Adam(to_device(np.zeros(3, dtype=np.int32)), device="cuda")
    with pytest.raises(ValueError, match="C-contiguous"):
        nbadam.Adam(to_device(np.zeros(8))[::2], device="cuda")
    with pytest.raises(TypeError, match="must be a NumPy array .* got list"):
        nbadam.Adam([1.0, 2.0], device="cuda")


@needs_cuda
def test_gradients_are_checked():
    opt = nbadam.Adam(np.zeros(4), device="cuda")
    with pytest.raises(TypeError, match="dtype float32 but the parameters are float64"):
        opt.step(to_device(np.zeros(4, dtype=np.float32)))
    with pytest.raises(ValueError, match=r"shape \(4,\) like the parameters, got \(5,\)"):
        opt.step(to_device(np.zeros(5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step(to_device(np.zeros(8))[::2])
    with pytest.raises(TypeError, match="dtype float32 but the parameters are float64"):
        opt.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="device array .* got list"):
        opt.step([0.0] * 4)
    assert opt.step_count == 0


# -- non-finite gradients --------------------------------------------------------
@needs_cuda
def test_first_nonfinite_finds_the_smallest_index_across_blocks():
    from nbadam import _cuda

    for dtype in DTYPES:
        x = np.zeros(100, dtype=dtype)
        assert _cuda.first_nonfinite(to_device(x)) == 100
        x[[97, 70, 40]] = [np.nan, np.inf, -np.inf]
        assert _cuda.first_nonfinite(to_device(x)) == 40
        assert not _cuda.all_finite(to_device(x))
    assert _cuda.first_nonfinite(to_device(np.zeros(0))) == 0


@needs_cuda
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_nonfinite_skip_and_raise_leave_everything_untouched(rule):
    _, cls, kwargs = rule
    bad = np.ones(40)
    bad[35] = np.nan
    skipping = cls(np.ones(40), device="cuda", nonfinite="skip", **kwargs)
    skipping.step(to_device(np.ones(40)))
    before = skipping.state_dict()
    assert skipping.step(to_device(bad)) is False
    assert skipping.skipped_steps == 1 and skipping.step_count == 1
    after = skipping.state_dict()
    for name in before["state"]:
        np.testing.assert_array_equal(after["state"][name], before["state"][name])
    raising = cls(np.ones(40), device="cuda", nonfinite="raise", **kwargs)
    with pytest.raises(FloatingPointError, match=r"grad\[35\] = nan\) at step 1"):
        raising.step(to_device(bad))
    np.testing.assert_array_equal(raising.params_host(), 1.0)
    assert raising.step_count == 0


@needs_cuda
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator's NumPy
def test_nonfinite_propagate_flows_into_the_state():
    opt = nbadam.Adam(np.ones(5), device="cuda")
    grad = np.ones(5)
    grad[2] = np.inf
    assert opt.step(to_device(grad))
    result = opt.params_host()
    assert np.isnan(result[2]) and np.isfinite(np.delete(result, 2)).all()


# -- checkpoints move between CPU and GPU -----------------------------------------------
@needs_cuda
@pytest.mark.parametrize("direction", ["cpu_to_cuda", "cuda_to_cpu"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_checkpoint_resumes_on_the_other_device(rule, direction, monkeypatch, tmp_path):
    """50 steps on one device, save, load on the other, 50 more == 100 steps on the CPU."""
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
    _, cls, kwargs = rule
    rng = np.random.default_rng(11)
    start = rng.standard_normal(17)
    grads = rng.standard_normal((100, 17))
    hyper = {"lr": nbadam.schedules.warmup_cosine_decay(1e-2, 10, 100), **kwargs}

    straight = cls(start.copy(), **hyper)
    for grad in grads:
        straight.step(grad)

    first, second = ("cpu", "cuda") if direction == "cpu_to_cuda" else ("cuda", "cpu")
    before = cls(start.copy(), device=first, **hyper)
    for grad in grads[:50]:
        before.step(grad)
    before.save(tmp_path / "opt.npz")
    resumed = cls(before.params_host(), device=second, **hyper)
    resumed.load(tmp_path / "opt.npz")
    assert resumed.step_count == 50
    for grad in grads[50:]:
        resumed.step(grad)
    assert resumed.step_count == 100
    assert_same_trajectory(straight, resumed, np.float64, 100)


@needs_cuda
def test_state_dict_is_host_arrays_in_the_cpu_format():
    gpu = nbadam.Adam(np.ones(6, dtype=np.float32), amsgrad=True, device="cuda")
    gpu.step(np.full(6, 0.5, dtype=np.float32))
    snapshot = gpu.state_dict()
    cpu = nbadam.Adam(np.ones(6, dtype=np.float32), amsgrad=True)
    cpu.step(np.full(6, 0.5, dtype=np.float32))
    reference = cpu.state_dict()
    assert set(snapshot) == set(reference)
    for name, value in snapshot["state"].items():
        assert type(value) is np.ndarray and value.dtype == np.float32, name
        assert_matches_cpu(value, reference["state"][name], np.float32, 1, name)
    with pytest.raises(ValueError, match="holds 6 x float32 state"):
        nbadam.Adam(np.ones(6), amsgrad=True, device="cuda").load_state_dict(snapshot)


# -- launches through the driver (a real GPU only) ----------------------------------
needs_real_gpu = pytest.mark.skipif(SIMULATED or not CUDA_USABLE,
                                    reason="driver launches need a real GPU")
def _direct(update, dtype):
    from nbadam import _cuda, _cuda_driver
    reason = _cuda_driver.available()
    if reason is not None:
        pytest.skip(f"driver launches are off here: {reason}")
    return _cuda.driver_kernel(update, dtype)


@needs_real_gpu
def test_every_kernel_launches_through_the_driver():
    for update in [*UPDATES, "first_nonfinite"]:
        for dtype in DTYPES:
            assert _direct(update, dtype) is not None, (update, dtype)


@needs_real_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("update", UPDATES, ids=UPDATE_IDS)
def test_driver_launch_equals_dispatcher_launch(update, dtype):
    """Same arrays and scalars through both paths: identical bits.  A new gradient
    array at every launch checks that the data pointers are rewritten."""
    from nbadam import _cuda
    from nbadam._kernels import cuda as kernels

    direct, dispatcher = _direct(update, dtype), kernels.kernel(update, dtype)
    rng = np.random.default_rng(7)
    n = 1_000                      # 3 blocks of 32 threads: the grid-stride loop wraps
    start = [rng.standard_normal(n).astype(dtype) for _ in range(2 + len(update.state))]
    start[3:] = [np.abs(x) for x in start[3:]]   # second moments are non-negative
    ours, theirs = [to_device(x) for x in start], [to_device(x) for x in start]
    blocks, threads = _cuda.grid(n)
    for k in range(4):
        grad = rng.standard_normal(n).astype(dtype)
        ours[1], theirs[1] = to_device(grad), to_device(grad)
        scalars = tuple(dtype(x) for x in rng.uniform(0.05, 0.95, len(update.scalar_names)))
        if update.scalar_names[-1:] == ("rectified",):
            scalars = (*scalars[:-1], dtype(k % 2))
        assert direct.launch(blocks, threads, (ours[0], ours[1], tuple(ours[2:]), scalars))
        dispatcher[blocks, threads](theirs[0], theirs[1], tuple(theirs[2:]), scalars)
    for index, (got, expected) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_array_equal(host(got), host(expected), err_msg=f"array {index}")
    assert not np.array_equal(host(ours[0]), start[0])


@needs_real_gpu
def test_driver_launch_of_first_nonfinite():
    direct = _direct("first_nonfinite", np.float32)
    x = np.zeros(1_000, dtype=np.float32)
    x[[900, 333]] = [np.inf, np.nan]
    first = to_device(np.array([x.size], dtype=np.int64))
    assert direct.launch(3, 32, (to_device(x), first))
    assert host(first)[0] == 333


@needs_real_gpu
def test_arguments_of_other_types_go_through_the_dispatcher():
    from nbadam import _cuda
    from nbadam._kernels.roofline import SAME_TRAFFIC

    direct = _direct(SAME_TRAFFIC, np.float32)
    arrays = [to_device(np.ones(10, dtype=np.float32)) for _ in range(3)]
    mixed = (arrays[0], arrays[1], (arrays[2], to_device(np.ones(10))), ())  # one float64
    assert direct.launch(1, 32, mixed) is False
    assert direct.launch(1, 32, (arrays[0], arrays[1], (arrays[2],), ())) is False  # short
    last = to_device(np.full(10, 2.0, dtype=np.float32))
    _cuda.step(SAME_TRAFFIC, 10, arrays[0], arrays[1], (arrays[2], last), ())
    np.testing.assert_array_equal(host(arrays[2]), np.full(10, 2.0, dtype=np.float32))


@needs_cuda
def test_steps_from_another_thread():
    """A thread where no CUDA context is current yet still gets correct steps."""
    import threading

    cpu, gpu = run_pair(nbadam.Adam, {"lr": 1e-2}, np.float32, 100, 1)
    grad = np.random.default_rng(3).standard_normal(100).astype(np.float32)
    errors = []

    def work():
        try:
            gpu.step(to_device(grad))
        except Exception as exc:  # reported below, in the test's own thread
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert not errors, errors
    cpu.step(grad)
    assert_same_trajectory(cpu, gpu, np.float32, 2)


# -- a rule registered by a test alone -------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_rule_registered_in_a_test_runs_on_the_gpu(dtype):
    """The toy rule of tests/toy_rule.py, added through the registry only, runs with
    device="cuda" (optimizer and minimize) and matches its CPU kernels."""
    from toy_rule import TOY

    from nbadam.optimizers import optimizer_class

    nbadam.rules.register(TOY)
    try:
        cpu, gpu = run_pair(optimizer_class("toy"), {"lr": 0.05, "beta": 0.5}, dtype, 61, 4)
        assert_same_trajectory(cpu, gpu, dtype, 4)
        assert gpu.steps == cpu.steps == 4.0

        def fun(x):
            return float(np.sum(host(x).astype(np.float64) ** 2))

        def jac(x):
            return to_device(2.0 * host(x))
        start = np.linspace(-1.0, 1.0, 9).astype(dtype)
        options = {"lr": 0.05, "beta": 0.5, "maxiter": 20, "gtol": 0, "ftol": 0}
        on_gpu = nbadam.minimize(fun, start, jac=jac, method="toy",
                                 options={**options, "device": "cuda"})
        on_cpu = nbadam.minimize(fun, start, jac=lambda x: 2.0 * x, method="toy",
                                 options=options)
        assert on_gpu.nit == on_cpu.nit == 20
        assert_matches_cpu(on_gpu.x, on_cpu.x, dtype, 20, "minimize")
    finally:
        nbadam.rules.unregister("toy")


# -- the rules that follow optax as device minimize methods -------------------------------
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("method", OPTAX_RULE_IDS)
def test_optax_rules_as_device_minimize_methods(method, dtype):
    """``tests/test_minimize_cuda.py`` runs torch's rules as device methods; these are
    the others, with their own options (Adan's three betas, Yogi's accumulator)."""
    def fun(x):
        return float(np.sum((host(x).astype(np.float64) - 0.5) ** 2))

    def jac(x):
        return to_device(2.0 * (host(x) - 0.5))

    options = {"lr": 0.05, "maxiter": 20, "gtol": 0, "ftol": 0,
               **{"adan": {"betas": (0.9, 0.9, 0.95)},
                  "yogi": {"initial_accumulator": 0.1}}.get(method, {})}
    start = np.linspace(-1.0, 1.0, 9).astype(dtype)
    on_gpu = nbadam.minimize(fun, start, jac=jac, method=method,
                             options={**options, "device": "cuda"})
    on_cpu = nbadam.minimize(fun, start, jac=lambda x: 2.0 * (x - 0.5), method=method,
                             options=options)
    assert on_gpu.nit == on_cpu.nit == 20 and on_gpu.x.dtype == dtype
    assert_matches_cpu(on_gpu.x, on_cpu.x, dtype, 20, "minimize")
