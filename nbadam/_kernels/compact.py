"""Compact optimizer state: the loops that keep moments in fewer bits than float32.

The state format is a property of the loop, not of the rule.  A rule's
per-element function (a :func:`~nbadam._kernels._build.piece`) still reads
and writes float32 state arrays; the loops below hand it a per-thread
scratch block of float32 values, decoded from the compact arrays before the
block's elements are updated and encoded back after:

.. code-block:: text

   for each thread's chunk of blocks (prange):
       scratch = one block of float32 per compact array (allocated once)
       for each block [lo, hi):
           decode the block's codes into scratch       (vectorised)
           element(j, param[lo:hi], grad[lo:hi], scratch..., c) for j in the block
           encode scratch back into the codes          (vectorised)

so every memory access of the compact arrays is a contiguous, vectorisable
stream of 2 bytes per element (bfloat16), and the float32 values never
leave the cache.  Blocks are the same for the serial and the parallel build
and the element function is elementwise, so both builds give the same bits.

Formats
    ``"bfloat16"``: each value is the upper 16 bits of its float32 pattern,
    rounded to nearest, ties to even; a NaN stays a NaN (quiet), infinities
    and signed zeros are kept, float32 subnormals round to bfloat16's.  The
    codes are ``uint16`` arrays.  :func:`bf16_encode` and :func:`bf16_decode`
    are the NumPy reference, bit for bit the kernels' codec.

The kernels keep the signature of :mod:`.cpu`'s, ``kernel(param, grad,
state, scalars)``: ``state`` holds, in the update's order, the codes of each
compact array and the float32 array of each other one.
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np
from numba import prange

from ._build import compile_family, source_digest, specialized
from .averaging import ema_element
from .cpu import _INLINE, _OPTIONS, _PIECES, _Pair

__all__ = ["FORMATS", "BLOCK", "bf16_encode", "bf16_decode", "kernels", "averaged_kernels"]

#: The compact formats and the dtype of their codes.
FORMATS = {"bfloat16": np.dtype(np.uint16)}
#: The loops are generated source, which Numba's disk cache cannot locate.
_LOOP_OPTIONS = {**_OPTIONS, "cache": False}
#: Elements per block of the compact loops: the scratch of one block of each
#: compact array stays in the L1 cache (1,024 float32 values are 4 KiB).
BLOCK = 1024


# -- the codec, in NumPy (the reference) and in the kernels -------------------------------
def bf16_encode(values: np.ndarray) -> np.ndarray:
    """float32 values to bfloat16 codes (``uint16``): nearest, ties to even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)


def bf16_decode(codes: np.ndarray) -> np.ndarray:
    """bfloat16 codes (``uint16``) to float32 values (exact)."""
    return (np.asarray(codes, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


@numba.njit(**_OPTIONS)
def _bf16_decode_block(codes, bits):
    """``bits[j]`` = the float32 pattern of bfloat16 ``codes[j]`` (exact)."""
    for j in range(codes.size):
        bits[j] = np.uint32(codes[j]) << np.uint32(16)


@numba.njit(**_OPTIONS)
def _bf16_encode_block(bits, values, codes):
    """``codes[j]`` = ``values[j]`` (float32, pattern ``bits[j]``) rounded to bfloat16.

    Nearest, ties to even, in 32-bit lanes (each sum is cast back to uint32,
    so LLVM keeps the vector lanes 32 bits wide); a NaN's code keeps its sign
    and upper payload with the quiet bit set, so it never rounds to infinity.
    """
    for j in range(codes.size):
        u = bits[j]
        lsb = (u >> np.uint32(16)) & np.uint32(1)
        rounded = np.uint32(np.uint32(u + np.uint32(0x7FFF)) + lsb) >> np.uint32(16)
        quiet = (u >> np.uint32(16)) | np.uint32(0x40)
        x = values[j]
        codes[j] = np.uint16(quiet if x != x else rounded)


@numba.njit(**_OPTIONS)
def _one_thread():
    return 1


@numba.njit(**_OPTIONS)
def _all_threads():
    return numba.get_num_threads()


# -- the loops ---------------------------------------------------------------------------
def _loop_source(compact: tuple[bool, ...], averaged: bool) -> str:
    """The source of the blocked loop for state arrays flagged ``compact``."""
    names = [f"s{k}" for k in range(len(compact))]
    args = "param, grad, state, scalars" + (", ema, weights" if averaged else "")
    lines = [f"def loop({args}):"]
    if names:
        lines.append(f"    {', '.join(names)}, = state")
    lines += ["    n = param.size",
              "    blocks = (n + BLOCK - 1) // BLOCK",
              "    chunks = min(threads(), max(blocks, 1))",
              "    per = (blocks + chunks - 1) // chunks",
              "    for t in prange(chunks):"]
    for k, flag in enumerate(compact):
        if flag:
            lines += [f"        w{k} = np.empty(BLOCK, np.uint32)",
                      f"        f{k} = w{k}.view(np.float32)"]
    lines += ["        for b in range(t * per, min((t + 1) * per, blocks)):",
              "            lo = b * BLOCK",
              "            hi = min(lo + BLOCK, n)",
              "            m = hi - lo"]
    for k, flag in enumerate(compact):
        if flag:
            lines += [f"            c{k} = s{k}[lo:hi]",
                      f"            decode(c{k}, w{k})"]
    views = [f"f{k}" if flag else f"s{k}[lo:hi]" for k, flag in enumerate(compact)]
    lines += ["            p = param[lo:hi]",
              "            g = grad[lo:hi]",
              f"            st = ({', '.join(views)}{',' if views else ''})"]
    if averaged:
        lines.append("            e = ema[lo:hi]")
    lines += ["            for j in range(m):",
              "                element(j, p, g, st, scalars)"]
    if averaged:
        lines.append("                average(j, p, e, weights)")
    for k, flag in enumerate(compact):
        if flag:
            lines.append(f"            encode(w{k}, f{k}, c{k})")
    return "\n".join(lines) + "\n"


def _template(compact: tuple[bool, ...], averaged: bool):
    namespace = {"np": np, "prange": prange}
    exec(compile(_loop_source(compact, averaged), f"<nbadam compact loop {compact}>", "exec"),
         namespace)
    return namespace["loop"]


class _CompactPair(_Pair):
    """:class:`~nbadam._kernels.cpu._Pair` whose serial build runs one chunk of blocks."""

    def __init__(self, template: Any, name: str, **globals_: Any):
        self.name = name
        self.serial = numba.njit(parallel=False, **_LOOP_OPTIONS)(
            specialized(template, f"{name}_serial", threads=_one_thread, **globals_))
        self.parallel = numba.njit(parallel=True, **_LOOP_OPTIONS)(
            specialized(template, f"{name}_parallel", threads=_all_threads, **globals_))


def _codec(fmt: str) -> dict[str, Any]:
    if fmt != "bfloat16":
        raise ValueError(f"unknown compact state format {fmt!r}; known: {', '.join(FORMATS)}")
    return {"decode": _bf16_decode_block, "encode": _bf16_encode_block, "BLOCK": BLOCK}


@functools.cache
def kernels(update: Any, fmt: str, compact: tuple[bool, ...]) -> _Pair:
    """The serial and parallel kernels of ``update`` with the arrays flagged in ``compact``
    stored in format ``fmt``.

    Not cached on disk: the loops are generated source (Numba's cache needs a
    file), so each process compiles them on first use.
    """
    element = compile_family(update.element, _INLINE, "cpu", _PIECES)
    digest = source_digest(update.element)
    flags = "".join("c" if flag else "f" for flag in compact)
    return _CompactPair(_template(compact, False), f"{update.name}_{fmt}_{flags}_{digest}",
                        element=element, **_codec(fmt))


@functools.cache
def averaged_kernels(update: Any, fmt: str, compact: tuple[bool, ...]) -> _Pair:
    """:func:`kernels` fused with the parameter average:
    ``kernel(param, grad, state, scalars, ema, weights)``."""
    element = compile_family(update.element, _INLINE, "cpu", _PIECES)
    average = compile_family(ema_element, _INLINE, "cpu", _PIECES)
    digest = source_digest(update.element, ema_element)
    flags = "".join("c" if flag else "f" for flag in compact)
    return _CompactPair(_template(compact, True),
                        f"{update.name}_{fmt}_{flags}_averaged_{digest}",
                        element=element, average=average, **_codec(fmt))
