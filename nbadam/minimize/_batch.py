"""The loops of :func:`nbadam.minimize_batch`: K independent problems, one row each.

The batch keeps one row per problem in every array the single-problem loop
uses (the iterate ``X`` and gradient ``G``, ``(K, n)``; the state arrays,
flat ``K * n`` vectors; the packed ``scalars`` and ``settings``; the
running scalars) and runs, per step, the pieces of :mod:`._compiled` that
:func:`nbadam.minimize` runs, on each row: ``observe`` (record the point,
decide whether that problem stops), the rule's update of the problems that
continue, the projection onto the bounds.  So row ``k`` takes exactly the
steps :func:`nbadam.minimize` takes on problem ``k`` alone, and stops when it
would, while the others go on.

Two loops, as for :func:`nbadam.minimize`:

* the Python loop: evaluate ``fun``/``jac`` on the batch, then three calls
  into compiled code (observe, update, project) for all the problems;
* the compiled loop (:func:`._compiled.run_batch`), when ``fun`` and ``jac``
  are Numba functions of the batch: the same steps with no Python per step.
  With ``parallel=True`` and ``active_only=True``, one thread per share of
  the problems runs it on views of their rows (:func:`_run_compiled_threads`).

With ``options={"device": "cuda"}`` the batch runs on the GPU
(:mod:`._batch_device`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import math
import operator
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core.errors import NumbaError
from numba.typed import List
from scipy.optimize import OptimizeResult

from .. import _config, _launch, _validate, rules
from . import _compiled, _status
from ._inputs import (
    BATCH_OPTIONS,
    _batch_evaluator,
    _batch_first_evaluation,
    _choose_compiled,
    _normalize_batch_bounds,
    _parse_options,
    _split_per_problem,
    _wrap_batch_callback,
)

#: Learning rates evaluated per call of the compiled loop (a schedule is Python).
LR_CHUNK = 4096
#: With ``parallel=None``, batches of at least this many problems (and
#: ``_config.PARALLEL_MIN_SIZE`` elements) run their loops over problems in
#: parallel, one chunk of problems per thread.  A parallel region costs a thread
#: wake-up per step; on a 2-core machine shared with other jobs it did not pay
#: below 100,000 problems of 10 variables (``benchmarks/scripts/minimize_batch.py``).
PARALLEL_MIN_PROBLEMS = 100_000


class BatchResult(OptimizeResult):
    """The result of :func:`nbadam.minimize_batch`: per-problem arrays.

    The fields of :class:`scipy.optimize.OptimizeResult`, each with one entry
    per problem: ``x`` (K, n), ``fun`` (K,), ``jac`` (K, n), ``nit``,
    ``nfev``, ``njev``, ``status`` (K,) int64, ``success`` (K,) bool and
    ``message`` (K,) str.  :meth:`problem` gives problem ``k``'s own result.
    """

    def problem(self, k: int) -> OptimizeResult:
        """Problem ``k``'s result, as :func:`nbadam.minimize` returns it (copies).

        Negative ``k`` counts from the end, as in indexing.
        """
        count = len(self["status"])
        index = operator.index(k)
        if not -count <= index < count:
            raise IndexError(f"problem {k} is out of range for a batch of {count} problems")
        return _status.result(self["x"][index].copy(), float(self["fun"][index]),
                              self["jac"][index].copy(), int(self["nit"][index]),
                              int(self["nfev"][index]), int(self["njev"][index]),
                              int(self["status"][index]))


def minimize_batch(fun: Callable[..., Any], X: np.ndarray, args: tuple, jac: Any,
                   callback: Callable[..., Any] | None, rule: rules.Rule, bounds: Any,
                   options: dict[str, Any]) -> BatchResult:
    """Minimize the K problems of the normalised ``X`` (a fresh (K, n) float array)."""
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {fun!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    K, n = X.shape
    if any(update.reduce is not None for update in rule.updates):
        raise ValueError(f"minimize_batch does not run method {rule.name!r}: its step needs "
                         "sums over each problem's whole vector (a reduction), which the batch "
                         "kernels do not compute; call nbadam.minimize on each problem")
    options, per_problem = _split_per_problem(rule, options, K)
    opts = _parse_options(rule, options, BATCH_OPTIONS)
    if opts["state_precision"] != "float32":
        raise ValueError("options['state_precision'] is not supported by minimize_batch: its "
                         "loops keep float32 state; leave it 'float32', or call minimize per "
                         "problem")
    if opts["clip_grad_norm"] is not None:
        raise ValueError("options['clip_grad_norm'] is not supported by minimize_batch: its "
                         "steps share one kernel launch over all problems; scale each "
                         "problem's gradient row in jac, or call minimize per problem")
    if callable(opts["lr"]) and _validate.scheduled_beta1(opts["lr"], 0) is not None:
        # The batch's loops share one set of hyperparameters for every step.
        raise ValueError(f"minimize_batch does not change beta1 per step, but the lr schedule "
                         f"{opts['lr']!r} sets it; pass cycle_momentum=False to "
                         "schedules.one_cycle, or run nbadam.minimize per problem")
    opts["active_only"] = _validate.flag("active_only", opts["active_only"])
    if opts["parallel"] is not None:
        opts["parallel"] = _validate.flag("parallel", opts["parallel"])
    lower, upper = _normalize_batch_bounds(bounds, K, n)
    device = None
    if opts["device"] == "cuda":
        from . import _batch_device as device
        device.check(jac, bounds, opts)
    batch = _Batch.pack(rule, opts, per_problem, X, lower, upper)
    if K == 0:
        return _result(batch, X, np.empty(0), np.empty((0, n), X.dtype), None)
    if device is not None:
        X, F, G = device.run(fun, X, args, jac, callback, batch)
        return _finish(batch, X, F, G, None, opts)
    if lower is not None:
        _compiled.project_rows(X, batch.rows(), batch.status, batch.bounds)

    rows = None if not opts["active_only"] else batch.rows()
    evaluate, counted = _batch_evaluator(fun, jac, args, K, n, X.dtype, lower, upper,
                                         opts["active_only"])
    raw = _batch_first_evaluation(fun, jac, args, X, rows)
    values, grads = evaluate(X, batch.rows(), raw)
    F = values.copy()
    G = np.array(grads, dtype=X.dtype, order="C", copy=True)
    done = False
    values, grads = raw
    returns = (None if isinstance(values, np.ndarray) and values.ndim == 1
               and isinstance(grads, np.ndarray) and grads.ndim == 2
               else "fun does not return a 1-D array, or jac a 2-D array")
    if _choose_compiled(opts["compiled"], fun, jac, callback, returns):
        threads = _threads(opts, K)
        if threads > 1:
            done = _run_compiled_threads(batch, fun, jac, args, X, G, F, threads,
                                         strict=opts["compiled"] is True)
        else:
            done = _run_compiled(batch, fun, jac, args, X, G, F, opts["active_only"],
                                 _parallel(opts["parallel"], K, n),
                                 strict=opts["compiled"] is True)
    if not done:
        _run_python(batch, evaluate, _wrap_batch_callback(callback), X, G, F,
                    opts["active_only"], _parallel(opts["parallel"], K, n))
    return _finish(batch, X, F, G, counted, opts)


def _finish(batch: _Batch, X: np.ndarray, F: np.ndarray, G: np.ndarray,
            counted: np.ndarray | None, opts: dict[str, Any]) -> BatchResult:
    res = _result(batch, X, F, G, counted)
    if opts["disp"]:
        _status.print_batch_summary(res)
    return res


@dataclasses.dataclass
class _Batch:
    """What both loops hand to the Numba code: one row per problem."""

    update: rules.Update
    loops: _compiled.Loops
    shared: bool            # one set of scalars per step for all problems (step_shared)
    hypers: Any             # the hyperparameter tuple (shared), or a typed list of them
    hyper_of: np.ndarray    # int64 (K,): problem k has hypers[hyper_of[k]]
    state: tuple            # the update's state arrays, flat (K * n), the iterate's dtype
    running: np.ndarray     # float64 (1 or K, r): the rule's running scalars
    best: np.ndarray        # (K, 2, n): best point and gradient, or (K, 2, 0)
    bounds: np.ndarray      # (1 or K, 2, n), or (1, 2, 0) without bounds
    scalars: np.ndarray     # float64 (K, ...): the loop's scalars and ftol history
    settings: np.ndarray    # int64 (K, 4): maxiter, ftol_window, return_best, bounded
    status: np.ndarray      # int64 (K,): CONTINUE while a problem runs, then its status
    nits: np.ndarray        # int64 (K,): the steps each stopped problem took
    lr: Any                 # a number or a schedule, for every problem ...
    row_lrs: np.ndarray     # ... or float64 (K,), one per problem (else empty)
    maxiter: int
    return_best: bool

    @classmethod
    def pack(cls, rule: rules.Rule, opts: dict[str, Any], per_problem: dict[str, list],
             X: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None) -> _Batch:
        K, n = X.shape
        dtype = X.dtype
        names = [name for name in rule.defaults if name != "lr"]
        hyper_index: dict[tuple, int] = {}
        hyper_of = np.zeros(K, dtype=np.int64)
        updates = set()
        rows_vary = any(name in per_problem for name in names)
        for k in range(K if rows_vary else min(K, 1)):
            values = {name: per_problem[name][k] if name in per_problem else opts[name]
                      for name in names}
            hyper = rule.hyper(values)
            hyper_of[k] = hyper_index.setdefault(hyper, len(hyper_index))
            updates.add(rule.update({**values, "lr": opts["lr"]}))
        if not hyper_index:  # K == 0
            values = {name: opts[name] for name in names}
            hyper_index[rule.hyper(values)] = 0
            updates.add(rule.update({**values, "lr": opts["lr"]}))
        if len(updates) != 1:
            raise ValueError(f"the per-problem options of method {rule.name!r} select "
                             "different updates; give the options that choose the update "
                             "one value for every problem")
        update = updates.pop()
        if update.from_params or update.evaluation is not None:
            raise ValueError(f"minimize_batch does not run method {rule.name!r}: its state "
                             "starts at the parameters and it reports an averaged point; "
                             "call minimize on each problem instead")
        hyper_values = list(hyper_index)
        starts = np.array([update.initial_values(h) for h in hyper_values],
                          dtype=np.float64).reshape(len(hyper_values), len(update.state))
        state = tuple(np.repeat(starts[hyper_of, j].astype(dtype), n)
                      for j in range(len(update.state)))
        row_lrs = (np.array(per_problem["lr"], dtype=np.float64) if "lr" in per_problem
                   else np.empty(0))
        shared = len(hyper_values) == 1 and not row_lrs.size
        running = np.tile(np.array(list(rule.running.values()), dtype=np.float64),
                          (1 if shared else K, 1))
        scalars, settings = _compiled.pack(opts, n, lower is not None)
        return cls(update=update, loops=_compiled.loops(update), shared=shared,
                   hypers=hyper_values[0] if shared else List(hyper_values),
                   hyper_of=hyper_of, state=state, running=running,
                   best=np.zeros((K, 2, n if opts["return_best"] else 0), dtype),
                   bounds=_bounds_array(lower, upper, dtype),
                   scalars=np.tile(scalars, (K, 1)), settings=np.tile(settings, (K, 1)),
                   status=np.full(K, _status.CONTINUE, dtype=np.int64),
                   nits=np.zeros(K, dtype=np.int64), lr=opts["lr"], row_lrs=row_lrs,
                   maxiter=opts["maxiter"], return_best=opts["return_best"])

    def share(self, start: int, stop: int, n: int) -> _Batch:
        """Problems ``start`` to ``stop`` (of ``n`` variables) as a batch of their own, on
        views of their rows: what one thread of the threaded loop runs."""
        K = self.status.size

        def rows_of(array: np.ndarray) -> np.ndarray:  # per problem, or one row for all
            return array[start:stop] if array.shape[0] == K else array
        return dataclasses.replace(
            self, hyper_of=self.hyper_of[start:stop],
            state=tuple(array[start * n:stop * n] for array in self.state),
            running=rows_of(self.running), best=self.best[start:stop],
            bounds=rows_of(self.bounds), scalars=self.scalars[start:stop],
            settings=self.settings[start:stop], status=self.status[start:stop],
            nits=self.nits[start:stop], row_lrs=rows_of(self.row_lrs))

    def rows(self) -> np.ndarray:
        """The problems still running."""
        return _compiled.running_rows(self.status)

    def step(self, parallel: bool = False) -> Callable:
        """The rule's batch step for these problems (:class:`._compiled.Loops`)."""
        if self.shared:
            return self.loops.step_shared_parallel if parallel else self.loops.step_shared
        return self.loops.step_rows_parallel if parallel else self.loops.step_rows


def _bounds_array(lower: np.ndarray | None, upper: np.ndarray | None,
                  dtype: np.dtype) -> np.ndarray:
    """``(1 or K, 2, n)`` lower and upper bounds in the iterate's dtype, or ``(1, 2, 0)``."""
    if lower is None:
        return np.empty((1, 2, 0), dtype)
    return np.stack([lower, upper], axis=1).astype(dtype)


def _parallel(choice: bool | None, K: int, n: int) -> bool:
    """Whether the loops over problems run in parallel (and the thread pool is set up)."""
    if choice is None:
        choice = K >= PARALLEL_MIN_PROBLEMS and K * n >= _config.PARALLEL_MIN_SIZE
    if choice:
        _launch._ensure_threading()
    return choice


def _run_python(batch: _Batch, evaluate: Callable, callback: Callable | None, X: np.ndarray,
                G: np.ndarray, F: np.ndarray, active_only: bool, parallel: bool) -> None:
    """The Python loop: evaluate the batch, then observe, update and project per step."""
    observe = _compiled.observe_rows_parallel if parallel else _compiled.observe_rows
    step, project = batch.step(parallel), _compiled.project_rows
    state, best, bounds, hypers, hyper_of, running, scalars, settings, status, nits = (
        batch.state, batch.best, batch.bounds, batch.hypers, batch.hyper_of, batch.running,
        batch.scalars, batch.settings, batch.status, batch.nits)
    bounded = bool(settings[0, _compiled.BOUNDED])
    schedule = batch.lr if callable(batch.lr) else None
    lrs = batch.row_lrs if batch.row_lrs.size else np.full(1, batch.lr if schedule is None
                                                            else 0.0)
    maxiter = batch.maxiter
    rows = batch.rows()
    K = X.shape[0]
    nit, stop = 0, False
    while True:
        count = observe(X, G, F, rows, nit, stop, best, scalars, settings, status, nits)
        if count == 0:
            return
        if schedule is not None:
            lrs[0] = _validate.scheduled_lr(schedule, nit) if nit < maxiter else 0.0
        step(X, G, state, rows, status, hypers, hyper_of, running, lrs, nit + 1)
        if bounded:
            project(X, rows, status, bounds)
        if count < rows.size:
            rows = batch.rows()
        nit += 1
        values, grads = evaluate(X, rows)
        if active_only or rows.size == K:
            F[rows] = values
            G[rows] = grads
        else:
            F[rows] = values[rows]
            G[rows] = grads[rows]
        if callback is not None:
            running_now = status == _status.CONTINUE
            stop = callback(X, F, G, np.where(running_now, nit, nits), running_now)


def _run_compiled(batch: _Batch, fun: Callable, jac: Any, args: tuple, X: np.ndarray,
                  G: np.ndarray, F: np.ndarray, active_only: bool, parallel: bool,
                  strict: bool, offset: int | None = None) -> bool:
    """The compiled loop, chunk by chunk of learning rates; False if it does not compile.

    With ``offset``, the arrays are the rows of a share of the problems, the first
    of them problem ``offset`` of the batch (``active_only``: ``fun`` is given the
    problems' numbers in the batch).
    """
    jac = None if jac is True else jac
    n = X.shape[1]
    observe = _compiled.observe_rows_parallel if parallel else _compiled.observe_rows
    store_observe = (_compiled.store_observe_rows_parallel if parallel
                     else _compiled.store_observe_rows)
    step = batch.step(parallel)
    active = (None if not active_only else np.empty(0, dtype=np.int64) if offset is None
              else np.full(1, offset, dtype=np.int64))
    schedule = batch.lr if callable(batch.lr) else None
    nit = 0
    while True:
        count = min(LR_CHUNK, batch.maxiter - nit)
        if batch.row_lrs.size:
            lrs = np.zeros(count)
        elif schedule is None:
            lrs = np.full(count, batch.lr)
        else:
            lrs = np.array([_validate.scheduled_lr(schedule, k) for k in range(nit, nit + count)],
                           dtype=np.float64)
        try:
            code, nit = _compiled.run_batch(
                fun, jac, observe, store_observe, step, active, args, X, G, F, lrs,
                batch.row_lrs, nit, batch.state, batch.best, batch.bounds, batch.hypers,
                batch.hyper_of, batch.running, batch.scalars, batch.settings, batch.status,
                batch.nits)
        except NumbaError as exc:  # raised while compiling, before any step
            if strict:
                raise TypeError(f"compiled=True, but the loop does not compile for this fun, "
                                f"jac and args: {exc}") from None
            return False
        if code == _status.WRONG_FUN:
            raise ValueError(f"fun must return one value per problem; at iteration {nit} it "
                             "returned another number of values")
        if code == _status.WRONG_JAC:
            raise ValueError(f"jac must return one gradient per problem, shape (rows, {n}); "
                             f"at iteration {nit} it returned another shape")
        if code == _status.ALL_STOPPED:
            return True


def _threads(opts: dict[str, Any], K: int) -> int:
    """How many threads run the compiled loop, each on its share of the problems: with
    ``parallel=True`` and ``active_only=True`` (``fun`` then sees the rows of one
    share at a time, from several threads at once), one per Numba thread; else 1."""
    if opts["parallel"] is True and opts["active_only"]:
        return max(min(numba.get_num_threads(), K), 1)
    return 1


def _run_compiled_threads(batch: _Batch, fun: Callable, jac: Any, args: tuple, X: np.ndarray,
                          G: np.ndarray, F: np.ndarray, threads: int, strict: bool) -> bool:
    """:func:`_run_compiled` (``active_only``), with the problems split in ``threads``
    consecutive shares, each run to its end by a thread of its own.

    The problems are independent and the loop holds no GIL, so the threads never
    wait for each other: each takes its problems' steps as the whole batch would.
    False if the loop does not compile (then no thread took a step).
    """
    K, n = X.shape
    edges = np.linspace(0, K, threads + 1).round().astype(np.int64).tolist()

    def run(start: int, stop: int) -> bool:
        return _run_compiled(batch.share(start, stop, n), fun, jac, args, X[start:stop],
                             G[start:stop], F[start:stop], True, False, strict, offset=start)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, start, stop)
                   for start, stop in itertools.pairwise(edges) if stop > start]
        done = [future.result() for future in futures]
    # The loop compiles for the types of the arrays, which every share has alike.
    if any(done) and not all(done):
        raise RuntimeError("the compiled loop compiled for some shares of the problems "
                           "and not for others")
    return all(done)


def _result(batch: _Batch, X: np.ndarray, F: np.ndarray, G: np.ndarray,
            counted: np.ndarray | None) -> BatchResult:
    """The per-problem result: the last point, or the best one as :func:`nbadam.minimize`."""
    status, nit = batch.status.copy(), batch.nits.copy()
    best_f = batch.scalars[:, _compiled.BEST_F] if batch.scalars.size else np.empty(0)
    # A run that met gtol returns the point that met it, which is what its message says.
    use_best = ((status != _status.CONVERGED_GTOL) & (best_f < math.inf)
                if batch.return_best else np.zeros(status.size, dtype=bool))
    x = np.where(use_best[:, None], batch.best[:, 0], X) if batch.return_best else X.copy()
    jac = np.where(use_best[:, None], batch.best[:, 1], G) if batch.return_best else G.copy()
    fun = np.where(use_best, best_f, F)
    nfev = nit + 1 if counted is None else counted.copy()
    return BatchResult(x=x.astype(X.dtype, copy=False), fun=fun.astype(np.float64),
                       jac=jac.astype(X.dtype, copy=False), nit=nit, nfev=nfev, njev=nit + 1,
                       status=status, success=np.isin(status, _status.SUCCESS),
                       message=np.array([_status.MESSAGES[s] for s in status.tolist()],
                                        dtype=str))
