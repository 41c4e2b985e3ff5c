"""``nbadam.minimize_batch`` against loops and ``jax.vmap``: many independent fits in one call.

Two problems, K = 1,000 independent problems each:

* **curves**: fit ``y = a exp(-b t) + c`` (3 parameters) to each of 1,000 noisy
  curves of 50 points, least squares (the mean squared residual);
* **rosenbrock**: SciPy's Rosenbrock function of n = 10 variables from 1,000
  random starts in [-2, 2]^10.

Peers, each on all K problems, in one process (JAX in a worker process of its
own interpreter), rounds interleaved (round-robin) and medians reported:

* a loop of ``scipy.optimize.minimize(method="L-BFGS-B")`` (its default
  tolerances) with a NumPy ``fun`` returning ``(f, g)``, as it runs by default
  (OpenBLAS with a thread per core), and with BLAS limited to one thread
  (threadpoolctl), which on a busy 2-core machine is 30 times faster: its BLAS
  calls on 3 or 10 numbers otherwise wait for thread wake-ups;
* a loop of ``nbadam.minimize`` with the same ``fun``;
* ``nbadam.minimize_batch``, Python loop: a NumPy ``fun`` of the (K, n) batch;
* ``nbadam.minimize_batch``, compiled loop: a Numba ``@njit`` ``fun`` of the batch;
* ``jax.vmap`` over a jitted ``optax.adam`` loop (``lax.fori_loop``, float64),
  compiled before the timed runs, when JAX and optax are installed (in this
  interpreter, or in the one ``--jax-python`` names; never a dependency).

The Adam peers take ``--steps`` (2,000) steps with the same learning rate and
no early stop (``gtol=ftol=0``), as the JAX loop does; one more compiled row
returns the last point rather than each problem's best (``return_best=False``,
as JAX does), which shows what keeping the best points costs.  Two more rows show
what the per-problem stopping rules give: ``minimize_batch`` with the default
``gtol``/``ftol`` (``maxiter=--steps``), ``fun`` seeing every row, or only the
running ones (``active_only=True``).  The rows marked ``parallel=True`` (with
``active_only``) run the compiled loop on one share of the problems per Numba
thread (``numba.get_num_threads()``, printed under the table), each thread
to its end without waiting for the others.  The final loss of every peer is
computed by this script, with one NumPy formula, at the point the peer
returns; the table gives its median over the K problems.

Targets (issue 18): the Python loop at least 2x faster than the SciPy loop, the
compiled loop at least 10x faster and no slower than the JAX peer, at the same
or lower median loss; the script checks them against both SciPy loops, for the
Python and compiled rows with 2,000 steps and with per-problem stopping.

Usage: ``python -m benchmarks.scripts.minimize_batch [--rounds 3] [--steps 2000]
[--problems curves rosenbrock] [--loop-problems 1000] [--jax-python PATH]``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

K = 1_000
CURVE_POINTS = 50
ROSEN_N = 10
LR = {"curves": 0.05, "rosenbrock": 0.05}
PYTHON_SPEEDUP_TARGET = 2.0
COMPILED_SPEEDUP_TARGET = 10.0
#: The rows checked against the targets: the Python loops, then the compiled ones.
PYTHON_PEERS = ("minimize_batch, Python (NumPy fun)",
                "minimize_batch, Python, per-problem stopping",
                "minimize_batch, Python, per-problem stopping, active_only")
COMPILED_PEERS = ("minimize_batch, compiled (@njit fun)",
                  "minimize_batch, compiled, active_only, parallel=True",
                  "minimize_batch, compiled, per-problem stopping",
                  "minimize_batch, compiled, per-problem stopping, active_only",
                  "minimize_batch, compiled, per-problem stopping, active_only, parallel=True")


# -- the data (NumPy only: the JAX worker builds the same) --------------------------------
def curves_data(k: int = K) -> dict[str, np.ndarray]:
    """1,000 curves ``a exp(-b t) + c`` plus noise, and the common start."""
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 4.0, CURVE_POINTS)
    a, b, c = rng.uniform(1.0, 3.0, k), rng.uniform(0.5, 2.0, k), rng.uniform(-0.5, 0.5, k)
    y = a[:, None] * np.exp(-b[:, None] * t) + c[:, None] + 0.02 * rng.normal(size=(k, t.size))
    return {"t": t, "y": y, "x0": np.tile([1.0, 1.0, 0.0], (k, 1))}


def rosenbrock_data(k: int = K) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x0": rng.uniform(-2.0, 2.0, size=(k, ROSEN_N))}


DATA = {"curves": curves_data, "rosenbrock": rosenbrock_data}


def final_loss(problem: str, X: np.ndarray, data: dict[str, np.ndarray]) -> np.ndarray:
    """The loss of each problem at the points ``X``, one formula for every peer."""
    X = np.asarray(X, dtype=np.float64)
    if problem == "curves":
        r = X[:, :1] * np.exp(-X[:, 1:2] * data["t"]) + X[:, 2:] - data["y"]
        return np.mean(r * r, axis=1)
    return np.sum(100.0 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1.0 - X[:, :-1]) ** 2, axis=1)


# -- objectives: one problem (NumPy), the batch (NumPy), the batch (Numba) -----------------
def curve_fg(x, t, y):
    e = np.exp(-x[1] * t)
    r = x[0] * e + x[2] - y
    grad = np.array([2.0 * np.mean(r * e), -2.0 * x[0] * np.mean(r * t * e), 2.0 * np.mean(r)])
    return float(np.mean(r * r)), grad


def curves_fg_numpy(X, t, Y):
    a, b, c = X[:, :1], X[:, 1:2], X[:, 2:]
    e = np.exp(-b * t)
    r = a * e + c - Y
    grad = np.empty_like(X)
    grad[:, 0] = 2.0 * np.mean(r * e, axis=1)
    grad[:, 1] = -2.0 * X[:, 0] * np.mean(r * t * e, axis=1)
    grad[:, 2] = 2.0 * np.mean(r, axis=1)
    return np.mean(r * r, axis=1), grad


def curves_fg_numpy_active(X, rows, t, Y):
    return curves_fg_numpy(X, t, Y[rows])


def rosen_fg(x):
    from scipy.optimize import rosen, rosen_der
    return rosen(x), rosen_der(x)


def rosen_fg_numpy(X):
    d = X[:, 1:] - X[:, :-1] ** 2
    values = np.sum(100.0 * d * d + (1.0 - X[:, :-1]) ** 2, axis=1)
    grad = np.zeros_like(X)
    grad[:, :-1] = -400.0 * X[:, :-1] * d - 2.0 * (1.0 - X[:, :-1])
    grad[:, 1:] += 200.0 * d
    return values, grad


def rosen_fg_numpy_active(X, rows):
    return rosen_fg_numpy(X)


def numba_objectives() -> dict[str, Callable]:
    """The batch objectives as Numba functions (compiled on first use).

    The formulas of the NumPy objectives, one row at a time: the curves' sums
    accumulate in order of the points, Rosenbrock's in order of the
    coordinates, as plain loops do.  The ``active_only`` forms (``fun(X, rows,
    *args)``) read curve ``rows[k]`` for row ``k`` of ``X`` in place, rather
    than copy ``Y[rows]`` at every step.
    """
    import numba

    @numba.njit(cache=True, error_model="numpy")
    def curves_fg_rows(X, rows, t, Y):
        count, points = X.shape[0], t.size
        values, grad = np.empty(count), np.empty((count, 3))
        for k in range(count):
            y = Y[rows[k]]
            a, b, c = X[k, 0], X[k, 1], X[k, 2]
            sq = ga = gb = gc = 0.0
            for i in range(points):
                e = math.exp(-b * t[i])
                r = a * e + c - y[i]
                sq += r * r
                ga += r * e
                gb += r * t[i] * e
                gc += r
            values[k] = sq / points
            grad[k, 0] = 2.0 * ga / points
            grad[k, 1] = -2.0 * a * gb / points
            grad[k, 2] = 2.0 * gc / points
        return values, grad

    @numba.njit(cache=True, error_model="numpy")
    def curves_fg_numba(X, t, Y):
        return curves_fg_rows(X, np.arange(X.shape[0]), t, Y)

    @numba.njit(cache=True)
    def rosen_fg_numba(X):
        count, n = X.shape
        values, grad = np.empty(count), np.empty((count, n))
        for k in range(count):
            total = 0.0
            carried = 0.0  # 200 d of the previous term, the first part of this gradient
            x = X[k, 0]
            for i in range(n - 1):
                after = X[k, i + 1]
                d = after - x ** 2
                total += 100.0 * d * d + (1.0 - x) ** 2
                grad[k, i] = carried + (-400.0 * x * d - 2.0 * (1.0 - x))
                carried = 200.0 * d
                x = after
            grad[k, n - 1] = carried
            values[k] = total
        return values, grad

    @numba.njit(cache=True)
    def rosen_fg_active(X, rows):
        return rosen_fg_numba(X)

    return {"curves": curves_fg_numba, "rosenbrock": rosen_fg_numba,
            "curves_active": curves_fg_rows, "rosenbrock_active": rosen_fg_active}


# -- peers: each returns (final points (K, n), steps per problem or None) -----------------
SCIPY_LOOP = "scipy.optimize.minimize L-BFGS-B, loop"
SCIPY_LOOP_1 = "scipy.optimize.minimize L-BFGS-B, loop, BLAS 1 thread"


def blas_threads(count: int):
    """A context limiting the BLAS libraries loaded so far to ``count`` threads.

    SciPy's L-BFGS-B makes BLAS calls on tiny vectors; with OpenBLAS's threads
    (one per core) they wait for thread wake-ups, which on a busy 2-core
    machine made the loop 30 times slower.  Without threadpoolctl, nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(count, "blas")


def peers(problem: str, data: dict[str, np.ndarray], steps: int, loop_problems: int
          ) -> dict[str, Callable[[], tuple[np.ndarray, Any]]]:
    import scipy.optimize

    import nbadam

    x0, lr = data["x0"], LR[problem]
    fixed = {"lr": lr, "maxiter": steps, "gtol": 0, "ftol": 0}
    stopping = {"lr": lr, "maxiter": steps}
    compiled = numba_objectives()
    if problem == "curves":
        args = (data["t"], data["y"])
        one = [((data["t"], data["y"][k]), curve_fg) for k in range(len(x0))]
        batch_numpy, batch_numba = curves_fg_numpy, compiled["curves"]
        active, active_numpy = compiled["curves_active"], curves_fg_numpy_active
    else:
        args = ()
        one = [((), rosen_fg)] * len(x0)
        batch_numpy, batch_numba = rosen_fg_numpy, compiled["rosenbrock"]
        active, active_numpy = compiled["rosenbrock_active"], rosen_fg_numpy_active
    subset = range(min(loop_problems, len(x0)))

    def scipy_loop(problems=subset):
        results = [scipy.optimize.minimize(one[k][1], x0[k], args=one[k][0], jac=True,
                                           method="L-BFGS-B") for k in problems]
        return np.array([r.x for r in results]), np.array([r.nit for r in results])

    def scipy_loop_one_thread():  # fast enough to run on every problem
        with blas_threads(1):
            return scipy_loop(range(len(x0)))

    def nbadam_loop():
        results = [nbadam.minimize(one[k][1], x0[k], args=one[k][0], jac=True,
                                   options=fixed) for k in subset]
        return np.array([r.x for r in results]), np.array([r.nit for r in results])

    def batch(fun, options, fun_args=args):
        def run():
            res = nbadam.minimize_batch(fun, x0, args=fun_args, jac=True, options=options)
            return res.x, res.nit
        return run

    return {
        SCIPY_LOOP: scipy_loop,
        SCIPY_LOOP_1: scipy_loop_one_thread,
        "nbadam.minimize, loop": nbadam_loop,
        "minimize_batch, Python (NumPy fun)": batch(batch_numpy, {**fixed, "compiled": False}),
        "minimize_batch, compiled (@njit fun)": batch(batch_numba, fixed),
        "minimize_batch, compiled, return_best=False":
            batch(batch_numba, {**fixed, "return_best": False}),
        "minimize_batch, compiled, active_only, parallel=True":
            batch(active, {**fixed, "active_only": True, "parallel": True}),
        "minimize_batch, Python, per-problem stopping":
            batch(batch_numpy, {**stopping, "compiled": False}),
        "minimize_batch, Python, per-problem stopping, active_only":
            batch(active_numpy, {**stopping, "active_only": True}),
        "minimize_batch, compiled, per-problem stopping": batch(batch_numba, stopping),
        "minimize_batch, compiled, per-problem stopping, active_only":
            batch(active, {**stopping, "active_only": True}),
        "minimize_batch, compiled, per-problem stopping, active_only, parallel=True":
            batch(active, {**stopping, "active_only": True, "parallel": True}),
    }


# -- the JAX peer, in a worker process ------------------------------------------------------
def jax_worker() -> None:
    """Serve timed ``jax.vmap(optax.adam loop)`` runs: one JSON request per line."""
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    compiled: dict[tuple[str, int], Any] = {}
    print(json.dumps({"versions": f"jax {jax.__version__}, optax {optax.__version__}"}),
          flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["problem"], request["steps"])
        begin = time.perf_counter()
        if key not in compiled:
            compiled[key] = _jax_fit(*key)
        compile_seconds = time.perf_counter() - begin
        fit, inputs = compiled[key]
        begin = time.perf_counter()
        x = jax.block_until_ready(fit(*inputs))
        seconds = time.perf_counter() - begin
        print(json.dumps({"seconds": seconds, "compile": compile_seconds,
                          "x": np.asarray(x).tolist()}), flush=True)


def _jax_fit(problem: str, steps: int) -> tuple[Any, tuple]:
    """The compiled ``vmap`` of ``steps`` optax Adam steps for ``problem``, and its inputs."""
    import jax
    import jax.numpy as jnp
    import optax

    data = DATA[problem]()
    if problem == "curves":
        t = jnp.asarray(data["t"])

        def loss(x, y):
            r = x[0] * jnp.exp(-x[1] * t) + x[2] - y
            return jnp.mean(r * r)
        inputs = (jnp.asarray(data["x0"]), jnp.asarray(data["y"]))
    else:
        def loss(x):
            return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
        inputs = (jnp.asarray(data["x0"]),)
    opt = optax.adam(LR[problem])

    def fit(x, *rest):
        def body(i, carry):
            x, state = carry
            updates, state = opt.update(jax.grad(loss)(x, *rest), state)
            return optax.apply_updates(x, updates), state
        return jax.lax.fori_loop(0, steps, body, (x, opt.init(x)))[0]
    return jax.jit(jax.vmap(fit)).lower(*inputs).compile(), inputs


class JaxPeer:
    """The JAX worker process, or why there is none."""

    def __init__(self, python: str | None):
        self.process, self.versions, self.reason = None, "", ""
        if python is None:
            self.reason = "jax is not installed here and --jax-python was not given"
            return
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        try:
            self.process = subprocess.Popen([python, os.path.abspath(__file__), "--jax-worker"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True, env=env)
            first = self.process.stdout.readline()
            self.versions = json.loads(first)["versions"]
        except (OSError, ValueError, KeyError) as exc:
            self.reason = f"the JAX worker did not start ({exc})"
            self.close()

    def run(self, problem: str, steps: int) -> dict[str, Any]:
        self.process.stdin.write(json.dumps({"problem": problem, "steps": steps}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
            self.process = None


# -- the measurement -----------------------------------------------------------------------
def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    gc.disable()
    try:
        begin = time.perf_counter()
        out = call()
        return time.perf_counter() - begin, out
    finally:
        gc.enable()


def measure(problem: str, steps: int, rounds: int, loop_problems: int, jax: JaxPeer) -> str:
    data = DATA[problem]()
    runs = peers(problem, data, steps, loop_problems)
    compile_notes = []
    for name, run in runs.items():  # warm-up: compiles the Numba code, fills caches
        if "loop" not in name:
            seconds, _ = timed(run)
            if "compiled" in name:
                compile_notes.append(f"{name}: first call {seconds:.2f} s")
    jax_name = "jax.vmap(optax.adam loop), jit"
    if jax.process is not None:
        warm = jax.run(problem, steps)
        compile_notes.append(f"{jax_name}: compile {warm['compile']:.2f} s")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    finals: dict[str, tuple[np.ndarray, Any]] = {}
    if jax.process is not None:
        samples[jax_name] = []
    for _ in range(rounds):
        for name, run in runs.items():
            seconds, finals[name] = timed(run)
            samples[name].append(seconds)
        if jax.process is not None:
            reply = jax.run(problem, steps)
            samples[jax_name].append(reply["seconds"])
            finals[jax_name] = (np.array(reply["x"]), None)
    count = len(data["x0"])
    # A loop run on the first problems only: its time scaled to all of them.
    scales = {name: count / len(finals[name][0]) for name in samples}
    times = {name: statistics.median(values) * scales[name]
             for name, values in samples.items()}
    base, base_1 = times[SCIPY_LOOP], times[SCIPY_LOOP_1]
    n = data["x0"].shape[1]
    lines = [f"### {problem}: K = {len(data['x0']):,} problems of n = {n}, "
             f"{steps:,} Adam steps (lr = {LR[problem]}), median of {rounds} rounds", "",
             "| peer | time (s) | vs SciPy loop | vs SciPy loop, BLAS 1 thread | "
             "median final loss | median nit |",
             "|---|---:|---:|---:|---:|---:|"]
    losses = {}
    for name, seconds in times.items():
        x, nit = finals[name]
        losses[name] = float(np.median(final_loss(problem, x, {
            key: value[:len(x)] if key == "y" else value for key, value in data.items()})))
        nits = "" if nit is None else f"{np.median(nit):.0f}"
        lines.append(f"| {name} | {seconds:.3f} | {base / seconds:.1f}x | "
                     f"{base_1 / seconds:.1f}x | {losses[name]:.6g} | {nits} |")
    scaled = [name for name, scale in scales.items() if scale != 1.0]
    if scaled:
        lines += ["", f"{' and '.join(scaled)}: run on the first {loop_problems} problems, "
                      f"times scaled by {count / loop_problems:g}, losses those problems'."]
    def against_scipy(seconds: float, target: float) -> str:
        return ", ".join(
            f"{reference / seconds:.1f}x the {label} (target >= {target:g}x: "
            f"{'met' if reference / seconds >= target else 'NOT met'})"
            for label, reference in (("SciPy loop", base), ("SciPy loop, BLAS 1 thread", base_1)))

    verdicts = [f"{name}: {against_scipy(times[name], PYTHON_SPEEDUP_TARGET)}."
                for name in PYTHON_PEERS]
    for name in COMPILED_PEERS:
        compiled = times[name]
        verdict = f"{name}: {against_scipy(compiled, COMPILED_SPEEDUP_TARGET)}"
        if jax_name in times:
            ratio = times[jax_name] / compiled
            same = losses[name] <= losses[jax_name] * (1.0 + 1e-6)
            verdict += (f"; {ratio:.2f}x the speed of JAX (target >= 1: "
                        f"{'met' if ratio >= 1 else 'NOT met'}), median loss "
                        f"{losses[name]:.6g} vs {losses[jax_name]:.6g} "
                        f"({'same or lower' if same else 'HIGHER'})")
        verdicts.append(verdict + ".")
    if jax_name not in times:
        verdicts.append(f"JAX peer skipped: {jax.reason}.")
    import numba
    lines += ["", *verdicts, "", f"parallel=True: {numba.get_num_threads()} threads.",
              "", "Compile times (not in the table): " + "; ".join(compile_notes) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (interleaved)")
    parser.add_argument("--steps", type=int, default=2000, help="Adam steps per problem")
    parser.add_argument("--problems", nargs="+", choices=sorted(DATA),
                        default=["curves", "rosenbrock"])
    parser.add_argument("--loop-problems", type=int, default=K,
                        help="run the slow loops (SciPy with its BLAS threads, nbadam.minimize) "
                             "on the first this many problems and scale their times "
                             "(default: all)")
    parser.add_argument("--jax-python", default=None,
                        help="the Python interpreter that has jax and optax (default: this "
                             "one, if it has them)")
    parser.add_argument("--jax-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jax_worker:
        jax_worker()
        return
    import numba
    import scipy

    python = args.jax_python
    if python is None and importlib.util.find_spec("jax") and importlib.util.find_spec("optax"):
        python = sys.executable
    import scipy.optimize  # noqa: F401  (loads SciPy's BLAS, which blas_threads then sees)

    jax = JaxPeer(python)
    try:
        print(f"NumPy {np.__version__}, SciPy {scipy.__version__}, Numba {numba.__version__}"
              f"{', ' + jax.versions if jax.versions else ''}; {os.cpu_count()} CPUs; "
              f"threadpoolctl {'found' if importlib.util.find_spec('threadpoolctl') else 'missing'}"
              "\n")
        for problem in args.problems:
            print(measure(problem, args.steps, args.rounds, args.loop_problems, jax), "\n",
                  flush=True)
    finally:
        jax.close()


if __name__ == "__main__":
    main()
