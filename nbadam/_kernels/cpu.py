"""CPU kernels: one fused, single pass over the flat vector per update rule.

Every rule is written once as a plain Python function over contiguous 1-D
arrays and scalars, and compiled twice: ``serial`` (``parallel=False``, where
``prange`` is ``range``) and ``parallel`` (``parallel=True``).  The loops do
only elementwise work, so both builds give bit-identical results.

Conventions shared by all kernels (see ``REFERENCE.md`` in the docs):

* Arrays are updated in place; kernels return nothing.
* Every scalar is computed on the host, in float64, and passed in the arrays'
  dtype, so a float32 kernel does float32 arithmetic only.  The kernels hold
  no literal constants for the same reason.
* The common prologue is expressed through scalars: ``grad_sign`` is -1 for
  ``maximize`` and 1 otherwise, ``decay`` the decoupled weight-decay factor
  ``1 - lr * weight_decay`` (1 when off; multiplying by 1 is exact, infinities
  included) and ``l2`` the L2 coefficient.  The L2 term is skipped when ``l2``
  is 0, as torch does, because ``0 * inf`` would turn an overflowed parameter's
  gradient into NaN; the test is loop-invariant and LLVM hoists it.
* The operation order follows ``torch.optim``'s for-loop implementation
  (``addcdiv`` is ``x + (value * a) / b``, ``addcmul`` is
  ``x + (value * a) * b``), so float64 results agree to the last few ulps.
"""

from __future__ import annotations

import math
import types

import numba
from numba import prange

# error_model="numpy": x / 0 gives inf or NaN as in NumPy and torch, instead of raising
# ZeroDivisionError, and lets LLVM vectorise loops that divide.
_OPTIONS = {"fastmath": False, "nogil": True, "cache": True, "boundscheck": False,
            "error_model": "numpy"}


def _adam(param, grad, exp_avg, exp_avg_sq, grad_sign, l2, decay,
          one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps):
    for i in prange(param.size):
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
    for i in prange(param.size):
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
    for i in prange(param.size):
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
    for i in prange(param.size):
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
    for i in prange(param.size):
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
    for i in prange(param.size):
        p = param[i]
        g = grad[i]
        m = exp_avg[i]
        v = exp_avg_sq[i]
        param[i] = g
        exp_avg[i] = v
        exp_avg_sq[i] = p if m == m else m


def _all_finite(x):
    """True when no element of ``x`` is NaN or infinite."""
    bad = 0
    for i in prange(x.size):
        if not math.isfinite(x[i]):
            bad += 1
    return bad == 0


class _Pair:
    """A rule compiled twice: ``serial`` and ``parallel``."""

    __slots__ = ("serial", "parallel")

    def __init__(self, func):
        self.serial = numba.njit(parallel=False, **_OPTIONS)(_renamed(func, "serial"))
        self.parallel = numba.njit(parallel=True, **_OPTIONS)(_renamed(func, "parallel"))


def _renamed(func, suffix):
    # Numba names its cache files after the function's qualified name and
    # does not key them on ``parallel=``: two builds of one function would
    # load each other's machine code.  A copy with its own name keeps them apart.
    copy = types.FunctionType(func.__code__, func.__globals__, f"{func.__name__}_{suffix}",
                              func.__defaults__, func.__closure__)
    copy.__qualname__ = f"{func.__qualname__}_{suffix}"
    copy.__doc__ = func.__doc__
    return copy


adam = _Pair(_adam)
adam_amsgrad = _Pair(_adam_amsgrad)
nadam = _Pair(_nadam)
adamax = _Pair(_adamax)
radam = _Pair(_radam)
same_traffic = _Pair(_same_traffic)
all_finite = _Pair(_all_finite)
