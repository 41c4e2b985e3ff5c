"""Where a step of the compiled ``minimize_batch`` loop goes, against ``jax.vmap``.

The multi-start Rosenbrock of :mod:`benchmarks.scripts.minimize_batch` (K =
1,000 starts, n = 10, 2,000 Adam steps, lr = 0.05, no early stop), in
nanoseconds per problem and step, medians of ``--rounds`` interleaved rounds:

* the whole compiled loop, with ``return_best`` (the default) and without;
* the loop with an objective that returns the same arrays at every step (the
  rule's update, recording each point and the loop itself; no best point
  changes after the first step);
* the objective alone (2,000 calls from a Numba loop);
* the rule's update alone (the serial Adam kernel over the K * n elements);
* the loop with ``parallel=True``, without ``active_only`` (a parallel region
  per pass) and with it (one share of the problems per thread).

From these: recording a point is the constant-objective loop less the
update, keeping the best points is the loop with ``return_best`` less the
loop without.  With ``--jax-python`` (an interpreter that has jax and optax;
never a dependency), the same figure for ``jax.vmap`` over a jitted
``optax.adam`` loop, on Rosenbrock and on a quadratic, and for plain gradient
descent on both, which separates XLA's Adam update from its gradient.

Usage: ``python -m benchmarks.scripts.minimize_batch_pieces [--rounds 7]
[--jax-python PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable

import numpy as np

STEPS = 2000
LR = 0.05


def _per_problem_step(seconds: float, k: int) -> float:
    return seconds / (k * STEPS) * 1e9


def jax_worker(rounds: int) -> None:
    """Print, as JSON, the ns per problem and step of four jitted ``vmap`` loops."""
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks.scripts.minimize_batch import rosenbrock_data

    jax.config.update("jax_enable_x64", True)
    x0 = jnp.asarray(rosenbrock_data()["x0"])

    def rosen(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def quad(x):
        return 0.5 * jnp.sum(x * x)

    def adam(loss):
        opt = optax.adam(LR)

        def fit(x):
            def body(i, carry):
                x, state = carry
                updates, state = opt.update(jax.grad(loss)(x), state)
                return optax.apply_updates(x, updates), state
            return jax.lax.fori_loop(0, STEPS, body, (x, opt.init(x)))[0]
        return fit

    def descent(loss):
        def fit(x):
            return jax.lax.fori_loop(0, STEPS, lambda i, x: x - 0.01 * jax.grad(loss)(x), x)
        return fit

    fits = {"jax.vmap, optax.adam, Rosenbrock": adam(rosen),
            "jax.vmap, optax.adam, quadratic": adam(quad),
            "jax.vmap, gradient descent, Rosenbrock": descent(rosen),
            "jax.vmap, gradient descent, quadratic": descent(quad)}
    compiled = {name: jax.jit(jax.vmap(fit)).lower(x0).compile() for name, fit in fits.items()}
    samples: dict[str, list[float]] = {name: [] for name in compiled}
    for fit in compiled.values():
        jax.block_until_ready(fit(x0))
    for _ in range(rounds):
        for name, fit in compiled.items():
            begin = time.perf_counter()
            jax.block_until_ready(fit(x0))
            samples[name].append(time.perf_counter() - begin)
    print(json.dumps({"versions": f"jax {jax.__version__}, optax {optax.__version__}",
                      "ns": {name: _per_problem_step(statistics.median(values), x0.shape[0])
                             for name, values in samples.items()}}))


def pieces() -> dict[str, Callable[[], object]]:
    """The timed calls, each of ``STEPS`` steps on the whole batch."""
    import numba

    import nbadam
    from benchmarks.scripts.minimize_batch import numba_objectives, rosenbrock_data
    from nbadam._kernels import cpu
    from nbadam.rules.adam import ADAM_UPDATE

    objectives = numba_objectives()
    fun, active = objectives["rosenbrock"], objectives["rosenbrock_active"]
    x0 = rosenbrock_data()["x0"]
    fixed = {"lr": LR, "maxiter": STEPS, "gtol": 0, "ftol": 0}
    values, grads = fun(x0)

    @numba.njit
    def same_arrays(X):
        return values, grads

    @numba.njit
    def objective_alone(X, steps):
        total = 0.0
        for _ in range(steps):
            v, _ = fun(X)
            total += v[0]
        return total

    kernel = cpu.kernels(ADAM_UPDATE).serial
    x, g = x0.ravel().copy(), grads.ravel().copy()
    state = (np.zeros_like(x), np.zeros_like(x))
    # Torch Adam's scalars at a late step (grad sign, L2, decay, 1 - beta1, beta2,
    # 1 - beta2, -lr / bc1, sqrt(bc2), eps): the kernel's cost does not depend on them.
    scalars = (1.0, 0.0, 1.0, 0.1, 0.999, 0.001, -LR, 0.5, 1e-8)

    @numba.njit
    def update_alone(x, g, state, scalars, steps):
        for _ in range(steps):
            kernel(x, g, state, scalars)

    def batch(objective, options):
        return lambda: nbadam.minimize_batch(objective, x0, jac=True, options=options)

    return {
        "compiled loop": batch(fun, fixed),
        "compiled loop, return_best=False": batch(fun, {**fixed, "return_best": False}),
        "compiled loop, objective returning the same arrays": batch(same_arrays, fixed),
        "objective alone": lambda: objective_alone(x0, STEPS),
        "rule's update alone (Adam kernel)": lambda: update_alone(x, g, state, scalars, STEPS),
        "compiled loop, parallel=True": batch(fun, {**fixed, "parallel": True}),
        "compiled loop, parallel=True, active_only (threads)":
            batch(active, {**fixed, "parallel": True, "active_only": True}),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (interleaved)")
    parser.add_argument("--jax-python", default=None,
                        help="the Python interpreter that has jax and optax")
    parser.add_argument("--jax-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jax_worker:
        jax_worker(args.rounds)
        return {}
    import numba

    from benchmarks.scripts.minimize_batch import K

    runs = pieces()
    for run in runs.values():  # compiles
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            begin = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - begin)
    ns = {name: _per_problem_step(statistics.median(values), K)
          for name, values in samples.items()}
    ns["recording a point (same-arrays loop less the update)"] = (
        ns["compiled loop, objective returning the same arrays"]
        - ns["rule's update alone (Adam kernel)"])
    ns["keeping the best points (loop less return_best=False)"] = (
        ns["compiled loop"] - ns["compiled loop, return_best=False"])
    versions = f"NumPy {np.__version__}, Numba {numba.__version__}"
    if args.jax_python:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": root}
        done = subprocess.run([args.jax_python, "-m", "benchmarks.scripts.minimize_batch_pieces",
                               "--jax-worker", "--rounds", str(args.rounds)],
                              capture_output=True, text=True, env=env, cwd=root)
        if done.returncode == 0:
            reply = json.loads(done.stdout.strip().splitlines()[-1])
            ns.update(reply["ns"])
            versions += ", " + reply["versions"]
        else:
            print(f"JAX worker failed: {done.stderr.strip()[-500:]}")
    print(f"{versions}; {os.cpu_count()} CPUs; parallel=True: {numba.get_num_threads()} "
          f"threads\n\nRosenbrock, K = {K:,}, n = 10, {STEPS:,} Adam steps, medians of "
          f"{args.rounds} rounds\n\n| piece | ns per problem and step |\n|---|---:|")
    for name, value in ns.items():
        print(f"| {name} | {value:.1f} |")
    return ns


if __name__ == "__main__":
    main()
