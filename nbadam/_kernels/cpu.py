"""CPU kernels: one fused, single pass over the flat vector per update.

An update's per-element function (a :func:`~nbadam._kernels._build.piece`
of :mod:`nbadam.rules`) is compiled, and the loop below is put around it
twice: ``serial`` (``parallel=False``, where ``prange``
is ``range``) and ``parallel`` (``parallel=True``).  The loop does only
elementwise work, so both builds give bit-identical results.

An update with a reduction (sums over the vector) also gets :func:`reduction_kernels`:
the pass that updates the state and sums the update's terms (see
:mod:`.reduction`), after which the update's kernel is the second pass.

Every kernel has the signature ``kernel(param, grad, state, scalars)``:
``param`` and ``grad`` contiguous 1-D arrays, ``state`` a tuple of such arrays
(the update's state, in its order), ``scalars`` a tuple of numbers of the
arrays' dtype, computed on the host, so a float32 kernel does float32
arithmetic only.  Arrays are updated in place; kernels return nothing.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numba
import numpy as np
from numba import prange

from ._build import compile_family, source_digest, specialized
from .averaging import ema_element
from .reduction import ADD_TERMS, CHUNK, ZEROS
from .roofline import SAME_TRAFFIC

# error_model="numpy": x / 0 gives inf or NaN as in NumPy and torch, instead of raising
# ZeroDivisionError, and lets LLVM vectorise loops that divide.
_OPTIONS = {"fastmath": False, "nogil": True, "cache": True, "boundscheck": False,
            "error_model": "numpy"}
#: How per-element pieces are compiled.  Not ``inline="always"``: Numba's parfor
#: pass then loses the writes to arrays unpacked from the ``state`` tuple in the
#: parallel build (Numba 0.6x).  LLVM inlines the call into the loop anyway, and
#: the loop vectorises as before (``tests/test_optimizers.py`` checks the IR).
_INLINE = numba.njit(fastmath=False, error_model="numpy")
_PIECES: dict[int, Any] = {}


def _loop(param, grad, state, scalars):
    for i in prange(param.size):
        element(i, param, grad, state, scalars)  # noqa: F821 (bound per update)


def _loop_averaged(param, grad, state, scalars, ema, weights):
    # The update, then the parameter average (ema_element), in one pass.
    for i in prange(param.size):
        element(i, param, grad, state, scalars)  # noqa: F821 (bound per update)
        average(i, param, ema, weights)  # noqa: F821


class _Pair:
    """A loop compiled twice: ``serial`` and ``parallel``.

    Numba names its cache files after the function's qualified name and does
    not key them on ``parallel=``: each build gets its own name.
    """

    __slots__ = ("serial", "parallel", "name")

    def __init__(self, template: Any, name: str, options: dict | None = None, **globals_: Any):
        self.name = name
        options = {**_OPTIONS, **(options or {})}
        self.serial = numba.njit(parallel=False, **options)(
            specialized(template, f"{name}_serial", **globals_))
        self.parallel = numba.njit(parallel=True, **options)(
            specialized(template, f"{name}_parallel", **globals_))


@functools.cache
def kernels(update: Any) -> _Pair:
    """The serial and parallel kernels of ``update`` (anything with ``name`` and ``element``).

    The kernels' names carry a digest of the rule's source, so that an edited
    rule is compiled anew rather than loaded from an older cache entry.
    """
    element = compile_family(update.element, _INLINE, "cpu", _PIECES)
    return _Pair(_loop, f"{update.name}_{source_digest(update.element, _loop)}",
                 element=element)


@functools.cache
def averaged_kernels(update: Any) -> _Pair:
    """``update``'s kernels fused with the parameter average of :mod:`.averaging`:
    ``kernel(param, grad, state, scalars, ema, weights)``."""
    element = compile_family(update.element, _INLINE, "cpu", _PIECES)
    average = compile_family(ema_element, _INLINE, "cpu", _PIECES)
    digest = source_digest(update.element, ema_element, _loop_averaged)
    return _Pair(_loop_averaged, f"{update.name}_averaged_{digest}", element=element,
                 average=average)


def _all_finite(x):
    """True when no element of ``x`` is NaN or infinite."""
    bad = 0
    for i in prange(x.size):
        if not math.isfinite(x[i]):
            bad += 1
    return bad == 0


def _sum_squares(x):
    """The sum of the squares of ``x``, accumulated in float64 (no overflow for float32)."""
    total = 0.0
    for i in prange(x.size):
        value = np.float64(x[i])   # float() would keep float32 here
        total += value * value
    return total


all_finite = _Pair(_all_finite, "all_finite")
#: For the gradient's norm (``clip_grad_norm``).  The sum may be reassociated (LLVM then
#: vectorises it with several accumulators: 4x faster than one running sum): the order is
#: fixed for a build, and the parallel build sums per-thread chunks, so its last bits can
#: differ from the serial build's.
sum_squares = _Pair(_sum_squares, "sum_squares", options={"fastmath": {"reassoc"}})
#: The memory roofline's kernels (:mod:`.roofline`).
same_traffic = kernels(SAME_TRAFFIC)


# -- the reduction pass of an update with a reduction --------------------------------------
#: How the additions of the terms are compiled: reassociated, so that LLVM vectorises the
#: pass (several accumulators); the order is fixed per build of the chunk function, which
#: the serial and the parallel loops both call.
_REASSOC = numba.njit(fastmath={"reassoc"}, error_model="numpy")
_REASSOC_PIECES: dict[int, Any] = {}


def _chunk_sums(lo, hi, param, grad, state, scalars):
    # An unsigned index: Numba then adds no wrap-around of negative indices, whose
    # selects (LLVM cannot tell that ``lo`` is not negative) keep the loop scalar.
    acc = ZERO  # noqa: F821 (bound per update)
    for i in range(np.uint64(lo), np.uint64(hi)):
        acc = add_terms(acc, reduce(i, param, grad, state, scalars))  # noqa: F821
    return acc


def _reduce_loop(param, grad, state, scalars, partial, sums, chunk):
    # One chunk of ``chunk`` elements per row of ``partial``, then the rows in order.
    size = param.size
    for c in prange(partial.shape[0]):
        lo = c * chunk
        acc = chunk_sums(lo, min(size, lo + chunk), param, grad, state, scalars)  # noqa: F821
        for k in range(len(acc)):
            partial[c, k] = acc[k]
    column_sums(partial, sums)  # noqa: F821


@numba.njit(**_OPTIONS)
def column_sums(partial, sums):
    """``sums[k] = partial[0, k] + partial[1, k] + ...``, in that order."""
    for k in range(sums.size):
        total = 0.0
        for c in range(partial.shape[0]):
            total += partial[c, k]
        sums[k] = total


@functools.cache
def reduction_kernels(update: Any) -> _Pair:
    """The reduction pass of ``update`` (an update with ``reduce``), serial and parallel:
    ``kernel(param, grad, state, scalars, partial, sums, chunk)``.

    ``partial`` is float64 ``(ceil(size / chunk), len(update.sum_names))``, ``sums``
    float64 ``(len(update.sum_names),)``; the kernel fills both (see :func:`reduction_arrays`).
    """
    count = len(update.sum_names)
    reduce = compile_family(update.reduce, _INLINE, "cpu", _PIECES)
    add = compile_family(ADD_TERMS[count], _REASSOC, "cpu_reassoc", _REASSOC_PIECES)
    name = (f"{update.name}_reduce_"
            f"{source_digest(update.reduce, ADD_TERMS[count], _chunk_sums, _reduce_loop)}")
    chunk = numba.njit(**{**_OPTIONS, "fastmath": {"reassoc"}})(specialized(
        _chunk_sums, f"{name}_chunk", reduce=reduce, add_terms=add, ZERO=ZEROS[count]))
    return _Pair(_reduce_loop, name, chunk_sums=chunk, column_sums=column_sums)


def reduction_arrays(update: Any, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(partial, sums, chunk)`` for :func:`reduction_kernels` over ``size`` elements."""
    count = len(update.sum_names)
    return np.empty((-(-size // CHUNK), count)), np.zeros(count), CHUNK
