"""``state_precision``: how an optimizer stores its moments, and the conversions between formats.

``"float32"`` keeps every state array in the parameters' dtype.  A compact
precision (``"bfloat16"``) stores the arrays an update marks as
:attr:`~nbadam.rules.Update.compact` as codes (:mod:`nbadam._kernels.compact`)
and the others as float32; the kernels decode, update and re-encode them in
the same pass.  A snapshot holds the arrays as they are stored, with its
precision, and loads into an optimizer of any precision: the values are
decoded to float32 and encoded in the receiver's format.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels import compact as _kernels

__all__ = ["PRECISIONS", "check", "flags", "code_dtype", "encode", "decode", "array_specs"]

#: The accepted values of ``state_precision``.
PRECISIONS = ("float32", *_kernels.FORMATS)


def check(value: Any, update: Any, dtype: np.dtype, owner: str) -> str:
    """``value`` as a precision for ``update`` on ``dtype`` parameters, or a clear error."""
    if value not in PRECISIONS:
        raise ValueError(f"state_precision must be one of {', '.join(map(repr, PRECISIONS))}; "
                         f"got {value!r}")
    if value == "float32":
        return value
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"state_precision={value!r} stores float32 moments in fewer bits and "
                         f"needs float32 parameters; these are {np.dtype(dtype).name} (use "
                         "state_precision='float32', or float32 parameters)")
    if not update.compact:
        why = ("its reduction pass reads the state too" if update.reduce is not None
               else "its state must stay exact" if update.state else "it has no state")
        raise ValueError(f"{owner} supports state_precision='float32' only ({why}: it marks "
                         f"none of its state arrays as compact); use state_precision="
                         "'float32'")
    return value


def flags(update: Any, precision: str) -> tuple[bool, ...]:
    """For each state array of ``update``, whether ``precision`` stores it compactly."""
    return tuple(precision != "float32" and name in update.compact for name in update.state)


def code_dtype(precision: str, dtype: np.dtype) -> np.dtype:
    """The dtype of a compact array in ``precision`` (``dtype`` itself for float32)."""
    return np.dtype(dtype) if precision == "float32" else _kernels.FORMATS[precision]


def encode(precision: str, values: np.ndarray) -> np.ndarray:
    """float32 ``values`` in ``precision`` (a copy)."""
    if precision == "bfloat16":
        return _kernels.bf16_encode(values)
    return np.array(values, copy=True)


def decode(precision: str, codes: np.ndarray) -> np.ndarray:
    """The float32 values of ``codes`` stored in ``precision`` (a copy)."""
    if precision == "bfloat16":
        return _kernels.bf16_decode(codes)
    return np.array(codes, dtype=np.float32 if codes.dtype != np.float64 else np.float64)


def array_specs(update: Any, precision: str, size: int,
                dtype: np.dtype) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``name -> (shape, dtype)`` of each state array of ``update`` stored in ``precision``."""
    return {name: ((size,), code_dtype(precision, dtype) if flag else np.dtype(dtype))
            for name, flag in zip(update.state, flags(update, precision), strict=True)}
