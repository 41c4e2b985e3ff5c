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

:func:`nbadam.minimize_batch` runs K problems with the same pieces, one row
of 2-D arrays per problem (the iterate, the gradient, the packed
``scalars`` and ``settings``, the running scalars; each state array is one
flat vector of K * n elements, problem ``k`` at ``[k * n, (k + 1) * n)``).
A step of the batch is :func:`observe_rows` (``observe`` on each row), then
the rule's update of every problem that continues (``Loops.step_shared``,
when the problems share the scalars: computed once, the kernel run over
each span of consecutive problems; or ``Loops.step_rows``, the rule's
``update`` row by row), then :func:`project_rows`.  Row ``k`` thus follows
exactly the steps :func:`nbadam.minimize` takes on problem ``k`` alone.
:func:`run_batch` is the compiled loop of the batch (which stores what
``fun`` returned and observes it in one pass, :func:`store_observe_rows`); :func:`decide_rows`
and ``Loops.scalar_rows`` serve its GPU loop.
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

from .._kernels import blockwise, cpu, reduction
from .._kernels import compact as _compact_kernels
from .._kernels._build import compile_family, source_digest, specialized
from ._status import (
    ALL_STOPPED,
    CALLBACK_STOP,
    CONTINUE,
    CONVERGED_FTOL,
    CONVERGED_GTOL,
    MAXITER_REACHED,
    NEED_LR,
    NONFINITE,
    WRONG_FUN,
    WRONG_JAC,
)

# Slots of ``scalars`` (float64), then from HISTORY on the ring of the last
# ``FTOL_WINDOW + 1`` values of f.
GTOL, FTOL, BEST_F, HISTORY = range(4)
# Slots of ``settings`` (int64).
MAXITER, FTOL_WINDOW, RETURN_BEST, BOUNDED = range(4)
SETTINGS_SIZE = 4

_OPTIONS = {"cache": True, "fastmath": False, "boundscheck": False}
#: The batch's loops over problems, and the pieces they call.  They allocate
#: nothing and keep no array, so Numba's reference counting is off in them: with
#: it, each view of a row (a dozen per problem and step) and each call costs an
#: atomic increment and decrement, which made the loop five times slower than its
#: work (125 against 27 ns per problem and step of ``observe_rows``, 1,000
#: problems of 10 variables).
_ROWS = {**_OPTIONS, "_nrt": False}
#: The pieces the loops over problems call once per problem, inlined into them (in
#: Numba's IR): called, each passes a dozen array structures, which cost more than the
#: work on a row of 10 variables (27 against 12 ns per problem and step of ``observe``
#: with the copy of the gradient).
_ROW_PIECES = {**_ROWS, "inline": "always"}
#: The parallel builds of the batch's loops: never cached (see :class:`Loops`).
_PARALLEL = {**_OPTIONS, "cache": False, "parallel": True}
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
    # Without branches on the data: a third faster on short vectors.
    norm = 0.0
    nan = False
    for i in range(g.size):
        a = abs(g[i])
        norm = a if a > norm else norm
        nan |= a != a
    return math.nan if nan else norm


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
def _may_settle(f, previous, ftol):
    """False when the values ``f`` and ``previous`` of two points in a row show that
    :func:`_settled` is False for any window holding both: one test in place of a
    scan of the window, at most steps.

    Two values of a settled window differ by at most ``ftol * M``, with ``M =
    max(|low|, |high|, 1)`` and ``M <= max(1, |f| / (1 - ftol))``; a factor of 2
    covers the rounding of both tests.  Never False for ``ftol >= 0.5``.
    """
    return ftol >= 0.5 or abs(f - previous) <= 2.0 * ftol * max(1.0, abs(f) / (1.0 - ftol))


@numba.njit(**_OPTIONS)
def decide(f, gnorm, nit, stop, scalars, settings):
    """Record value ``f`` (gradient norm ``gnorm``) of point ``nit`` and decide.

    Returns ``(status, improved)``: ``CONTINUE`` or the status that ends the
    run, and whether ``f`` is the lowest finite value so far (the caller then
    keeps the point, with ``return_best``).
    """
    return decide_at(f, gnorm, nit, ring_slot(nit, settings), stop, scalars, settings)


@numba.njit(**_OPTIONS)
def ring_slot(nit, settings):
    """The slot of point ``nit`` in the ring of the last ``ftol_window + 1`` values."""
    return nit % (settings[FTOL_WINDOW] + 1)


@numba.njit(**_OPTIONS)
def decide_at(f, gnorm, nit, slot, stop, scalars, settings):
    """:func:`decide`, given the ring slot of point ``nit`` (:func:`ring_slot`).

    The stopping rules, written once.  A batch computes the slot once per
    step for all its problems: the integer division costs more than the rest.
    """
    finite = math.isfinite(f) and math.isfinite(gnorm)
    improved = finite and f < scalars[BEST_F]
    if improved:
        scalars[BEST_F] = f
    window = settings[FTOL_WINDOW]
    scalars[HISTORY + slot] = f  # the ring scalars[HISTORY:], viewed only when tested
    if stop:
        return CALLBACK_STOP, improved
    if not finite:
        return NONFINITE, improved
    if gnorm <= scalars[GTOL] and scalars[GTOL] > 0.0:
        return CONVERGED_GTOL, improved
    ftol = scalars[FTOL]
    if (nit >= window and ftol > 0.0
            and _may_settle(f, scalars[HISTORY + (slot - 1 if slot > 0 else window)], ftol)
            and _settled(scalars[HISTORY:], ftol, scalars[BEST_F])):
        return CONVERGED_FTOL, improved
    if nit >= settings[MAXITER]:
        return MAXITER_REACHED, improved
    return CONTINUE, improved


@numba.njit(**_OPTIONS)
def observe(x, g, f, nit, stop, best, scalars, settings):
    """Record the point ``x`` (value ``f``, gradient ``g``) and decide whether to stop.

    Returns ``CONTINUE`` or the status that ends the run; see :func:`decide`.
    """
    return observe_at(x, g, f, nit, ring_slot(nit, settings), stop, best, scalars, settings)


@numba.njit(**_OPTIONS)
def observe_at(x, g, f, nit, slot, stop, best, scalars, settings):
    """:func:`observe`, given the ring slot of point ``nit`` (see :func:`decide_at`)."""
    status, improved = decide_at(f, inf_norm(g), nit, slot, stop, scalars, settings)
    if improved and settings[RETURN_BEST] != 0:
        _copy(best[0], x)
        _copy(best[1], g)
    return status


_sum_squares = cpu.sum_squares.serial


@numba.njit(**_OPTIONS)
def clipped(g, work, max_norm):
    """The gradient the step sees: ``g`` itself, or with ``work`` non-empty
    (``clip_grad_norm``) ``work`` set to ``g * min(1, max_norm / (norm + 1e-6))``.

    The norm and the scaling are those of :class:`nbadam.Optimizer` with
    ``clip_grad_norm`` (the serial build of the same sum of squares, the factor
    rounded once to the gradient's dtype), so the two take the same steps.  A
    NaN norm makes the gradient NaN, as in torch.
    """
    if work.size == 0:
        return g
    ratio = max_norm / (math.sqrt(_sum_squares(g)) + 1e-6)
    coef = ratio if ratio < 1.0 or ratio != ratio else 1.0
    c = _in_dtype_of((coef,), g)[0]
    for i in range(g.size):
        work[i] = g[i] * c
    return work


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


def _update_reduced(x, g, state, hyper, running, lr, t):
    # An update with a reduction: the reduction pass, finish, then the update pass.
    c = _in_dtype_of(scalars(hyper, running, lr, t), x)  # noqa: F821 (bound per update)
    partial = np.empty(((x.size + CHUNK - 1) // CHUNK, SUMS))  # noqa: F821
    sums = np.zeros(SUMS)  # noqa: F821
    reduce_kernel(x, g, state, c, partial, sums, CHUNK)  # noqa: F821
    kernel(x, g, state, _in_dtype_of(finish(hyper, running, lr, t, sums), x))  # noqa: F821


def _update_compact(x, g, state, hyper, running, lr, t):
    c = _in_dtype_of(scalars(hyper, running, lr, t), x)  # noqa: F821 (bound per update)
    kernel(x, g, state, c, np.uint32(t))  # noqa: F821 (the step count seeds the rounding)


def _update_blockwise(x, g, state, hyper, running, lr, t):
    # 8-bit state: the state arrays, then the block scales of each compact one.
    c = _in_dtype_of(scalars(hyper, running, lr, t), x)  # noqa: F821 (bound per update)
    kernel(x, g, state[:NSTATE], c, state[NSTATE:])  # noqa: F821


def _iterate(x, g, work, max_norm, f, lr, nit, stop, state, best, bounds, hyper, running,
             scalars, settings):
    status = observe(x, g, f, nit, stop, best, scalars, settings)
    if status != CONTINUE:
        return status
    update(x, clipped(g, work, max_norm), state, hyper, running, lr,  # noqa: F821
           nit + 1)
    if settings[BOUNDED] != 0:
        project(x, bounds[0], bounds[1])
    return CONTINUE


def spans_of(arrays, start, stop):
    """``arrays[i][start:stop]`` for each 1-D array of the tuple ``arrays``, as a tuple."""
    return tuple(array[start:stop] for array in arrays)


@overload(spans_of, jit_options={"fastmath": False})
def _spans_of_typed(arrays, start, stop):
    # Built item by item: Numba has no tuple comprehension.
    items = "".join(f"arrays[{i}][start:stop], " for i in range(len(arrays)))
    namespace: dict[str, Any] = {}
    exec(f"def spans(arrays, start, stop):\n    return ({items})\n", namespace)
    return namespace["spans"]


def store_row(table, k, values):
    """``table[k, :] = values`` for a tuple ``values`` of ``table.shape[1]`` numbers."""
    table[k, :] = values


@overload(store_row, jit_options={"fastmath": False})
def _store_row_typed(table, k, values):
    lines = "".join(f"    table[k, {i}] = values[{i}]\n" for i in range(len(values)))
    namespace: dict[str, Any] = {}
    exec(f"def store(table, k, values):\n{lines or '    pass'}\n", namespace)
    return namespace["store"]


# Templates of the batch, bound per update (``kernel``, ``spans``, ``update``,
# ``scalars``).  The steps all take the same arguments, so that the compiled batch
# loop takes any of them as an argument.
def _spans(X, G, state, rows, status, c):
    n = X.shape[1]
    x = X.reshape(X.size)
    g = G.reshape(G.size)
    j = 0
    while j < rows.size:
        start = rows[j]
        j += 1
        if status[start] != CONTINUE:
            continue
        stop = start + 1
        while j < rows.size and rows[j] == stop and status[stop] == CONTINUE:
            stop += 1
            j += 1
        kernel(x[start * n:stop * n], g[start * n:stop * n],  # noqa: F821
               spans_of(state, start * n, stop * n), c)


def _step_shared(X, G, state, rows, status, hyper, hyper_of, running, lrs, t):
    spans(X, G, state, rows, status,  # noqa: F821
          _in_dtype_of(scalars(hyper, running[0], lrs[0], t), X))  # noqa: F821


def _step_rows(X, G, state, rows, status, hypers, hyper_of, running, lrs, t):
    n = X.shape[1]
    lr_per_row = lrs.size > 1
    for j in range(rows.size):
        k = rows[j]
        if status[k] == CONTINUE:
            update(X[k], G[k], spans_of(state, k * n, (k + 1) * n),  # noqa: F821
                   hypers[hyper_of[k]], running[k], lrs[k if lr_per_row else 0], t)


@numba.njit(**{**_OPTIONS, "cache": False})  # the thread count is a dynamic global
def _chunking(size):
    """``(chunks, chunk size)``: the rows split in one chunk per thread."""
    chunks = max(min(size, numba.get_num_threads()), 1)
    return chunks, -(-size // chunks)


# The parallel builds: one chunk of problems per thread, each running the serial
# step (a parallel loop over single problems would share their reference counts
# between the threads).
def _step_shared_parallel(X, G, state, rows, status, hyper, hyper_of, running, lrs, t):
    c = _in_dtype_of(scalars(hyper, running[0], lrs[0], t), X)  # noqa: F821
    chunks, size = _chunking(rows.size)
    for i in numba.prange(chunks):
        spans(X, G, state, rows[i * size:min((i + 1) * size, rows.size)],  # noqa: F821
              status, c)


def _step_rows_parallel(X, G, state, rows, status, hypers, hyper_of, running, lrs, t):
    chunks, size = _chunking(rows.size)
    for i in numba.prange(chunks):
        step_rows(X, G, state, rows[i * size:min((i + 1) * size, rows.size)],  # noqa: F821
                  status, hypers, hyper_of, running, lrs, t)


def _scalar_rows(hypers, hyper_of, running, lrs, t, rows, table):
    lr_per_row = lrs.size > 1
    for j in range(rows.size):
        k = rows[j]
        store_row(table, k, _in_dtype_of(scalars(  # noqa: F821
            hypers[hyper_of[k]], running[k], lrs[k if lr_per_row else 0], t), table))


class Loops:
    """The compiled ``update`` and ``iterate`` of one update rule, and its batch steps.

    ``iterate(x, g, f, lr, nit, stop, state, best, bounds, hyper, running,
    scalars, settings)`` records the point ``x`` (value ``f``, gradient
    ``g``), then stops or steps.  ``state`` is the tuple of the update's state
    arrays, ``best`` the best point and its gradient (rows of a 2-D array),
    ``bounds`` the lower and upper bounds, ``hyper`` the rule's
    hyperparameters (:meth:`nbadam.rules.Rule.hyper`), ``running`` its
    running scalars, ``scalars`` and ``settings`` the packed loop state (see
    the slot constants).  It returns ``CONTINUE`` when a step was taken, else
    the status that ends the run.

    The batch steps ``step_shared`` and ``step_rows``, called as
    ``step(X, G, state, rows, status, hypers, hyper_of, running, lrs, t)``,
    take step ``t`` of each problem ``k`` of ``rows`` whose ``status`` is
    ``CONTINUE``: ``X`` and ``G`` are (K, n), ``state`` a tuple of flat
    (K * n) arrays.  ``step_rows`` calls ``update`` on problem ``k`` with
    ``hypers[hyper_of[k]]`` (``hypers`` a typed list of hyperparameter
    tuples), ``running[k]`` and ``lrs[k]`` (``lrs[0]`` when ``lrs`` holds
    one value); ``step_shared``, for problems that share them, computes the
    scalars once from ``hypers`` (one hyperparameter tuple), ``running[0]``
    and ``lrs[0]``, then ``spans(X, G, state, rows, status, c)`` runs the
    kernel over each span of consecutive problems: the same bits (the kernel
    is elementwise), one call per span.  ``*_parallel`` split the problems
    in one chunk per thread; they are not cached (see below).

    ``scalar_rows(hypers, hyper_of, running, lrs, t, rows, table)`` writes
    the scalars of step ``t`` of each problem of ``rows``, in the dtype of
    ``table``, to row ``k`` of ``table``: the GPU loop's per-problem scalars.
    """

    __slots__ = ("update", "iterate", "spans", "step_shared", "step_rows",
                 "step_shared_parallel", "step_rows_parallel", "scalar_rows")

    def __init__(self, update: Any, compact: tuple | None = None):
        digest = source_digest(update.scalars, update.element, _update, _iterate, _spans,
                               _step_shared, _step_rows, _step_shared_parallel,
                               _step_rows_parallel, _scalar_rows)
        name = f"{update.name}_{digest}"
        scalars = compile_family(update.scalars, _SCALAR_JIT, "minimize", _PIECES)
        if compact is not None and compact[0] == "8bit":
            # Generated kernels (no source file), so neither they nor these loops are cached.
            kernel = blockwise.kernels(update, compact[1]).serial
            options = {**_OPTIONS, "cache": False}
            self.update = numba.njit(**options)(specialized(
                _update_blockwise, f"update_{name}_8bit", scalars=scalars, kernel=kernel,
                NSTATE=len(update.state)))
            self.iterate = numba.njit(**options)(specialized(
                _iterate, f"iterate_{name}_8bit", update=self.update))
            return
        if compact is not None:
            # Compact state (state_precision): the single-problem loops only.
            pair = _compact_kernels.kernels(update, *compact)
            kernel = pair.serial
            # The kernels' name carries the digest of the codec, so a changed codec is
            # never served from an older cache entry of these loops.
            name = f"{pair.name}_{source_digest(_update_compact, _iterate)}"
            self.update = numba.njit(**_OPTIONS)(specialized(
                _update_compact, f"update_{name}", scalars=scalars, kernel=kernel))
            self.iterate = numba.njit(**_OPTIONS)(specialized(
                _iterate, f"iterate_{name}", update=self.update))
            return
        kernel = cpu.kernels(update).serial
        # The serial kernel only: a cached function that links a parallel=True kernel
        # aborts when loaded into a process whose Numba thread pool has not started
        # ("Symbol not found: allocate_sched"), and in minimize the update is rarely
        # the cost next to fun and jac, whose BLAS threads would compete with Numba's.
        if update.reduce is None:
            self.update = numba.njit(**_OPTIONS)(specialized(
                _update, f"update_{name}", scalars=scalars, kernel=kernel))
        else:   # minimize_batch refuses these updates; minimize runs both passes
            digest = source_digest(update.reduce, update.finish, _update_reduced)
            self.update = numba.njit(**_OPTIONS)(specialized(
                _update_reduced, f"update_{name}_{digest}", scalars=scalars, kernel=kernel,
                finish=compile_family(update.finish, _SCALAR_JIT, "minimize", _PIECES),
                reduce_kernel=cpu.reduction_kernels(update).serial, CHUNK=reduction.CHUNK,
                SUMS=len(update.sum_names)))
        self.iterate = numba.njit(**_OPTIONS)(specialized(
            _iterate, f"iterate_{name}", update=self.update))
        self.spans = numba.njit(**_ROWS)(specialized(
            _spans, f"spans_{name}", kernel=kernel))
        self.step_shared = numba.njit(**_ROWS)(specialized(
            _step_shared, f"step_shared_{name}", scalars=scalars, spans=self.spans))
        # With reference counting: it reads the typed list of hyperparameters.
        self.step_rows = numba.njit(**_OPTIONS)(specialized(
            _step_rows, f"step_rows_{name}", update=self.update))
        self.scalar_rows = numba.njit(**_OPTIONS)(specialized(
            _scalar_rows, f"scalar_rows_{name}", scalars=scalars))
        # Hence not cached: compiled on first use in each process.
        self.step_shared_parallel = numba.njit(**_PARALLEL)(specialized(
            _step_shared_parallel, f"step_shared_parallel_{name}", scalars=scalars,
            spans=self.spans))
        self.step_rows_parallel = numba.njit(**_PARALLEL)(specialized(
            _step_rows_parallel, f"step_rows_parallel_{name}", step_rows=self.step_rows))


@functools.cache
def loops(update: Any, compact: tuple | None = None) -> Loops:
    """The compiled loops of ``update`` (built on first use, then kept); with ``compact``,
    ``(format, flags)`` of compact state, its single-problem loops only."""
    return Loops(update, compact)


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
def run(fun, jac, update, args, x, g, work, max_norm, f, lrs, nit, state, best, bounds, hyper,
        running, scalars, settings):
    """The loop of :func:`nbadam.minimize` in nopython mode, over one chunk of ``lrs``.

    ``fun(x, *args)`` returns the objective, or ``(f, g)`` when ``jac`` is None;
    otherwise ``jac(x, *args)`` returns the gradient.  ``update`` is the
    rule's compiled update (:attr:`Loops.update`).  On entry ``f`` and ``g``
    hold the value and gradient at ``x``, not yet recorded.  ``lrs[k]`` is the
    learning rate of step ``nit + k + 1``.  ``work`` and ``max_norm`` clip the
    gradient each step sees (see :func:`clipped`).

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
        update(x, clipped(g, work, max_norm), state, hyper, running, lrs[k], nit + 1)
        if settings[BOUNDED] != 0:
            project(x, bounds[0], bounds[1])
        nit += 1
        k += 1
        value, grad = _evaluate(fun, jac, x, args)
        f = float(value)
        if grad.size != g.size:
            return WRONG_JAC, nit, f
        _copy(g, grad)


# -- minimize_batch ------------------------------------------------------------------------
def _for_rows(func: Any, **pieces: Any) -> Any:
    """Piece ``func`` of the loop above built again for the loops over problems
    (:data:`_ROW_PIECES`): the same source, so the same bits."""
    return numba.njit(**_ROW_PIECES)(specialized(func.py_func, f"{func.__name__}_for_rows",
                                                 **pieces))


_row_copy = _for_rows(_copy)
_row_project = _for_rows(project)
_row_decide_at = _for_rows(decide_at, _settled=_for_rows(_settled),
                           _may_settle=_for_rows(_may_settle))
_row_observe_at = _for_rows(observe_at, decide_at=_row_decide_at,
                            inf_norm=_for_rows(inf_norm), _copy=_row_copy)


@numba.njit(**_ROWS)
def observe_rows(X, G, F, rows, nit, stop, best, scalars, settings, status, nits):
    """:func:`observe` for each problem ``k`` of ``rows``, on row ``k`` of every array.

    ``best`` is (K, 2, n or 0).  Writes each problem's code to ``status``
    (and, for one that stopped, ``nit`` to ``nits``); returns how many
    continue.
    """
    count = 0
    slot = ring_slot(nit, settings[0]) if rows.size else 0  # ftol_window is the batch's
    for j in range(rows.size):
        k = rows[j]
        code = _row_observe_at(X[k], G[k], F[k], nit, slot, stop, best[k], scalars[k],
                               settings[k])
        status[k] = code
        if code == CONTINUE:
            count += 1
        else:
            nits[k] = nit
    return count


@numba.njit(**_ROW_PIECES)
def _row_store_observe_at(x, g, grad, f, nit, slot, best, spare, held, scalars, settings,
                          copy):
    """``g[:] = grad``, then :func:`observe_at` on ``x``, ``g`` and ``f``: one pass over the
    gradient for the copy, its norm (the norm of :func:`inf_norm`, of the stored values)
    and, with ``return_best``, the copy of a point that may be the best.

    ``best`` and ``spare`` are the problem's two slots for its best point and gradient,
    ``held[0]`` which of them (0 or 1) holds it.  A finite value below the best so far
    is written to the other slot in the same pass, before its gradient's norm is
    known, and the slots change places when the point turns out the best (its gradient
    finite); the copies cost no pass of their own.

    With ``copy`` False, ``grad`` (of the iterate's dtype) is the gradient the step
    reads, and ``g`` receives it only when the problem stops.
    """
    norm = 0.0
    nan = False
    keep = settings[RETURN_BEST] != 0 and math.isfinite(f) and f < scalars[BEST_F]
    if keep:
        into = spare if held[0] == 0 else best
        for i in range(grad.size):
            if copy:
                g[i] = grad[i]
                value = g[i]  # in the iterate's dtype, as in the other branch
            else:
                value = grad[i]
            into[0, i] = x[i]
            into[1, i] = value
            a = abs(value)
            norm = a if a > norm else norm
            nan |= a != a
    else:
        for i in range(grad.size):
            if copy:
                g[i] = grad[i]
                a = abs(g[i])
            else:
                a = abs(grad[i])
            norm = a if a > norm else norm
            nan |= a != a
    status, improved = _row_decide_at(f, math.nan if nan else norm, nit, slot, False,
                                      scalars, settings)
    if improved and keep:  # the other slot holds the new best
        held[0] = 1 - held[0]
    if not copy and status != CONTINUE:
        _row_copy(g, grad)
    return status


@numba.njit(**_ROWS)
def store_observe_rows(X, G, F, values, grads, rows, compact, nit, best, spare, held,
                       scalars, settings, status, nits, copy):
    """:func:`_store_rows`, then :func:`observe_rows` (without a callback's stop), in one
    pass over the problems of ``rows``; returns how many continue.

    With ``return_best``, problem ``k``'s best point and gradient are in
    ``spare[k]`` rather than ``best[k]`` where ``held[k]`` is 1
    (:func:`_row_store_observe_at`; :func:`settle_best` puts them back).  With
    ``copy`` False, ``grads`` are (K, n) in the iterate's dtype and the next step
    reads them where they are: ``G[k]`` receives ``grads[k]`` only when problem
    ``k`` stops.
    """
    count = 0
    slot = ring_slot(nit, settings[0]) if rows.size else 0
    one = np.uint64(1)
    for j in range(rows.size):
        # Unsigned indices: Numba then adds no test for a negative index to each use.
        k = np.uint64(rows[j])
        source = np.uint64(j) if compact else k
        f = float(values[source])
        F[k] = f
        code = _row_store_observe_at(X[k], G[k], grads[source], f, nit, slot, best[k],
                                     spare[k], held[k:k + one], scalars[k], settings[k], copy)
        status[k] = code
        if code == CONTINUE:
            count += 1
        else:
            nits[k] = nit
    return count


@numba.njit(**_ROWS)
def settle_best(best, spare, held):
    """Move each best point and gradient that :func:`store_observe_rows` left in
    ``spare`` back to ``best``."""
    for k in range(held.size):
        if held[k] != 0:
            for i in range(best.shape[2]):
                best[k, 0, i] = spare[k, 0, i]
                best[k, 1, i] = spare[k, 1, i]
            held[k] = 0


@numba.njit(**_PARALLEL)
def store_observe_rows_parallel(X, G, F, values, grads, rows, compact, nit, best, spare,
                                held, scalars, settings, status, nits, copy):
    """:func:`store_observe_rows`, one chunk of problems per thread."""
    chunks, size = _chunking(rows.size)
    count = 0
    for i in numba.prange(chunks):
        start, stop = i * size, min((i + 1) * size, rows.size)
        count += store_observe_rows(X, G, F, values[start:stop] if compact else values,
                                    grads[start:stop] if compact else grads,
                                    rows[start:stop], compact, nit, best, spare, held,
                                    scalars, settings, status, nits, copy)
    return count


@numba.njit(**_PARALLEL)
def observe_rows_parallel(X, G, F, rows, nit, stop, best, scalars, settings, status, nits):
    """:func:`observe_rows`, one chunk of problems per thread."""
    chunks, size = _chunking(rows.size)
    count = 0
    for i in numba.prange(chunks):
        count += observe_rows(X, G, F, rows[i * size:min((i + 1) * size, rows.size)], nit,
                              stop, best, scalars, settings, status, nits)
    return count


@numba.njit(**_ROWS)
def project_rows(X, rows, status, bounds):
    """:func:`project` for each problem of ``rows`` that continues, with the bounds
    ``bounds[k]`` (``bounds[0]`` when all problems share them)."""
    shared = bounds.shape[0] == 1
    for j in range(rows.size):
        k = rows[j]
        if status[k] == CONTINUE:
            b = 0 if shared else k
            _row_project(X[k], bounds[b, 0], bounds[b, 1])


@numba.njit(**_OPTIONS)
def running_rows(status):
    """The problems whose ``status`` is ``CONTINUE``, in order (int64 indices)."""
    count = 0
    for k in range(status.size):
        if status[k] == CONTINUE:
            count += 1
    rows = np.empty(count, dtype=np.int64)
    count = 0
    for k in range(status.size):
        if status[k] == CONTINUE:
            rows[count] = k
            count += 1
    return rows


@numba.njit(**_ROWS)
def decide_rows(F, gnorms, nit, stop, rows, scalars, settings, status, nits, improved):
    """:func:`decide` for each problem of ``rows``: the GPU loop, whose points stay there.

    Writes each problem's code to ``status`` (``nit`` to ``nits`` for one
    that stopped) and, to ``improved`` (uint8), whether its best point must be
    kept; returns how many continue.
    """
    count = 0
    slot = ring_slot(nit, settings[0]) if rows.size else 0
    for j in range(rows.size):
        k = rows[j]
        code, better = _row_decide_at(F[k], gnorms[k], nit, slot, stop, scalars[k],
                                      settings[k])
        status[k] = code
        improved[k] = 1 if better and settings[k, RETURN_BEST] != 0 else 0
        if code == CONTINUE:
            count += 1
        else:
            nits[k] = nit
    return count


@numba.njit(**_OPTIONS)
def _gather(X, rows):
    """``X[rows]`` for 2-D ``X``."""
    out = np.empty((rows.size, X.shape[1]), dtype=X.dtype)
    for j in range(rows.size):
        _copy(out[j], X[rows[j]])
    return out


def _evaluate_rows(fun, jac, X, rows, active, args):
    """``(values, gradients)`` of every problem, or (``active`` not None) of ``rows`` only
    (numbered from ``active[0]`` when ``active`` is not empty)."""
    if active is None:
        return _evaluate(fun, jac, X, args)
    return _evaluate(fun, jac, X[rows], (rows + (active[0] if active.size else 0), *args))


@overload(_evaluate_rows, jit_options={"fastmath": False})
def _evaluate_rows_typed(fun, jac, X, rows, active, args):
    # Chosen at typing time: fun(X, *args), or, with ``active`` an array
    # (active_only=True), fun(X[rows], rows, *args).
    if isinstance(active, types.NoneType):
        def evaluate_all(fun, jac, X, rows, active, args):
            return _evaluate(fun, jac, X, args)
        return evaluate_all

    def evaluate_active(fun, jac, X, rows, active, args):
        # While every problem runs, X[rows] is X: fun reads the iterate itself, as
        # without active_only (rows are in order, so all K are 0 .. K - 1).
        points = X if rows.size == X.shape[0] else _gather(X, rows)
        return _evaluate(fun, jac, points, (_numbered(rows, active),) + args)
    return evaluate_active


@numba.njit(**_OPTIONS)
def _numbered(rows, active):
    """The problems' numbers in the whole batch: ``rows``, plus ``active[0]`` when
    ``active`` holds the offset of a share of the problems (:func:`run_batch`)."""
    if active.size == 0:
        return rows
    return rows + active[0]


def _stepped_gradients(grads, G, active):
    """``(array, copy)``: the array the next step reads its gradients from, ``grads``
    itself when ``fun`` returned every problem's gradient in an array of ``G``'s type,
    else ``G``, and whether :func:`store_observe_rows` must copy them there."""
    return G, True


@overload(_stepped_gradients, jit_options={"fastmath": False})
def _stepped_gradients_typed(grads, G, active):
    # Chosen at typing time: the step reads fun's own array when it can (no copy).
    if isinstance(active, types.NoneType) and grads == G:
        return lambda grads, G, active: (grads, False)
    return lambda grads, G, active: (G, True)


@numba.njit(cache=False, fastmath=False, boundscheck=False, nogil=True)
def run_batch(fun, jac, observe, store_observe, step, active, args, X, G, F, lrs, row_lrs, nit,
              state, best, bounds, hypers, hyper_of, running, scalars, settings, status, nits):
    """The loop of :func:`nbadam.minimize_batch` in nopython mode, over one chunk of ``lrs``.

    ``fun(X, *args)`` returns the K values, or ``(values, gradients)`` when
    ``jac`` is None; otherwise ``jac(X, *args)`` returns the (K, n)
    gradients.  With ``active`` an (empty) int64 array rather than None,
    they are called as ``fun(X[rows], rows, *args)``, ``rows`` the problems
    still running (numbered from ``active[0]`` when ``active`` is not empty:
    the loop then runs one share of the batch's problems, on views of its
    rows).  It holds no GIL, so threads can each run the loop on a share
    of the problems.  ``observe`` is :data:`observe_rows` (or its parallel
    build), for the points on entry; ``store_observe``
    :data:`store_observe_rows` (or its parallel build), which stores each
    point ``fun`` evaluated and records it in one pass; ``step`` one of the
    rule's batch steps (:class:`Loops`).  On
    entry ``F`` and ``G`` hold the values and gradients at ``X`` of the
    problems whose ``status`` is ``CONTINUE``, not yet recorded.  ``lrs[k]``
    is the learning rate of step ``nit + k + 1``, unless ``row_lrs`` holds
    one learning rate per problem.

    Returns
    -------
    (int, int)
        ``NEED_LR`` when the chunk is used up (the points evaluated but not
        recorded), ``ALL_STOPPED``, ``WRONG_FUN`` or ``WRONG_JAC``; and the
        steps taken.
    """
    # Not cached: every objective is its own type, so each compiles its own loop.
    maxiter = settings[0, MAXITER]
    bounded = settings[0, BOUNDED] != 0
    lr_now = row_lrs if row_lrs.size else np.zeros(1)
    compact = active is not None
    rows = running_rows(status)
    if lrs.size == 0 and nit < maxiter:
        return NEED_LR, nit
    count = observe(X, G, F, rows, nit, False, best, scalars, settings, status, nits)
    # The second slot of each best point (store_observe_rows), settled before returning.
    spare = np.empty_like(best)
    held = np.zeros(X.shape[0], np.uint8)
    stepped = G   # where the step reads the gradients: G, or fun's last array
    k = 0
    while True:
        if count == 0:
            settle_best(best, spare, held)
            return ALL_STOPPED, nit
        if not row_lrs.size:
            lr_now[0] = lrs[k]
        step(X, stepped, state, rows, status, hypers, hyper_of, running, lr_now, nit + 1)
        if bounded:
            project_rows(X, rows, status, bounds)
        if count < rows.size:
            rows = running_rows(status)
        nit += 1
        k += 1
        values, grads = _evaluate_rows(fun, jac, X, rows, active, args)
        expected = rows.size if compact else X.shape[0]
        if values.ndim != 1 or values.size != expected:
            settle_best(best, spare, held)
            return WRONG_FUN, nit
        if grads.shape[0] != expected or grads.shape[1] != X.shape[1]:
            settle_best(best, spare, held)
            return WRONG_JAC, nit
        if k == lrs.size and nit < maxiter:
            # The chunk is used up: the points are evaluated, recorded on the next call.
            _store_rows(F, G, values, grads, rows, compact)
            settle_best(best, spare, held)
            return NEED_LR, nit
        # The values stored and the points recorded, in one pass; the gradients stored
        # too, unless the next step can read them in fun's array (then only a stopped
        # problem's gradient is stored, and ALL_STOPPED leaves none to store).
        stepped, copy = _stepped_gradients(grads, G, active)
        count = store_observe(X, G, F, values, grads, rows, compact, nit, best, spare, held,
                              scalars, settings, status, nits, copy)


@numba.njit(**_ROWS)
def _store_rows(F, G, values, grads, rows, compact):
    """``F[k], G[k] = values[j], grads[j]`` for ``k = rows[j]`` (``j = k`` unless ``compact``)."""
    for j in range(rows.size):
        row = rows[j]
        source = j if compact else row
        F[row] = float(values[source])
        _row_copy(G[row], grads[source])


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
