"""How a run of :func:`nbadam.minimize` ends: status codes, messages and the summary.

The codes follow SciPy's conventions (0 success, 1 iteration limit, 2 and 3
method-specific, 99 stopped by the callback); the loops return them and
:data:`MESSAGES` says what each means.  :data:`CONTINUE` and the other
negative codes pass between the loops and never reach the result.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import OptimizeResult

CONTINUE = -1          # a step was taken; evaluate the new point
NEED_LR = -2           # the compiled loop used up its chunk of learning rates
WRONG_JAC = -3         # the compiled loop: jac returned a gradient of the wrong size
WRONG_FUN = -4         # the compiled batch loop: fun returned the wrong number of values
ALL_STOPPED = -5       # the batch loops: every problem has stopped
CONVERGED_GTOL = 0
MAXITER_REACHED = 1
CONVERGED_FTOL = 2
NONFINITE = 3
CALLBACK_STOP = 99

MESSAGES = {
    CONVERGED_GTOL: "Optimization terminated successfully: "
                    "the gradient's infinity norm is <= gtol.",
    MAXITER_REACHED: "Maximum number of iterations has been exceeded.",
    CONVERGED_FTOL: "Optimization terminated successfully: the function value "
                    "stayed within ftol of its lowest value over the last "
                    "ftol_window iterations.",
    NONFINITE: "Stopped: the function value or the gradient is not finite "
               "(NaN or infinity).",
    CALLBACK_STOP: "`callback` raised `StopIteration`.",
}
SUCCESS = (CONVERGED_GTOL, CONVERGED_FTOL)


def result(x, fun: float, jac, nit: int, nfev: int, njev: int, status: int) -> OptimizeResult:
    """The :class:`~scipy.optimize.OptimizeResult` of a finished run."""
    return OptimizeResult(x=x, fun=fun, jac=jac, nit=nit, nfev=nfev, njev=njev, status=status,
                          success=status in SUCCESS, message=MESSAGES[status])


def print_summary(res: OptimizeResult) -> None:
    """SciPy's ``disp=True`` summary."""
    print(("" if res.success else "Warning: ") + res.message)
    print(f"         Current function value: {res.fun:f}")
    print(f"         Iterations: {res.nit:d}")
    print(f"         Function evaluations: {res.nfev:d}")
    print(f"         Gradient evaluations: {res.njev:d}")


def print_batch_summary(res: OptimizeResult) -> None:
    """``disp=True`` for :func:`nbadam.minimize_batch`: how many problems ended how."""
    count = len(res.status)
    print(f"{int(np.count_nonzero(res.success))} of {count} problems converged")
    for code in sorted(set(res.status.tolist())):
        print(f"  status {code} ({int(np.count_nonzero(res.status == code))}): "
              f"{MESSAGES[code]}")
    if count:
        print(f"         Iterations: {int(res.nit.min())} to {int(res.nit.max())}")
        print(f"         Function evaluations: {int(res.nfev.sum())}")
