"""Launchers: the one place that chooses serial, parallel or GPU execution.

The optimizers call :func:`cpu` with a kernel pair from
:mod:`nbadam._kernels.cpu`, the arrays and the scalars.  Vectors shorter than
``_config.PARALLEL_MIN_SIZE`` run the serial build (a parallel launch costs a
thread wake-up that a short vector does not repay); longer ones run the
parallel build.
"""

from __future__ import annotations

import threading

from . import _config
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


def step(rule: str, size: int, *args) -> None:
    """Run update rule ``rule`` (a kernel name in :mod:`nbadam._kernels.cpu`)."""
    cpu(getattr(_cpu, rule), size, *args)


def all_finite(x) -> bool:
    """True when a host vector holds no NaN or infinity (one fused pass)."""
    return bool(cpu(_cpu.all_finite, x.size, x))
