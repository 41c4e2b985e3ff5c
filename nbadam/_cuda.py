"""CUDA launcher: device detection, arrays on the device, grid sizing and launches.

This is the GPU half of the launcher layer (:mod:`nbadam._launch` is the
CPU half and the single dispatch point).  It is imported on the first use of
``device="cuda"``, through :func:`nbadam._launch.cuda_launcher`, so that
``import nbadam`` never imports ``numba.cuda``.  ``numba.cuda`` may come from
Numba itself or from the ``numba-cuda`` package, which replaces it on import.

Arrays
    Parameters and gradients may be NumPy arrays (copied to the device),
    Numba device arrays, or any object exporting ``__cuda_array_interface__``
    (CuPy arrays, PyTorch CUDA tensors), which are viewed in place with
    ``numba.cuda.as_cuda_array``: no copy, and Numba waits for the exporter's
    stream when it makes the view, as the interface asks.

Launches
    :func:`step` takes the update (:class:`nbadam.rules.Update`), not its
    name.  Every kernel runs on Numba's default stream and returns at once (through
    the driver with a prepared argument buffer where
    :mod:`nbadam._cuda_driver` applies, else through Numba's dispatcher); only
    the non-finite check (``nonfinite="skip"`` or ``"raise"``) and copies to
    the host wait for the GPU.  The grid is
    ``min(ceil(n / CUDA_THREADS_PER_BLOCK), CUDA_MAX_BLOCKS,
    multiprocessors * CUDA_BLOCKS_PER_SM)`` blocks, read from
    :mod:`nbadam._config` at each launch so tests can shrink it; the kernels'
    grid-stride loops cover whatever the grid does not.  The 8-bit state's
    kernels (:mod:`nbadam._kernels.cuda_blockwise`) run one block of 256
    threads per block of 256 elements instead.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import cuda

from . import _config, _cuda_driver, _validate
from ._kernels import cuda as _kernels
from ._kernels import cuda_blockwise as _blockwise

_MULTIPROCESSORS: dict[int, int] = {}


# -- the device ----------------------------------------------------------------
def simulated() -> bool:
    """True under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return bool(numba.config.ENABLE_CUDASIM)


def unavailable_reason() -> str | None:
    """Why ``numba.cuda`` cannot run kernels here, or None when it can."""
    if cuda.is_available():
        return None
    try:
        cuda.current_context()
    except Exception as exc:  # the driver's own explanation, whatever its type
        return " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(" :")
    return "no CUDA device was found"


def require() -> None:
    """Raise a ``RuntimeError`` that says what is missing unless a GPU is usable."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(
            "device='cuda' needs an NVIDIA GPU with a working driver, but "
            f"numba.cuda.is_available() is False ({reason}). Install the CUDA extra "
            "(pip install 'nbadam[cuda]') on a machine with a GPU, or use device='cpu'; "
            "NUMBA_ENABLE_CUDASIM=1, set before numba is imported, runs the CUDA kernels "
            "in Numba's (slow) simulator instead.")


def grid(size: int) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for a vector of ``size`` elements."""
    threads = _config.CUDA_THREADS_PER_BLOCK
    blocks = min(-(-size // threads), _config.CUDA_MAX_BLOCKS)
    multiprocessors = _multiprocessors()
    if multiprocessors:
        blocks = min(blocks, multiprocessors * _config.CUDA_BLOCKS_PER_SM)
    return max(blocks, 1), threads


def _multiprocessors() -> int | None:
    # The simulator's fake device has no multiprocessor count.
    get_device = getattr(cuda, "get_current_device", None)
    if get_device is None or simulated():
        return None
    device = get_device()
    if device.id not in _MULTIPROCESSORS:
        _MULTIPROCESSORS[device.id] = int(device.MULTIPROCESSOR_COUNT)
    return _MULTIPROCESSORS[device.id]


# -- launches ------------------------------------------------------------------
def step(update: Any, size: int, *args: Any, averaged: bool = False,
         compact: tuple | None = None) -> None:
    """Launch the kernel of ``update`` (or ``"first_nonfinite"``, ``"sum_squares"``) on
    device arrays ``args``; ``averaged`` picks the kernel fused with the parameter average,
    ``compact`` (``(format, flags)``) the one that keeps flagged state arrays as codes
    (for ``"8bit"``, ``args`` holds the blocks' scales after the scalars, and the grid
    is one block of 256 threads per block of 256 elements, whatever :func:`grid` says).

    Through the driver with a reused argument buffer where
    :mod:`nbadam._cuda_driver` applies, else through the Numba dispatcher.
    """
    if size == 0:
        return
    if compact is not None and compact[0] == "8bit":
        blocks, threads = _blockwise.launch_shape(size)   # a thread block per block
    else:
        blocks, threads = grid(size)
    dtype = args[0].dtype
    key = (update, dtype, averaged, compact)
    direct = _DRIVER_KERNELS.get(key, _UNSET)
    if direct is _UNSET:
        direct = driver_kernel(update, dtype, averaged, compact)
    if direct is None or not direct.launch(blocks, threads, args):
        kernel(update, dtype, averaged, compact)[blocks, threads](*args)


def kernel(update: Any, dtype: np.dtype, averaged: bool = False, compact: tuple | None = None):
    """The compiled kernel of ``update`` (:func:`nbadam._kernels.cuda.kernel`; for the
    ``"8bit"`` format, :func:`nbadam._kernels.cuda_blockwise.kernel`)."""
    if compact is not None and compact[0] == "8bit":
        return _blockwise.kernel(update, dtype, averaged, compact[1])
    return _kernels.kernel(update, dtype, averaged, compact)


_UNSET = object()
_DRIVER_KERNELS: dict[tuple[Any, np.dtype, bool, Any], Any] = {}


def driver_kernel(update: Any, dtype: np.dtype, averaged: bool = False,
                  compact: tuple | None = None) -> Any:
    """The :class:`~nbadam._cuda_driver.DriverKernel` of ``update`` for ``dtype``, or None
    where launches go through the dispatcher (the simulator, another CUDA binding,
    several GPUs, ...).  Compiles the kernel on first use."""
    key = (update, np.dtype(dtype), averaged, compact)
    if key not in _DRIVER_KERNELS:
        direct = None
        if not simulated() and _cuda_driver.available() is None:
            try:
                direct = _cuda_driver.DriverKernel(kernel(update, dtype, averaged, compact))
            except _cuda_driver.Unsupported:
                direct = None
        _DRIVER_KERNELS[key] = direct
    return _DRIVER_KERNELS[key]


def reduce(update: Any, size: int, param: Any, grad: Any, state: tuple,
           scalars: tuple) -> np.ndarray:
    """The reduction pass of ``update`` on device arrays: the state updated in place, the
    float64 sums returned (the blocks' sums copied back, which waits for the GPU, and
    added in block order on the host)."""
    count = len(update.sum_names)
    if size == 0:
        return np.zeros(count)
    blocks, threads = grid(size)
    threads = 1 << (min(threads, _kernels.REDUCTION_MAX_THREADS).bit_length() - 1)
    partial = cuda.device_array((blocks, count), dtype=np.float64)
    _kernels.reduction_kernel(update, np.dtype(param.dtype).name)[blocks, threads](
        param, grad, state, scalars, partial)
    sums = np.zeros(count)
    for row in partial.copy_to_host():
        sums += row
    return sums


def sum_squares(x: Any) -> float:
    """The float64 sum of the squares of device vector ``x`` (one 8-byte copy back,
    which waits for the GPU); the order of the atomic additions varies between
    runs, so the last bits may too."""
    size = x.shape[0]
    if size == 0:
        return 0.0
    out = cuda.to_device(np.zeros(1))
    step("sum_squares", size, x, out)
    return float(out.copy_to_host()[0])


def first_nonfinite(x: Any) -> int:
    """Index of the first NaN or infinity in device vector ``x``; ``x.size`` if none.

    One read of ``x`` and one 8-byte copy back, which waits for the GPU.
    """
    size = x.shape[0]
    if size == 0:
        return 0
    first = cuda.to_device(np.array([size], dtype=np.int64))
    step("first_nonfinite", size, x, first)
    return int(first.copy_to_host()[0])


def all_finite(x: Any) -> bool:
    """True when device vector ``x`` holds no NaN or infinity."""
    return first_nonfinite(x) == x.shape[0]


# -- arrays --------------------------------------------------------------------
def params_vector(value: Any, name: str = "params") -> tuple[Any, Any]:
    """The parameters on the device, after the checks of the CPU path.

    Returns
    -------
    public : object
        What :attr:`Optimizer.params` shows: ``value`` itself when it already
        lives on the device, else the new device copy.
    device : numba.cuda.cudadrv.devicearray.DeviceNDArray
        The vector the kernels update in place (a view of ``value``, or the copy).
    """
    require()
    if isinstance(value, np.ndarray):
        _validate.float_dtype(name, value.dtype)
        _check_flat(name, value.shape)
        copy = cuda.to_device(np.ascontiguousarray(value))
        return copy, copy
    device = device_view(value, name)
    if device is None:
        raise TypeError(
            f"{name} must be a NumPy array (copied to the GPU once), a Numba device array, "
            "or an object with __cuda_array_interface__ (a CuPy array, a PyTorch CUDA "
            f"tensor), of float32 or float64; got {type(value).__name__}")
    _validate.float_dtype(name, device.dtype)
    _check_flat(name, device.shape)
    if not device.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous; the kernels update it in place, "
                         "so pass a contiguous array and keep a reference to it")
    if _read_only(value):
        raise ValueError(f"{name} is read-only; the optimizer updates it in place")
    return value, device


def gradient(value: Any, size: int, dtype: np.dtype, name: str = "grad") -> Any:
    """The gradient as a device vector of ``size`` elements and exactly ``dtype``.

    A NumPy gradient is copied to the GPU on every call (a host-to-device
    transfer of ``size * itemsize`` bytes, slower than the update itself);
    a device gradient is used in place.
    """
    if isinstance(value, np.ndarray):
        return cuda.to_device(_validate.gradient(value, size, dtype, name))
    device = device_view(value, name)
    if device is None:
        raise TypeError(f"{name} must be a device array (Numba, CuPy, PyTorch CUDA tensor) "
                        f"or a NumPy array of {dtype}, got {type(value).__name__}")
    if device.dtype != dtype:
        raise TypeError(f"{name} has dtype {device.dtype} but the parameters are {dtype}; "
                        f"convert it once on the device")
    if tuple(device.shape) != (size,):
        raise ValueError(f"{name} must have shape ({size},) like the parameters, "
                         f"got {tuple(device.shape)}")
    if not device.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous")
    return device


def device_view(value: Any, name: str) -> Any:
    """A Numba view of device array ``value`` (no copy), or None if it is not one."""
    if getattr(value, "__cuda_ndarray__", False):
        return value
    try:
        exported = hasattr(value, "__cuda_array_interface__")
    except RuntimeError:
        exported = True  # it exports the interface but refuses this object; say why below
    if not exported:
        return None
    as_cuda_array = getattr(cuda, "as_cuda_array", None)
    if as_cuda_array is None:
        raise TypeError(f"{name}: Numba's CUDA simulator cannot read __cuda_array_interface__ "
                        f"objects such as {type(value).__name__}; pass a NumPy array or a "
                        "numba.cuda device array")
    try:
        return as_cuda_array(value)
    except RuntimeError as exc:
        # PyTorch refuses tensors that require grad; tensor.detach() shares the memory.
        raise TypeError(f"{name}: cannot view {type(value).__name__} as a CUDA array: {exc}"
                        ) from None


def _check_flat(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 1:
        raise ValueError(f"{name} must be a flat 1-D array, got shape {tuple(shape)}; "
                         "flatten it first (nbadam updates the flat vector in place)")


def _read_only(value: Any) -> bool:
    interface = getattr(value, "__cuda_array_interface__", None)
    return bool(interface and interface["data"][1])


def zeros(size: int, dtype: np.dtype) -> Any:
    """A device vector of ``size`` zeros."""
    return cuda.to_device(np.zeros(size, dtype=dtype))


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of device vector ``x`` (waits for the GPU)."""
    return x.copy_to_host()


def copy_into(device: Any, host: np.ndarray) -> None:
    """Overwrite device vector ``device`` with host array ``host`` (same shape and dtype)."""
    device.copy_to_device(np.ascontiguousarray(host, dtype=device.dtype))
