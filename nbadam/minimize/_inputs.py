"""Inputs of :func:`nbadam.minimize`: methods and options, ``x0``, bounds, ``fun`` and ``jac``.

Everything here runs before or around the loops of :mod:`nbadam.minimize`:
the option tables and their validation, the normalisation of ``x0``,
``args`` and ``bounds``, the evaluator that turns ``fun``/``jac`` (analytic,
combined, or finite differences) into ``(f, g)`` with the iterate's dtype,
and the callback adapter; then the same for :func:`nbadam.minimize_batch`
(a 2-D ``x0``, per-problem hyperparameters and bounds, an evaluator of K
problems at once, finite differences for all of them together).  The error
messages name the argument and the fix.
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
from . import _compiled

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
    "clip_grad_norm": None,
    "state_precision": "float32",
}

#: Options of :func:`nbadam.minimize_batch` only, with their defaults.
BATCH_OPTIONS: dict[str, Any] = {
    "active_only": False,
    "parallel": None,
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


def _choose_compiled(choice: bool | None, fun: Callable, jac: Any, callback: Callable | None,
                     returns: str | None, lr: Any = None) -> bool:
    """Whether to run the compiled loop (of ``minimize`` or ``minimize_batch``); raise if
    ``compiled=True`` cannot be honoured.

    ``returns`` says what is wrong with what ``fun`` and ``jac`` returned at ``x0`` for the
    compiled loop, or is None; ``lr`` is the learning rate or its schedule.
    """
    if choice is False:
        return False
    reasons = []
    if not _compiled.is_compiled(fun):
        reasons.append("fun is not a Numba @njit function")
    if not (jac is True or _compiled.is_compiled(jac)):
        reasons.append("jac is neither True nor a Numba @njit function")
    if callback is not None:
        reasons.append("a callback is given")
    if callable(lr) and _validate.scheduled_beta1(lr, 0) is not None:
        reasons.append("the lr schedule sets beta1 at every step (cycle_momentum), which "
                       "only the Python loop passes on")
    if not reasons and returns is not None:
        reasons.append(returns)
    if reasons and choice:
        raise ValueError("compiled=True needs a Numba fun, a Numba jac (or jac=True), no "
                         "callback and an lr schedule that leaves beta1 alone; here "
                         + "; ".join(reasons))
    return not reasons


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


def _parse_options(rule: rules.Rule, options: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate the options of ``rule`` (defaults filled in); warn about unknown ones.

    ``extra`` holds more known options and their defaults, which the caller checks.
    """
    defaults = {**rule.defaults, **COMMON_OPTIONS, **(extra or {})}
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
    if opts["clip_grad_norm"] is not None:
        opts["clip_grad_norm"] = _validate.nonnegative("clip_grad_norm", opts["clip_grad_norm"])
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


# -- minimize_batch ----------------------------------------------------------------------
def _normalize_batch(x0: Any, args: Any) -> tuple[np.ndarray, tuple]:
    """``x0`` as a fresh C-contiguous ``(K, n)`` float array (float32 kept), ``args`` a tuple."""
    x = np.asarray(_validate.not_masked("x0", x0))
    if x.ndim != 2:
        raise ValueError(f"x0 must be two-dimensional, (K, n): one row of n variables per "
                         f"problem; got shape {x.shape}.  Use nbadam.minimize for one problem, "
                         "or x0.reshape(1, -1)")
    if x.dtype.kind == "c":
        raise TypeError("x0 must be real; minimize the real and imaginary parts as "
                        "separate variables")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    try:
        x = np.array(x, dtype=dtype, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"x0 must be an array of real numbers: {exc}") from None
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        k, i = bad[0]
        raise ValueError(f"x0 must be finite; x0[{k}, {i}] = {x[k, i]}")
    return x, (args if isinstance(args, tuple) else (args,))


def _normalize_batch_bounds(bounds: Any, K: int, n: int
                            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(lower, upper)`` float64 arrays of shape ``(1, n)`` (every problem's) or ``(K, n)``.

    A sequence of ``(low, high)`` pairs or a :class:`~scipy.optimize.Bounds` whose
    ``lb`` and ``ub`` broadcast to ``(n,)`` bound every problem alike; a ``Bounds``
    whose ``lb`` or ``ub`` has shape ``(K, n)`` (or ``(K, 1)``) bounds each problem.
    """
    if bounds is None:
        return None, None
    if isinstance(bounds, Bounds):
        lb, ub = (np.asarray(_validate.not_masked("bounds", b), dtype=float)
                  for b in (bounds.lb, bounds.ub))
        if lb.ndim < 2 and ub.ndim < 2:
            lower, upper = _normalize_bounds(bounds, n)
            return lower[None], upper[None]
        try:
            lower, upper = (np.broadcast_to(b, (K, n)).copy() for b in (lb, ub))
        except ValueError:
            raise ValueError(f"Bounds lb and ub must be scalars, have {n} elements like a row "
                             f"of x0, or have shape ({K}, {n}) like x0; got shapes {lb.shape} "
                             f"and {ub.shape}") from None
        if np.isnan(lower).any() or np.isnan(upper).any():
            raise ValueError("bounds must not hold NaN (use None or infinity for an open side)")
        crossed = np.argwhere(lower > upper)
        if crossed.size:
            k, i = crossed[0]
            raise ValueError(f"bounds are inconsistent: low > high for variable {i} of problem "
                             f"{k} ({lower[k, i]} > {upper[k, i]})")
        return lower, upper
    lower, upper = _normalize_bounds(bounds, n)
    return lower[None], upper[None]


def _split_per_problem(rule: rules.Rule, options: dict[str, Any], K: int
                       ) -> tuple[dict[str, Any], dict[str, list]]:
    """Options with each per-problem hyperparameter replaced by its first value, and those.

    A hyperparameter given with one more dimension than its default (``lr`` as
    K numbers, ``betas`` as K pairs) takes one value per problem; each value
    is checked as the option itself would be.
    """
    options = dict(options)
    per_problem: dict[str, list] = {}
    for name, default in rule.defaults.items():
        if name not in options or not _is_per_problem(options[name], default):
            continue
        label = f"options[{name!r}]"
        if name in rule.structural:
            raise ValueError(f"{label} chooses the rule's state arrays, so it must be one value "
                             f"for every problem; got {np.ndim(options[name])}-D values")
        array = np.asarray(_validate.not_masked(label, options[name]))
        if array.shape[0] != K:
            raise ValueError(f"{label} holds {array.shape[0]} values, one per problem, but x0 "
                             f"has K = {K} problems (rows); give one value for all of them or "
                             f"one per problem")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{label} given per problem must hold numbers, got dtype "
                            f"{array.dtype}" + ("; a schedule applies to every problem"
                                                if array.dtype.kind == "O" else ""))
        values = []
        for k, item in enumerate(array.tolist()):
            try:
                values.append(rule.check(name, tuple(item) if isinstance(item, list) else item))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{label}[{k}]: {exc}") from None
        per_problem[name] = values
        if values:
            options[name] = values[0]
        else:
            del options[name]
    return options, per_problem


def _is_per_problem(value: Any, default: Any) -> bool:
    if callable(value) or isinstance(value, (str, bytes)):
        return False
    try:
        return np.ndim(value) == np.ndim(default) + 1
    except ValueError:  # ragged: not per problem; the option's check will say what is wrong
        return False


def _batch_first_evaluation(fun: Callable, jac: Any, args: tuple, X: np.ndarray,
                            rows: np.ndarray | None) -> Any:
    """``fun`` (and ``jac``) of the batch ``X``, raw: ``(values, gradients or None)``.

    ``rows`` is None when ``fun`` sees every problem, else the problems it sees.
    """
    point, extra = (X.copy(), args) if rows is None else (X[rows], (rows, *args))
    if jac is True:
        out = fun(point, *extra)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError("with jac=True, fun must return a tuple (values, gradients); got "
                             f"{type(out).__name__}")
        return out
    value = fun(point, *extra)
    return value, (jac(point, *extra) if callable(jac) else None)


def _batch_evaluator(fun: Callable, jac: Any, args: tuple, K: int, n: int, dtype: np.dtype,
                     lower: np.ndarray | None, upper: np.ndarray | None, active_only: bool):
    """``evaluate(X, rows, raw=None) -> (values, gradients)`` and the per-problem ``nfev``.

    ``fun`` and ``jac`` see the ``(K, n)`` points (a copy of ``X``), or with
    ``active_only`` the rows ``rows`` of ``X`` and ``rows``.  The values
    (float64) and gradients (the iterate's dtype) have one row per problem
    ``fun`` saw.  The counter is None when every evaluation calls ``fun``
    once; with finite differences it is an int64 array counting, per
    problem, the calls of ``fun`` that evaluated it while it ran.
    """
    def points(X, rows):
        if active_only:
            return X[rows], (rows, *args)
        return X.copy(), args

    def checked(values, grads, m):
        if not (type(values) is np.ndarray and values.dtype == np.float64
                and values.shape == (m,)):
            values = _batch_values(values, m)
        if (type(grads) is not np.ndarray or grads.dtype != dtype or grads.shape != (m, n)
                or not grads.flags.c_contiguous):
            grads = _batch_gradients(grads, m, n, dtype)
        return values, grads

    if jac is True:
        def evaluate(X, rows, raw=None):
            point, extra = points(X, rows)
            if raw is None:
                raw = fun(point, *extra)
                if type(raw) is not tuple or len(raw) != 2:
                    raise ValueError("with jac=True, fun must return a tuple (values, "
                                     f"gradients); got {type(raw).__name__}")
            return checked(*raw, point.shape[0])
        return evaluate, None
    if callable(jac):
        def evaluate(X, rows, raw=None):
            point, extra = points(X, rows)
            if raw is None:
                raw = fun(point, *extra), jac(point, *extra)
            return checked(*raw, point.shape[0])
        return evaluate, None
    if jac is None or jac is False or (isinstance(jac, str) and jac in FD_SCHEMES):
        scheme = "2-point" if jac in (None, False) else jac
        counted = np.zeros(K, dtype=np.int64)

        def evaluate(X, rows, raw=None):
            point, extra = points(X, rows)
            m = point.shape[0]

            def call(Xp):
                counted[rows] += 1
                return _batch_values(fun(Xp, *extra), m)

            if raw is None:
                values = call(point.copy())
            else:
                counted[rows] += 1
                values = _batch_values(raw[0], m)
            low = up = None
            if lower is not None:
                selected = slice(None) if lower.shape[0] == 1 or not active_only else rows
                low = np.broadcast_to(lower[selected], (m, n))
                up = np.broadcast_to(upper[selected], (m, n))
            grads = _batch_differences(call, point, values, scheme, low, up)
            return values, np.ascontiguousarray(grads, dtype=dtype)
        return evaluate, counted
    raise ValueError(f"jac must be a callable, True, False, None, '2-point' or '3-point'; "
                     f"got {jac!r}")


def _batch_values(value: Any, m: int) -> np.ndarray:
    """``fun``'s values as a float64 array of shape ``(m,)``; refuse anything else."""
    if _is_real_scalar(value):
        raise ValueError(f"fun must return one value per problem (an array of shape ({m},)); "
                         f"it returned a scalar, {value!r}.  minimize_batch's fun takes the "
                         "(K, n) points and returns K values; nbadam.minimize takes one problem")
    array = np.asarray(_validate.not_masked("fun's value", value))
    if array.dtype.kind not in "biuf":
        raise ValueError(f"fun must return real values, got dtype {array.dtype}")
    if array.shape != (m,):
        raise ValueError(f"fun must return one value per problem, an array of shape ({m},); "
                         f"got shape {array.shape}")
    return np.array(array, dtype=np.float64)


def _batch_gradients(value: Any, m: int, n: int, dtype: np.dtype) -> np.ndarray:
    """Gradients as a contiguous ``(m, n)`` array of the iterate's dtype."""
    array = np.asarray(_validate.not_masked("jac's value", value))
    if array.dtype.kind not in "biuf":
        raise ValueError(f"jac must return a real array, got dtype {array.dtype}")
    if array.shape != (m, n):
        raise ValueError(f"jac must return one gradient per problem, an array of shape "
                         f"({m}, {n}) like x0; got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def _batch_differences(call: Callable, X: np.ndarray, f0: np.ndarray, scheme: str,
                       lower: np.ndarray | None, upper: np.ndarray | None) -> np.ndarray:
    """Finite-difference gradients of every row of ``X`` at once (float64, ``X``'s shape).

    :func:`scipy.optimize.approx_derivative` on each row, with its default
    steps and its handling of bounds, element by element: one call of
    ``call`` per coordinate (two with "3-point") moves that coordinate of
    every row, so each row gets the bits ``approx_derivative`` gives it alone.
    """
    m, n = X.shape
    eps = np.finfo(X.dtype).eps  # f0 is float64, so the step follows x0's dtype
    with np.errstate(all="ignore"):  # stopped rows may hold infinities: their rows are unused
        sign = (X >= 0).astype(float) * 2 - 1
        if scheme == "2-point":
            h = eps ** 0.5 * sign * np.maximum(1.0, np.abs(X))
            one_sided = np.ones((m, n), dtype=bool)
        else:
            h = np.abs(eps ** (1 / 3) * sign * np.maximum(1.0, np.abs(X)))
            one_sided = np.zeros((m, n), dtype=bool)
        if lower is not None:
            h, one_sided = _adjusted_steps(X, h, scheme, lower, upper, one_sided)
    grads = np.empty((m, n))
    for i in range(n):
        column, step = X[:, i], h[:, i]
        if scheme == "2-point":
            x1 = X.copy()
            x1[:, i] = column + step
            f1 = call(x1)
            with np.errstate(all="ignore"):
                grads[:, i] = (f1 - f0) / ((column + step) - column)
            continue
        sided = one_sided[:, i]
        x1, x2 = X.copy(), X.copy()
        with np.errstate(all="ignore"):
            x1[:, i] = np.where(sided, column + step, column - step)
            x2[:, i] = np.where(sided, column + 2 * step, column + step)
        f1 = call(x1)
        f2 = call(x2)
        with np.errstate(all="ignore"):
            dx = np.where(sided, x2[:, i] - column, x2[:, i] - x1[:, i])
            df = np.where(sided, -3.0 * f0 + 4 * f1 - f2, f2 - f1)
            grads[:, i] = df / dx
    return grads


def _adjusted_steps(X: np.ndarray, h: np.ndarray, scheme: str, lower: np.ndarray,
                    upper: np.ndarray, one_sided: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SciPy's adjustment of the steps ``h`` to the bounds (``_adjust_scheme_to_bounds``).

    Elementwise, so it applies to all rows at once; for an unbounded element
    it changes nothing, as SciPy's shortcut for an unbounded vector does.
    """
    adjusted = h.copy()
    lower_dist = X - lower
    upper_dist = upper - X
    if scheme == "2-point":
        x = X + h
        violated = (x < lower) | (x > upper)
        fitting = np.abs(h) <= np.maximum(lower_dist, upper_dist)
        adjusted[violated & fitting] *= -1
        forward = (upper_dist >= lower_dist) & ~fitting
        adjusted[forward] = upper_dist[forward]
        backward = (upper_dist < lower_dist) & ~fitting
        adjusted[backward] = -lower_dist[backward]
        return adjusted, one_sided
    one_sided = one_sided.copy()
    central = (lower_dist >= h) & (upper_dist >= h)
    forward = (upper_dist >= lower_dist) & ~central
    adjusted[forward] = np.minimum(h[forward], 0.5 * upper_dist[forward])
    one_sided[forward] = True
    backward = (upper_dist < lower_dist) & ~central
    adjusted[backward] = -np.minimum(h[backward], 0.5 * lower_dist[backward])
    one_sided[backward] = True
    min_dist = np.minimum(upper_dist, lower_dist)
    adjusted_central = ~central & (np.abs(adjusted) <= min_dist)
    adjusted[adjusted_central] = min_dist[adjusted_central]
    one_sided[adjusted_central] = False
    return adjusted, one_sided


def _wrap_batch_callback(callback: Callable | None) -> Callable | None:
    """``call(X, F, G, nit, active) -> stop`` in the two forms of :func:`_wrap_callback`.

    ``nit`` holds each problem's steps so far and ``active`` whether it still runs.
    """
    if callback is None:
        return None
    try:
        parameters = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        parameters = set()
    if parameters == {"intermediate_result"}:
        def call(X, F, G, nit, active):
            result = OptimizeResult(x=X.copy(), fun=F.copy(), jac=G.copy(), nit=nit,
                                    active=active)
            try:
                callback(intermediate_result=result)
            except StopIteration:
                return True
            return False
    else:
        def call(X, F, G, nit, active):
            try:
                callback(X.copy())
            except StopIteration:
                return True
            return False
    return call
