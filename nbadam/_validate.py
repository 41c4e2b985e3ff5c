"""Input checks shared by the public API.

Each check either returns the value in canonical form or raises one
``ValueError``/``TypeError`` whose message names the parameter, quotes the bad
value and says what is allowed.  None of them modifies its argument.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
DEVICES = ("cpu", "cuda")


def real(name: str, value: Any) -> float:
    """Return ``value`` as a float; refuse bools, strings and non-finite numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {value!r} "
                            f"of type {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int (or Fraction, Decimal) beyond float's range
        raise ValueError(f"{name} must be finite, got {_short(value)}, which is beyond the "
                         f"range of a float (about 1.8e308)") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut short: the value of a huge integer is not worth a screenful."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than sys.get_int_max_str_digits()
        return f"an integer of about {int(value).bit_length() * 0.30103:.0f} digits"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    value = real(name, value)
    if value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def nonnegative(name: str, value: Any) -> float:
    """A finite number >= 0."""
    value = real(name, value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def unit_interval(name: str, value: Any) -> float:
    """A number in [0, 1)."""
    value = real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def betas(value: Any) -> tuple[float, float]:
    """A pair ``(beta1, beta2)``, each in [0, 1)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
    if len(value) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {len(value)} values: "
                         f"{value!r}")
    return unit_interval("betas[0]", value[0]), unit_interval("betas[1]", value[1])


def betas3(value: Any) -> tuple[float, float, float]:
    """A triple ``(beta1, beta2, beta3)``, each in [0, 1), for a rule with three decay rates."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"betas must be a triple (beta1, beta2, beta3), got {value!r}")
    if len(value) != 3:
        raise ValueError(f"betas must be a triple (beta1, beta2, beta3), got {len(value)} "
                         f"values: {value!r}")
    return (unit_interval("betas[0]", value[0]), unit_interval("betas[1]", value[1]),
            unit_interval("betas[2]", value[2]))


def flag(name: str, value: Any) -> bool:
    """A bool (NumPy bools accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """One of ``allowed`` (case-insensitive); returns the lower-case name."""
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def device(value: Any) -> str:
    """Where the optimizer runs: ``"cpu"`` or ``"cuda"`` (the current CUDA GPU)."""
    return choice("device", value, DEVICES)


#: The largest count nbadam stores (as int64, in NumPy arrays and compiled loops).
INT64_MAX = 2**63 - 1


def integer(name: str, value: Any, minimum: int = 0, maximum: int | None = INT64_MAX) -> int:
    """An integer in ``[minimum, maximum]``.

    Counts (iterations, steps, sizes) end up in int64 arrays and compiled
    loops, so by default they must fit in a signed 64-bit integer; a value
    beyond it is a ``ValueError`` naming ``name`` rather than an
    ``OverflowError`` later.  Pass ``maximum=None`` for unbounded integers
    (seeds).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {_short(value)}")
    if maximum is not None and value > maximum:
        bound = "2**63 - 1" if maximum == INT64_MAX else str(maximum)
        raise ValueError(f"{name} must be <= {bound}, got {_short(value)}")
    return int(value)


def learning_rate(value: Any) -> float | Callable[[int], float]:
    """A finite number >= 0 or a schedule (a callable ``step -> lr``).

    0 is allowed, as in torch: the step then does not move the parameters (for
    a finite update) while the state still advances, as when a schedule returns 0.
    """
    if callable(value):
        return value
    return nonnegative("lr", value)


def scheduled_lr(schedule: Callable[[int], float], count: int) -> float:
    """Evaluate a schedule at ``count`` updates done and check what it returns."""
    value = schedule(count)
    try:
        value = real("lr", value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the lr schedule {schedule!r} returned {value!r} at step {count}; "
                         "a schedule must return a finite number >= 0") from exc
    if value < 0.0:
        raise ValueError(f"the lr schedule {schedule!r} returned {value!r} at step {count}; "
                         "a schedule must return a finite number >= 0")
    return value


def scheduled_beta1(schedule: Callable[[int], float], count: int) -> float | None:
    """The beta1 an lr schedule sets at ``count`` (its ``beta1`` method), checked; else None.

    A schedule that drives beta1 (:func:`nbadam.schedules.one_cycle` with
    ``cycle_momentum``) replaces the first of the rule's ``betas`` at every
    step; any other callable returns None here.
    """
    method = getattr(schedule, "beta1", None)
    value = None if method is None else method(count)
    if value is None:
        return None
    try:
        return unit_interval("beta1", value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the lr schedule {schedule!r} gave beta1 = {value!r} at step "
                         f"{count}; beta1 must be in [0, 1)") from exc


def params_vector(value: Any, name: str = "params") -> np.ndarray:
    """A writable, C-contiguous, 1-D float32/float64 NumPy array (used as is)."""
    if type(value) is not np.ndarray:
        value = not_masked(name, value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a 1-D NumPy array of float32 or float64, got "
                        f"{type(value).__name__}; use np.asarray(x, dtype=np.float64)")
    float_dtype(name, value.dtype)
    if value.ndim != 1:
        raise ValueError(f"{name} must be a flat 1-D array, got shape {value.shape}; "
                         "flatten it with x.ravel() (nbadam updates the flat vector in place)")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}) "
                         "and keep a reference to that array, which is updated in place")
    if not value.flags.writeable:
        raise ValueError(f"{name} is read-only; the optimizer updates it in place, "
                         f"so pass a writable copy ({name}.copy())")
    return value


def float_dtype(name: str, dtype: Any) -> np.dtype:
    """float32 or float64; anything else is a TypeError that says how to convert."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got "
                        f"{describe_dtype(dtype)}; convert it once with "
                        f"{name}.astype({_suggested(dtype)})")
    return dtype


def describe_dtype(dtype: np.dtype) -> str:
    """``dtype``'s name, saying so when its byte order is not the machine's.

    ``np.dtype('>f8')`` prints as ``>f8``, which does not tell a reader that
    it is a float64 the kernels cannot use only because of its byte order.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam._validate import describe_dtype
    >>> describe_dtype(np.dtype(np.float32))
    'float32'
    >>> swapped = np.dtype(np.float64).newbyteorder()
    >>> describe_dtype(swapped)[3:]
    ' (float64 in non-native byte order)'
    """
    if dtype.isnative or dtype.byteorder == "|":
        return str(dtype)
    return f"{dtype.str} ({dtype.newbyteorder('=').name} in non-native byte order)"


def _suggested(dtype: np.dtype) -> str:
    native = dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype
    if native in FLOAT_DTYPES:  # only the byte order is wrong
        return f"np.{native.name}"
    return "np.float32) or .astype(np.float64"


def not_masked(name: str, value: Any) -> Any:
    """Refuse a ``numpy.ma`` masked array that masks anything; unwrap one that masks nothing.

    nbadam computes on plain arrays: a mask would be silently ignored, and
    masked entries (whatever values they hold underneath) used as data.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam._validate import not_masked
    >>> not_masked("x", np.ma.masked_array([1.0, 2.0], mask=[False, False]))
    array([1., 2.])
    >>> not_masked("x", np.ma.masked_array([1.0, 2.0], mask=[0, 1]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: x is a masked array with 1 masked value (x[1]); nbadam ignores masks, ...
    """
    if not isinstance(value, np.ma.MaskedArray):
        return value
    mask = np.ma.getmaskarray(value)
    count = int(mask.sum())
    if count:
        first = tuple(int(i) for i in np.argwhere(mask)[0])
        where = f"{name}[{', '.join(map(str, first))}]"
        plural = "s" if count > 1 else ""
        raise ValueError(f"{name} is a masked array with {count} masked value{plural} "
                         f"({where}{', ...' if count > 1 else ''}); nbadam ignores masks, "
                         f"so fill them ({name}.filled(value)) or drop those entries first")
    return np.ma.getdata(value)


def gradient(value: Any, size: int, dtype: np.dtype, name: str = "grad") -> np.ndarray:
    """A 1-D contiguous gradient of ``size`` elements and exactly ``dtype``."""
    if type(value) is not np.ndarray:
        value = not_masked(name, value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array of {dtype}, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{name} has dtype {describe_dtype(value.dtype)} but the parameters "
                        f"are {dtype}; pass {name}.astype(np.{dtype})")
    if value.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) like the parameters, got {value.shape}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return value
