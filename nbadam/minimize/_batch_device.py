"""The loop of :func:`nbadam.minimize_batch` with ``options={"device": "cuda"}``.

The points ``X`` (K, n), the gradients, the state arrays (flat, K * n) and,
with ``return_best``, the best points stay on the GPU; ``fun`` and ``jac``
receive a ``(K, n)`` device array.  Per step the host reads the K values
and the K gradient norms (one small kernel reduces each row on the device),
decides for each problem with :func:`._compiled.decide_rows` (the stopping
rules of every loop), and launches the update:

* while every problem runs and they share their scalars (one set of
  hyperparameters and learning rate), the rule's own CUDA kernel over the
  K * n elements, through :func:`nbadam._launch.step`, with the scalars
  computed on the host as ``Optimizer.step`` computes them;
* otherwise a masked kernel made here around the rule's per-element
  function: element ``i`` belongs to problem ``i // n``, which it updates
  only while that problem runs, with the scalars of row ``i // n`` of a
  table (one row when the problems share them).

This module imports ``numba.cuda`` only through :mod:`nbadam._launch`, on
the first run, so that ``import nbadam`` never needs CUDA.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _launch, _validate
from .._kernels._build import compile_family, source_digest, specialized
from . import _compiled, _device, _status
from ._inputs import _batch_values, _wrap_batch_callback

if TYPE_CHECKING:
    from ._batch import _Batch


def check(jac: Any, bounds: Any, opts: dict[str, Any]) -> None:
    """Refuse, with the reason, what the batched device loop cannot do (no GPU needed):
    what the single-problem device loop refuses, and ``active_only``."""
    _device.check(jac, bounds, opts)
    if opts["active_only"]:
        raise ValueError("options['active_only']=True does not apply with "
                         "options['device']='cuda': fun receives every row of the device "
                         "array; leave active_only unset (or False)")


def run(fun: Callable[..., Any], X: np.ndarray, args: tuple, jac: Any,
        callback: Callable[..., Any] | None, batch: _Batch
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimize the batch on the GPU; ``X`` is the normalised host start.

    Returns the last points, values and gradients on the host; ``batch``
    holds the statuses, step counts and best points.
    """
    launcher = _launch.cuda_launcher()
    launcher.require()
    cuda = launcher.cuda
    K, n = X.shape
    dtype = X.dtype
    size = K * n
    update, loops = batch.update, batch.loops
    kernels = _Kernels.of(update, dtype)
    x = cuda.to_device(X)
    x_flat = x.reshape(size)
    xk = cuda.device_array((K, n), dtype)  # the copy of the iterate fun and jac receive
    state = tuple(cuda.to_device(array) for array in batch.state)
    G = cuda.device_array((K, n), dtype)   # the gradients of the last points
    best = (cuda.device_array((K, n), dtype), cuda.device_array((K, n), dtype)
            ) if batch.return_best else None
    norms = cuda.device_array(K, np.float64)
    host_norms = np.empty(K)
    improved = np.zeros(K, dtype=np.uint8)
    running = np.ones(K, dtype=np.uint8)
    running_device = cuda.to_device(running)
    table_width = len(update.scalar_names)
    table = np.zeros((1 if batch.shared else K, table_width), dtype=dtype)
    schedule = batch.lr if callable(batch.lr) else None
    lrs = batch.row_lrs if batch.row_lrs.size else np.full(1, 0.0 if schedule else batch.lr)
    call = _wrap_batch_callback(callback)
    status, nits = batch.status, batch.nits
    F = np.empty(K)
    rows = batch.rows()

    def evaluate(rows):
        xk.copy_to_device(x)
        if jac is True:
            raw = fun(xk, *args)
            if type(raw) is not tuple or len(raw) != 2:
                raise ValueError("with jac=True, fun must return a tuple (values, "
                                 f"gradients); got {type(raw).__name__}")
            value, grad = raw
        else:
            value, grad = fun(xk, *args), jac(xk, *args)
        values = _values(launcher, value, K)
        grad = _gradients(launcher, grad, K, n, dtype)
        F[rows] = values[rows]
        if rows.size == K:
            G.copy_to_device(grad)
        else:
            kernels.launch(launcher, kernels.masked_copy, size, G.reshape(size),
                           grad.reshape(size), running_device, n)

    nit, stop = 0, False
    evaluate(rows)
    while True:
        kernels.launch(launcher, kernels.row_norms, K, G, norms)
        norms.copy_to_host(host_norms)
        improved[:] = 0
        count = _compiled.decide_rows(F, host_norms, nit, stop, rows, batch.scalars,
                                      batch.settings, status, nits, improved)
        if best is not None and improved.any():
            mask = cuda.to_device(improved)
            kernels.launch(launcher, kernels.masked_copy, size, best[0].reshape(size), x_flat,
                           mask, n)
            kernels.launch(launcher, kernels.masked_copy, size, best[1].reshape(size),
                           G.reshape(size), mask, n)
        if count == 0:
            break
        if count < rows.size:
            rows = batch.rows()
            running[:] = status == _status.CONTINUE
            running_device.copy_to_device(running)
        if schedule is not None:
            lrs[0] = _validate.scheduled_lr(schedule, nit) if nit < batch.maxiter else 0.0
        t = nit + 1
        if batch.shared:
            table[0] = update.scalars(batch.hypers, batch.running[0], float(lrs[0]), t)
        else:
            loops.scalar_rows(batch.hypers, batch.hyper_of, batch.running, lrs, t, rows, table)
        if batch.shared and rows.size == K:
            _launch.step(update, size, x_flat, G.reshape(size), state,
                         tuple(table[0]), device="cuda")
        elif size:
            kernels.launch(launcher, kernels.masked_update, size, x_flat, G.reshape(size),
                           state, cuda.to_device(table), running_device, n)
        nit += 1
        evaluate(rows)
        if call is not None:
            active = status == _status.CONTINUE
            stop = call(x.copy_to_host(), F, G.copy_to_host(), np.where(active, nit, nits),
                        active)

    if best is not None:
        batch.best[:, 0] = best[0].copy_to_host()
        batch.best[:, 1] = best[1].copy_to_host()
    return x.copy_to_host(), F, G.copy_to_host()


def _values(launcher: Any, value: Any, K: int) -> np.ndarray:
    """``fun``'s K values on the host (a device array is copied back)."""
    device = None if isinstance(value, np.ndarray) else launcher.device_view(value,
                                                                             "fun's value")
    if device is not None:
        value = device.copy_to_host()
    return _batch_values(value, K)


def _gradients(launcher: Any, value: Any, K: int, n: int, dtype: np.dtype) -> Any:
    """``jac``'s value as a contiguous ``(K, n)`` device array of ``dtype``."""
    if isinstance(value, np.ndarray):
        raise ValueError("with device='cuda', jac must return a device array (Numba, CuPy, "
                         "PyTorch CUDA); it returned numpy.ndarray — use device='cpu'")
    device = launcher.device_view(value, "jac's value")
    if device is None:
        raise ValueError("with device='cuda', jac must return a device array (Numba, CuPy, "
                         f"PyTorch CUDA); it returned {type(value).__name__}")
    if tuple(device.shape) != (K, n):
        raise ValueError(f"jac must return one gradient per problem, shape ({K}, {n}) like "
                         f"x0; got shape {tuple(device.shape)}")
    if device.dtype != dtype:
        raise ValueError(f"jac returned gradients of dtype {device.dtype}, but x0 is {dtype}; "
                         "return them in the dtype of x0")
    if not device.is_c_contiguous():
        raise ValueError("jac must return C-contiguous gradients")
    return device


#: ``numba.cuda``, bound on first use by :class:`_Kernels` (a module global: the
#: simulator swaps in its fake ``cuda`` module there while a kernel runs).
cuda: Any = None


def _row_norms(g, out):
    # One thread per problem: max |g[k, i]| over its row, infinity for a NaN.
    for k in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        norm = 0.0
        for i in range(g.shape[1]):
            a = abs(float(g[k, i]))
            if a > norm:
                norm = a
            elif a != a:
                norm = math.inf
                break
        out[k] = norm


def _masked_copy(dst, src, mask, n):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        if mask[i // n]:
            dst[i] = src[i]


def _masked_update(param, grad, state, table, running, n):
    # Element i belongs to problem i // n; a table of one row serves every problem.
    shared = table.shape[0] == 1
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        k = i // n
        if running[k]:
            element(i, param, grad, state, row(table, 0 if shared else k))  # noqa: F821


class _Kernels:
    """The kernels of the batched device loop for one update and dtype."""

    def __init__(self, update: Any, dtype: np.dtype):
        global cuda
        cuda = _launch.cuda_launcher().cuda
        device = functools.partial(cuda.jit, device=True, fastmath=False)
        element = compile_family(update.element, device, "cuda_batch", _PIECES)
        count = len(update.scalar_names)
        namespace: dict[str, Any] = {}
        items = "".join(f"table[r, {i}], " for i in range(count))
        exec(f"def row(table, r):\n    return ({items})\n", namespace)
        name = f"{update.name}_{source_digest(update.element, _masked_update)}"
        self.masked_update = cuda.jit(fastmath=False)(specialized(
            _masked_update, f"masked_update_{name}", cuda=cuda, element=element,
            row=device(namespace["row"])))
        self.masked_copy = cuda.jit(fastmath=False)(specialized(
            _masked_copy, "masked_copy", cuda=cuda))
        self.row_norms = cuda.jit(fastmath=False)(specialized(
            _row_norms, "row_norms", cuda=cuda))

    @classmethod
    def of(cls, update: Any, dtype: np.dtype) -> _Kernels:
        return _kernels(update, np.dtype(dtype).name)

    @staticmethod
    def launch(launcher: Any, kernel: Any, size: int, *args: Any) -> None:
        """Launch ``kernel`` on ``args`` over ``size`` items (nothing to do for none)."""
        if size == 0:
            return
        blocks, threads = launcher.grid(size)
        kernel[blocks, threads](*args)


_PIECES: dict[int, Any] = {}


@functools.cache
def _kernels(update: Any, dtype_name: str) -> _Kernels:
    return _Kernels(update, np.dtype(dtype_name))
