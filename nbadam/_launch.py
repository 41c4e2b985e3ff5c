"""Launchers: the one place that chooses serial, parallel or GPU execution.

The optimizers call :func:`step` with an update (:class:`nbadam.rules.Update`),
the arrays and the scalars; :func:`cpu` runs a kernel pair of
:mod:`nbadam._kernels.cpu`.  Vectors shorter than
``_config.PARALLEL_MIN_SIZE`` run the serial build (a parallel launch costs a
thread wake-up that a short vector does not repay); longer ones run the
parallel build.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _config
from ._kernels import blockwise as _blockwise
from ._kernels import compact as _compact
from ._kernels import cpu as _cpu

# Numba's workqueue layer must not be entered by two threads at once, and a
# parallel kernel already uses every core, so parallel launches take turns.
# Serial kernels release the GIL and run concurrently.
_PARALLEL_LOCK = threading.Lock()
_threading_ready = False


def _ensure_threading() -> None:
    global _threading_ready
    if not _threading_ready:
        _config.configure_threading()
        _threading_ready = True


def use_parallel(size: int) -> bool:
    """Whether a vector of ``size`` elements takes the parallel CPU path."""
    return size >= _config.PARALLEL_MIN_SIZE


def cpu(kernel: _cpu._Pair, size: int, *args):
    """Run a CPU kernel pair on ``args``, serial or parallel by ``size``."""
    if size >= _config.PARALLEL_MIN_SIZE:
        _ensure_threading()
        with _PARALLEL_LOCK:
            return kernel.parallel(*args)
    return kernel.serial(*args)


def step(update: Any, size: int, param: Any, grad: Any, state: tuple, scalars: tuple,
         device: str = "cpu", ema: Any = None, ema_weights: tuple | None = None,
         compact: tuple | None = None, seed: int = 0, absmax: tuple | None = None) -> None:
    """One fused launch of ``update``'s kernel: ``param`` and ``state`` updated in place.

    ``state`` is the tuple of the update's state arrays (in its order) and
    ``scalars`` the tuple of its per-step scalars in the arrays' dtype.  With
    ``ema`` (an array like ``param``) the same pass then moves it towards the
    new parameters with ``ema_weights`` (see :mod:`nbadam._kernels.averaging`).
    ``compact``, ``(format, flags)``, runs the loop that keeps the arrays
    flagged in ``flags`` as codes of ``format`` (:mod:`nbadam._kernels.compact`),
    whose stochastic rounding draws on ``seed`` (the step count); for the
    ``"8bit"`` format, ``absmax`` is the tuple of the blocks' scales of each
    flagged array (:mod:`nbadam._kernels.blockwise`), updated in place.
    With ``device="cuda"`` the arrays are device arrays and the CUDA kernel runs.
    """
    averaged = ema is not None
    blockwise = compact is not None and compact[0] == "8bit"
    extra = ((absmax,) if blockwise else (np.uint32(seed & 0xFFFFFFFF),) if compact else ())
    args = (param, grad, state, scalars) + extra + ((ema, ema_weights) if averaged else ())
    if device == "cuda":
        cuda_launcher().step(update, size, *args, averaged=averaged, compact=compact)
        return
    if blockwise:
        pair = (_blockwise.averaged_kernels if averaged else _blockwise.kernels)(update,
                                                                                  compact[1])
    elif compact is not None:
        pair = (_compact.averaged_kernels if averaged else _compact.kernels)(update, *compact)
    else:
        pair = _cpu.averaged_kernels(update) if averaged else _cpu.kernels(update)
    cpu(pair, size, *args)


def reduce(update: Any, size: int, param: Any, grad: Any, state: tuple, scalars: tuple,
           device: str = "cpu") -> np.ndarray:
    """The reduction pass of ``update`` (one with ``reduce``): ``state`` updated in place,
    the float64 sums over the vector returned (an array of ``len(update.sum_names)``)."""
    if device == "cuda":
        return cuda_launcher().reduce(update, size, param, grad, state, scalars)
    partial, sums, chunk = _cpu.reduction_arrays(update, size)
    cpu(_cpu.reduction_kernels(update), size, param, grad, state, scalars, partial, sums, chunk)
    return sums


def sum_squares(x, device: str = "cpu") -> float:
    """The sum of the squares of a vector, accumulated in float64 (one pass)."""
    if device == "cuda":
        return cuda_launcher().sum_squares(x)
    return float(cpu(_cpu.sum_squares, x.size, x))


def all_finite(x, device: str = "cpu") -> bool:
    """True when a vector holds no NaN or infinity (one fused pass)."""
    if device == "cuda":
        return cuda_launcher().all_finite(x)
    return bool(cpu(_cpu.all_finite, x.size, x))


# -- device="cuda" -------------------------------------------------------------
def cuda_launcher():
    """:mod:`nbadam._cuda`, imported on first use so that ``import nbadam`` needs no CUDA.

    Raises
    ------
    RuntimeError
        If ``numba.cuda`` cannot be imported (a Numba without its built-in CUDA
        target and no ``numba-cuda``).
    """
    try:
        from . import _cuda
    except ImportError as exc:
        raise RuntimeError(
            f"device='cuda' needs Numba's CUDA target, which failed to import ({exc}); "
            "install it with pip install 'nbadam[cuda]'") from exc
    return _cuda


def zeros(size: int, dtype, device: str = "cpu"):
    """A vector of ``size`` zeros on ``device``."""
    if device == "cuda":
        return cuda_launcher().zeros(size, dtype)
    return np.zeros(size, dtype=dtype)


def full(size: int, value: float, dtype, device: str = "cpu"):
    """A vector of ``size`` copies of ``value`` (rounded once to ``dtype``) on ``device``."""
    if value == 0.0:
        return zeros(size, dtype, device)
    if device == "cuda":
        array = cuda_launcher().zeros(size, dtype)
        cuda_launcher().copy_into(array, np.full(size, value, dtype=dtype))
        return array
    return np.full(size, value, dtype=dtype)


def to_host(x, device: str = "cpu") -> np.ndarray:
    """A NumPy copy of vector ``x``."""
    if device == "cuda":
        return cuda_launcher().to_host(x)
    return x.copy()


def copy_array(x, source, device: str = "cpu") -> None:
    """Overwrite vector ``x`` with vector ``source``, both on ``device`` (no host round trip)."""
    if device == "cuda":
        x.copy_to_device(source)
    else:
        x[...] = source


def copy_into(x, values, device: str = "cpu") -> None:
    """Overwrite vector ``x`` on ``device`` with the host array ``values``."""
    if device == "cuda":
        cuda_launcher().copy_into(x, values)
    else:
        x[...] = values
