"""The iteration of :func:`nbadam.minimize` as Numba code.

* :func:`decide` records a value just evaluated (best value, the ``ftol``
  window) and says whether the run stops there: the stopping rules, written
  once for the CPU loops and the GPU loop.
* :func:`observe` is ``decide`` for a point on the CPU: it takes the
  gradient's norm and keeps the best point.
* :func:`loops` builds, for one :class:`nbadam.rules.Update`, its
  ``update``: the rule's scalar function compiled by Numba (the same
  function ``Optimizer.step`` calls from Python, so the same scalars bit
  for bit), cast to the iterate's dtype, then the rule's serial kernel; and
  its ``iterate``: ``observe``, then the update and the projection onto the
  bounds, which the Python loop calls once per step (one dispatch).
* :func:`run` is the whole loop in nopython mode, for objectives that are
  Numba functions: ``fun``/``jac``, ``observe``, the update and the
  projection with no Python in between.  It takes the update as an
  argument and runs over a chunk of learning rates, so that a schedule (a
  Python callable) is evaluated between chunks.

Both loops run the same ``observe``, updates and projection, so they give
bit-identical results.  The loop's own state travels in two packed arrays;
the index constants below name their slots.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic, overload

from .._kernels import cpu
from .._kernels._build import compile_family, source_digest, specialized
from ._status import (
    CALLBACK_STOP,
    CONTINUE,
    CONVERGED_FTOL,
    CONVERGED_GTOL,
    MAXITER_REACHED,
    NEED_LR,
    NONFINITE,
    WRONG_JAC,
)

# Slots of ``scalars`` (float64), then from HISTORY on the ring of the last
# ``FTOL_WINDOW + 1`` values of f.
GTOL, FTOL, BEST_F, GNORM, HISTORY = range(5)
# Slots of ``settings`` (int64).
MAXITER, FTOL_WINDOW, RETURN_BEST, BOUNDED = range(4)
SETTINGS_SIZE = 4

_OPTIONS = {"cache": True, "fastmath": False, "boundscheck": False}
#: How the rules' scalar functions and their pieces are compiled (no cache of their
#: own: the cached update that calls them holds their code).
_SCALAR_JIT = numba.njit(fastmath=False)
_PIECES: dict[int, Any] = {}


def is_compiled(func) -> bool:
    """Whether ``func`` is a Numba CPU function that nopython code can call."""
    return isinstance(func, CPUDispatcher)


@numba.njit(**_OPTIONS)
def inf_norm(g):
    """``max |g_i|`` (0 for an empty vector); NaN when ``g`` holds a NaN."""
    norm = 0.0
    for i in range(g.size):
        a = abs(g[i])
        if a > norm:
            norm = a
        elif a != a:
            return math.nan
    return norm


@numba.njit(**_OPTIONS)
def _copy(dst, src):
    """``dst[:] = src`` for 1-D arrays of one size (casting to ``dst``'s dtype).

    A loop, because Numba's slice assignment takes seconds to compile and the
    compiled loop is compiled anew for every objective.
    """
    for i in range(dst.size):
        dst[i] = src[i]


@numba.njit(**_OPTIONS)
def project(x, lower, upper):
    """Clip ``x`` into ``[lower, upper]`` in place (as ``np.clip``; NaN stays NaN)."""
    for i in range(x.size):
        if x[i] < lower[i]:
            x[i] = lower[i]
        elif x[i] > upper[i]:
            x[i] = upper[i]


@numba.njit(**_OPTIONS)
def _settled(history, ftol, best_f):
    """Whether the values in ``history`` lie within ``ftol * max(|f|, 1)`` of ``best_f``.

    That is, they span at most that much and reach down to the lowest value
    seen.  The spread of the last few values, not the change between two of
    them, because Adam is not monotone: an oscillating run has a wide spread.
    The second condition keeps a run that diverged and stalls at a high
    value from counting as converged.
    """
    low = history[0]
    high = history[0]
    for value in history:
        low = min(low, value)
        high = max(high, value)
    allowed = ftol * max(abs(low), abs(high), 1.0)
    return high - low <= allowed and low - best_f <= allowed


@numba.njit(**_OPTIONS)
def decide(f, gnorm, nit, stop, scalars, settings):
    """Record value ``f`` (gradient norm ``gnorm``) of point ``nit`` and decide.

    Returns ``(status, improved)``: ``CONTINUE`` or the status that ends the
    run, and whether ``f`` is the lowest finite value so far (the caller then
    keeps the point, with ``return_best``).
    """
    scalars[GNORM] = gnorm
    finite = math.isfinite(f) and math.isfinite(gnorm)
    improved = finite and f < scalars[BEST_F]
    if improved:
        scalars[BEST_F] = f
    window = settings[FTOL_WINDOW]
    history = scalars[HISTORY:]
    history[nit % (window + 1)] = f
    if stop:
        return CALLBACK_STOP, improved
    if not finite:
        return NONFINITE, improved
    if gnorm <= scalars[GTOL] and scalars[GTOL] > 0.0:
        return CONVERGED_GTOL, improved
    ftol = scalars[FTOL]
    if nit >= window and ftol > 0.0 and _settled(history, ftol, scalars[BEST_F]):
        return CONVERGED_FTOL, improved
    if nit >= settings[MAXITER]:
        return MAXITER_REACHED, improved
    return CONTINUE, improved


@numba.njit(**_OPTIONS)
def observe(x, g, f, nit, stop, best, scalars, settings):
    """Record the point ``x`` (value ``f``, gradient ``g``) and decide whether to stop.

    Returns ``CONTINUE`` or the status that ends the run; see :func:`decide`.
    """
    status, improved = decide(f, inf_norm(g), nit, stop, scalars, settings)
    if improved and settings[RETURN_BEST] != 0:
        _copy(best[0], x)
        _copy(best[1], g)
    return status


@intrinsic
def _in_dtype_of(typingctx, values, like):
    """The tuple ``values`` with every item cast to the dtype of array ``like``
    (as ``like.dtype.type(v)`` does: one IEEE rounding from float64)."""
    if not isinstance(values, types.BaseTuple) or not isinstance(like, types.Array):
        return None
    count = len(values)
    result = types.UniTuple(like.dtype, count) if count else types.Tuple(())

    def codegen(context, builder, signature, args):
        items = cgutils.unpack_tuple(builder, args[0], count)
        cast = [context.cast(builder, item, values[k], like.dtype)
                for k, item in enumerate(items)]
        return context.make_tuple(builder, result, cast)
    return result(values, like), codegen


# Templates: copies are made per update with ``scalars`` and ``kernel`` (then
# ``update``) bound in their globals.  One signature for every update, so that
# the compiled loop takes the update as an argument and links only its kernel.
def _update(x, g, state, hyper, running, lr, t):
    c = _in_dtype_of(scalars(hyper, running, lr, t), x)  # noqa: F821 (bound per update)
    kernel(x, g, state, c)  # noqa: F821


def _iterate(x, g, f, lr, nit, stop, state, best, bounds, hyper, running, scalars, settings):
    status = observe(x, g, f, nit, stop, best, scalars, settings)
    if status != CONTINUE:
        return status
    update(x, g, state, hyper, running, lr, nit + 1)  # noqa: F821 (bound per update)
    if settings[BOUNDED] != 0:
        project(x, bounds[0], bounds[1])
    return CONTINUE


class Loops:
    """The compiled ``update`` and ``iterate`` of one update rule.

    ``iterate(x, g, f, lr, nit, stop, state, best, bounds, hyper, running,
    scalars, settings)`` records the point ``x`` (value ``f``, gradient
    ``g``), then stops or steps.  ``state`` is the tuple of the update's state
    arrays, ``best`` the best point and its gradient (rows of a 2-D array),
    ``bounds`` the lower and upper bounds, ``hyper`` the rule's
    hyperparameters (:meth:`nbadam.rules.Rule.hyper`), ``running`` its
    running scalars, ``scalars`` and ``settings`` the packed loop state (see
    the slot constants).  It returns ``CONTINUE`` when a step was taken, else
    the status that ends the run.
    """

    __slots__ = ("update", "iterate")

    def __init__(self, update: Any):
        digest = source_digest(update.scalars, update.element, _update, _iterate)
        name = f"{update.name}_{digest}"
        scalars = compile_family(update.scalars, _SCALAR_JIT, "minimize", _PIECES)
        # The serial kernel only: a cached function that links a parallel=True kernel
        # aborts when loaded into a process whose Numba thread pool has not started
        # ("Symbol not found: allocate_sched"), and in minimize the update is rarely
        # the cost next to fun and jac, whose BLAS threads would compete with Numba's.
        self.update = numba.njit(**_OPTIONS)(specialized(
            _update, f"update_{name}", scalars=scalars, kernel=cpu.kernels(update).serial))
        self.iterate = numba.njit(**_OPTIONS)(specialized(
            _iterate, f"iterate_{name}", update=self.update))


@functools.cache
def loops(update: Any) -> Loops:
    """The compiled loops of ``update`` (built on first use, then kept)."""
    return Loops(update)


def _evaluate(fun, jac, x, args):
    """``(f, g)`` at ``x``: ``fun`` returns both when ``jac`` is None."""
    if jac is None:
        return fun(x, *args)
    return fun(x, *args), jac(x, *args)


@overload(_evaluate, jit_options={"fastmath": False})
def _evaluate_typed(fun, jac, x, args):
    # Chosen at typing time: ``jac`` is either None or a Numba function.
    if isinstance(jac, types.NoneType):
        def evaluate_together(fun, jac, x, args):
            return fun(x, *args)
        return evaluate_together

    def evaluate_apart(fun, jac, x, args):
        return fun(x, *args), jac(x, *args)
    return evaluate_apart


@numba.njit(cache=False, fastmath=False, boundscheck=False)
def run(fun, jac, update, args, x, g, f, lrs, nit, state, best, bounds, hyper, running,
        scalars, settings):
    """The loop of :func:`nbadam.minimize` in nopython mode, over one chunk of ``lrs``.

    ``fun(x, *args)`` returns the objective, or ``(f, g)`` when ``jac`` is None;
    otherwise ``jac(x, *args)`` returns the gradient.  ``update`` is the
    rule's compiled update (:attr:`Loops.update`).  On entry ``f`` and ``g``
    hold the value and gradient at ``x``, not yet recorded.  ``lrs[k]`` is the
    learning rate of step ``nit + k + 1``.

    Returns
    -------
    (int, int, float)
        The status (``NEED_LR`` when the chunk is used up, with the point at
        ``x`` evaluated but not recorded), the steps taken and ``f`` at ``x``.
    """
    # Not cached: every objective is its own type, so each compiles its own loop.
    maxiter = settings[MAXITER]
    k = 0
    while True:
        if k == lrs.size and nit < maxiter:
            return NEED_LR, nit, f
        # What ``iterate`` does, with the rule's update called directly.
        status = observe(x, g, f, nit, False, best, scalars, settings)
        if status != CONTINUE:
            return status, nit, f
        update(x, g, state, hyper, running, lrs[k], nit + 1)
        if settings[BOUNDED] != 0:
            project(x, bounds[0], bounds[1])
        nit += 1
        k += 1
        value, grad = _evaluate(fun, jac, x, args)
        f = float(value)
        if grad.size != g.size:
            return WRONG_JAC, nit, f
        _copy(g, grad)


def pack(opts: dict[str, Any], n: int, bounded: bool) -> tuple[np.ndarray, np.ndarray]:
    """The packed ``scalars`` and ``settings`` of a run with parsed options ``opts``."""
    scalars = np.zeros(HISTORY + opts["ftol_window"] + 1)
    scalars[GTOL] = opts["gtol"]
    scalars[FTOL] = opts["ftol"]
    scalars[BEST_F] = math.inf
    settings = np.zeros(SETTINGS_SIZE, dtype=np.int64)
    settings[MAXITER] = opts["maxiter"]
    settings[FTOL_WINDOW] = opts["ftol_window"]
    settings[RETURN_BEST] = opts["return_best"]
    settings[BOUNDED] = bounded
    return scalars, settings
