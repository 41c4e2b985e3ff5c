"""Kernel launches straight through the CUDA driver, with one argument buffer per kernel.

A launch through a Numba dispatcher, ``kernel[blocks, threads](*args)``,
types and marshals every argument again at every call: 91 µs per launch on
the H100 host measured in ``docs/gpu.rst``, most of the 104 µs an Adam step
on ten million elements takes on that GPU.  An optimizer launches the same
kernel with the same arrays at every step, so :class:`DriverKernel`
lays out a kernel's parameters once, as Numba's kernels receive them (each
1-D array as seven fields: meminfo, parent, length, itemsize, data pointer,
shape, stride; each scalar as its C type), and at each launch rewrites only
the values (data pointers, lengths, scalars) before one ``cuLaunchKernel``.
A tuple argument (an update's state arrays, its scalars) is laid out as its
elements one after the other, as Numba flattens it; the first launch compares
the whole buffer with what Numba's own argument preparation makes for the
same arguments and, if they differ in any byte, gives the kernel back to the
dispatcher for good.

It is used only where it is known to do what the dispatcher does:
numba-cuda on ``cuda.bindings``, a single visible GPU, Numba's legacy
default stream, and arguments of exactly the kernel's types (C-contiguous
1-D arrays of the signature's dtypes).  Anything else, and any launch the
driver refuses, goes through the dispatcher, which raises its own errors.
On a GPU, ``tests/test_cuda.py`` checks that both paths give bit-identical
results for every kernel.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

import numpy as np

try:
    from cuda.bindings import driver as _driver
except ImportError:  # Numba's own CUDA target (ctypes bindings): dispatcher launches only
    _driver = None


class Unsupported(Exception):
    """This kernel cannot be launched through the driver directly here."""


def available() -> str | None:
    """None when driver launches can be used here, else the reason why not."""
    if _driver is None:
        return "cuda.bindings is not installed"
    if os.environ.get("NUMBA_CUDA_PER_THREAD_DEFAULT_STREAM", "0") not in ("", "0"):
        return "Numba uses the per-thread default stream"
    from numba import cuda
    if len(cuda.gpus) != 1:
        return f"{len(cuda.gpus)} GPUs are visible"
    return None


class DriverKernel:
    """One compiled kernel, launched with ``cuLaunchKernel`` from a reused buffer.

    Parameters
    ----------
    dispatcher : numba.cuda.dispatcher.CUDADispatcher
        A kernel compiled for exactly one signature.

    Raises
    ------
    Unsupported
        When the kernel or its signature is outside what this class lays out.
    """

    def __init__(self, dispatcher: Any):
        if _driver is None:
            raise Unsupported("cuda.bindings is not installed")
        overloads = list(dispatcher.overloads.values())
        if len(overloads) != 1:
            raise Unsupported(f"{len(overloads)} compiled signatures, expected one")
        overload = overloads[0]
        handle = overload._codelibrary.get_cufunc().handle
        if isinstance(handle, _driver.CUkernel):
            err, handle = _driver.cuKernelGetFunction(handle)
            if err != _driver.CUresult.CUDA_SUCCESS:
                raise Unsupported(f"cuKernelGetFunction: {err}")
        elif not isinstance(handle, _driver.CUfunction):
            raise Unsupported(f"unknown kernel handle {type(handle).__name__}")
        self._function = handle
        self._overload = overload
        self._stream = _driver.CUstream(0)
        self._lock = threading.Lock()
        self._checked = False
        self._broken = False
        # Per argument: its kind (see _layout) and the ctypes values to rewrite.
        self._kinds: list[Any] = []
        values: list[Any] = []
        for argtype in overload.argument_types:
            kind, fields = _layout(argtype)
            self._kinds.append(kind)
            values.extend(fields)
        self._values = values  # the buffer points into these: keep them alive
        self._pointers = (ctypes.c_void_p * len(values))(*map(ctypes.addressof, values))
        self._address = ctypes.addressof(self._pointers)

    def launch(self, blocks: int, threads: int, args: tuple) -> bool:
        """Queue one launch on the default stream; False if it must go through the dispatcher."""
        if self._broken or len(args) != len(self._kinds):
            return False
        with self._lock:
            if not all(_fill(kind, arg) for kind, arg in zip(self._kinds, args, strict=True)):
                return False
            if not self._checked:
                if not self._same_as_numba(args):
                    self._broken = True
                    return False
                self._checked = True
            (err,) = _driver.cuLaunchKernel(self._function, blocks, 1, 1, threads, 1, 1, 0,
                                            self._stream, self._address, 0)
        return err == _driver.CUresult.CUDA_SUCCESS

    def _same_as_numba(self, args: tuple) -> bool:
        """Whether the buffer holds, byte for byte, what Numba would pass for ``args``."""
        try:
            retr: list[Any] = []
            kernelargs: list[Any] = []
            for argtype, arg in zip(self._overload.argument_types, args, strict=True):
                self._overload._prepare_args(argtype, arg, 0, retr, kernelargs)
            theirs = [bytes(value) for value in kernelargs]
        except Exception:  # another Numba version: trust only the dispatcher
            return False
        return theirs == [bytes(value) for value in self._values]


def _fill(kind: Any, arg: Any) -> bool:
    """Write ``arg`` into the slots of ``kind``; False if ``arg`` does not fit them."""
    tag, *rest = kind
    if tag == "scalar":
        rest[0].value = arg
        return True
    if tag == "tuple":
        return (isinstance(arg, tuple) and len(arg) == len(rest[0])
                and all(_fill(k, a) for k, a in zip(rest[0], arg, strict=True)))
    dtype, length, data, shape = rest
    if (getattr(arg, "dtype", None) != dtype or len(arg.shape) != 1
            or not arg.flags["C_CONTIGUOUS"]):
        return False
    length.value = shape.value = arg.shape[0]
    data.value = arg.device_ctypes_pointer.value
    return True


_SCALARS = {"float32": ctypes.c_float, "float64": ctypes.c_double, "int64": ctypes.c_int64,
            "bool": ctypes.c_bool}


def _layout(argtype: Any) -> tuple[tuple, list[Any]]:
    """(kind, parameter fields) of one kernel argument type.

    The kind is ``("scalar", slot)``, ``("array", dtype, length, data, shape)``
    or ``("tuple", [kinds])``; the slots are the fields :func:`_fill` rewrites.
    """
    from numba import types as nbtypes

    if isinstance(argtype, nbtypes.BaseTuple):
        kinds, fields = [], []
        for item in argtype:
            kind, item_fields = _layout(item)
            kinds.append(kind)
            fields.extend(item_fields)
        return ("tuple", kinds), fields
    if isinstance(argtype, nbtypes.Array):
        if argtype.ndim != 1 or argtype.layout != "C":
            raise Unsupported(f"array argument {argtype}")
        dtype = np.dtype(str(argtype.dtype))
        length, data, shape = ctypes.c_int64(0), ctypes.c_void_p(0), ctypes.c_int64(0)
        fields = [ctypes.c_void_p(0), ctypes.c_void_p(0), length,
                  ctypes.c_int64(dtype.itemsize), data, shape, ctypes.c_int64(dtype.itemsize)]
        return ("array", dtype, length, data, shape), fields
    name = "bool" if argtype == nbtypes.boolean else str(argtype)
    if name not in _SCALARS:
        raise Unsupported(f"scalar argument {argtype}")
    slot = _SCALARS[name]()
    return ("scalar", slot), [slot]
