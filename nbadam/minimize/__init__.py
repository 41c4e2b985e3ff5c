"""``minimize`` for the Adam family, with SciPy's contract.

:func:`minimize` has the signature and the result of
:func:`scipy.optimize.minimize`; :func:`scipy_method` plugs the same solver
into SciPy itself (``scipy.optimize.minimize(..., method=nbadam.scipy_method)``).
Both normalise their inputs (:mod:`._inputs`: options,
``x0``, bounds, the ``fun``/``jac`` evaluator) and hand off to
:func:`_minimize_adam_family`, which validates the options once and runs one
of two loops over the Numba code of :mod:`._compiled` (or, with
``options={"device": "cuda"}``, the GPU loop of :mod:`._device`):

* the Python loop: evaluate ``fun``/``jac``, then one call of ``iterate``
  (record the point, decide whether to stop, update, project);
* the compiled loop (``run``), when ``fun`` and ``jac`` are Numba functions:
  the same steps with no Python per iteration.

The two loops give bit-identical results, and their updates are
bit-identical to those of the optimizer classes' ``step``.

:func:`minimize_batch` runs K independent problems in one call, with the
same pieces row by row (:mod:`._batch`; its GPU loop is :mod:`._batch_device`),
so that row ``k`` is what :func:`minimize` gives on problem ``k`` alone.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numba.core.errors import NumbaError
from scipy.optimize import OptimizeResult

from .. import _launch, _validate, rules
from ..optimizers import _compact
from . import _batch, _compiled, _status
from ._inputs import (
    COMMON_OPTIONS,
    _choose_compiled,
    _evaluator,
    _first_evaluation,
    _is_empty,
    _is_real_scalar,
    _method_name,
    _normalize,
    _normalize_batch,
    _normalize_bounds,
    _parse_options,
    _unwrap_memoized,
    _user_stacklevel,
    _with_tol,
    _wrap_callback,
)

__all__ = ["minimize", "minimize_batch", "scipy_method", "show_options"]


def __getattr__(name: str) -> Any:
    # METHODS is read from the registry, so that a rule registered later is listed.
    if name == "METHODS":
        return rules.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        The name of a registered rule (case-insensitive): one of
        ``nbadam.rules.names()``, which lists the built-in rules and any
        registered since.
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
        The rule's hyperparameters, with the names and defaults of its
        optimizer class (``torch.optim``'s): ``lr`` (a number or an
        :mod:`nbadam.schedules` schedule), ``betas``, ``eps``,
        ``weight_decay``, ``decoupled_weight_decay`` and the rule's own (see
        :func:`show_options`); and the stopping rules: ``maxiter`` (1000),
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

    **Schedule-free rules** (whose update has an ``evaluation`` point) take their
    gradients at ``y`` and average the iterates into ``x``: ``fun`` and
    ``jac`` are evaluated at ``y`` (the point the callback gets) and the
    stopping tests use those values, at no extra cost; the result's ``x`` is
    the averaged point (projected onto the bounds, if any), and its ``fun``
    and ``jac`` are evaluated there once more at the end (counted in
    ``nfev`` and ``njev``, which are then ``nit + 2``).  ``return_best``
    does not apply to them: the average is the answer.

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
    calls of the compiled loop.  Finite differences always use the Python loop,
    and so does a schedule that also sets beta1 (``schedules.one_cycle`` with
    ``cycle_momentum``): the compiled loop takes the hyperparameters once, so
    the per-step beta1 is given where the Python loop calls the update.

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

    Finite differences and bounds:

    >>> res = nbadam.minimize(lambda x: np.sum((x - 3.0) ** 2), np.zeros(3),
    ...                       bounds=[(None, 2.0)] * 3, options={"lr": 0.1})
    >>> np.round(res.x, 6)
    array([2., 2., 2.])
    """
    rule = _method_name(method)
    options = _with_tol(options, tol)
    x0, args = _normalize(x0, args)
    return _minimize_adam_family(fun, x0, args, jac, callback, rule=rule, bounds=bounds,
                                 **options)


def minimize_batch(fun: Callable[..., Any], x0: Any, args: Any = (), method: str = "adam",
                   jac: Callable[..., Any] | bool | str | None = None, bounds: Any = None,
                   tol: float | None = None, callback: Callable[..., Any] | None = None,
                   options: dict[str, Any] | None = None) -> OptimizeResult:
    r"""Minimize K independent problems at once, each as :func:`minimize` would.

    Row ``k`` of ``x0`` is the start of problem ``k``; ``fun`` evaluates
    all the problems in one call.  Each problem takes the steps
    :func:`minimize` takes on it alone, bit for bit (the same points,
    ``nit`` and ``status``), and stops by itself; a stopped problem no
    longer moves while the others go on.

    Parameters
    ----------
    fun : callable
        ``fun(X, *args) -> values``, with ``X`` the ``(K, n)`` points, one
        row per problem, returning the K values (an array of shape
        ``(K,)``).  With ``jac=True`` it returns ``(values, gradients)``.
        Row ``k`` of the result must depend on row ``k`` of ``X`` only.
    x0 : array_like, shape (K, n)
        The starts, converted to a 2-D float array (a copy; float32 stays
        float32, every other real dtype becomes float64).
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac`` (a single value is made a tuple).
    method : str, default "adam"
        A method of :func:`minimize` (one of ``nbadam.rules.names()``).
    jac : callable, bool, "2-point" or "3-point", optional
        ``jac(X, *args) -> gradients`` of shape ``(K, n)``; ``True`` when
        ``fun`` returns ``(values, gradients)``; ``None``, ``False``,
        "2-point" or "3-point" for finite differences, which move one
        coordinate of every row per call of ``fun`` (n calls per step, 2n
        with "3-point") and give each problem the gradient
        :func:`scipy.optimize.approx_derivative` gives it alone.
    bounds : scipy.optimize.Bounds or sequence of (low, high), optional
        As :func:`minimize`, for every problem; or a ``Bounds`` whose ``lb``
        and ``ub`` have shape ``(K, n)`` (or ``(K, 1)``), one box per problem.
    tol : float, optional
        Sets the ``gtol`` option when that is not given.
    callback : callable, optional
        Called after each step, as ``callback(X)`` with the ``(K, n)``
        points or, when its only parameter is named ``intermediate_result``,
        with an :class:`~scipy.optimize.OptimizeResult` holding ``x``,
        ``fun``, ``jac``, ``nit`` (per problem) and ``active`` (whether each
        problem still runs).  Raising ``StopIteration`` stops every running
        problem with status 99.
    options : dict, optional
        The options of :func:`minimize` (see :func:`show_options`), each with
        the same meaning for every problem.  The rule's hyperparameters
        (``lr``, ``betas``, ``eps``, ...) may also be given per problem, as an
        array of K values (K pairs for ``betas``): one call can sweep a
        hyperparameter.  Only a flag that chooses the rule's state arrays
        (a structural hyperparameter, see :class:`nbadam.rules.Rule`) must
        be one value.  And:

        ``active_only`` : bool, default False
            Call ``fun`` and ``jac`` with the running problems only, as
            ``fun(X[rows], rows, *args)`` (``rows`` the int64 indices of the
            problems still running), rather than with all K rows.
        ``parallel`` : bool or None, default None
            Run the loops over problems in parallel, one chunk of problems
            per thread: None chooses it for large batches (see Notes), True
            or False forces the choice.  With ``active_only=True`` and the
            compiled loop, True runs each thread's share of the problems to
            its end, ``fun`` called from every thread at once (see Notes).
        ``device`` : str, default "cpu"
            "cuda" keeps the points, the state and the gradients on the GPU
            (see Notes).

    Returns
    -------
    scipy.optimize.OptimizeResult
        Its fields hold one entry per problem: ``x`` (K, n), ``fun`` (K,),
        ``jac`` (K, n), ``nit``, ``nfev``, ``njev`` and ``status`` (K,) int64,
        ``success`` (K,) bool, ``message`` (K,) str, each as the result of
        :func:`minimize` on that problem.  ``res.problem(k)`` is problem
        ``k``'s own :class:`~scipy.optimize.OptimizeResult`, as
        :func:`minimize` returns it.

    Raises
    ------
    ValueError
        As :func:`minimize`, and for an ``x0`` that is not 2-D, a ``fun``
        that does not return K values (or ``jac`` K gradients), or
        per-problem options of the wrong length; nothing is run or changed.

    See Also
    --------
    minimize : one problem.

    Notes
    -----
    **Stopped problems.**  By default ``fun`` receives all K rows at every
    step; the rows of problems that have stopped hold their last point and
    their values are ignored.  Passing every row keeps the shapes fixed, so
    ``fun`` can index its per-problem data (``args``) by row, and costs
    nothing when the problems stop at about the same time.  When they stop
    at very different times and ``fun`` is the cost, ``active_only=True``
    evaluates only the running problems.

    **Compiled loop.**  When ``fun`` and ``jac`` are Numba ``@njit``
    functions of the batch (or ``fun`` is one and ``jac=True``) and there is
    no callback, the whole loop runs in nopython mode, with the same
    results; ``fun`` then receives the iterate itself, not a copy.  The
    first call compiles the loop for that ``fun`` (a few seconds).
    ``compiled`` is as for :func:`minimize`.

    **Parallel.**  With ``parallel=None`` batches of at least 100,000
    problems (``nbadam.minimize._batch.PARALLEL_MIN_PROBLEMS``) and 65,536
    elements run the loops over problems in parallel, which gives the same
    results; ``fun`` parallelises its own work, if it likes (a Numba
    ``prange`` over the rows).  With ``parallel=True``, ``active_only=True``
    and the compiled loop, the problems are split in one consecutive share
    per Numba thread (``numba.get_num_threads()``), and each thread runs the
    whole loop on its share, calling ``fun(X[rows], rows, *args)`` with the
    running problems of that share only: the threads never wait for each
    other, and the results are those of one thread, bit for bit.  ``fun``
    and ``jac`` are then called from several threads at once, so they must
    not write to anything they share (a Numba function that only reads its
    arguments and returns new arrays is safe); a callable ``lr`` is called
    by each thread, for the steps of its share.

    **GPU.**  With ``device="cuda"``, ``fun`` and ``jac`` receive a ``(K, n)``
    device array; ``fun`` returns the K values (a host or device array) and
    ``jac`` a ``(K, n)`` device array (Numba, CuPy, PyTorch CUDA).  Needs a
    callable ``jac`` or ``jac=True``, no ``bounds``, no ``active_only``.
    When the problems share their hyperparameters, each step is one launch
    of the rule's kernel over the K * n elements (a masked launch once some
    problems have stopped).

    Examples
    --------
    Three shifted quadratics, one per row:

    >>> import numpy as np
    >>> import nbadam
    >>> centers = np.array([[1.0, 2.0], [-1.0, 0.5], [3.0, 3.0]])
    >>> def f(X, c):
    ...     return np.sum((X - c) ** 2, axis=1)
    >>> def grad(X, c):
    ...     return 2.0 * (X - c)
    >>> res = nbadam.minimize_batch(f, np.zeros((3, 2)), args=(centers,), jac=grad,
    ...                             options={"lr": 0.1})
    >>> res.success, np.round(res.x, 4)
    (array([ True,  True,  True]), array([[ 1. ,  2. ],
           [-1. ,  0.5],
           [ 3. ,  3. ]]))

    Each row is what :func:`minimize` gives on that problem alone:

    >>> one = nbadam.minimize(lambda x: np.sum((x - centers[1]) ** 2), np.zeros(2),
    ...                       jac=lambda x: 2.0 * (x - centers[1]), options={"lr": 0.1})
    >>> bool(np.array_equal(res.x[1], one.x)), int(res.nit[1]) == one.nit
    (True, True)
    >>> res.problem(1).status == one.status
    True

    A learning rate per problem: the smallest runs out of steps (status 1).

    >>> res = nbadam.minimize_batch(f, np.zeros((3, 2)), args=(centers,), jac=grad,
    ...                             options={"lr": [0.01, 0.1, 0.5], "maxiter": 200})
    >>> res.status.tolist(), res.nit.tolist()
    ([1, 2, 0], [200, 196, 181])
    """
    rule = _method_name(method)
    options = _with_tol(options, tol)
    X, args = _normalize_batch(x0, args)
    return _batch.minimize_batch(fun, X, args, jac, callback, rules.get(rule), bounds, options)


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
    >>> ours = nbadam.minimize(rosen, [-1.2, 1.0], jac=rosen_der, method="adam",
    ...                        options=opts)
    >>> theirs = minimize(rosen, [-1.2, 1.0], jac=rosen_der, method=nbadam.scipy_method,
    ...                   options={"rule": "adam", **opts})
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
    >>> text = nbadam.show_options("adam", disp=False)
    >>> print(text.splitlines()[0])
    Options for method "adam" (Adam)
    >>> "momentum_decay" in text, "lr : float or callable, default 0.001" in text
    (False, True)
    """
    chosen = rules.names() if method is None else (_method_name(method),)
    text = "\n\n".join(_options_text(rules.get(name)) for name in chosen)
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
    each rule's defaults, and the rule's own options as its
    :attr:`~nbadam.rules.Rule.docs` describe them.

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
        ``x *= 1 - lr * weight_decay`` where the rule decouples it (always,
        or with ``decoupled_weight_decay``).  Either moves the minimum.
    decoupled_weight_decay : bool
        Decay ``x`` directly instead of adding an L2 term.
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
    clip_grad_norm : float or None
        Before each step, scale the gradient by
        ``min(1, clip_grad_norm / (norm + 1e-6))``, ``norm`` its L2 norm, as
        ``torch.nn.utils.clip_grad_norm_`` and the optimizers'
        ``clip_grad_norm`` do (>= 0; None does not clip).  Only the step
        sees the scaled gradient: ``gtol``, ``jac`` in the result and the
        callback see the gradient ``jac`` returned.
    state_precision : str
        "float32", or "bfloat16" or "8bit" (float32 ``x0`` only) to keep the
        rule's moments as bfloat16 or blockwise 8-bit codes, as the
        optimizers' ``state_precision``.
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {fun!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    rule = rules.get(rule, "method")
    opts = _parse_options(rule, options)
    if opts["device"] == "cuda":
        from . import _device
        _device.check(jac, bounds, opts)
        return _device.run(fun, x0, args, jac, callback, rule, opts)
    n, dtype = x0.size, x0.dtype
    lower, upper = _normalize_bounds(bounds, n)
    x = x0
    loop = _Loop.pack(rule, opts, n, dtype, lower, upper)
    if lower is not None:
        _compiled.project(x, loop.bounds[0], loop.bounds[1])
    loop.start_at(x)

    evaluate, counted = _evaluator(fun, jac, args, n, dtype, lower, upper)
    raw = _first_evaluation(fun, jac, args, x)
    f, g = evaluate(x, raw)
    value, grad = raw
    returns = (None if _is_real_scalar(value) and isinstance(grad, np.ndarray) and grad.ndim == 1
               else "fun does not return a number, or jac a 1-D array")
    use_compiled = _choose_compiled(opts["compiled"], fun, jac, callback, returns, opts["lr"])
    result = None
    if use_compiled:
        result = _run_compiled(loop, fun, jac, args, x, f, g, strict=opts["compiled"] is True)
    if result is None:
        result = _run_python(loop, evaluate, _wrap_callback(callback), x, f, g)
    status, nit, f, g = result

    njev = nit + 1
    best_f = float(loop.scalars[_compiled.BEST_F])
    if loop.update.evaluation is not None:
        # A schedule-free rule reports its averaged point, and fun and jac there: one
        # more evaluation.  The stopping tests saw fun and jac where the steps took them.
        x = loop.evaluation_point(x, nit)
        f, g = evaluate(x)
        njev += 1
    elif opts["return_best"] and status != _status.CONVERGED_GTOL and best_f < math.inf:
        # A run that met gtol returns the point that met it, which is what its message says.
        x, f, g = loop.best[0], best_f, loop.best[1]
    nfev = njev if counted is None else counted[0]
    res = _status.result(x.copy(), f, np.array(g, copy=True), nit, nfev, njev, status)
    if opts["disp"]:
        _status.print_summary(res)
    return res


@dataclasses.dataclass
class _Loop:
    """What both loops hand to the Numba code, and the learning rate."""

    loops: _compiled.Loops  # the rule's compiled update and iterate
    state: tuple           # the update's state arrays, the iterate's dtype
    hyper: tuple           # the rule's hyperparameters (Rule.hyper)
    running: np.ndarray    # the rule's running scalars (float64)
    best: np.ndarray       # best point and its gradient, or (2, 0) without return_best
    bounds: np.ndarray     # lower and upper bounds, or (2, 0) without bounds
    scalars: np.ndarray    # float64: the loop's scalars and the ftol history
    settings: np.ndarray   # int64: maxiter, ftol_window, return_best, bounded
    lr: Any                # a number or a schedule
    maxiter: int
    work: np.ndarray       # the clipped gradient (clip_grad_norm), or empty: no clipping
    max_norm: float        # clip_grad_norm (infinity without clipping)
    update: rules.Update   # the update the loops run

    def start_at(self, x: np.ndarray) -> None:
        """Copy the start point into the state arrays that start at the parameters."""
        for name in self.update.from_params:
            self.state[self.update.state.index(name)][...] = x

    def evaluation_point(self, x: np.ndarray, nit: int) -> np.ndarray:
        """The update's evaluation point (schedule-free's average) from ``x`` and the state,
        projected onto the bounds; a new array."""
        evaluation = self.update.evaluation
        out = x.copy()
        values = evaluation.scalars(self.hyper, self.running.copy(), 0.0, nit)
        scalars = values if x.dtype == np.float64 else tuple(np.asarray(values, x.dtype))
        _launch.step(evaluation, out.size, out, out, self.update.evaluation_state(self.state),
                     scalars)
        if self.bounds.shape[1]:
            _compiled.project(out, self.bounds[0], self.bounds[1])
        return out

    @classmethod
    def pack(cls, rule: rules.Rule, opts: dict[str, Any], n: int, dtype: np.dtype,
             lower: np.ndarray | None, upper: np.ndarray | None) -> _Loop:
        hyper = {name: opts[name] for name in rule.defaults}
        update = rule.update(hyper)
        scalars, settings = _compiled.pack(opts, n, lower is not None)
        bounds = (np.empty((2, 0), dtype) if lower is None
                  else np.stack([lower, upper]).astype(dtype))
        precision = _compact.check(opts["state_precision"], update, dtype,
                                   f"method {rule.name!r}")
        flags = _compact.flags(update, precision)
        compact = (precision, flags) if any(flags) else None
        starts = update.initial_values(rule.hyper(hyper))
        stored = _compact.to_stored(update, precision, {
            name: np.full(n, start, dtype) for name, start in zip(update.state, starts,
                                                                  strict=True)},
            [(0, n)], dtype)
        return cls(loops=_compiled.loops(update, compact),
                   state=tuple(stored[name] for name in _compact.stored_names(update,
                                                                              precision)),
                   hyper=rule.hyper(hyper),
                   running=np.array(rule.initial_running(rule.hyper(hyper)), dtype=np.float64),
                   best=np.zeros((2, n if opts["return_best"] else 0), dtype),
                   bounds=bounds, scalars=scalars, settings=settings, lr=opts["lr"],
                   maxiter=opts["maxiter"],
                   work=np.empty(0 if opts["clip_grad_norm"] is None else n, dtype),
                   max_norm=(math.inf if opts["clip_grad_norm"] is None
                             else float(opts["clip_grad_norm"])),
                   update=update)


def _run_python(loop: _Loop, evaluate: Callable, callback: Callable | None,
                x: np.ndarray, f: float, g: np.ndarray) -> tuple[int, int, float, np.ndarray]:
    """The Python loop: evaluate, then one call of ``iterate`` per step."""
    iterate = loop.loops.iterate
    state, best, bounds, hyper, running, scalars, settings = (
        loop.state, loop.best, loop.bounds, loop.hyper, loop.running, loop.scalars,
        loop.settings)
    schedule = loop.lr if callable(loop.lr) else None
    lr, maxiter = loop.lr, loop.maxiter
    sets_beta1 = schedule is not None and _validate.scheduled_beta1(schedule, 0) is not None
    nit, stop = 0, False
    while True:
        if schedule is not None:
            lr = _validate.scheduled_lr(schedule, nit) if nit < maxiter else 0.0
        if sets_beta1 and nit < maxiter:
            hyper = loop.hyper._replace(betas=(_validate.scheduled_beta1(schedule, nit),
                                               *loop.hyper.betas[1:]))
        status = iterate(x, g, loop.work, loop.max_norm, f, lr, nit, stop, state, best, bounds,
                         hyper, running, scalars, settings)
        if status != _status.CONTINUE:
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
            status, nit, f = _compiled.run(fun, jac, loop.loops.update, args, x, g, loop.work,
                                           loop.max_norm, f, lrs, nit, loop.state, loop.best,
                                           loop.bounds, loop.hyper, loop.running, loop.scalars,
                                           loop.settings)
        except NumbaError as exc:  # raised while compiling, before any step
            if strict:
                raise TypeError(f"compiled=True, but the loop does not compile for this fun, "
                                f"jac and args: {exc}") from None
            return None
        if status == _status.WRONG_JAC:
            raise ValueError(f"jac must return a gradient of shape ({x.size},) like x0; at "
                             f"iteration {nit} it returned another size")
        if status != _status.NEED_LR:
            return status, nit, f, g


# -- output ------------------------------------------------------------------------------
def _options_text(rule: rules.Rule) -> str:
    """The Options section of :func:`_minimize_adam_family` for ``rule``, with its defaults."""
    defaults = {**rule.defaults, **COMMON_OPTIONS}
    lines = [f'Options for method "{rule.name}" ({rule.title})', "-" * 40]
    entries = {**_option_entries(), **rule.docs}
    for name in defaults:
        kind, description = entries.get(name, ("", []))
        lines.append(f"{name} : {kind + ', ' if kind else ''}default {defaults[name]!r}")
        lines.extend(description)
    return "\n".join(lines)


def _option_entries() -> dict[str, tuple[str, list[str]]]:
    """``name -> (type, description lines)`` from the solver docstring's Options section."""
    doc = _minimize_adam_family.__doc__
    if doc is None:  # python -OO strips docstrings: names only
        return {}
    section = inspect.cleandoc(doc).split("Options\n-------\n", 1)[1]
    entries: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in section.splitlines():
        if line and not line.startswith(" "):
            name, _, kind = line.partition(" : ")
            current = []
            entries[name] = (kind, current)
        elif line.strip():
            current.append(line)
    return entries
