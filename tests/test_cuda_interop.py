"""nbadam on PyTorch CUDA tensors and CuPy arrays, against ``torch.optim`` on the GPU.

These tests need a real CUDA GPU and PyTorch built with CUDA (or CuPy); they
skip otherwise, so CI, which has neither, only collects them.  On a GPU::

    python -m pytest -q tests/test_cuda_interop.py

Each ``torch.optim`` update rule runs on one copy of a CUDA tensor while
nbadam updates another copy in place, through ``__cuda_array_interface__``
(no copies, no synchronisation in between: both libraries queue their work
on the legacy default stream).  Tolerances after ``k`` steps, as in
``tests/test_cuda.py``: ``1e-10 * max|torch|`` in float64 (the foundation's
torch-parity tolerance) and ``16 * k * 2**-24 * max|torch|`` in float32.
"""

import numpy as np
import pytest
from conftest import DTYPES
from reference import FLOAT32_ROUNDINGS_PER_STEP, FLOAT32_UNIT_ROUNDOFF

import nbadam

FLOAT64_RTOL = 1e-10
STEPS = 25
N = 3_000   # several blocks of the default 256-thread grid, the last one partial


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _cupy_cuda():
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # not installed, or no driver/GPU behind it
        return None
    return cupy


def _numba_cuda_usable():
    try:
        import numba
        from numba import cuda
    except ImportError:
        return False
    return not numba.config.ENABLE_CUDASIM and bool(cuda.is_available())


torch = _torch_cuda()
cupy = _cupy_cuda()
needs_torch = pytest.mark.skipif(
    torch is None or not _numba_cuda_usable(), reason="needs a CUDA GPU and torch with CUDA")
needs_cupy = pytest.mark.skipif(
    cupy is None or not _numba_cuda_usable(), reason="needs a CUDA GPU and CuPy")

# (id, nbadam class, torch.optim class name, keyword arguments common to both)
TORCH_RULES = [
    ("adam", nbadam.Adam, "Adam", {"weight_decay": 0.1}),
    ("amsgrad", nbadam.Adam, "Adam", {"amsgrad": True}),
    ("adamw", nbadam.AdamW, "AdamW", {"weight_decay": 0.1}),
    ("nadam", nbadam.NAdam, "NAdam", {"weight_decay": 0.1}),
    ("nadamw", nbadam.NAdam, "NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adamax", nbadam.Adamax, "Adamax", {"weight_decay": 0.1}),
    ("radam", nbadam.RAdam, "RAdam", {"weight_decay": 0.1}),
]


def assert_close(got, expected, dtype, steps, what):
    """``got`` and ``expected`` (torch tensors) within the module docstring's bound."""
    got = got.detach().double().cpu().numpy()
    expected = expected.detach().double().cpu().numpy()
    scale = float(np.abs(expected).max()) + float(np.finfo(dtype).tiny)
    if np.dtype(dtype) == np.float64:
        bound = FLOAT64_RTOL * scale
    else:
        bound = FLOAT32_ROUNDINGS_PER_STEP * steps * FLOAT32_UNIT_ROUNDOFF * scale
    error = float(np.abs(got - expected).max())
    assert error <= bound, f"{what}: {error:.3e} > {bound:.3e}"


def tdtype(dtype):
    return getattr(torch, np.dtype(dtype).name)


@needs_torch
@pytest.mark.parametrize("impl", ["forloop", "foreach", "fused"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "cls", "torch_name", "kwargs"), TORCH_RULES,
                         ids=[rule[0] for rule in TORCH_RULES])
def test_torch_tensor_is_updated_in_place_like_torch_optim(name, cls, torch_name, kwargs,
                                                           dtype, impl):
    optim_cls = getattr(torch.optim, torch_name)
    if impl == "fused" and torch_name not in ("Adam", "AdamW"):
        pytest.skip(f"torch.optim.{torch_name} has no fused implementation")
    gen = torch.Generator(device="cuda").manual_seed(1)
    start = torch.randn(N, dtype=tdtype(dtype), device="cuda", generator=gen)
    ours = start.clone()
    address = ours.data_ptr()
    opt = cls(ours, lr=1e-2, device="cuda", **kwargs)
    assert opt.params is ours
    theirs = torch.nn.Parameter(start.clone())
    flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True},
             "fused": {"fused": True}}[impl]
    reference = optim_cls([theirs], lr=1e-2, **kwargs, **flags)
    for _ in range(STEPS):
        grad = torch.randn(N, dtype=tdtype(dtype), device="cuda", generator=gen)
        theirs.grad = grad.clone()
        reference.step()
        assert opt.step(grad)        # a CUDA tensor, read in place
    assert ours.data_ptr() == address
    assert_close(ours, theirs, dtype, STEPS, "params")
    torch_state = reference.state[theirs]
    compared = 0
    for key, value in opt.state_dict()["state"].items():
        if key in torch_state and torch_state[key].numel() == N:
            assert_close(torch.as_tensor(value), torch_state[key], dtype, STEPS, key)
            compared += 1
    assert compared >= 2
    np.testing.assert_array_equal(opt.params_host(), ours.cpu().numpy())


@needs_torch
def test_torch_model_trained_through_a_flat_parameter_tensor():
    """A torch model whose parameters are views of one flat tensor, updated by nbadam,
    follows the same trajectory as the model trained by ``torch.optim.Adam``."""
    torch.manual_seed(0)
    make = lambda: torch.nn.Sequential(  # noqa: E731
        torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 3)).cuda().double()
    ours, theirs = make(), make()
    theirs.load_state_dict(ours.state_dict())
    flat = torch.nn.utils.parameters_to_vector(ours.parameters()).detach().clone()
    offset = 0
    for param in ours.parameters():
        param.data = flat[offset:offset + param.numel()].view_as(param)
        offset += param.numel()
    opt = nbadam.Adam(flat, lr=1e-2, device="cuda")
    reference = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    x = torch.randn(256, 20, device="cuda", dtype=torch.float64)
    y = torch.randint(0, 3, (256,), device="cuda")
    losses = []
    for _ in range(50):
        for model in (ours, theirs):
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
        losses.append(loss.item())
        reference.step()
        opt.step(torch.cat([p.grad.reshape(-1) for p in ours.parameters()]))
    assert losses[-1] < 0.5 * losses[0]
    for mine, other in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert_close(mine, other, np.float64, 50, "model parameters")


@needs_torch
def test_torch_tensor_errors():
    with pytest.raises(TypeError, match="requires grad"):
        nbadam.Adam(torch.zeros(8, device="cuda", requires_grad=True), device="cuda")
    opt = nbadam.Adam(torch.zeros(8, device="cuda"), device="cuda")
    with pytest.raises(TypeError, match="dtype float64 but the parameters are float32"):
        opt.step(torch.zeros(8, device="cuda", dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        opt.step(torch.zeros(9, device="cuda"))
    with pytest.raises(ValueError, match="C-contiguous"):
        nbadam.Adam(torch.zeros(16, device="cuda")[::2], device="cuda")
    with pytest.raises(ValueError, match="flat 1-D"):
        nbadam.Adam(torch.zeros(4, 4, device="cuda"), device="cuda")
    assert opt.step_count == 0


@needs_cupy
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cupy_array_is_updated_in_place_like_the_cpu(dtype):
    rng = np.random.default_rng(2)
    start = rng.standard_normal(N).astype(dtype)
    expected = start.copy()
    cpu = nbadam.AdamW(expected, lr=1e-2)
    ours = cupy.asarray(start)
    gpu = nbadam.AdamW(ours, lr=1e-2, device="cuda")
    assert gpu.params is ours
    for _ in range(STEPS):
        grad = rng.standard_normal(N).astype(dtype)
        cpu.step(grad)
        gpu.step(cupy.asarray(grad))
    # Against nbadam's CPU kernels: 1e-12 in float64, as in tests/test_cuda.py.
    got = cupy.asnumpy(ours).astype(np.float64)
    scale = float(np.abs(expected.astype(np.float64)).max())
    bound = (1e-12 if np.dtype(dtype) == np.float64
             else FLOAT32_ROUNDINGS_PER_STEP * STEPS * FLOAT32_UNIT_ROUNDOFF) * scale
    error = float(np.abs(got - expected.astype(np.float64)).max())
    assert error <= bound, f"{error:.3e} > {bound:.3e}"
