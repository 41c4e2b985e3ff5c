"""Compact optimizer state: kernels that keep moments as bfloat16 codes.

The state format is a property of the compiled loop, not of the rule.  A
rule's per-element function reads and writes its state arrays as
``exp_avg[i]``; for compact state the kernel layer compiles a *rewritten*
copy of it (:func:`rewritten`) in which each read of a compact array is
decoded and each write encoded:

.. code-block:: text

   m = first_moment(exp_avg[i], ...)      ->   m = first_moment(load(exp_avg[i]), ...)
   exp_avg[i] = m                         ->   exp_avg[i] = store(m, i, seed, k)

so the loop, the vectorisation and the rest of the rule are those of the
float32 kernels (:mod:`.cpu`, :mod:`.cuda`), with 2 bytes per element read
and written per compact array instead of 4.

bfloat16 with stochastic rounding
    A code is the upper 16 bits of the float32 pattern.  Encoding adds 16
    bits of noise below the cut before truncating, so a value is rounded up
    with probability equal to its distance from the code below, and the
    stored moments are unbiased.  Round-to-nearest would freeze Adam's
    second moment: with ``beta2 = 0.999`` a step shrinks ``v`` by at most
    0.1%, less than half of bfloat16's 0.39% spacing, so ``v`` could never
    decrease.  The noise is a hash of the element's index, the step count
    (``seed``) and the array's position ``k``: the index xored with a salt
    (murmur3's finaliser of the step and ``k // 2``), times the golden-ratio
    constant, xor-shifted; its upper and lower 16 bits serve arrays ``2j``
    and ``2j + 1``.  No generator state, the same bits on every target and
    thread count, reproducible from a checkpoint.
    A NaN stays a NaN (its quiet bit is set so it never becomes infinity);
    infinities, signed zeros and subnormals follow the bit arithmetic.

:func:`bf16_encode` and :func:`bf16_decode` are the NumPy reference of the
codec, bit for bit the kernels'.  Kernels take ``kernel(param, grad, state,
scalars, seed)`` (and the average's two arrays after ``seed``), where
``state`` holds the codes of each compact array and the float32 array of
each other one.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from ._build import compile_family, piece, source_digest, specialized
from .averaging import ema_element
from .cpu import _INLINE, _OPTIONS, _PIECES, _Pair

__all__ = ["FORMATS", "bf16_encode", "bf16_decode", "bf16_noise", "rewritten", "kernels",
           "averaged_kernels"]

#: The compact formats and the dtype of their codes.
FORMATS = {"bfloat16": np.dtype(np.uint16)}

_GOLDEN = 0x9E3779B1   # 2**32 / golden ratio: an odd multiplier that spreads the index


# -- the codec, in NumPy (the reference) -------------------------------------------------------
def _mix32_numpy(x: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser, elementwise on uint32 (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x85EBCA6B)
        x = x ^ (x >> np.uint32(13))
        x = x * np.uint32(0xC2B2AE35)
        x = x ^ (x >> np.uint32(16))
    return x


def bf16_noise(index: np.ndarray, seed: int, k: int) -> np.ndarray:
    """The 16 bits of rounding noise of elements ``index`` of compact array ``k`` at step
    ``seed`` (uint32 values below 65536)."""
    index = np.asarray(index).astype(np.uint32)   # the kernels' uint32(i)
    salt = _mix32_numpy(np.uint32((4 * int(seed) + (int(k) >> 1)) & 0xFFFFFFFF))
    with np.errstate(over="ignore"):
        x = (index ^ salt) * np.uint32(_GOLDEN)
    h = x ^ (x >> np.uint32(16))
    return h >> np.uint32(16) if int(k) % 2 == 0 else h & np.uint32(0xFFFF)


def bf16_encode(values: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """float32 values to bfloat16 codes (``uint16``); NaN stays NaN.

    With ``noise`` (uint32 below 65536, one per value) the rounding is the
    kernels' stochastic rounding; without it, to nearest with ties to even
    (how whole arrays are converted: checkpoints, initial values).
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    if noise is None:
        noise = 0x7FFF + ((bits >> 16) & 1)
    rounded = (bits + np.asarray(noise, dtype=np.uint64)) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)


def bf16_decode(codes: np.ndarray) -> np.ndarray:
    """bfloat16 codes (``uint16``) to float32 values (exact)."""
    return (np.asarray(codes, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# -- the codec in nopython code ------------------------------------------------------------------
@intrinsic
def _bits_of(typingctx, x):
    """A float32's bit pattern as uint32 (one LLVM bitcast)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _float_of(typingctx, x):
    """The float32 whose pattern is the low 32 bits of integer ``x`` (trunc + bitcast)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if x.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif x.bitwidth < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())
    return types.float32(x), codegen


def _mix32(x):
    # Each result cast back to uint32: Numba widens uint32 arithmetic to 64 bits, and the
    # casts let LLVM keep 32-bit vector lanes.
    x = np.uint32(x ^ (x >> np.uint32(16)))
    x = np.uint32(x * np.uint32(0x85EBCA6B))
    x = np.uint32(x ^ (x >> np.uint32(13)))
    x = np.uint32(x * np.uint32(0xC2B2AE35))
    return np.uint32(x ^ (x >> np.uint32(16)))


def _noise(i, seed, k):
    # The salt (a full hash of the step and the array pair) does not depend on i, so LLVM
    # computes it once per launch; per element there is one multiply and one xor-shift,
    # whose upper and lower 16 bits serve two arrays (``k`` is a literal in the rewritten
    # element: the choice folds and both arrays share the product).
    salt = _mix32(np.uint32(np.uint32(seed) * np.uint32(4) + np.uint32(k >> 1)))
    x = np.uint32(np.uint32(np.uint32(i) ^ salt) * np.uint32(_GOLDEN))
    h = np.uint32(x ^ (x >> np.uint32(16)))
    return h >> np.uint32(16) if k & 1 == 0 else h & np.uint32(0xFFFF)


def _cpu_load(code):
    return _float_of(np.uint32(code) << np.uint32(16))


def _cpu_store(value, i, seed, k):
    bits = _bits_of(value)
    rounded = np.uint32(bits + _noise(i, seed, k)) >> np.uint32(16)
    quiet = (bits >> np.uint32(16)) | np.uint32(0x40)
    return np.uint16(quiet if value != value else rounded)


def _python_load(code):
    """The simulator's decode: NumPy views instead of LLVM bitcasts."""
    return np.array([np.uint32(code) << np.uint32(16)], dtype=np.uint32).view(np.float32)[0]


def _python_store(value, i, seed, k):
    noise = bf16_noise(np.array([int(i)]), int(seed), int(k))
    return bf16_encode(np.array([value], dtype=np.float32), noise)[0]


# -- the rewrite of a per-element function ---------------------------------------------------
class _Rewrite(ast.NodeTransformer):
    """Decode the reads and encode the writes of the compact arrays named in ``compact``."""

    def __init__(self, compact: dict[str, int]):
        self.compact = compact

    def _target(self, node: ast.AST) -> str | None:
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id in self.compact):
            return node.value.id
        return None

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        node.value = self.visit(node.value)
        names = [self._target(target) for target in node.targets]
        if any(names):
            if len(node.targets) != 1:
                raise ValueError("a compact state array must be written by a plain "
                                 "assignment 'array[i] = value'")
            target = node.targets[0]
            node.value = ast.Call(ast.Name("_store", ast.Load()), [
                node.value, target.slice, ast.Name("seed", ast.Load()),
                ast.Constant(self.compact[names[0]])], [])
            target.slice = self.visit(target.slice)
            return node
        node.targets = [self.visit(target) for target in node.targets]
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if self._target(node.target):
            raise ValueError("a compact state array must be written by a plain assignment "
                             "'array[i] = value', not an augmented one")
        return self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if not self._target(node):
            return self.generic_visit(node)
        node.slice = self.visit(node.slice)
        if isinstance(node.ctx, ast.Load):
            return ast.Call(ast.Name("_load", ast.Load()), [node], [])
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.compact and isinstance(node.ctx, ast.Load):
            raise ValueError(f"the compact state array {node.id!r} may only be indexed "
                             "('array[i]') in a per-element function")
        return node


def _state_names(func: ast.FunctionDef) -> list[str]:
    """The names a per-element function unpacks its ``state`` tuple into."""
    for statement in func.body:
        if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Name)
                and statement.value.id == "state" and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Tuple)):
            return [target.id for target in statement.targets[0].elts]
    raise ValueError(f"{func.name}: compact state needs the state tuple unpacked at the top "
                     "('exp_avg, exp_avg_sq = state')")


def rewritten(element: Callable, flags: tuple[bool, ...], load: Callable,
              store: Callable) -> Callable:
    """A copy of per-element function ``element`` that keeps the state arrays flagged in
    ``flags`` as bfloat16 codes, calling ``load`` and ``store`` (see the module docstring).

    The copy takes one more argument, ``seed`` (the step count), and is a
    :func:`~nbadam._kernels._build.piece` with the globals of ``element``.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(element)))
    func = tree.body[0]
    func.decorator_list = []
    names = _state_names(func)
    if len(names) != len(flags):
        raise ValueError(f"{func.name} unpacks {len(names)} state arrays, expected "
                         f"{len(flags)}")
    compact = {name: k for k, (name, flag) in enumerate(zip(names, flags, strict=True))
               if flag}
    unpack = next(s for s in func.body if isinstance(s, ast.Assign)
                  and isinstance(s.value, ast.Name) and s.value.id == "state")
    rewrite = _Rewrite(compact)
    func.body = [s if s is unpack else rewrite.visit(s) for s in func.body]
    func.args.args.append(ast.arg("seed"))
    func.name = f"{element.__name__}_{''.join('c' if f else 'f' for f in flags)}"
    ast.fix_missing_locations(tree)
    namespace = dict(element.__globals__)
    namespace.update(_load=load, _store=store)
    exec(compile(tree, f"<{func.name}: {element.__code__.co_filename}>", "exec"), namespace)
    copy = namespace[func.name]
    copy.__module__ = element.__module__
    return piece(copy)


# -- the CPU kernels ---------------------------------------------------------------------------
_CODEC = numba.njit(inline="always", **_OPTIONS)
_mix32_cpu = _CODEC(specialized(_mix32, "mix32_cpu"))
_noise_cpu = _CODEC(specialized(_noise, "noise_cpu", _mix32=_mix32_cpu))
_load_cpu = _CODEC(specialized(_cpu_load, "bf16_load_cpu"))
_store_cpu = _CODEC(specialized(_cpu_store, "bf16_store_cpu", _noise=_noise_cpu))


def _loop(param, grad, state, scalars, seed):
    for i in prange(param.size):
        element(i, param, grad, state, scalars, seed)  # noqa: F821 (bound per update)


def _loop_averaged(param, grad, state, scalars, seed, ema, weights):
    for i in prange(param.size):
        element(i, param, grad, state, scalars, seed)  # noqa: F821 (bound per update)
        average(i, param, ema, weights)  # noqa: F821


def _digest(update: Any, *funcs: Callable) -> str:
    return source_digest(update.element, *funcs, _cpu_store, _cpu_load, _noise, _mix32,
                         _Rewrite.visit_Assign, _Rewrite.visit_Subscript)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown compact state format {fmt!r}; known: {', '.join(FORMATS)}")


@functools.cache
def kernels(update: Any, fmt: str, flags: tuple[bool, ...]) -> _Pair:
    """The serial and parallel kernels of ``update`` with the state arrays flagged in
    ``flags`` kept as codes of ``fmt``: ``kernel(param, grad, state, scalars, seed)``."""
    _check(fmt)
    element = compile_family(rewritten(update.element, flags, _load_cpu, _store_cpu),
                             _INLINE, "cpu", {})
    tag = "".join("c" if flag else "f" for flag in flags)
    return _Pair(_loop, f"{update.name}_{fmt}_{tag}_{_digest(update, _loop)}",
                 element=element)


@functools.cache
def averaged_kernels(update: Any, fmt: str, flags: tuple[bool, ...]) -> _Pair:
    """:func:`kernels` fused with the parameter average:
    ``kernel(param, grad, state, scalars, seed, ema, weights)``."""
    _check(fmt)
    element = compile_family(rewritten(update.element, flags, _load_cpu, _store_cpu),
                             _INLINE, "cpu", {})
    average = compile_family(ema_element, _INLINE, "cpu", _PIECES)
    tag = "".join("c" if flag else "f" for flag in flags)
    return _Pair(_loop_averaged,
                 f"{update.name}_{fmt}_{tag}_averaged_{_digest(update, _loop_averaged)}",
                 element=element, average=average)
