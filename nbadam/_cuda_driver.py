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
        self._stream = _driver.CUstream(0)
        self._lock = threading.Lock()
        # Per argument: None for a scalar (its slot takes the value) or the
        # array's (dtype, length slot, data slot, shape slot).
        self._kinds: list[tuple | None] = []
        self._slots: list[Any] = []
        values: list[Any] = []
        for argtype in overload.argument_types:
            kind, slot, fields = _layout(argtype)
            self._kinds.append(kind)
            self._slots.append(slot)
            values.extend(fields)
        self._values = values  # the buffer points into these: keep them alive
        self._pointers = (ctypes.c_void_p * len(values))(*map(ctypes.addressof, values))
        self._address = ctypes.addressof(self._pointers)

    def launch(self, blocks: int, threads: int, args: tuple) -> bool:
        """Queue one launch on the default stream; False if it must go through the dispatcher."""
        if len(args) != len(self._kinds):
            return False
        with self._lock:
            for kind, slot, arg in zip(self._kinds, self._slots, args, strict=True):
                if kind is None:
                    slot.value = arg
                    continue
                dtype, length, data, shape = kind
                if arg.dtype != dtype or len(arg.shape) != 1 or not arg.flags["C_CONTIGUOUS"]:
                    return False
                length.value = shape.value = arg.shape[0]
                data.value = arg.device_ctypes_pointer.value
            (err,) = _driver.cuLaunchKernel(self._function, blocks, 1, 1, threads, 1, 1, 0,
                                            self._stream, self._address, 0)
        return err == _driver.CUresult.CUDA_SUCCESS


_SCALARS = {"float32": ctypes.c_float, "float64": ctypes.c_double, "int64": ctypes.c_int64,
            "bool": ctypes.c_bool}


def _layout(argtype: Any) -> tuple[tuple | None, Any, list[Any]]:
    """(kind, slot, parameter fields) of one kernel argument type."""
    from numba import types as nbtypes

    if isinstance(argtype, nbtypes.Array):
        if argtype.ndim != 1 or argtype.layout != "C":
            raise Unsupported(f"array argument {argtype}")
        dtype = np.dtype(str(argtype.dtype))
        length, data, shape = ctypes.c_int64(0), ctypes.c_void_p(0), ctypes.c_int64(0)
        fields = [ctypes.c_void_p(0), ctypes.c_void_p(0), length,
                  ctypes.c_int64(dtype.itemsize), data, shape, ctypes.c_int64(dtype.itemsize)]
        return (dtype, length, data, shape), None, fields
    name = "bool" if argtype == nbtypes.boolean else str(argtype)
    if name not in _SCALARS:
        raise Unsupported(f"scalar argument {argtype}")
    slot = _SCALARS[name]()
    return None, slot, [slot]
