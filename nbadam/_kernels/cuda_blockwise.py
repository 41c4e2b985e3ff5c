"""CUDA kernels of the blockwise 8-bit state (:mod:`.blockwise`): one thread block per block.

A kernel runs a thread block of :data:`THREADS` (= :data:`~.blockwise.BLOCK`)
threads per quantisation block, thread ``t`` of block ``b`` on element
``b * BLOCK + t``, in a block-stride loop so that any grid covers any vector
(:func:`launch_shape` gives one thread block per quantisation block).  Each
thread

1. reads the block's decode scales, ``absmax[k][b] / TOP`` (float32 division),
2. runs the rule's per-element function rewritten by
   :func:`.blockwise.rewritten` with ``per_element=True``: compact reads are
   decoded with the scales, compact writes go to the thread's
   ``cuda.local.array`` of one float32 per compact array (the square root
   taken first for a root array); with the average, the parameter average
   follows;
3. puts the magnitude of each new value (its float32 bits with the sign
   cleared, compared as uint32, so that a NaN wins) in shared memory, 0 past
   the end of the vector; after a ``syncthreads``, :data:`LANES` threads take
   the maxima of :data:`LANES` columns of them, and after a second one every
   thread takes the maximum of those: the block's new ``absmax``;
4. encodes its value with ``inv = min(TOP / absmax, FLT_MAX)`` (0 for a zero or NaN
   block);
   thread 0 writes the new ``absmax[k][b]``, which every thread read before
   the first ``syncthreads``.

That is the CPU kernel's order of operations (:func:`.blockwise._loop_source`),
so under Numba's CUDA simulator the codes, scales and parameters are the CPU
kernel's bit for bit.  The simulator runs device functions as Python, where the
bit casts of :mod:`.compact` do not exist: there the codec is the NumPy
reference of :mod:`.blockwise` applied to one element (:func:`_python_codec`).
On a GPU the codec is the CPU's bit arithmetic compiled as device functions;
NVVM's fused multiply-adds then move the float32 values by an ulp or so before
they are encoded, as for the float32 kernels.

Kernels take the CPU kernels' arguments, ``kernel(param, grad, state, scalars,
absmax)`` (and ``ema, weights`` for the average), with the explicit signature
of :func:`signature`; they are compiled on first use (:func:`kernel`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import cuda
from numba import types as nbtypes
from numba.core.typing import Signature

from . import blockwise as _bw
from ._build import compile_family, source_digest, specialized
from .averaging import ema_element
from .compact import _bits_of, _float_of
from .cuda import _OPTIONS, _PIECES, _SCALAR_TYPES, _device_function

__all__ = ["THREADS", "launch_shape", "signature", "python_kernel", "kernel"]

#: Threads per thread block: one per element of a quantisation block.
THREADS = _bw.BLOCK
#: Columns of the block maximum's first stage (see :func:`_kernel_source`).
LANES = 16


def launch_shape(size: int) -> tuple[int, int]:
    """``(blocks, threads)``: one thread block of :data:`THREADS` per quantisation block."""
    return max(_bw.blocks(size), 1), THREADS


# -- the codec -----------------------------------------------------------------------------
def _python_bits_of(x):
    """The simulator's float32 -> uint32 bit cast (a NumPy view)."""
    return np.float32(x).view(np.uint32)


def _python_float_of(bits):
    """The simulator's uint32 -> float32 bit cast (a NumPy view)."""
    return np.uint32(bits).view(np.float32)


def _python_signed_load(code, scale):
    return _bw.decode_codes(np.array([code], np.uint8), np.array([scale], np.float32),
                            "signed")[0]


def _python_root_load(code, scale):
    return _bw.decode_codes(np.array([code], np.uint8), np.array([scale], np.float32),
                            "root")[0]


def _python_signed_code(x, inv):
    return _bw.encode_codes(np.array([x], np.float32), np.array([inv], np.float32),
                            "signed")[0]


def _python_root_code(s, inv):
    return _bw.encode_codes(np.array([s], np.float32), np.array([inv], np.float32),
                            "root")[0]


def _python_root_value(value):
    # np.sqrt keeps the operand's precision (math.sqrt would give a double, and raise on a
    # negative operand where the compiled code gives NaN).
    with np.errstate(invalid="ignore"):
        return np.sqrt(value)


def _python_plain_value(value):
    return value


@functools.cache
def _codec() -> dict[str, Any]:
    """The codec's device functions, by the names the generated kernel and the rewritten
    element call: the bit arithmetic of :mod:`.blockwise` on a GPU, its NumPy reference
    under the simulator."""
    from numba import config

    if config.ENABLE_CUDASIM:
        python = {"_signed_load": _python_signed_load, "_root_load": _python_root_load,
                  "_root_value": _python_root_value, "_plain_value": _python_plain_value,
                  "encode_signed": _python_signed_code, "encode_root": _python_root_code,
                  "bits_of": _python_bits_of, "float_of": _python_float_of}
        return {name: _device_function(func) for name, func in python.items()}
    compiled = {}
    for name, func in (("_signed_load", _bw._signed_load), ("_root_load", _bw._root_load),
                       ("_root_value", _bw._root_value), ("_plain_value", _bw._plain_value),
                       ("encode_signed", _bw._signed_code), ("encode_root", _bw._root_code)):
        compiled[name] = _device_function(specialized(func, f"{name.strip('_')}_8bit_cuda"))
    compiled["bits_of"] = _bits_of
    compiled["float_of"] = _float_of
    return compiled


# -- the kernel ------------------------------------------------------------------------------
def _kernel_source(name: str, found: dict[int, str], averaged: bool) -> str:
    """The block-stride loop of a kernel whose state arrays ``found`` (``index -> kind``)
    are compact (in state order: compact array ``k`` is the ``k``-th of them).

    The block's maximum takes two ``syncthreads``: the first :data:`LANES` threads each
    take the maximum of a column of the ``(BLOCK // LANES, LANES)`` magnitudes
    (consecutive threads, consecutive words: no bank conflicts), then every thread takes
    the maximum of the :data:`LANES` column maxima (a broadcast read).  Nothing more is
    needed between two blocks of the loop: a thread writes the magnitudes (or the column
    maxima) of the next block only after every thread has passed the ``syncthreads``
    that follows its last read of them in this block.
    """
    tail = ", ema, weights" if averaged else ""
    count = len(found)
    scales = "".join(f"absmax[{k}][b] / TOP_{kind}, " for k, kind in enumerate(found.values()))
    lines = [
        f"def {name}(param, grad, state, scalars, absmax{tail}):",
        f"    magnitudes = cuda.shared.array(({count}, BLOCK), uint32)",
        f"    columns = cuda.shared.array(({count}, LANES), uint32)",
        f"    scratch = cuda.local.array({count}, float32)",
        "    tid = cuda.threadIdx.x",
        "    n = param.shape[0]",
        "    nblocks = (n + BLOCK - 1) // BLOCK",
        "    for b in range(cuda.blockIdx.x, nblocks, cuda.gridDim.x):",
        "        i = b * BLOCK + tid",
        "        inside = i < n",
        # every thread reads the old scales before the first syncthreads; thread 0 writes
        # the new ones after the second
        f"        scale = ({scales})",
        "        if inside:",
        "            element(i, param, grad, state, scalars, scale, scratch)",
    ]
    if averaged:
        lines.append("            average(i, param, ema, weights)")
    lines.append("        if inside:")
    lines += [f"            magnitudes[{k}, tid] = bits_of(scratch[{k}]) & MAGNITUDE"
              for k in range(count)]
    lines.append("        else:")
    lines += [f"            magnitudes[{k}, tid] = NOTHING" for k in range(count)]
    lines += ["        cuda.syncthreads()",
              "        if tid < LANES:"]
    for k in range(count):
        lines += [f"            top_bits = magnitudes[{k}, tid]",
                  "            for row in range(1, BLOCK // LANES):",
                  f"                other = magnitudes[{k}, row * LANES + tid]",
                  "                if other > top_bits:",
                  "                    top_bits = other",
                  f"            columns[{k}, tid] = top_bits"]
    lines.append("        cuda.syncthreads()")
    for k, (j, kind) in enumerate(found.items()):
        lines += [f"        top_bits = columns[{k}, 0]",
                  "        for lane in range(1, LANES):",
                  f"            other = columns[{k}, lane]",
                  "            if other > top_bits:",
                  "                top_bits = other",
                  "        top = float_of(top_bits)",
                  "        if tid == 0:",
                  f"            absmax[{k}][b] = top",
                  f"        inv = TOP_{kind} / top if top > ZERO else ZERO",
                  "        inv = inv if inv < BIG else BIG",
                  "        if inside:",
                  f"            state[{j}][i] = encode_{kind}(scratch[{k}], inv)"]
    return "\n".join(lines) + "\n"


def _tag(found: dict[int, str], nstate: int) -> str:
    return "".join("r" if found.get(j) == "root" else "s" if j in found else "f"
                   for j in range(nstate))


def python_kernel(update: Any, dtype_name: str, averaged: bool,
                  flags: tuple[bool, ...]) -> Any:
    """The Python function behind the 8-bit kernel of ``update`` (for ``compile_ptx`` and
    tests): the generated block loop around the rewritten per-element function."""
    flags = tuple(bool(flag) for flag in flags)
    found = _bw.kinds(update, flags)
    if not found:
        raise ValueError(f"{update.name}: 8-bit state needs at least one compact array")
    codec = _codec()
    element = compile_family(
        _bw.rewritten(update.element, update, flags, codec, per_element=True),
        _device_function, "cuda", {})
    name = (f"{update.name}_8bit_{_tag(found, len(flags))}_{dtype_name}"
            f"{'_averaged' if averaged else ''}_{source_digest(update.element)}")
    namespace = {"cuda": cuda, "np": np, "uint32": nbtypes.uint32, "float32": nbtypes.float32,
                 "BLOCK": _bw.BLOCK, "LANES": LANES, "ZERO": _bw._ZERO, "BIG": _bw._BIG,
                 "NOTHING": np.uint32(0),
                 "MAGNITUDE": np.uint32(0x7FFFFFFF), "TOP_signed": _bw._TOP["signed"],
                 "TOP_root": _bw._TOP["root"], "element": element, **codec}
    if averaged:
        namespace["average"] = compile_family(ema_element, _device_function, "cuda", _PIECES)
    source = _kernel_source(name, found, averaged)
    exec(compile(source, f"<{name}>", "exec"), namespace)
    func = namespace[name]
    func.__module__ = __name__
    return func


def signature(update: Any, dtype: np.dtype, averaged: bool,
              flags: tuple[bool, ...]) -> Signature:
    """The explicit signature of an 8-bit kernel: each flagged state array holds ``uint8``
    codes, the others ``dtype``; ``absmax`` is a tuple of one float32 array per flagged
    array."""
    scalar = _SCALAR_TYPES[np.dtype(dtype)]
    array = scalar[::1]
    state = nbtypes.Tuple(tuple(nbtypes.uint8[::1] if flag else array for flag in flags))
    count = len(update.element_scalar_names)
    scalars = nbtypes.UniTuple(scalar, count) if count else nbtypes.Tuple(())
    absmax = nbtypes.UniTuple(nbtypes.float32[::1], sum(bool(flag) for flag in flags))
    args = [array, array, state, scalars, absmax]
    if averaged:
        args += [array, nbtypes.UniTuple(scalar, 3)]
    return nbtypes.void(*args)


def kernel(update: Any, dtype: np.dtype, averaged: bool, flags: tuple[bool, ...]):
    """The 8-bit kernel of ``update`` for ``dtype`` (compiled on the first call, then
    cached); launch it as ``kernel(...)[launch_shape(size)](*args)``."""
    return _compiled(update, np.dtype(dtype).name, bool(averaged),
                     tuple(bool(flag) for flag in flags))


@functools.cache
def _compiled(update, dtype_name, averaged, flags):
    return cuda.jit(signature(update, np.dtype(dtype_name), averaged, flags), **_OPTIONS)(
        python_kernel(update, dtype_name, averaged, flags))
