"""``state_precision``: how an optimizer stores its moments, and the conversions between formats.

``"float32"`` keeps every state array in the parameters' dtype.  A compact
precision stores the arrays an update marks as
:attr:`~nbadam.rules.Update.compact` as codes and the others as float32; the
kernels decode, update and re-encode them in the same pass:

- ``"bfloat16"``: ``uint16`` codes, one per element (:mod:`nbadam._kernels.compact`);
- ``"8bit"``: ``uint8`` codes and, for each array ``name``, an array
  ``name_absmax`` of float32 scales, one per block of 256 elements of each
  parameter group (:mod:`nbadam._kernels.blockwise`).  Blocks start at each
  group's first element, so that a group's launch owns its blocks.

A snapshot holds the arrays as they are stored, with its precision, and loads
into an optimizer of any precision: the values are decoded to float32 and
encoded in the receiver's format.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels import blockwise as _blockwise
from .._kernels import compact as _kernels

__all__ = ["PRECISIONS", "ABSMAX", "check", "flags", "code_dtype", "encode", "decode",
           "array_specs", "stored_names", "block_offsets", "encode_span", "to_values",
           "to_stored"]

#: The accepted values of ``state_precision``.
PRECISIONS = ("float32", *_kernels.FORMATS, "8bit")
#: The suffix of the name of an 8-bit array's scales.
ABSMAX = "_absmax"
_CODE_DTYPES = {**_kernels.FORMATS, "8bit": np.dtype(np.uint8)}


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
    return np.dtype(dtype) if precision == "float32" else _CODE_DTYPES[precision]


def encode(precision: str, values: np.ndarray) -> np.ndarray:
    """float32 ``values`` in ``precision`` (a copy; not for ``"8bit"``: :func:`encode_span`)."""
    if precision == "bfloat16":
        return _kernels.bf16_encode(values)
    if precision == "8bit":
        raise ValueError("8-bit state is encoded by blocks: use encode_span or to_stored")
    return np.array(values, copy=True)


def decode(precision: str, codes: np.ndarray) -> np.ndarray:
    """The float32 values of ``codes`` stored in ``precision`` (a copy; not for ``"8bit"``:
    :func:`to_values`)."""
    if precision == "bfloat16":
        return _kernels.bf16_decode(codes)
    if precision == "8bit":
        raise ValueError("8-bit state is decoded by blocks: use to_values")
    return np.array(codes, dtype=np.float32 if codes.dtype != np.float64 else np.float64)


def stored_names(update: Any, precision: str) -> tuple[str, ...]:
    """The names of the arrays ``update``'s state takes in ``precision``: its state arrays,
    then (8-bit) the scales of each compact one."""
    scales = (tuple(name + ABSMAX for name, flag in zip(update.state, flags(update, precision),
                                                        strict=True) if flag)
              if precision == "8bit" else ())
    return (*update.state, *scales)


def block_offsets(spans: list[tuple[int, int]]) -> tuple[list[int], int]:
    """The first block of each span ``(start, stop)`` (a parameter group) and the total."""
    offsets, total = [], 0
    for start, stop in spans:
        offsets.append(total)
        total += _blockwise.blocks(stop - start)
    return offsets, total


def array_specs(update: Any, precision: str, size: int, dtype: np.dtype,
                spans: list[tuple[int, int]] | None = None,
                ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``name -> (shape, dtype)`` of each array of ``update``'s state stored in ``precision``
    (``spans``: the groups' ``(start, stop)``, for the 8-bit scales)."""
    specs = {name: ((size,), code_dtype(precision, dtype) if flag else np.dtype(dtype))
             for name, flag in zip(update.state, flags(update, precision), strict=True)}
    if precision == "8bit":
        total = block_offsets(spans if spans is not None else [(0, size)])[1]
        for name in stored_names(update, precision)[len(update.state):]:
            specs[name] = ((total,), np.dtype(np.float32))
    return specs


def encode_span(precision: str, values: np.ndarray, update: Any,
                name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """State array ``name``'s float32 ``values`` over one group in ``precision``: the codes
    and, for ``"8bit"``, the group's block scales (else None)."""
    if precision != "8bit":
        return encode(precision, values), None
    return _blockwise.quantize(values, "root" if name in update.roots else "signed")


def to_values(update: Any, precision: str, stored: dict[str, np.ndarray],
              spans: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The values (float arrays) of each state array of ``update`` from the arrays
    ``stored`` in ``precision`` (8-bit elements outside every span decode as 0)."""
    values = {}
    offsets = block_offsets(spans)[0]
    for name, flag in zip(update.state, flags(update, precision), strict=True):
        array = np.asarray(stored[name])
        if not flag:
            values[name] = np.array(array, copy=True)
        elif precision != "8bit":
            values[name] = decode(precision, array)
        else:
            kind = "root" if name in update.roots else "signed"
            out = np.zeros(array.size, np.float32)
            absmax = np.asarray(stored[name + ABSMAX])
            for (start, stop), first in zip(spans, offsets, strict=True):
                count = _blockwise.blocks(stop - start)
                out[start:stop] = _blockwise.dequantize(array[start:stop],
                                                        absmax[first:first + count], kind)
            values[name] = out
    return values


def to_stored(update: Any, precision: str, values: dict[str, np.ndarray],
              spans: list[tuple[int, int]], dtype: np.dtype) -> dict[str, np.ndarray]:
    """The arrays of ``update``'s state in ``precision`` from their ``values``
    (:func:`to_values` inverted, up to the rounding of the format)."""
    stored = {}
    offsets, total = block_offsets(spans)
    for name, flag in zip(update.state, flags(update, precision), strict=True):
        array = np.asarray(values[name])
        if not flag:
            stored[name] = np.array(array, dtype=dtype, copy=True)
        elif precision != "8bit":
            stored[name] = encode(precision, array)
        else:
            codes = np.zeros(array.size, np.uint8)
            absmax = np.zeros(total, np.float32)
            for (start, stop), first in zip(spans, offsets, strict=True):
                codes[start:stop], scales = encode_span(precision, array[start:stop], update,
                                                        name)
                absmax[first:first + scales.size] = scales
            stored[name], stored[name + ABSMAX] = codes, absmax
    return stored
