"""CUDA kernels: an update's per-element function inside a grid-stride loop.

The per-element function of a rule (a piece of :mod:`nbadam.rules`, the same
one the CPU kernels inline) is compiled as a CUDA device function, and the
loop below is put around it, so that any grid covers any vector.  The
kernels have the CPU kernels' signature, ``kernel(param, grad, state,
scalars)``, with an explicit Numba signature per dtype; every scalar is
computed on the host and passed in the arrays' dtype, so a float32 kernel
does float32 arithmetic only.  Division follows IEEE (NumPy's error model,
Numba's CUDA default).

Nothing is compiled at import.  :func:`kernel` compiles one update for one
dtype the first time it is asked for (the first launch) and keeps it.  This
module imports ``numba.cuda`` and is itself imported only by
:mod:`nbadam._cuda`, so that ``import nbadam`` never needs CUDA.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same functions
run as Python with NumPy scalars and give the CPU kernels' results bit for
bit.  On a GPU, NVVM fuses multiplies and adds into FMA instructions, so
results differ from the CPU's by rounding (about one ulp per fused operation).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numba import cuda
from numba import types as nbtypes
from numba.core.typing import Signature

from ._build import compile_family, source_digest, specialized
from .averaging import ema_element
from .reduction import ADD_TERMS, ZEROS
from .roofline import SAME_TRAFFIC

#: Options of every kernel.  ``fastmath`` stays off: no flush-to-zero and
#: correctly rounded division and square root, as on the CPU.
_OPTIONS = {"fastmath": False}


def _loop(param, grad, state, scalars):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        element(i, param, grad, state, scalars)  # noqa: F821 (bound per update)


def _loop_averaged(param, grad, state, scalars, ema, weights):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        element(i, param, grad, state, scalars)  # noqa: F821 (bound per update)
        average(i, param, ema, weights)  # noqa: F821


def _sum_squares(x, out):
    """Add the float64 sum of the squares of ``x`` to ``out[0]`` (set to 0 first)."""
    local = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        value = np.float64(x[i])
        local += value * value
    cuda.atomic.add(out, 0, local)


def _first_nonfinite(x, first):
    """Lower ``first[0]`` to the smallest index of a NaN or infinity in ``x``.

    The caller sets ``first[0] = x.size`` before the launch, so it stays there
    when every element is finite.
    """
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if not math.isfinite(x[i]):
            cuda.atomic.min(first, 0, i)


_SCALAR_TYPES = {np.dtype(np.float32): nbtypes.float32, np.dtype(np.float64): nbtypes.float64}
_PIECES: dict[int, Any] = {}
_FIRST_NONFINITE = "first_nonfinite"
_SUM_SQUARES = "sum_squares"


def signature(update: Any, dtype: np.dtype, averaged: bool = False) -> Signature:
    """The explicit signature of ``update``'s kernel for float32 or float64 arrays.

    With ``averaged`` the kernel also takes the parameter average and its three
    weights (:mod:`.averaging`).  ``update`` may also be ``"first_nonfinite"``,
    which takes the vector and a one-element int64 array, or ``"sum_squares"``,
    which takes the vector and a one-element float64 array.
    """
    scalar = _SCALAR_TYPES[np.dtype(dtype)]
    array = scalar[::1]
    if update == _FIRST_NONFINITE:
        return nbtypes.void(array, nbtypes.int64[::1])
    if update == _SUM_SQUARES:
        return nbtypes.void(array, nbtypes.float64[::1])
    count = len(update.element_scalar_names)
    scalars = nbtypes.UniTuple(scalar, count) if count else nbtypes.Tuple(())
    args = [array, array, nbtypes.UniTuple(array, len(update.state)), scalars]
    if averaged:
        args += [array, nbtypes.UniTuple(scalar, 3)]
    return nbtypes.void(*args)


def kernel(update: Any, dtype: np.dtype, averaged: bool = False, compact: tuple | None = None):
    """The kernel of ``update`` compiled for ``dtype`` (on the first call, then cached).

    Parameters
    ----------
    update : nbadam.rules.Update or str
        An update (anything with ``name``, ``state``, ``scalar_names`` and
        ``element``), or ``"first_nonfinite"``.
    dtype : numpy.dtype
        float32 or float64.
    averaged : bool
        The kernel fused with the parameter average.
    compact : (str, tuple of bool), optional
        ``(format, flags)``: the kernel that keeps the state arrays flagged
        in ``flags`` as codes of ``format`` (:mod:`.compact`).

    Returns
    -------
    numba.cuda.dispatcher.CUDADispatcher
        Launch it as ``kernel(update, dtype)[blocks, threads](*args)``.
    """
    if compact is not None:
        return _compiled_compact(update, np.dtype(dtype).name, averaged, compact)
    return _compiled(update, np.dtype(dtype).name, averaged)


@functools.cache
def _compiled(update, dtype_name, averaged=False):
    return cuda.jit(signature(update, np.dtype(dtype_name), averaged), **_OPTIONS)(
        python_kernel(update, dtype_name, averaged))


def python_kernel(update: Any, suffix: str = "", averaged: bool = False) -> Any:
    """The Python function behind ``update``'s kernel (for ``compile_ptx`` and tests):
    the grid-stride loop with the update's per-element function bound as a CUDA
    device function (and, with ``averaged``, the parameter average after it)."""
    if update in (_FIRST_NONFINITE, _SUM_SQUARES):
        template = _first_nonfinite if update == _FIRST_NONFINITE else _sum_squares
        return specialized(template, f"{update}_{suffix}".rstrip("_"))
    element = compile_family(update.element, _device_function, "cuda", _PIECES)
    if averaged:
        average = compile_family(ema_element, _device_function, "cuda", _PIECES)
        digest = source_digest(update.element, ema_element, _loop_averaged)
        return specialized(_loop_averaged, f"{update.name}_averaged_{digest}_{suffix}",
                           element=element, average=average)
    name = f"{update.name}_{source_digest(update.element, _loop)}_{suffix}".rstrip("_")
    return specialized(_loop, name, element=element)


def _device_function(func):
    return cuda.jit(device=True, **_OPTIONS)(func)


#: The roofline kernel's update (:mod:`.roofline`).
same_traffic = SAME_TRAFFIC


# -- the reduction pass of an update with a reduction --------------------------------------
#: The most threads per block of the reduction kernel (its shared memory is sized for it).
REDUCTION_MAX_THREADS = 1024


def _reduce_loop(param, grad, state, scalars, partial):
    # Each thread sums its grid-stride elements in float64, the block adds the threads'
    # sums in shared memory (a tree: blockDim.x must be a power of two), and thread 0
    # writes the block's sums to row blockIdx.x of partial; the host adds the rows.
    shared = cuda.shared.array(SHARED, nbtypes.float64)  # noqa: F821 (bound per update)
    tid = cuda.threadIdx.x
    acc = ZERO  # noqa: F821
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        acc = add_terms(acc, reduce(i, param, grad, state, scalars))  # noqa: F821
    for k in range(len(acc)):
        shared[tid * len(acc) + k] = acc[k]
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if tid < half:
            for k in range(len(acc)):
                shared[tid * len(acc) + k] += shared[(tid + half) * len(acc) + k]
        cuda.syncthreads()
        half //= 2
    if tid == 0:
        for k in range(len(acc)):
            partial[cuda.blockIdx.x, k] = shared[k]


def reduction_signature(update: Any, dtype: np.dtype) -> Signature:
    """The signature of ``update``'s reduction kernel: the update kernel's first four
    arguments, then the float64 ``(blocks, sums)`` array of the blocks' sums."""
    scalar = _SCALAR_TYPES[np.dtype(dtype)]
    array = scalar[::1]
    return nbtypes.void(array, array, nbtypes.UniTuple(array, len(update.state)),
                        nbtypes.UniTuple(scalar, len(update.scalar_names)),
                        nbtypes.float64[:, ::1])


def reduction_python_kernel(update: Any, suffix: str = "") -> Any:
    """The Python function behind ``update``'s reduction kernel (for tests)."""
    count = len(update.sum_names)
    reduce = compile_family(update.reduce, _device_function, "cuda", _PIECES)
    add = compile_family(ADD_TERMS[count], _device_function, "cuda", _PIECES)
    digest = source_digest(update.reduce, ADD_TERMS[count], _reduce_loop)
    return specialized(_reduce_loop, f"{update.name}_reduce_{digest}_{suffix}".rstrip("_"),
                       reduce=reduce, add_terms=add, ZERO=ZEROS[count],
                       SHARED=REDUCTION_MAX_THREADS * count)


@functools.cache
def reduction_kernel(update: Any, dtype_name: str):
    """``update``'s reduction kernel for ``dtype_name`` (compiled on the first call)."""
    return cuda.jit(reduction_signature(update, np.dtype(dtype_name)), **_OPTIONS)(
        reduction_python_kernel(update, dtype_name))


# -- compact state (see nbadam._kernels.compact) -------------------------------------------
def _compact_loop(param, grad, state, scalars, seed):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        element(i, param, grad, state, scalars, seed)  # noqa: F821 (bound per update)


def _compact_loop_averaged(param, grad, state, scalars, seed, ema, weights):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        element(i, param, grad, state, scalars, seed)  # noqa: F821 (bound per update)
        average(i, param, ema, weights)  # noqa: F821


@functools.cache
def _codec() -> tuple[Any, Any]:
    """The bfloat16 load and store as device functions: the CPU's bit arithmetic on a GPU,
    its NumPy equivalent under the simulator (which runs device functions as Python)."""
    from numba import config

    from . import compact
    if config.ENABLE_CUDASIM:
        return _device_function(compact._python_load), _device_function(compact._python_store)
    mix32 = _device_function(specialized(compact._mix32, "mix32_cuda"))
    noise = _device_function(specialized(compact._noise, "noise_cuda", _mix32=mix32))
    load = _device_function(specialized(compact._cpu_load, "bf16_load_cuda"))
    store = _device_function(specialized(compact._cpu_store, "bf16_store_cuda", _noise=noise))
    return load, store


def compact_python_kernel(update: Any, dtype_name: str, averaged: bool,
                          compact: tuple) -> Any:
    """The Python function behind the compact-state kernel of ``update``: the grid-stride
    loop around the per-element function rewritten by :func:`.compact.rewritten`."""
    from .compact import FORMATS, rewritten
    fmt, flags = compact
    if fmt not in FORMATS:
        raise ValueError(f"unknown compact state format {fmt!r}")
    load, store = _codec()
    element = compile_family(rewritten(update.element, flags, load, store), _device_function,
                             "cuda", {})
    tag = "".join("c" if flag else "f" for flag in flags)
    name = f"{update.name}_{fmt}_{tag}_{dtype_name}"
    if averaged:
        average = compile_family(ema_element, _device_function, "cuda", _PIECES)
        return specialized(_compact_loop_averaged, f"{name}_averaged", element=element,
                           average=average)
    return specialized(_compact_loop, name, element=element)


def compact_signature(update: Any, dtype: np.dtype, averaged: bool, compact: tuple) -> Signature:
    """The explicit signature of a compact-state kernel: each flagged state array holds
    ``uint16`` codes, the others ``dtype``; the step's ``seed`` is a uint32."""
    scalar = _SCALAR_TYPES[np.dtype(dtype)]
    array = scalar[::1]
    _, flags = compact
    state = nbtypes.Tuple(tuple(nbtypes.uint16[::1] if flag else array for flag in flags))
    count = len(update.scalar_names)
    scalars = nbtypes.UniTuple(scalar, count) if count else nbtypes.Tuple(())
    args = [array, array, state, scalars, nbtypes.uint32]
    if averaged:
        args += [array, nbtypes.UniTuple(scalar, 3)]
    return nbtypes.void(*args)


@functools.cache
def _compiled_compact(update, dtype_name, averaged, compact):
    return cuda.jit(compact_signature(update, np.dtype(dtype_name), averaged, compact),
                    **_OPTIONS)(compact_python_kernel(update, dtype_name, averaged, compact))
