"""Inputs of :func:`nbadam.minimize`: methods and options, ``x0``, bounds, ``fun`` and ``jac``.

Everything here runs before or around the loops of :mod:`nbadam.minimize`:
the option tables and their validation, the normalisation of ``x0``,
``args`` and ``bounds``, the evaluator that turns ``fun``/``jac`` (analytic,
combined, or finite differences) into ``(f, g)`` with the iterate's dtype,
and the callback adapter.  The error messages name the argument and the fix.
"""

from __future__ import annotations

import inspect
import numbers
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning
from scipy.optimize._numdiff import approx_derivative

from .. import _validate, rules

#: Finite-difference schemes accepted as ``jac`` (None and False mean "2-point").
FD_SCHEMES = ("2-point", "3-point")

#: Options every method takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "maxiter": 1000,
    "gtol": 1e-5,
    "ftol": 2.220446049250313e-09,
    "ftol_window": 10,
    "return_best": True,
    "disp": False,
    "compiled": None,
    "device": "cpu",
}

# -- evaluating fun and jac ---------------------------------------------------------------
def _first_evaluation(fun: Callable, jac: Any, args: tuple, x: np.ndarray) -> Any:
    """``fun`` (and ``jac``) at ``x0``, raw: ``(value, gradient or None)``."""
    xk = x.copy()
    if jac is True:
        out = fun(xk, *args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError("with jac=True, fun must return a tuple (f, g); got "
                             f"{type(out).__name__}")
        return out
    value = fun(xk, *args)
    return value, (jac(xk, *args) if callable(jac) else None)


def _evaluator(fun: Callable, jac: Any, args: tuple, n: int, dtype: np.dtype,
               lower: np.ndarray | None, upper: np.ndarray | None):
    """``evaluate(x, raw=None) -> (f, g)`` for the Python loop, and the ``nfev`` counter.

    The counter is None when every evaluation calls ``fun`` once (then
    ``nfev = nit + 1``); with finite differences it is a one-element list
    counting every call of ``fun``.
    """
    shape = (n,)

    def checked(f, g):
        # The common case (a float and a ready gradient) costs two type tests:
        # this runs once per step of the Python loop.
        if type(f) is not float:
            f = _scalar(f)
        if (type(g) is not np.ndarray or g.dtype != dtype or g.shape != shape
                or not g.flags.c_contiguous):
            g = _gradient(g, n, dtype)
        return f, g

    if jac is True:
        def evaluate(x, raw=None):
            if raw is None:
                raw = fun(x.copy(), *args)
                if type(raw) is not tuple or len(raw) != 2:
                    raise ValueError("with jac=True, fun must return a tuple (f, g); got "
                                     f"{type(raw).__name__}")
            return checked(*raw)
        return evaluate, None
    if callable(jac):
        def evaluate(x, raw=None):
            if raw is None:
                xk = x.copy()
                return checked(fun(xk, *args), jac(xk, *args))
            return checked(*raw)
        return evaluate, None
    if jac is None or jac is False or (isinstance(jac, str) and jac in FD_SCHEMES):
        scheme = "2-point" if jac in (None, False) else jac
        counted = [0]
        fd_bounds = (-np.inf if lower is None else lower, np.inf if upper is None else upper)

        def counted_fun(xk, *fargs):
            counted[0] += 1
            return _scalar(fun(xk, *fargs))

        def evaluate(x, raw=None):
            if raw is None:
                f = counted_fun(x.copy(), *args)
            else:
                counted[0] += 1
                f = _scalar(raw[0])
            g = approx_derivative(counted_fun, x.copy(), method=scheme, f0=f, args=args,
                                  bounds=fd_bounds)
            return f, _gradient(g, n, dtype)
        return evaluate, counted
    raise ValueError(f"jac must be a callable, True, False, None, '2-point' or '3-point'; "
                     f"got {jac!r}")


def _is_real_scalar(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.floating, np.integer))


def _scalar(value: Any) -> float:
    """``fun``'s value as a float; refuse anything but one real number."""
    if type(value) is float:
        return value
    if _is_real_scalar(value):
        return float(value)
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "biuf":
        raise ValueError("fun must return a scalar (a real number or an array of one "
                         f"element); got {type(value).__name__} with shape {array.shape} "
                         f"and dtype {array.dtype}")
    return float(array.reshape(()))


def _gradient(value: Any, n: int, dtype: np.dtype) -> np.ndarray:
    """A gradient as a contiguous ``(n,)`` array of the iterate's dtype."""
    if (type(value) is np.ndarray and value.dtype == dtype and value.shape == (n,)
            and value.flags.c_contiguous):
        return value
    array = np.atleast_1d(np.asarray(_validate.not_masked("jac's value", value)))
    if array.dtype.kind not in "biuf":
        raise ValueError(f"jac must return a real array, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"jac must return a gradient of shape ({n},) like x0, got shape "
                         f"{array.shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def _unwrap_memoized(fun: Callable, jac: Any) -> tuple[Callable, Any]:
    """Undo SciPy's ``jac=True`` wrapping (``MemoizeJac``): one call of ``fun`` per step."""
    inner = getattr(jac, "__self__", None)
    if inner is fun and getattr(fun, "derivative", None) == jac and hasattr(fun, "fun"):
        return fun.fun, True
    return fun, jac


def _wrap_callback(callback: Callable | None) -> Callable | None:
    """``call(x, f, g, nit) -> stop``, choosing the form as :func:`scipy.optimize.minimize`."""
    if callback is None:
        return None
    try:
        parameters = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        parameters = set()
    if parameters == {"intermediate_result"}:
        def call(x, f, g, nit):
            result = OptimizeResult(x=x.copy(), fun=f, jac=g.copy(), nit=nit)
            try:
                callback(intermediate_result=result)
            except StopIteration:
                return True
            return False
    else:
        def call(x, f, g, nit):
            try:
                callback(x.copy())
            except StopIteration:
                return True
            return False
    return call


# -- inputs ------------------------------------------------------------------------------
def _method_name(method: Any, name: str = "method") -> str:
    """The registered rule name ``method`` selects (case-insensitive)."""
    return rules.get(method, name).name


def _with_tol(options: dict[str, Any] | None, tol: float | None) -> dict[str, Any]:
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    options = dict(options or {})
    if tol is not None:
        options.setdefault("gtol", tol)
    return options


def _normalize(x0: Any, args: Any) -> tuple[np.ndarray, tuple]:
    """``x0`` as a fresh 1-D float array (float32 kept), ``args`` as a tuple."""
    x = np.atleast_1d(np.asarray(_validate.not_masked("x0", x0)))
    if x.ndim != 1:
        raise ValueError(f"x0 must be one-dimensional, got shape {x.shape}")
    if x.dtype.kind == "c":
        raise TypeError("x0 must be real; minimize the real and imaginary parts as "
                        "separate variables")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    try:
        x = np.array(x, dtype=dtype, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"x0 must be an array of real numbers: {exc}") from None
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"x0 must be finite; x0[{bad[0]}] = {x[bad[0]]}")
    return x, (args if isinstance(args, tuple) else (args,))


def _normalize_bounds(bounds: Any, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(lower, upper)`` float64 arrays of shape ``(n,)``, or ``(None, None)``."""
    if bounds is None:
        return None, None
    if isinstance(bounds, Bounds):
        pairs = (bounds.lb, bounds.ub)
        try:
            lower, upper = (np.broadcast_to(np.asarray(b, dtype=float), (n,)).copy()
                            for b in pairs)
        except ValueError:
            raise ValueError(f"Bounds lb and ub must be scalars or have {n} elements like x0, "
                             f"got shapes {np.shape(bounds.lb)} and {np.shape(bounds.ub)}"
                             ) from None
    else:
        if isinstance(bounds, (str, bytes)) or not isinstance(bounds, (Sequence, np.ndarray)):
            raise TypeError(f"bounds must be scipy.optimize.Bounds or a sequence of "
                            f"(low, high) pairs, got {type(bounds).__name__}")
        if len(bounds) != n:
            raise ValueError(f"bounds must hold one (low, high) pair per variable: {n}, got "
                             f"{len(bounds)}")
        lower, upper = np.empty(n), np.empty(n)
        for i, pair in enumerate(bounds):
            if pair is None or np.ndim(pair) != 1 or len(pair) != 2:
                raise ValueError(f"bounds[{i}] must be a pair (low, high), got {pair!r}")
            low, high = pair
            lower[i] = -np.inf if low is None else float(low)
            upper[i] = np.inf if high is None else float(high)
    if np.isnan(lower).any() or np.isnan(upper).any():
        raise ValueError("bounds must not hold NaN (use None or infinity for an open side)")
    crossed = np.flatnonzero(lower > upper)
    if crossed.size:
        i = crossed[0]
        raise ValueError(f"bounds are inconsistent: low > high for variable {i} "
                         f"({lower[i]} > {upper[i]})")
    return lower, upper


def _parse_options(rule: rules.Rule, options: dict[str, Any]) -> dict[str, Any]:
    """Validate the options of ``rule`` (defaults filled in); warn about unknown ones."""
    defaults = {**rule.defaults, **COMMON_OPTIONS}
    options = dict(options)
    device = _validate.device(options.pop("device", "cpu"))
    unknown = [name for name in options if name not in defaults]
    if unknown:
        warnings.warn(f"Unknown solver options: {', '.join(map(str, unknown))} (method "
                      f"{rule.name!r} takes {', '.join(defaults)})", OptimizeWarning,
                      stacklevel=_user_stacklevel())
    opts = {**defaults, **{k: v for k, v in options.items() if k in defaults}}
    for name in rule.defaults:
        opts[name] = rule.check(name, opts[name])
    for name in ("gtol", "ftol"):
        opts[name] = _validate.nonnegative(name, opts[name])
    opts["return_best"] = _validate.flag("return_best", opts["return_best"])
    opts["disp"] = _switch("disp", opts["disp"])
    opts["maxiter"] = _validate.integer("maxiter", opts["maxiter"], 0)
    opts["ftol_window"] = _validate.integer("ftol_window", opts["ftol_window"], 1)
    if opts["compiled"] is not None:
        opts["compiled"] = _validate.flag("compiled", opts["compiled"])
    opts["device"] = device
    return opts


def _switch(name: str, value: Any) -> bool:
    """A bool, or 0/1 as SciPy's ``disp`` is often given."""
    if isinstance(value, (numbers.Integral, np.integer)) and value in (0, 1):
        return bool(value)
    return _validate.flag(name, value)


def _is_empty(constraints: Any) -> bool:
    if constraints is None:
        return True
    return isinstance(constraints, (list, tuple)) and len(constraints) == 0


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside nbadam and SciPy."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module.startswith("nbadam.") or module.startswith("scipy.optimize")):
            return level
        frame, level = frame.f_back, level + 1
    return level
