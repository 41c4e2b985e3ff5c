"""CUDA kernels: the update rules of :mod:`nbadam._kernels.cpu`, one thread per element.

Each kernel is the CPU kernel's body, statement for statement and in the same
operation order, inside a grid-stride loop, so that any grid covers any
vector.  The conventions of the CPU kernels hold here too: arrays are updated
in place, kernels return nothing, and every scalar is computed on the host and
passed in the arrays' dtype, so a float32 kernel does float32 arithmetic only.
Like the CPU kernels, they skip the L2 term when ``l2`` is 0 (``0 * inf`` is
NaN), and division follows IEEE (NumPy's error model, Numba's CUDA default).

Nothing is compiled at import.  :func:`kernel` compiles one rule for one dtype
with an explicit signature the first time it is asked for (the first launch)
and keeps it.  This module imports ``numba.cuda`` and is itself imported only
by :mod:`nbadam._cuda`, so that ``import nbadam`` never needs CUDA.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same functions
run as Python with NumPy scalars and give the CPU kernels' results bit for
bit.  On a GPU, NVVM fuses multiplies and adds into FMA instructions, so
results differ from the CPU's by rounding (about one ulp per fused operation).
"""

from __future__ import annotations

import functools
import math
import types

import numpy as np
from numba import cuda
from numba import types as nbtypes
from numba.core.typing import Signature

#: Options of every kernel.  ``fastmath`` stays off: no flush-to-zero and
#: correctly rounded division and square root, as on the CPU.
_OPTIONS = {"fastmath": False}


def _adam(param, grad, exp_avg, exp_avg_sq, grad_sign, l2, decay,
          one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[i]
        g = grad[i] * grad_sign
        if l2:
            g = g + l2 * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + (one_minus_beta2 * g) * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = math.sqrt(v) / bc2_sqrt + eps
        param[i] = p * decay + (neg_step_size * m) / denom


def _adam_amsgrad(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, grad_sign, l2,
                  decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                  bc2_sqrt, eps):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[i]
        g = grad[i] * grad_sign
        if l2:
            g = g + l2 * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + (one_minus_beta2 * g) * g
        v_max = max_exp_avg_sq[i]
        # NaN-propagating maximum, as torch.maximum.
        if not v <= v_max:
            v_max = v
        exp_avg[i] = m
        exp_avg_sq[i] = v
        max_exp_avg_sq[i] = v_max
        denom = math.sqrt(v_max) / bc2_sqrt + eps
        param[i] = p * decay + (neg_step_size * m) / denom


def _nadam(param, grad, exp_avg, exp_avg_sq, grad_sign, l2, decay,
           one_minus_beta1, beta2, one_minus_beta2, bc2, eps, neg_grad_coef,
           neg_avg_coef):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[i]
        g = grad[i] * grad_sign
        if l2:
            g = g + l2 * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + (one_minus_beta2 * g) * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = math.sqrt(v / bc2) + eps
        p = p * decay + (neg_grad_coef * g) / denom
        param[i] = p + (neg_avg_coef * m) / denom


def _adamax(param, grad, exp_avg, exp_inf, grad_sign, l2, one_minus_beta1, beta2,
            eps, neg_step_size):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[i]
        g = grad[i] * grad_sign
        if l2:
            g = g + l2 * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        u = exp_inf[i] * beta2
        a = abs(g) + eps
        # NaN-propagating maximum, as torch.maximum.
        if not a <= u:
            u = a
        exp_avg[i] = m
        exp_inf[i] = u
        param[i] = p + (neg_step_size * m) / u


def _radam(param, grad, exp_avg, exp_avg_sq, grad_sign, l2, decay, one_minus_beta1,
           beta2, one_minus_beta2, bc1, lr, bc2_sqrt, eps, rect, rectified):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[i]
        g = grad[i] * grad_sign
        if l2:
            g = g + l2 * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + (one_minus_beta2 * g) * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        update = (m / bc1) * lr
        if rectified:
            update = update * (bc2_sqrt / (math.sqrt(v) + eps)) * rect
        param[i] = p * decay - update


def _same_traffic(param, grad, exp_avg, exp_avg_sq):
    """Memory roofline: Adam's traffic (read 4 arrays, then write 3), no arithmetic.

    ``exp_avg`` is read as Adam reads it; it only picks ``p`` for every
    non-NaN value, so the load cannot be dropped.
    """
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[i]
        g = grad[i]
        m = exp_avg[i]
        v = exp_avg_sq[i]
        param[i] = g
        exp_avg[i] = v
        exp_avg_sq[i] = p if m == m else m


def _first_nonfinite(x, first):
    """Lower ``first[0]`` to the smallest index of a NaN or infinity in ``x``.

    The caller sets ``first[0] = x.size`` before the launch, so it stays there
    when every element is finite.
    """
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if not math.isfinite(x[i]):
            cuda.atomic.min(first, 0, i)


#: Each kernel's arguments, in order: how many arrays of the parameters' dtype,
#: how many scalars of that dtype, and how many trailing booleans.
LAYOUT: dict[str, tuple[int, int, int]] = {
    "adam": (4, 9, 0),
    "adam_amsgrad": (5, 9, 0),
    "nadam": (4, 10, 0),
    "adamax": (4, 6, 0),
    "radam": (4, 11, 1),
    "same_traffic": (4, 0, 0),
}

#: The Python functions behind the kernels, by rule name (the CPU kernels' names).
FUNCTIONS = {
    "adam": _adam,
    "adam_amsgrad": _adam_amsgrad,
    "nadam": _nadam,
    "adamax": _adamax,
    "radam": _radam,
    "same_traffic": _same_traffic,
}

_SCALAR_TYPES = {np.dtype(np.float32): nbtypes.float32, np.dtype(np.float64): nbtypes.float64}


def signature(rule: str, dtype: np.dtype) -> Signature:
    """The explicit signature of kernel ``rule`` for float32 or float64 arrays.

    ``first_nonfinite`` takes the vector and a one-element int64 array.
    """
    scalar = _SCALAR_TYPES[np.dtype(dtype)]
    array = scalar[::1]
    if rule == "first_nonfinite":
        return nbtypes.void(array, nbtypes.int64[::1])
    arrays, scalars, flags = LAYOUT[rule]
    return nbtypes.void(*([array] * arrays + [scalar] * scalars + [nbtypes.boolean] * flags))


def kernel(rule: str, dtype: np.dtype):
    """Kernel ``rule`` compiled for ``dtype`` (on the first call, then cached).

    Parameters
    ----------
    rule : str
        A name in :data:`FUNCTIONS`, or ``"first_nonfinite"``.
    dtype : numpy.dtype
        float32 or float64.

    Returns
    -------
    numba.cuda.dispatcher.CUDADispatcher
        Launch it as ``kernel(rule, dtype)[blocks, threads](*args)``.
    """
    return _compiled(rule, np.dtype(dtype).name)


@functools.cache
def _compiled(rule, dtype_name):
    func = _first_nonfinite if rule == "first_nonfinite" else FUNCTIONS[rule]
    return cuda.jit(signature(rule, np.dtype(dtype_name)), **_OPTIONS)(_renamed(func, dtype_name))


def _renamed(func, suffix):
    # One dispatcher per dtype, each with its own name, so that the PTX and
    # profiler output say which build ran.  The copy shares the module's
    # globals, which is where the simulator swaps in its fake ``cuda`` module.
    copy = types.FunctionType(func.__code__, func.__globals__, f"{func.__name__}_{suffix}",
                              func.__defaults__, func.__closure__)
    copy.__qualname__ = f"{func.__qualname__}_{suffix}"
    copy.__doc__ = func.__doc__
    return copy
