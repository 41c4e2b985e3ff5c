"""``minimize`` for the Adam family, with SciPy's contract.

:func:`minimize` has the signature and the result of
:func:`scipy.optimize.minimize`; :func:`scipy_method` plugs the same solver
into SciPy itself (``scipy.optimize.minimize(..., method=nbadam.scipy_method)``).
Both normalise their inputs and hand off to :func:`_minimize_adam_family`,
which validates the options once and runs one of two loops over the Numba
code of :mod:`nbadam._minimize_compiled`:

* the Python loop: evaluate ``fun``/``jac``, then one call of ``iterate``
  (record the point, decide whether to stop, update, project);
* the compiled loop (``run``), when ``fun`` and ``jac`` are Numba functions:
  the same steps with no Python per iteration.

The two loops give bit-identical results, and their updates are
bit-identical to those of the optimizer classes' ``step``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba.core.errors import NumbaError
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning
from scipy.optimize._numdiff import approx_derivative

from . import _minimize_compiled as _compiled
from . import _validate

__all__ = ["minimize", "scipy_method", "show_options", "METHODS"]

#: The update rules ``method`` selects (case-insensitive).
METHODS = ("adam", "adamw", "amsgrad", "nadam", "adamax", "radam")

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

_BETAS = (0.9, 0.999)
#: Each rule's own options and defaults (those of the matching ``torch.optim`` class).
RULE_OPTIONS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 1e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 0.0,
             "amsgrad": False, "decoupled_weight_decay": False},
    "adamw": {"lr": 1e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 1e-2,
              "amsgrad": False},
    "amsgrad": {"lr": 1e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 0.0,
                "decoupled_weight_decay": False},
    "nadam": {"lr": 2e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 0.0,
              "momentum_decay": 4e-3, "decoupled_weight_decay": False},
    "adamax": {"lr": 2e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 0.0},
    "radam": {"lr": 1e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 0.0,
              "decoupled_weight_decay": False},
}

_TITLES = {"adam": "Adam", "adamw": "AdamW: Adam with decoupled weight decay",
           "amsgrad": "AMSGrad: Adam with the running maximum of v", "nadam": "NAdam",
           "adamax": "Adamax", "radam": "RAdam"}

# Status codes, as documented in ``minimize``.
STATUS_MESSAGES = {
    _compiled.CONVERGED_GTOL: "Optimization terminated successfully: "
                              "the gradient's infinity norm is <= gtol.",
    _compiled.MAXITER_REACHED: "Maximum number of iterations has been exceeded.",
    _compiled.CONVERGED_FTOL: "Optimization terminated successfully: the function value "
                              "stayed within ftol of its lowest value over the last "
                              "ftol_window iterations.",
    _compiled.NONFINITE: "Stopped: the function value or the gradient is not finite "
                         "(NaN or infinity).",
    _compiled.CALLBACK_STOP: "`callback` raised `StopIteration`.",
}
_SUCCESS = (_compiled.CONVERGED_GTOL, _compiled.CONVERGED_FTOL)

#: Learning rates evaluated per call of the compiled loop (a schedule is Python).
_LR_CHUNK = 4096


def minimize(fun: Callable[..., Any], x0: Any, args: Any = (), method: str = "adam",
             jac: Callable[..., Any] | bool | str | None = None, bounds: Any = None,
             tol: float | None = None, callback: Callable[..., Any] | None = None,
             options: dict[str, Any] | None = None) -> OptimizeResult:
    r"""Minimize a scalar function of one or more variables with an Adam-family rule.

    The signature and the result are those of :func:`scipy.optimize.minimize`;
    the update rules are those of :mod:`torch.optim` (see :class:`nbadam.Adam`).

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``, with ``x`` a 1-D array.  With ``jac=True``
        it returns ``(f, g)``.
    x0 : array_like
        Starting point, converted to a 1-D float array (a copy: ``x0`` is never
        modified).  A float32 ``x0`` stays float32, so that ``fun`` sees float32
        arrays and the float32 kernels run; every other real dtype becomes float64.
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac`` (a single value is made a tuple).
    method : str, default "adam"
        One of "adam", "adamw", "amsgrad", "nadam", "adamax", "radam"
        (case-insensitive).
    jac : callable, bool, "2-point" or "3-point", optional
        The gradient: ``jac(x, *args) -> array`` of shape ``(n,)``; ``True`` when
        ``fun`` returns ``(f, g)`` (one call per step); ``None``, ``False``,
        "2-point" or "3-point" for finite differences
        (:func:`scipy.optimize.approx_derivative`; their calls count in ``nfev``).
    bounds : scipy.optimize.Bounds or sequence of (low, high), optional
        Box constraints (None or infinity for an open side).  ``x0`` is clipped
        into them and every step is projected back.
    tol : float, optional
        Sets the ``gtol`` option when that is not given.
    callback : callable, optional
        Called after each step, as ``callback(xk)`` or, when its only
        parameter is named ``intermediate_result``, as
        ``callback(intermediate_result=OptimizeResult(x=, fun=, jac=, nit=))``
        (the rule of :func:`scipy.optimize.minimize`).  Raising
        ``StopIteration`` ends the run with status 99.
    options : dict, optional
        The rule's hyperparameters, with ``torch.optim``'s names and defaults:
        ``lr`` (a number or an :mod:`nbadam.schedules` schedule; 1e-3, or
        2e-3 for NAdam and Adamax), ``betas``, ``eps``, ``weight_decay`` (1e-2
        for AdamW, else 0), ``amsgrad``, ``momentum_decay``,
        ``decoupled_weight_decay``; and the stopping rules: ``maxiter`` (1000),
        ``gtol`` (1e-5), ``ftol`` (2.2e-9), ``ftol_window`` (10),
        ``return_best`` (True), plus ``disp``, ``compiled`` and ``device``
        ("cuda" runs the loop on the GPU; see :doc:`/gpu`).
        :func:`show_options` describes each; unknown options give an
        :class:`~scipy.optimize.OptimizeWarning`.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``jac`` (the gradient at ``x``), ``nit`` (steps taken),
        ``nfev``, ``njev`` (gradient evaluations), ``status``, ``success`` and
        ``message``.

    Raises
    ------
    ValueError
        For an unknown ``method``, bad options, a non-finite or
        multi-dimensional ``x0``, inconsistent bounds, a ``fun`` that does not
        return a scalar or a ``jac`` that does not return ``n`` values.

    See Also
    --------
    show_options : the options of each method, as text.
    scipy_method : the same solver as a ``method`` of :func:`scipy.optimize.minimize`.

    Notes
    -----
    **Iteration and status.**  ``fun`` and the gradient are evaluated at
    ``x0`` and after every step; ``nit`` counts steps, so
    ``nfev = njev = nit + 1`` with an analytic gradient.  Every evaluated
    point goes through these tests, in this order; the first that holds ends
    the run with its ``status``:

    ======  =========================================================  =======
    status  condition                                                  success
    ======  =========================================================  =======
    99      the callback raised ``StopIteration``                      False
    3       ``fun`` or the gradient is NaN or infinite                 False
    0       ``max(abs(g)) <= gtol``                                    True
    2       over the last ``ftol_window`` steps, ``fun`` stayed        True
            within ``ftol * max(|f|, 1)`` of the lowest value seen
    1       ``maxiter`` steps have been taken                          False
    ======  =========================================================  =======

    ``x``, ``fun`` and ``jac`` are those of the last point when the run met
    ``gtol``; otherwise, with ``return_best`` (the default), those of the
    evaluated point with the lowest finite ``fun``, which after a non-finite
    stop is the last good point.

    **Updates.**  Each step is that of the optimizer class of the same name
    (:class:`nbadam.Adam`, ...), bit for bit; the state starts at zero and
    ``lr`` may follow a schedule.  The update runs the serial kernel: in a
    minimize loop ``fun`` and ``jac`` are the cost, and their BLAS threads
    would compete with a parallel update.  With ``bounds`` the iterate is
    clipped after each step (projected Adam); the moments are left as they are.

    **Stochastic objectives.**  For a minibatch loss, let ``fun`` draw a new
    batch on each call and return ``(loss, gradient)`` with ``jac=True``, so
    that the value and the gradient come from the same batch (with a separate
    ``jac`` they would not).  A noisy gradient is never small and a noisy
    value can stall by chance, so pass ``gtol=0`` and ``ftol=0``: the run then
    takes exactly ``maxiter`` steps (status 1), unless a callback raises
    ``StopIteration``, for instance when a validation loss stops improving.
    Pass ``return_best=False`` too, since the lowest minibatch loss is the
    luckiest batch, not the best point; a decaying ``lr`` schedule helps
    the last iterates settle::

        res = nbadam.minimize(batch_loss_and_grad, x0, jac=True, options={
            "lr": nbadam.schedules.exponential_decay(0.05, 0.5, 500),
            "gtol": 0, "ftol": 0, "return_best": False, "maxiter": 5000})

    **Compiled loop.**  When ``fun`` and ``jac`` are Numba ``@njit``
    functions (or ``fun`` is one and ``jac=True``), there is no callback and
    the ``args`` are Numba-typable, the whole loop runs in nopython mode and
    gives the same result, bit for bit, as the Python loop.  ``fun`` then
    receives the iterate itself rather than a copy, so it must not modify it.
    The first call compiles the loop for that ``fun`` (about a second).  A
    schedule ``lr`` is evaluated in Python, 4096 steps at a time, between
    calls of the compiled loop.  Finite differences always use the Python loop.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> from scipy.optimize import rosen, rosen_der
    >>> lr = nbadam.schedules.warmup_cosine_decay(0.05, 100, 5000, end_value=5e-6)
    >>> res = nbadam.minimize(rosen, [-1.2, 1.0], jac=rosen_der,
    ...                       options={"lr": lr, "maxiter": 5000})
    >>> res.success, res.status, np.round(res.x, 2)
    (True, 2, array([1., 1.]))
    >>> res.nfev == res.njev == res.nit + 1
    True

    A tighter stop, on the gradient alone, over a longer schedule:

    >>> lr = nbadam.schedules.warmup_cosine_decay(0.05, 100, 10_000, end_value=5e-6)
    >>> res = nbadam.minimize(rosen, [-1.2, 1.0], jac=rosen_der,
    ...                       options={"lr": lr, "maxiter": 10_000, "gtol": 1e-8, "ftol": 0})
    >>> res.status, np.round(res.x, 6)
    (0, array([1., 1.]))

    Finite differences, bounds and another rule:

    >>> res = nbadam.minimize(lambda x: np.sum((x - 3.0) ** 2), np.zeros(3),
    ...                       method="nadam", bounds=[(None, 2.0)] * 3,
    ...                       options={"lr": 0.1})
    >>> np.round(res.x, 6)
    array([2., 2., 2.])
    """
    rule = _method_name(method)
    options = _with_tol(options, tol)
    x0, args = _normalize(x0, args)
    return _minimize_adam_family(fun, x0, args, jac, callback, rule=rule, bounds=bounds,
                                 **options)


def scipy_method(fun: Callable[..., Any], x0: Any, args: Any = (),
                 jac: Callable[..., Any] | bool | None = None, hess: Any = None,
                 hessp: Any = None, bounds: Any = None, constraints: Any = (),
                 callback: Callable[..., Any] | None = None, **options: Any) -> OptimizeResult:
    """The Adam family as a custom ``method`` of :func:`scipy.optimize.minimize`.

    ``scipy.optimize.minimize(fun, x0, jac=..., method=nbadam.scipy_method,
    options={"rule": "adam", ...})`` gives the result of
    :func:`nbadam.minimize` with ``method=rule`` and the other options.

    Parameters
    ----------
    fun, x0, args, jac, bounds, callback
        As :func:`nbadam.minimize`.  SciPy passes ``jac=None`` for the
        finite-difference strings (so both mean "2-point" here) and, for
        ``jac=True``, a memoizing wrapper of ``fun``, which is unwrapped so that
        ``fun`` runs once per step.
    hess, hessp
        Not used (a RuntimeWarning when given, as SciPy's gradient methods do).
    constraints
        Must be empty: the Adam family handles bounds only.
    **options
        ``rule`` (a ``method`` of :func:`nbadam.minimize`, default "adam"), ``tol`` (which SciPy
        passes for its ``tol`` argument; it sets ``gtol``) and the options of
        :func:`nbadam.minimize`.

    Returns
    -------
    scipy.optimize.OptimizeResult
        As :func:`nbadam.minimize`.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> from scipy.optimize import minimize, rosen, rosen_der
    >>> opts = {"lr": 0.02, "maxiter": 5000}
    >>> ours = nbadam.minimize(rosen, [-1.2, 1.0], jac=rosen_der, method="nadam",
    ...                        options=opts)
    >>> theirs = minimize(rosen, [-1.2, 1.0], jac=rosen_der, method=nbadam.scipy_method,
    ...                   options={"rule": "nadam", **opts})
    >>> bool(np.array_equal(ours.x, theirs.x)), ours.nit == theirs.nit
    (True, True)
    """
    options = dict(options)
    rule = _method_name(options.pop("rule", "adam"), "rule")
    tol = options.pop("tol", None)
    options = _with_tol(options, tol)
    if not _is_empty(constraints):
        raise ValueError(f"the Adam family handles bounds, not constraints; got constraints="
                         f"{constraints!r}.  Use method='SLSQP' or 'trust-constr' for "
                         "constrained problems.")
    for name, value in (("hess", hess), ("hessp", hessp)):
        if value is not None:
            warnings.warn(f"nbadam.scipy_method does not use second-order information "
                          f"({name}); it is ignored.", RuntimeWarning,
                          stacklevel=_user_stacklevel())
    fun, jac = _unwrap_memoized(fun, jac)
    x0, args = _normalize(x0, args)
    return _minimize_adam_family(fun, x0, args, jac, callback, rule=rule, bounds=bounds,
                                 **options)


def show_options(method: str | None = None, disp: bool = True) -> str | None:
    """The options of one method of :func:`minimize`, or of all of them.

    Parameters
    ----------
    method : str, optional
        A ``method`` of :func:`minimize`; all of them when omitted.
    disp : bool, default True
        Print the text (and return None) rather than return it.

    Returns
    -------
    str or None
        The text, when ``disp`` is False.

    Examples
    --------
    >>> import nbadam
    >>> text = nbadam.show_options("adamax", disp=False)
    >>> print(text.splitlines()[0])
    Options for method "adamax" (Adamax)
    >>> "momentum_decay" in text, "lr : float or callable, default 0.002" in text
    (False, True)
    """
    rules = METHODS if method is None else (_method_name(method),)
    text = "\n\n".join(_options_text(rule) for rule in rules)
    if disp:
        print(text)
        return None
    return text


# -- the solver ---------------------------------------------------------------------------
def _minimize_adam_family(fun: Callable[..., Any], x0: np.ndarray, args: tuple,
                          jac: Any, callback: Callable[..., Any] | None, *, rule: str,
                          bounds: Any = None, **options: Any) -> OptimizeResult:
    """Minimize ``fun`` from a normalised ``x0`` with update rule ``rule``.

    ``x0`` is a fresh 1-D float32/float64 array (see :func:`_normalize`) that
    becomes the iterate, ``args`` a tuple; the other arguments are those of
    :func:`minimize`.  :func:`show_options` prints the section below, with
    each rule's defaults.

    Options
    -------
    lr : float or callable
        Learning rate (> 0), or a schedule ``count -> lr`` such as those of
        :mod:`nbadam.schedules`, called with the number of steps taken.
    betas : (float, float)
        Decay rates of the first and second moments, each in [0, 1).
    eps : float
        Added to the denominator for numerical stability (>= 0).
    weight_decay : float
        L2 penalty added to the gradient (>= 0), or the decoupled decay
        ``x *= 1 - lr * weight_decay`` for AdamW and with
        ``decoupled_weight_decay``.  Either moves the minimum.
    amsgrad : bool
        Normalise by the running maximum of the second moment.
    momentum_decay : float
        NAdam's momentum decay psi (>= 0).
    decoupled_weight_decay : bool
        Decay ``x`` directly, as AdamW, instead of adding an L2 term.
    maxiter : int
        Maximum number of steps (>= 0).
    gtol : float
        Stop when ``max(abs(g)) <= gtol`` (>= 0; 0 turns the test off).
        The ``tol`` argument of :func:`minimize` sets it.
    ftol : float
        Stop when the values of ``fun`` at the last ``ftol_window + 1``
        points lie within ``ftol * max(|f|, 1)`` of the lowest value seen:
        the run has settled, at the lowest level it reached (>= 0; 0 turns
        the test off).
    ftol_window : int
        Steps the ``ftol`` test looks back (>= 1).
    return_best : bool
        Unless the run met ``gtol``, return the evaluated point with the
        lowest ``fun`` rather than the last one (Adam does not decrease
        ``fun`` monotonically).
    disp : bool
        Print a summary at the end.
    compiled : bool or None
        Run the whole loop in nopython mode: None chooses it when ``fun``
        and ``jac`` are Numba functions and there is no callback, True
        requires it, False never uses it.
    device : str
        "cpu", or "cuda" to keep the iterate, the state and the gradient on
        the GPU: ``fun(x, *args)`` and ``jac(x, *args)`` then receive a
        device array and return a real number and a device gradient (Numba,
        CuPy, PyTorch CUDA).  Needs a callable ``jac`` or ``jac=True``; no
        ``bounds`` and no ``compiled=True``.  A callback gets a host copy
        of ``x`` at each call.  The GPU page of the documentation has more.
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {fun!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    opts = _parse_options(rule, options)
    if opts["device"] == "cuda":
        from . import _minimize_device
        _minimize_device.check(jac, bounds, opts)
        return _minimize_device.run(fun, x0, args, jac, callback, rule, opts)
    n, dtype = x0.size, x0.dtype
    lower, upper = _normalize_bounds(bounds, n)
    x = x0
    loop = _Loop.pack(rule, opts, n, dtype, lower, upper)
    if lower is not None:
        _compiled.project(x, loop.bounds[0], loop.bounds[1])

    evaluate, counted = _evaluator(fun, jac, args, n, dtype, lower, upper)
    raw = _first_evaluation(fun, jac, args, x)
    f, g = evaluate(x, raw)
    use_compiled = _choose_compiled(opts["compiled"], fun, jac, callback, raw)
    result = None
    if use_compiled:
        result = _run_compiled(loop, fun, jac, args, x, f, g, strict=opts["compiled"] is True)
    if result is None:
        result = _run_python(loop, evaluate, _wrap_callback(callback), x, f, g)
    status, nit, f, g = result

    nfev = nit + 1 if counted is None else counted[0]
    # A run that met gtol returns the point that met it, which is what its message says.
    best_f = float(loop.scalars[_compiled.BEST_F])
    if opts["return_best"] and status != _compiled.CONVERGED_GTOL and best_f < math.inf:
        x, f, g = loop.best[0], best_f, loop.best[1]
    res = OptimizeResult(x=x.copy(), fun=f, jac=np.array(g, copy=True), nit=nit, nfev=nfev,
                         njev=nit + 1, status=status, success=status in _SUCCESS,
                         message=STATUS_MESSAGES[status])
    if opts["disp"]:
        _print_summary(res)
    return res


@dataclasses.dataclass
class _Loop:
    """The packed arrays both loops hand to the Numba code, and the learning rate."""

    state: np.ndarray      # optimizer state rows (exp_avg, ...), the iterate's dtype
    best: np.ndarray       # best point and its gradient, or (2, 0) without return_best
    bounds: np.ndarray     # lower and upper bounds, or (2, 0) without bounds
    scalars: np.ndarray    # float64: hyperparameters, running scalars, ftol history
    settings: np.ndarray   # int64: rule, maxiter, ftol_window, return_best, bounded
    lr: Any                # a number or a schedule
    maxiter: int

    @classmethod
    def pack(cls, rule: str, opts: dict[str, Any], n: int, dtype: np.dtype,
             lower: np.ndarray | None, upper: np.ndarray | None) -> _Loop:
        c = _compiled
        code = c.AMSGRAD if rule == "amsgrad" or opts.get("amsgrad") else c.RULE_CODES[rule]
        decoupled = rule == "adamw" or opts.get("decoupled_weight_decay", False)
        scalars = np.zeros(c.HISTORY + opts["ftol_window"] + 1)
        scalars[[c.BETA1, c.BETA2]] = opts["betas"]
        scalars[c.EPS] = opts["eps"]
        scalars[c.WEIGHT_DECAY] = opts["weight_decay"]
        scalars[c.DECOUPLED] = float(decoupled)
        scalars[c.MOMENTUM_DECAY] = opts.get("momentum_decay", 0.0)
        scalars[c.GTOL] = opts["gtol"]
        scalars[c.FTOL] = opts["ftol"]
        scalars[c.HALF] = 0.5
        scalars[c.MU_PRODUCT] = 1.0
        scalars[c.BEST_F] = math.inf
        settings = np.zeros(c.SETTINGS_SIZE, dtype=np.int64)
        settings[c.RULE] = code
        settings[c.MAXITER] = opts["maxiter"]
        settings[c.FTOL_WINDOW] = opts["ftol_window"]
        settings[c.RETURN_BEST] = opts["return_best"]
        settings[c.BOUNDED] = lower is not None
        bounds = (np.empty((2, 0), dtype) if lower is None
                  else np.stack([lower, upper]).astype(dtype))
        return cls(state=np.zeros((len(c.STATE_NAMES[code]), n), dtype),
                   best=np.zeros((2, n if opts["return_best"] else 0), dtype),
                   bounds=bounds, scalars=scalars, settings=settings, lr=opts["lr"],
                   maxiter=opts["maxiter"])


def _run_python(loop: _Loop, evaluate: Callable, callback: Callable | None,
                x: np.ndarray, f: float, g: np.ndarray) -> tuple[int, int, float, np.ndarray]:
    """The Python loop: evaluate, then one call of ``iterate`` per step."""
    iterate = _compiled.iterate
    state, best, bounds, scalars, settings = (loop.state, loop.best, loop.bounds, loop.scalars,
                                              loop.settings)
    schedule = loop.lr if callable(loop.lr) else None
    lr, maxiter = loop.lr, loop.maxiter
    nit, stop = 0, False
    while True:
        if schedule is not None:
            lr = _validate.scheduled_lr(schedule, nit) if nit < maxiter else 0.0
        status = iterate(x, g, f, lr, nit, stop, state, best, bounds, scalars, settings)
        if status != _compiled.CONTINUE:
            return status, nit, f, g
        nit += 1
        f, g = evaluate(x)
        if callback is not None:
            stop = callback(x, f, g, nit)


def _run_compiled(loop: _Loop, fun: Callable, jac: Any, args: tuple, x: np.ndarray, f: float,
                  g: np.ndarray, strict: bool) -> tuple[int, int, float, np.ndarray] | None:
    """The compiled loop, chunk by chunk of learning rates; None if it does not compile."""
    g = np.array(g, dtype=x.dtype, copy=True)
    jac = None if jac is True else jac
    update = _compiled.UPDATES[loop.settings[_compiled.RULE]]
    schedule = loop.lr if callable(loop.lr) else None
    nit = 0
    while True:
        count = min(_LR_CHUNK, loop.maxiter - nit)
        if schedule is None:
            lrs = np.full(count, loop.lr)
        else:
            lrs = np.array([_validate.scheduled_lr(schedule, k) for k in range(nit, nit + count)],
                           dtype=np.float64)
        try:
            status, nit, f = _compiled.run(fun, jac, update, args, x, g, f, lrs, nit, loop.state,
                                           loop.best, loop.bounds, loop.scalars, loop.settings)
        except NumbaError as exc:  # raised while compiling, before any step
            if strict:
                raise TypeError(f"compiled=True, but the loop does not compile for this fun, "
                                f"jac and args: {exc}") from None
            return None
        if status == _compiled.WRONG_JAC:
            raise ValueError(f"jac must return a gradient of shape ({x.size},) like x0; at "
                             f"iteration {nit} it returned another size")
        if status != _compiled.NEED_LR:
            return status, nit, f, g


def _choose_compiled(choice: bool | None, fun: Callable, jac: Any,
                     callback: Callable | None, raw: Any) -> bool:
    """Whether to run the compiled loop; raise if ``compiled=True`` cannot be honoured."""
    if choice is False:
        return False
    reasons = []
    if not _compiled.is_compiled(fun):
        reasons.append("fun is not a Numba @njit function")
    if not (jac is True or _compiled.is_compiled(jac)):
        reasons.append("jac is neither True nor a Numba @njit function")
    if callback is not None:
        reasons.append("a callback is given")
    if not reasons:
        value, grad = raw
        if not (_is_real_scalar(value) and isinstance(grad, np.ndarray) and grad.ndim == 1):
            reasons.append("fun does not return a number, or jac a 1-D array")
    if reasons and choice:
        raise ValueError("compiled=True needs a Numba fun, a Numba jac (or jac=True) and no "
                         "callback; here " + "; ".join(reasons))
    return not reasons


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
    # The common case (a float and a ready gradient) is checked inline: this
    # runs once per step of the Python loop.
    shape = (n,)
    if jac is True:
        def evaluate(x, raw=None):
            if raw is None:
                raw = fun(x.copy(), *args)
                if type(raw) is not tuple or len(raw) != 2:
                    raise ValueError("with jac=True, fun must return a tuple (f, g); got "
                                     f"{type(raw).__name__}")
            f, g = raw
            if type(f) is not float:
                f = _scalar(f)
            if (type(g) is not np.ndarray or g.dtype != dtype or g.shape != shape
                    or not g.flags.c_contiguous):
                g = _gradient(g, n, dtype)
            return f, g
        return evaluate, None
    if callable(jac):
        def evaluate(x, raw=None):
            if raw is None:
                xk = x.copy()
                f, g = fun(xk, *args), jac(xk, *args)
            else:
                f, g = raw
            if type(f) is not float:
                f = _scalar(f)
            if (type(g) is not np.ndarray or g.dtype != dtype or g.shape != shape
                    or not g.flags.c_contiguous):
                g = _gradient(g, n, dtype)
            return f, g
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
    array = np.atleast_1d(np.asarray(value))
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
    if isinstance(method, str) and method.lower() in METHODS:
        return method.lower()
    raise ValueError(f"unknown {name} {method!r}; nbadam.minimize's methods are "
                     f"{', '.join(map(repr, METHODS))}")


def _with_tol(options: dict[str, Any] | None, tol: float | None) -> dict[str, Any]:
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    options = dict(options or {})
    if tol is not None:
        options.setdefault("gtol", tol)
    return options


def _normalize(x0: Any, args: Any) -> tuple[np.ndarray, tuple]:
    """``x0`` as a fresh 1-D float array (float32 kept), ``args`` as a tuple."""
    x = np.atleast_1d(np.asarray(x0))
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


def _parse_options(rule: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate the options of ``rule`` (defaults filled in); warn about unknown ones."""
    defaults = {**RULE_OPTIONS[rule], **COMMON_OPTIONS}
    options = dict(options)
    device = _validate.device(options.pop("device", "cpu"))
    unknown = [name for name in options if name not in defaults]
    if unknown:
        warnings.warn(f"Unknown solver options: {', '.join(map(str, unknown))} (method "
                      f"{rule!r} takes {', '.join(defaults)})", OptimizeWarning,
                      stacklevel=_user_stacklevel())
    opts = {**defaults, **{k: v for k, v in options.items() if k in defaults}}
    opts["lr"] = _validate.learning_rate(opts["lr"])
    opts["betas"] = _validate.betas(opts["betas"])
    for name in ("eps", "weight_decay", "momentum_decay", "gtol", "ftol"):
        if name in opts:
            opts[name] = _validate.nonnegative(name, opts[name])
    for name in ("amsgrad", "decoupled_weight_decay", "return_best"):
        if name in opts:
            opts[name] = _validate.flag(name, opts[name])
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


# -- output ------------------------------------------------------------------------------
def _options_text(rule: str) -> str:
    """The Options section of :func:`_minimize_adam_family` for ``rule``, with its defaults."""
    defaults = {**RULE_OPTIONS[rule], **COMMON_OPTIONS}
    lines = [f'Options for method "{rule}" ({_TITLES[rule]})', "-" * 40]
    for name, kind, description in _option_entries():
        if name in defaults:
            lines.append(f"{name} : {kind + ', ' if kind else ''}default {defaults[name]!r}")
            lines.extend(description)
    return "\n".join(lines)


def _option_entries() -> list[tuple[str, str, list[str]]]:
    """``(name, type, description lines)`` from the Options section of the solver's docstring."""
    doc = _minimize_adam_family.__doc__
    if doc is None:  # python -OO strips docstrings: names only
        names = dict.fromkeys([*RULE_OPTIONS["adam"], *RULE_OPTIONS["nadam"], *COMMON_OPTIONS])
        return [(name, "", []) for name in names]
    section = inspect.cleandoc(doc).split("Options\n-------\n", 1)[1]
    entries = []
    for line in section.splitlines():
        if line and not line.startswith(" "):
            name, _, kind = line.partition(" : ")
            entries.append((name, kind, []))
        elif line.strip():
            entries[-1][2].append(line)
    return entries


def _print_summary(res: OptimizeResult) -> None:
    print(("" if res.success else "Warning: ") + res.message)
    print(f"         Current function value: {res.fun:f}")
    print(f"         Iterations: {res.nit:d}")
    print(f"         Function evaluations: {res.nfev:d}")
    print(f"         Gradient evaluations: {res.njev:d}")
