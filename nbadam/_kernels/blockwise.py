r"""Blockwise 8-bit optimizer state: one byte per moment, one float32 scale per block.

``state_precision="8bit"`` keeps each compact state array (see
:attr:`~nbadam.rules.Update.compact`) as ``uint8`` codes in blocks of
:data:`BLOCK` consecutive elements, with the block's largest magnitude (its
``absmax``, float32) beside them, as bitsandbytes does.  The codes are 8-bit
floating-point formats whose encode and decode are a few integer and float
operations, so that the kernels stay branch-free SIMD loops:

``signed`` (moments that change sign: ``exp_avg``)
    A sign bit and seven bits ``E M`` (four exponent bits, three mantissa
    bits) standing for :math:`(1 + M/8)\,2^E - 1` units of
    ``absmax / 61439``: zero at code 0, a linear first binade of spacing 1/8
    (where E4M3 has its subnormals), then the relative spacing of E4M3,
    :math:`2^{-3}`, up to the block's ``absmax`` at the top code; the smallest
    non-zero code is :math:`2^{-19}` of it.
``root`` (second moments, never negative: :attr:`~nbadam.rules.Update.roots`)
    The square root of the value as an unsigned code of four exponent and four
    mantissa bits, :math:`(1 + M/16)\,2^E - 1` units of ``sqrt(absmax)/63487``,
    squared when decoded: the root halves the range of exponents a second
    moment spans, and four mantissa bits give the root a spacing of
    :math:`2^{-4}`.  A value is never stored as zero: the smallest code stands
    for anything below it, so that a tiny second moment cannot turn a step
    into ``m / eps`` (a block that is all zero decodes as zero).

Decoding puts the code's bits in the low exponent and mantissa bits of a
float32 of exponent 1 (a value in :math:`[2, 2^{17})`) and computes ``(x - 2) *
scale`` in one fused multiply-add (the subtraction is exact, so the fused
result is the reference's); encoding computes ``|x| * inv + 2`` in one fused
multiply-add too (:func:`fma32` is its NumPy twin), reads the bits back and
rounds to nearest (halves up) by adding half a code below the cut.  Every
intermediate is a normal float, so that neither direction meets the cost of
subnormal arithmetic.  Non-finite values poison their block: a NaN or an
infinity makes the block's ``absmax`` non-finite and the block's values decode
as NaN (an infinity may stay infinite).

Each step decodes a block, runs the rule's own per-element function on it
(a rewritten copy, as for bfloat16 in :mod:`.compact`, whose writes to a
compact array go to a float32 scratch row), takes the new ``absmax`` of each
scratch row and encodes it: the step is bit for bit the float32 step on the
decoded moments followed by :func:`quantize` of the new ones.
:func:`quantize` and :func:`dequantize` are the NumPy reference of the
formats, bit for bit the kernels'.  Kernels take ``kernel(param, grad, state,
scalars, absmax)`` (and the average's ``ema, weights`` after it), where
``state`` holds the codes of each compact array and the float32 array of each
other one, and ``absmax`` one float32 array of ``ceil(size / BLOCK)`` scales
per compact array, in the order of the state.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import textwrap
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._build import compile_family, piece, source_digest
from .averaging import ema_element
from .compact import _bits_of, _float_of, _state_names
from .cpu import _INLINE, _OPTIONS, _PIECES, _Pair

__all__ = ["BLOCK", "KINDS", "kinds", "blocks", "quantize", "dequantize", "fma32", "encode_codes",
           "decode_codes", "kernels", "averaged_kernels", "rewritten"]

#: Elements per block (one float32 scale per block and array: 2.03 bytes of state per
#: element for two moments).
BLOCK = 256
#: Blocks per task of the parallel loop (each task allocates its scratch once).
CHUNK_BLOCKS = 64
#: The two code formats, by kind.
KINDS = ("signed", "root")

_TWO = np.float32(2.0)
_BIAS = np.uint32(0x40000000)      # the float32 exponent field of 2: 128, one bit
_BIG = np.float32(np.finfo(np.float32).max)
#: The value of the largest code, in units of the block's scale: absmax maps to it.
_TOP = {"signed": np.float32(2 * (1.875 * 2 ** 15 - 1)),
        "root": np.float32(2 * (1.9375 * 2 ** 15 - 1))}
_ZERO = np.float32(0.0)


def kinds(update: Any, flags: tuple[bool, ...]) -> dict[int, str]:
    """``state index -> kind`` of each array of ``update`` flagged compact."""
    return {j: ("root" if name in update.roots else "signed")
            for j, (name, flag) in enumerate(zip(update.state, flags, strict=True)) if flag}


def blocks(size: int) -> int:
    """The number of blocks (and of scales per compact array) of ``size`` elements."""
    return -(-int(size) // BLOCK)


# -- the formats, in NumPy (the reference) ---------------------------------------------------
def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` for float32 arrays with one rounding, as the kernels' fused
    multiply-add: the product is exact in float64, the sum is rounded to odd there
    (its error from TwoSum), and rounding that to float32 is the correctly rounded
    result (53 bits are at least 24 + 2)."""
    a, b, c = (np.asarray(x, np.float32).astype(np.float64) for x in (a, b, c))
    with np.errstate(invalid="ignore", over="ignore"):
        product = a * b
        total = product + c
        back = total - product
        error = (product - (total - back)) + (c - back)
        odd = (total.view(np.uint64) & np.uint64(1)) == 1
        nudge = np.isfinite(total) & (error != 0) & ~odd
        total = np.where(nudge, np.nextafter(total, np.where(error > 0, np.inf, -np.inf)),
                         total)
        return total.astype(np.float32)


def encode_codes(values: np.ndarray, inv: np.ndarray, kind: str) -> np.ndarray:
    """float32 ``values`` (roots already taken for ``"root"``) times ``inv`` (one float32 per
    value: the block's ``top / absmax``, or 0) to codes (``uint8``)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    magnitude = (bits & np.uint32(0x7FFFFFFF)).view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):   # a non-finite block: inv is 0
        y = fma32(magnitude, inv, np.full(magnitude.shape, _TWO)).view(np.uint32) - _BIAS
        if kind == "signed":
            t = (y + np.uint32(0x80000)) >> np.uint32(20)
            codes = (t & np.uint32(0x7F)) | ((bits >> np.uint32(24)) & np.uint32(0x80))
        else:
            codes = (np.maximum(y, np.uint32(0x40000)) + np.uint32(0x40000)) >> np.uint32(19)
    return codes.astype(np.uint8)


def decode_codes(codes: np.ndarray, scale: np.ndarray, kind: str) -> np.ndarray:
    """Codes (``uint8``) to float32 values, ``scale`` (one float32 per code) being the
    block's ``absmax / top`` (squared after decoding for ``"root"``)."""
    codes = np.asarray(codes, np.uint8)
    scale = np.asarray(scale, np.float32)
    if kind == "signed":
        wide = codes.view(np.int8).astype(np.int32).view(np.uint32)
        magnitude = ((wide << np.uint32(20)) & np.uint32(0x07F00000)) | _BIAS
        with np.errstate(invalid="ignore", over="ignore"):   # a non-finite block
            x = (magnitude.view(np.float32) - _TWO) * scale
        return (x.view(np.uint32) | (wide & np.uint32(0x80000000))).view(np.float32)
    magnitude = (codes.astype(np.uint32) << np.uint32(19)) | _BIAS
    with np.errstate(invalid="ignore", over="ignore"):   # a non-finite block
        x = (magnitude.view(np.float32) - _TWO) * scale
        return x * x


def _block_max(values: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32) & np.uint32(0x7FFFFFFF)
    padded = np.zeros(blocks(bits.size) * BLOCK, np.uint32)
    padded[:bits.size] = bits
    return padded.reshape(-1, BLOCK).max(axis=1).view(np.float32)


def quantize(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``values`` to ``(codes, absmax)`` in blocks of :data:`BLOCK`, as the kernels
    encode a block (``absmax`` of the roots for ``"root"``)."""
    values = np.asarray(values, np.float32).ravel()
    if kind == "root":
        with np.errstate(invalid="ignore"):
            values = np.sqrt(values)
    absmax = _block_max(values)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.where(absmax > 0, np.minimum(_TOP[kind] / absmax, _BIG), _ZERO)
    inv = inv.astype(np.float32)
    return encode_codes(values, np.repeat(inv, BLOCK)[:values.size], kind), absmax


def dequantize(codes: np.ndarray, absmax: np.ndarray, kind: str) -> np.ndarray:
    """The float32 values of ``codes`` with the blocks' ``absmax`` (:func:`quantize`)."""
    codes = np.asarray(codes, np.uint8).ravel()
    scale = (np.asarray(absmax, np.float32) / _TOP[kind]).astype(np.float32)
    return decode_codes(codes, np.repeat(scale, BLOCK)[:codes.size], kind)


# -- the formats in nopython code -------------------------------------------------------------
@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's ``llvm.fma.f32``: one instruction)."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fma = cgutils.get_or_insert_function(builder.module,
                                             ir.FunctionType(f32, [f32, f32, f32]),
                                             "llvm.fma.f32")
        return builder.call(fma, args)
    return types.float32(types.float32, types.float32, types.float32), codegen


def _signed_load(code, scale):
    # (magnitude - 2) * scale with one rounding: magnitude - 2 is exact, so the fused
    # multiply-add gives the reference's bits.
    wide = np.uint32(np.int32(np.int8(code)))   # sign-extended: the sign is bit 31
    magnitude = _float_of(np.uint32(np.uint32(np.uint32(wide << np.uint32(20))
                                              & np.uint32(0x07F00000)) | _BIAS))
    x = _fma(magnitude, scale, -(scale + scale))
    return _float_of(np.uint32(_bits_of(x) | np.uint32(wide & np.uint32(0x80000000))))


def _root_load(code, scale):
    magnitude = _float_of(np.uint32(np.uint32(np.uint32(code) << np.uint32(19)) | _BIAS))
    s = _fma(magnitude, scale, -(scale + scale))
    return s * s


def _signed_code(x, inv):
    bits = _bits_of(x)
    magnitude = _float_of(np.uint32(bits & np.uint32(0x7FFFFFFF)))
    y = np.uint32(_bits_of(_fma(magnitude, inv, _TWO)) - _BIAS)
    t = np.uint32(np.uint32(y + np.uint32(0x80000)) >> np.uint32(20))
    return np.uint8((t & np.uint32(0x7F)) | ((bits >> np.uint32(24)) & np.uint32(0x80)))


def _root_code(s, inv):
    # A comparison, not max(): Numba's CUDA target cannot type the builtin max of two numbers.
    y = np.uint32(_bits_of(_fma(s, inv, _TWO)) - _BIAS)
    floor = np.uint32(0x40000)
    y = y if y > floor else floor
    return np.uint8(np.uint32(y + np.uint32(0x40000)) >> np.uint32(19))


def _root_value(value):
    return math.sqrt(value)


def _plain_value(value):
    return value


def _magnitude_bits(x):
    return np.uint32(_bits_of(x) & np.uint32(0x7FFFFFFF))


# -- the rewrite of a per-element function ---------------------------------------------------
class _Rewrite(ast.NodeTransformer):
    """Decode the reads of the compact arrays and send their writes to ``scratch``.

    ``exp_avg[i]`` read becomes ``_load_signed(exp_avg[i], scale[k])``; ``exp_avg[i] = m``
    becomes ``scratch[k, i] = m`` (``scratch[k] = m`` with ``per_element``, the CUDA
    kernels' one-element scratch), the root taken first for a root array.
    """

    def __init__(self, compact: dict[str, tuple[int, str]], per_element: bool):
        self.compact = compact
        self.per_element = per_element
        self.written: set[int] = set()

    def _target(self, node: ast.AST) -> str | None:
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id in self.compact):
            return node.value.id
        return None

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        node.value = self.visit(node.value)
        names = [self._target(target) for target in node.targets]
        if not any(names):
            node.targets = [self.visit(target) for target in node.targets]
            return node
        if len(node.targets) != 1:
            raise ValueError("a compact state array must be written by a plain assignment "
                             "'array[i] = value'")
        k, kind = self.compact[names[0]]
        if k in self.written:
            raise ValueError(f"the compact state array {names[0]!r} is written twice")
        self.written.add(k)
        index = self.visit(node.targets[0].slice)
        slot = (ast.Constant(k) if self.per_element
                else ast.Tuple([ast.Constant(k), index], ast.Load()))
        value = ast.Call(ast.Name("_root_value" if kind == "root" else "_plain_value",
                                  ast.Load()), [node.value], [])
        kept = ast.Assign([ast.Name(f"_written_{k}", ast.Store())], value)
        store = ast.Assign([ast.Subscript(ast.Name("scratch", ast.Load()), slot, ast.Store())],
                           ast.Name(f"_written_{k}", ast.Load()))
        return [kept, store]

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if self._target(node.target):
            raise ValueError("a compact state array must be written by a plain assignment "
                             "'array[i] = value', not an augmented one")
        return self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        name = self._target(node)
        if not name:
            return self.generic_visit(node)
        node.slice = self.visit(node.slice)
        k, kind = self.compact[name]
        scale = ast.Subscript(ast.Name("scale", ast.Load()), ast.Constant(k), ast.Load())
        return ast.Call(ast.Name(f"_{kind}_load", ast.Load()), [node, scale], [])

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.compact and isinstance(node.ctx, ast.Load):
            raise ValueError(f"the compact state array {node.id!r} may only be indexed "
                             "('array[i]') in a per-element function")
        return node


def rewritten(element: Callable, update: Any, flags: tuple[bool, ...],
              codec: dict[str, Callable], per_element: bool = False) -> Callable:
    """A copy of per-element function ``element`` of ``update`` that reads the arrays
    flagged in ``flags`` as 8-bit codes and writes their new values to ``scratch``.

    The copy takes two more arguments, ``scale`` (the tuple of the blocks'
    decode scales, one per compact array) and ``scratch``; ``codec`` maps
    ``_signed_load``, ``_root_load``, ``_root_value`` and ``_plain_value`` to
    the target's functions.  It is a :func:`~nbadam._kernels._build.piece`
    with the globals of ``element``.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(element)))
    func = tree.body[0]
    func.decorator_list = []
    names = _state_names(func)
    if len(names) != len(flags):
        raise ValueError(f"{func.name} unpacks {len(names)} state arrays, expected "
                         f"{len(flags)}")
    found = kinds(update, flags)
    compact = {names[j]: (k, kind) for k, (j, kind) in enumerate(found.items())}
    unpack = next(s for s in func.body if isinstance(s, ast.Assign)
                  and isinstance(s.value, ast.Name) and s.value.id == "state")
    rewrite = _Rewrite(compact, per_element)
    if any(isinstance(node, ast.Return) for node in ast.walk(func)):
        raise ValueError(f"{func.name}: a per-element function returns nothing")
    body = []
    for statement in func.body:
        if statement is unpack:
            body.append(statement)
            continue
        done = len(rewrite.written)
        new = rewrite.visit(statement)
        nested = not isinstance(statement, ast.Assign)
        if nested and len(rewrite.written) != done:
            raise ValueError(f"{func.name}: compact state arrays must be written at the top "
                             "level of the function, once, not inside a branch or loop")
        body.extend(new if isinstance(new, list) else [new])
    if len(rewrite.written) != len(compact):
        raise ValueError(f"{func.name}: every compact state array must be written once")
    # The new values (roots taken) come back in registers, for the blocks' maxima.
    body.append(ast.Return(ast.Tuple([ast.Name(f"_written_{k}", ast.Load())
                                      for k in range(len(compact))], ast.Load())))
    func.body = body
    func.args.args.extend([ast.arg("scale"), ast.arg("scratch")])
    tag = "".join("r" if found.get(j) == "root" else "s" if j in found else "f"
                  for j in range(len(flags)))
    func.name = f"{element.__name__}_8bit_{tag}"
    ast.fix_missing_locations(tree)
    namespace = dict(element.__globals__)
    namespace.update(codec)
    exec(compile(tree, f"<{func.name}: {element.__code__.co_filename}>", "exec"), namespace)
    copy = namespace[func.name]
    copy.__module__ = element.__module__
    return piece(copy)


# -- the CPU kernels ---------------------------------------------------------------------------
_CODEC = numba.njit(inline="always", **_OPTIONS)
_CPU_CODEC = {name: _CODEC(func) for name, func in (
    ("_signed_load", _signed_load), ("_root_load", _root_load),
    ("_root_value", _root_value), ("_plain_value", _plain_value))}
_signed_code_cpu = _CODEC(_signed_code)
_root_code_cpu = _CODEC(_root_code)
_magnitude_bits_cpu = _CODEC(_magnitude_bits)


def _loop_source(name: str, nstate: int, found: dict[int, str], averaged: bool) -> str:
    """The block loop of a kernel with ``nstate`` state arrays, compact as ``found``.

    Two loops per block: the rule's element (whose compact writes land in the
    scratch rows, and which returns the values it wrote) with the running maximum
    of their magnitudes, then the encoding of every row; each a SIMD loop of
    LLVM's.  The maxima take the returned values, not a reload of the scratch:
    a load of a just-stored vector waits on store-to-load forwarding.
    """
    tail = ", ema, weights" if averaged else ""
    sliced = "".join(f"state[{j}][start:stop], " for j in range(nstate))
    scales = "".join(f"absmax[{k}][b] / TOP_{kind}, " for k, kind in enumerate(found.values()))
    rows = range(len(found))
    lines = [
        f"def {name}(param, grad, state, scalars, absmax{tail}):",
        "    n = param.size",
        "    nblocks = (n + BLOCK - 1) // BLOCK",
        "    for chunk in prange((nblocks + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):",
        f"        scratch = np.empty(({len(found)}, BLOCK), np.float32)",
        "        first = chunk * CHUNK_BLOCKS",
        "        for b in range(first, min(nblocks, first + CHUNK_BLOCKS)):",
        "            start = b * BLOCK",
        "            stop = min(start + BLOCK, n)",
        "            size = stop - start",
        "            p = param[start:stop]",
        "            g = grad[start:stop]",
        f"            s = ({sliced})",
        f"            scale = ({scales})",
    ]
    if averaged:
        lines.append("            e = ema[start:stop]")
    lines += [f"            top{k} = np.uint32(0)" for k in rows]
    lines += ["            for j in range(size):",
              "                new = element(j, p, g, s, scalars, scale, scratch)"]
    if averaged:
        lines.append("                average(j, p, e, weights)")
    lines += [f"                top{k} = max(top{k}, magnitude_bits(new[{k}]))" for k in rows]
    for k, kind in enumerate(found.values()):
        lines += [f"            high{k} = float_of(top{k})",
                  f"            absmax[{k}][b] = high{k}",
                  f"            inv{k} = min(TOP_{kind} / high{k}, BIG) if high{k} > ZERO "
                  "else ZERO"]
    lines.append("            for j in range(size):")
    lines += [f"                s[{j}][j] = {kind}_code(scratch[{k}, j], inv{k})"
              for k, (j, kind) in enumerate(found.items())]
    return "\n".join(lines) + "\n"


def _loop_function(name: str, source: str, **globals_: Any) -> Callable:
    namespace = {"np": np, "prange": prange, "BLOCK": BLOCK, "CHUNK_BLOCKS": CHUNK_BLOCKS,
                 "ZERO": _ZERO, "BIG": _BIG, "TOP_signed": _TOP["signed"], "TOP_root": _TOP["root"],
                 "magnitude_bits": _magnitude_bits_cpu, "float_of": _float_of,
                 "signed_code": _signed_code_cpu, "root_code": _root_code_cpu, **globals_}
    # Compiled as if from this file, so that Numba's disk cache (keyed on the defining file,
    # its stamp and the function's name, which carries the digest of what the source is made
    # of) keeps the kernel between processes.
    exec(compile(source, __file__, "exec"), namespace)
    func = namespace[name]
    func.__module__ = __name__
    return func


class _Generated:
    """A :class:`_Pair` built from generated source (the digest covers the source)."""

    def __new__(cls, name: str, source: str, **globals_: Any) -> _Pair:
        pair = _Pair.__new__(_Pair)
        pair.name = name
        pair.serial = numba.njit(parallel=False, **_OPTIONS)(
            _loop_function(f"{name}_serial", source.replace(f"def {name}(",
                                                              f"def {name}_serial("), **globals_))
        pair.parallel = numba.njit(parallel=True, **_OPTIONS)(
            _loop_function(f"{name}_parallel", source.replace(f"def {name}(",
                                                                f"def {name}_parallel("),
                           **globals_))
        return pair


def _build(update: Any, flags: tuple[bool, ...], averaged: bool) -> _Pair:
    found = kinds(update, flags)
    if not found:
        raise ValueError(f"{update.name}: 8-bit state needs at least one compact array")
    element = compile_family(rewritten(update.element, update, flags, _CPU_CODEC),
                             _INLINE, "cpu", {})
    tag = "".join("r" if found.get(j) == "root" else "s" if j in found else "f"
                  for j in range(len(flags)))
    name = f"{update.name}_8bit_{tag}{'_averaged' if averaged else ''}_{digest(update)}"
    source = _loop_source(name, len(flags), found, averaged)
    extra = {"average": compile_family(ema_element, _INLINE, "cpu", _PIECES)} if averaged else {}
    return _Generated(name, source, element=element, **extra)


@functools.cache
def kernels(update: Any, flags: tuple[bool, ...]) -> _Pair:
    """The serial and parallel 8-bit kernels of ``update``, the state arrays flagged in
    ``flags`` kept as codes: ``kernel(param, grad, state, scalars, absmax)``."""
    return _build(update, flags, averaged=False)


@functools.cache
def averaged_kernels(update: Any, flags: tuple[bool, ...]) -> _Pair:
    """:func:`kernels` fused with the parameter average:
    ``kernel(param, grad, state, scalars, absmax, ema, weights)``."""
    return _build(update, flags, averaged=True)


def digest(update: Any) -> str:
    """A digest of everything the 8-bit kernels of ``update`` are made of that lies outside
    this file (whose own changes the disk cache sees in its stamp): the rule's code, the
    average and the bit casts of :mod:`.compact`; the rest of the codec too."""
    return source_digest(update.element, ema_element, _bits_of._defn, _float_of._defn,
                         _signed_load, _root_load, _signed_code, _root_code, _loop_source,
                         _Rewrite.visit_Assign, _Rewrite.visit_Subscript)
