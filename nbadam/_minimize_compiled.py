"""The iteration of :func:`nbadam.minimize` as Numba code.

* :func:`observe` records a point just evaluated (best point, gradient norm,
  the ``ftol`` window) and decides whether the run stops there.
* ``update_<rule>`` applies one step of a rule: the host scalars, computed
  exactly as :mod:`nbadam.optimizers` computes them (float64, then cast to
  the parameters' dtype), and the rule's serial kernel.  The steps are
  therefore bit-identical to those of ``Optimizer.step``.
* :func:`iterate` is ``observe``, then the update and the projection onto
  the bounds.  The Python loop of :mod:`nbadam.minimize` calls it once per
  step, so its overhead is one dispatch.
* :func:`run` is the whole loop in nopython mode, for objectives that are
  Numba functions: ``fun``/``jac``, ``observe``, the update and the
  projection with no Python in between.  It takes the rule's update as an
  argument, so that each compiled loop links one kernel, and it runs over a
  chunk of learning rates and returns, so that a schedule (a Python callable)
  is evaluated between chunks.

Both loops run the same ``observe``, updates and projection, so they give
bit-identical results.  State travels in a few packed arrays (a dispatch with
few arguments is what keeps the Python loop cheap); the index constants below
name their slots.  Numba keys the on-disk cache of these functions on this
file only: after editing the kernels in ``_kernels/cpu.py``, clear the cache
(or set ``NUMBA_CACHE_DIR`` to a fresh directory) before trusting results.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.core.registry import CPUDispatcher
from numba.extending import overload

from ._kernels import cpu

# Update rules (``settings[RULE]``); AdamW is ADAM or AMSGRAD with decoupled decay.
ADAM, AMSGRAD, NADAM, ADAMAX, RADAM = range(5)
RULE_CODES = {"adam": ADAM, "adamw": ADAM, "amsgrad": AMSGRAD, "nadam": NADAM,
              "adamax": ADAMAX, "radam": RADAM}
#: Rows of the state array per rule (torch's names, in kernel argument order).
STATE_NAMES = {
    ADAM: ("exp_avg", "exp_avg_sq"),
    AMSGRAD: ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    NADAM: ("exp_avg", "exp_avg_sq"),
    ADAMAX: ("exp_avg", "exp_inf"),
    RADAM: ("exp_avg", "exp_avg_sq"),
}

# Slots of ``scalars`` (float64): the hyperparameters, then the running scalars,
# then from HISTORY on the ring of the last ``FTOL_WINDOW + 1`` values of f.
# HALF holds 0.5: ``a ** 0.5`` with a literal exponent is rewritten by LLVM
# into ``sqrt(a)``, which differs from the ``pow(a, 0.5)`` that Python (and so
# ``Optimizer.step``) computes in the last bit for about one step count in a
# thousand; an exponent read from memory keeps the ``pow`` call.
(BETA1, BETA2, EPS, WEIGHT_DECAY, DECOUPLED, MOMENTUM_DECAY, GTOL, FTOL, HALF,
 MU_PRODUCT, BEST_F, GNORM, HISTORY) = range(13)
# Slots of ``settings`` (int64).
RULE, MAXITER, FTOL_WINDOW, RETURN_BEST, BOUNDED = range(5)
SETTINGS_SIZE = 5

# What :func:`iterate` and :func:`run` return.
CONTINUE = -1          # a step was taken; evaluate the new point
NEED_LR = -2           # run: the chunk of learning rates is used up
WRONG_JAC = -3         # run: jac returned a gradient of the wrong size
CONVERGED_GTOL = 0
MAXITER_REACHED = 1
CONVERGED_FTOL = 2
NONFINITE = 3
CALLBACK_STOP = 99

_OPTIONS = {"cache": True, "fastmath": False, "boundscheck": False}

# The serial kernels only.  Numba resolves module globals that are dispatchers,
# not attributes of a ``_Pair``.  The parallel builds are left out on purpose:
# a cached function that links a ``parallel=True`` kernel aborts when loaded
# into a process whose Numba thread pool has not started ("Symbol not found:
# allocate_sched"), and in minimize the update is rarely the cost next to
# ``fun`` and ``jac``, whose BLAS threads would compete with Numba's.
_adam = cpu.adam.serial
_adam_amsgrad = cpu.adam_amsgrad.serial
_nadam = cpu.nadam.serial
_adamax = cpu.adamax.serial
_radam = cpu.radam.serial


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
def _prologue(scalars, lr, decoupled):
    """``(l2, decay)`` of the common prologue (minimize never maximizes: grad_sign is 1)."""
    if decoupled and scalars[DECOUPLED] != 0.0:
        return 0.0, 1.0 - lr * scalars[WEIGHT_DECAY]
    return scalars[WEIGHT_DECAY], 1.0


# One update per rule: step ``t`` of ``x`` in place, with the host scalars of
# ``optimizers.py`` (float64, then cast to the parameters' dtype through ``c``,
# as ``dtype.type(s)`` does).  They share one signature so that the compiled
# loop can take the rule's update as an argument and link only its kernel.
@numba.njit(**_OPTIONS)
def _adam_scalars(x, scalars, lr, t):
    """The nine host scalars of Adam and AMSGrad, in ``x``'s dtype."""
    beta1, beta2, half, tf = scalars[BETA1], scalars[BETA2], scalars[HALF], float(t)
    l2, decay = _prologue(scalars, lr, True)
    c = np.empty(9, x.dtype)
    c[0], c[1], c[2], c[3], c[4], c[5] = 1.0, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2
    c[6] = -(lr / (1.0 - beta1 ** tf))
    c[7] = (1.0 - beta2 ** tf) ** half
    c[8] = scalars[EPS]
    return c


@numba.njit(**_OPTIONS)
def update_adam(x, g, state, scalars, lr, t):
    c = _adam_scalars(x, scalars, lr, t)
    _adam(x, g, state[0], state[1], c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])


@numba.njit(**_OPTIONS)
def update_amsgrad(x, g, state, scalars, lr, t):
    c = _adam_scalars(x, scalars, lr, t)
    _adam_amsgrad(x, g, state[0], state[1], state[2], c[0], c[1], c[2], c[3], c[4], c[5],
                  c[6], c[7], c[8])


@numba.njit(**_OPTIONS)
def update_nadam(x, g, state, scalars, lr, t):
    beta1, beta2, psi, tf = scalars[BETA1], scalars[BETA2], scalars[MOMENTUM_DECAY], float(t)
    l2, decay = _prologue(scalars, lr, True)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (tf * psi))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** (float(t + 1) * psi))
    mu_product = scalars[MU_PRODUCT] * mu
    c = np.empty(10, x.dtype)
    c[0], c[1], c[2], c[3], c[4], c[5] = 1.0, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2
    c[6] = 1.0 - beta2 ** tf
    c[7] = scalars[EPS]
    c[8] = -lr * (1.0 - mu) / (1.0 - mu_product)
    c[9] = (-lr * mu_next) / (1.0 - mu_product * mu_next)
    _nadam(x, g, state[0], state[1], c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
           c[9])
    scalars[MU_PRODUCT] = mu_product


@numba.njit(**_OPTIONS)
def update_adamax(x, g, state, scalars, lr, t):
    beta1, beta2, tf = scalars[BETA1], scalars[BETA2], float(t)
    l2, _ = _prologue(scalars, lr, False)
    c = np.empty(6, x.dtype)
    c[0], c[1], c[2], c[3] = 1.0, l2, 1.0 - beta1, beta2
    c[4] = scalars[EPS]
    c[5] = -(lr / (1.0 - beta1 ** tf))
    _adamax(x, g, state[0], state[1], c[0], c[1], c[2], c[3], c[4], c[5])


@numba.njit(**_OPTIONS)
def update_radam(x, g, state, scalars, lr, t):
    beta1, beta2, half, tf = scalars[BETA1], scalars[BETA2], scalars[HALF], float(t)
    l2, decay = _prologue(scalars, lr, True)
    bc2 = 1.0 - beta2 ** tf
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - float(2 * t) * (beta2 ** tf) / bc2
    rectified = rho_t > 5.0
    rect = 1.0
    if rectified:
        rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) ** half
    c = np.empty(11, x.dtype)
    c[0], c[1], c[2], c[3], c[4], c[5] = 1.0, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2
    c[6] = 1.0 - beta1 ** tf
    c[7] = lr
    c[8] = bc2 ** half
    c[9] = scalars[EPS]
    c[10] = rect
    _radam(x, g, state[0], state[1], c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
           c[9], c[10], rectified)


#: The update of each rule code.
UPDATES = (update_adam, update_amsgrad, update_nadam, update_adamax, update_radam)


@numba.njit(**_OPTIONS)
def _update(x, g, state, scalars, settings, lr, t):
    """The update of rule ``settings[RULE]``."""
    rule = settings[RULE]
    if rule == ADAM:
        update_adam(x, g, state, scalars, lr, t)
    elif rule == AMSGRAD:
        update_amsgrad(x, g, state, scalars, lr, t)
    elif rule == NADAM:
        update_nadam(x, g, state, scalars, lr, t)
    elif rule == ADAMAX:
        update_adamax(x, g, state, scalars, lr, t)
    else:
        update_radam(x, g, state, scalars, lr, t)


@numba.njit(**_OPTIONS)
def observe(x, g, f, nit, stop, best, scalars, settings):
    """Record the point ``x`` (value ``f``, gradient ``g``) and decide whether to stop.

    Returns ``CONTINUE`` or the status that ends the run; see :func:`iterate`.
    """
    gnorm = inf_norm(g)
    scalars[GNORM] = gnorm
    finite = math.isfinite(f) and math.isfinite(gnorm)
    if finite and f < scalars[BEST_F]:
        scalars[BEST_F] = f
        if settings[RETURN_BEST] != 0:
            _copy(best[0], x)
            _copy(best[1], g)
    window = settings[FTOL_WINDOW]
    history = scalars[HISTORY:]
    history[nit % (window + 1)] = f
    if stop:
        return CALLBACK_STOP
    if not finite:
        return NONFINITE
    if gnorm <= scalars[GTOL] and scalars[GTOL] > 0.0:
        return CONVERGED_GTOL
    ftol = scalars[FTOL]
    if nit >= window and ftol > 0.0 and _settled(history, ftol, scalars[BEST_F]):
        return CONVERGED_FTOL
    if nit >= settings[MAXITER]:
        return MAXITER_REACHED
    return CONTINUE


@numba.njit(**_OPTIONS)
def iterate(x, g, f, lr, nit, stop, state, best, bounds, scalars, settings):
    """Record the point ``x`` (value ``f``, gradient ``g``), then stop or step.

    Parameters
    ----------
    x, g : ndarray
        The current point (updated in place when a step is taken) and its gradient,
        both 1-D, contiguous, of one dtype.
    f : float
        The objective at ``x``.
    lr : float
        The learning rate of the next step (unused when the run stops).
    nit : int
        Steps taken so far; the next step is step ``nit + 1``.
    stop : bool
        The callback asked to stop.
    state, best, bounds : ndarray
        2-D arrays of the parameters' dtype: the optimizer state rows, the best
        point and its gradient, the lower and upper bounds.
    scalars, settings : ndarray
        Packed float64 hyperparameters, running scalars and ``ftol`` history,
        and int64 settings (see the slot constants of this module).

    Returns
    -------
    int
        ``CONTINUE`` when a step was taken, else the status that ends the run.
    """
    status = observe(x, g, f, nit, stop, best, scalars, settings)
    if status != CONTINUE:
        return status
    _update(x, g, state, scalars, settings, lr, nit + 1)
    if settings[BOUNDED] != 0:
        project(x, bounds[0], bounds[1])
    return CONTINUE


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
def run(fun, jac, update, args, x, g, f, lrs, nit, state, best, bounds, scalars, settings):
    """The loop of :func:`nbadam.minimize` in nopython mode, over one chunk of ``lrs``.

    ``fun(x, *args)`` returns the objective, or ``(f, g)`` when ``jac`` is None;
    otherwise ``jac(x, *args)`` returns the gradient.  On entry ``f`` and ``g``
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
        # What ``iterate`` does, with this rule's update called directly.
        status = observe(x, g, f, nit, False, best, scalars, settings)
        if status != CONTINUE:
            return status, nit, f
        update(x, g, state, scalars, lrs[k], nit + 1)
        if settings[BOUNDED] != 0:
            project(x, bounds[0], bounds[1])
        nit += 1
        k += 1
        value, grad = _evaluate(fun, jac, x, args)
        f = float(value)
        if grad.size != g.size:
            return WRONG_JAC, nit, f
        _copy(g, grad)
