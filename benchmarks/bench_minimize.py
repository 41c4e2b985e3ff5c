"""asv: ``nbadam.minimize``, the SciPy-compatible driver.

* ``Overhead``: what the Python loop adds per iteration on a 10-element
  problem whose ``fun``/``jac`` cost almost nothing (the time of the same
  number of bare ``fun`` + ``jac`` calls is subtracted).
* ``Rosenbrock``: the 10-dimensional Rosenbrock function with NumPy
  ``fun``/``jac`` (SciPy's ``rosen``/``rosen_der``), and with ``@njit`` ones
  run by the Python loop (``compiled=False``) and by the compiled loop (the
  default for Numba functions), so the last two differ only in the loop.
* ``Batch``: ``nbadam.minimize_batch`` on 1,000 Rosenbrock starts (the
  multi-start problem of ``scripts/minimize_batch.py``), its compiled loop
  with ``fun`` on every row, with ``active_only``, and with ``active_only``
  and ``parallel=True`` (one thread per share of the problems).

Every run stops at ``maxiter`` (the starting points are far from a
minimum), so the timings compare equal iteration counts.  Skipped while
``nbadam.minimize`` does not exist.
"""

from __future__ import annotations

import time

import numpy as np

N = 10
ITERATIONS = 2_000


def _minimize():
    try:
        from nbadam.minimize import minimize
    except ImportError as exc:
        raise NotImplementedError(f"nbadam.minimize is not available: {exc}") from None
    return minimize


def _square(x):
    return float(x @ x)


def _square_grad(x):
    return 2.0 * x


def _njit_rosenbrock():
    """Rosenbrock and its gradient as Numba functions (shared with ``minimize_speed``)."""
    from .scripts.minimize_speed import rosen_der_nb, rosen_nb

    return rosen_nb, rosen_der_nb


def _bare_calls(fun, jac, x, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fun(x)
        jac(x)
    return time.perf_counter() - start


class Overhead:
    """Per-iteration cost of the Python loop, n = 10, a cheap quadratic."""

    repeat = (3, 10, 2.0)
    timeout = 300

    def setup(self):
        self.minimize = _minimize()
        self.x0 = np.full(N, 10.0)
        self.options = {"maxiter": ITERATIONS, "compiled": False}
        self.minimize(_square, self.x0, jac=_square_grad, options={"maxiter": 5})

    def time_python_loop(self):
        self.minimize(_square, self.x0, jac=_square_grad, options=self.options)

    def track_overhead_us_per_iteration(self):
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            result = self.minimize(_square, self.x0, jac=_square_grad, options=self.options)
            total = time.perf_counter() - start
            bare = _bare_calls(_square, _square_grad, self.x0, int(result.nit))
            samples.append((total - bare) / max(int(result.nit), 1) * 1e6)
        return float(np.median(samples))

    track_overhead_us_per_iteration.unit = "us"


class Rosenbrock:
    """Rosenbrock, n = 10: NumPy fun/jac, @njit fun/jac in the Python loop and compiled."""

    params = (["numpy", "njit_python_loop", "njit_compiled"],)
    param_names = ["path"]
    repeat = (3, 10, 2.0)
    timeout = 300

    def setup(self, path):
        self.minimize = _minimize()
        if path == "numpy":
            from scipy.optimize import rosen, rosen_der
            self.fun, self.jac = rosen, rosen_der
        else:
            self.fun, self.jac = _njit_rosenbrock()
        self.x0 = np.full(N, -1.5)
        self.x0[::2] = 1.5
        self.options = {"maxiter": ITERATIONS}
        if path == "njit_python_loop":
            self.options["compiled"] = False
        self.minimize(self.fun, self.x0, jac=self.jac, options={**self.options, "maxiter": 5})

    def time_minimize(self, path):
        self.minimize(self.fun, self.x0, jac=self.jac, options=self.options)

    def track_us_per_iteration(self, path):
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            result = self.minimize(self.fun, self.x0, jac=self.jac, options=self.options)
            samples.append((time.perf_counter() - start) / max(int(result.nit), 1) * 1e6)
        return float(np.median(samples))

    track_us_per_iteration.unit = "us"


class Batch:
    """minimize_batch, 1,000 Rosenbrock starts (n = 10), 200 steps, the compiled loop."""

    params = (["every_row", "active_only", "active_only_threads"],)
    param_names = ["loop"]
    repeat = (3, 10, 2.0)
    timeout = 300
    steps = 200

    def setup(self, loop):
        try:
            from nbadam import minimize_batch
        except ImportError as exc:
            raise NotImplementedError(f"nbadam.minimize_batch is not available: {exc}") from None
        from .scripts import minimize_batch as script

        self.minimize_batch = minimize_batch
        objectives = script.numba_objectives()
        self.x0 = script.rosenbrock_data()["x0"]
        self.fun = objectives["rosenbrock" if loop == "every_row" else "rosenbrock_active"]
        self.options = {"lr": 0.05, "maxiter": self.steps, "gtol": 0, "ftol": 0,
                        "active_only": loop != "every_row",
                        "parallel": True if loop == "active_only_threads" else None}
        self.minimize_batch(self.fun, self.x0, jac=True, options={**self.options, "maxiter": 2})

    def time_minimize_batch(self, loop):
        self.minimize_batch(self.fun, self.x0, jac=True, options=self.options)

    def track_ns_per_problem_step(self, loop):
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            self.minimize_batch(self.fun, self.x0, jac=True, options=self.options)
            samples.append((time.perf_counter() - start) / (self.steps * len(self.x0)) * 1e9)
        return float(np.median(samples))

    track_ns_per_problem_step.unit = "ns"
