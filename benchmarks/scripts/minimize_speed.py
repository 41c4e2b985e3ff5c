"""Speed of ``nbadam.minimize``: the Python loop's overhead and the compiled loop.

Two measurements, every peer in this one process, repeats interleaved
(round-robin) and medians reported:

1. **Overhead of the Python loop** on a 10-element quadratic whose ``fun`` and
   ``jac`` cost almost nothing: the time of ``minimize`` for N steps minus the
   time of the N + 1 bare ``fun`` + ``jac`` calls it makes, per step.
   Target: under 5 µs.
2. **Rosenbrock, n = 10, 10,000 Adam steps** (lr = 1e-3, from the same
   start, no early stop) by

   * ``minimize`` with ``@njit`` ``fun``/``jac``: the compiled loop;
   * ``minimize`` with the same ``@njit`` functions and ``compiled=False``
     (the Python loop, cheap objective);
   * ``minimize`` with SciPy's ``rosen``/``rosen_der`` (the Python loop, NumPy objective);
   * a plain NumPy Adam loop (vectorised gradient, in-place update);
   * ``torch.optim.Adam`` with autograd and with the same hand-written
     gradient, when torch is installed.

   Target: the compiled loop at least 20x faster than the plain NumPy loop.
   The last column is each peer's distance to the compiled loop's final
   point (the nbadam paths agree bit for bit; the others follow the same
   Adam within rounding).

Usage: ``python -m benchmarks.scripts.minimize_speed [--repeat 7] [--steps 10000]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
from scipy.optimize import rosen, rosen_der

N = 10
LR = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
OVERHEAD_TARGET_US = 5.0
SPEEDUP_TARGET = 20.0


# -- objectives ---------------------------------------------------------------------------
def square(x):
    return float(x @ x)


def square_grad(x):
    return 2.0 * x


@numba.njit(cache=True)
def rosen_nb(x):
    total = 0.0
    for i in range(x.size - 1):
        total += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return total


@numba.njit(cache=True)
def rosen_der_nb(x):
    grad = np.zeros_like(x)
    for i in range(x.size - 1):
        diff = x[i + 1] - x[i] ** 2
        grad[i] += -400.0 * x[i] * diff - 2.0 * (1.0 - x[i])
        grad[i + 1] += 200.0 * diff
    return grad


def rosen_der_numpy(x):
    """SciPy's ``rosen_der`` formula in plain NumPy."""
    grad = np.zeros_like(x)
    diff = x[1:] - x[:-1] ** 2
    grad[:-1] = -400.0 * x[:-1] * diff - 2.0 * (1.0 - x[:-1])
    grad[1:] += 200.0 * diff
    return grad


def start() -> np.ndarray:
    x0 = np.full(N, -1.2)
    x0[1::2] = 1.0
    return x0


# -- peers: each runs ``steps`` Adam steps from ``start()`` and returns the final x -------
def nbadam_peer(fun, jac, compiled: bool | None) -> Callable[[int], np.ndarray]:
    from nbadam import minimize

    def run(steps: int) -> np.ndarray:
        options = {"lr": LR, "maxiter": steps, "gtol": 0, "ftol": 0, "return_best": False,
                   "compiled": compiled}
        res = minimize(fun, start(), jac=jac, options=options)
        assert res.nit == steps
        return res.x
    return run


def numpy_adam(steps: int) -> np.ndarray:
    x = start()
    m, v, scratch = np.zeros(N), np.zeros(N), np.empty(N)
    beta1, beta2 = BETAS
    for t in range(1, steps + 1):
        g = rosen_der_numpy(x)
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        np.multiply(g, g, out=scratch)
        v += (1.0 - beta2) * scratch
        np.sqrt(v, out=scratch)
        scratch /= np.sqrt(1.0 - beta2 ** t)
        scratch += EPS
        x -= (LR / (1.0 - beta1 ** t)) * m / scratch
    return x


def torch_peers() -> dict[str, Callable[[int], np.ndarray]]:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1)  # ten elements: a thread pool only adds wake-ups

    def autograd(steps: int) -> np.ndarray:
        x = torch.tensor(start(), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([x], lr=LR, betas=BETAS, eps=EPS)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
            loss.backward()
            opt.step()
        return x.detach().numpy().copy()

    def hand_gradient(steps: int) -> np.ndarray:
        params = start()
        x = torch.from_numpy(params)
        opt = torch.optim.Adam([x], lr=LR, betas=BETAS, eps=EPS)
        for _ in range(steps):
            x.grad = torch.from_numpy(rosen_der_numpy(params))
            opt.step()
        return params

    return {"torch.optim.Adam, autograd": autograd,
            "torch.optim.Adam, NumPy gradient": hand_gradient}


# -- timing -------------------------------------------------------------------------------
def interleaved(peers: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds per call of each peer, calls interleaved round-robin."""
    samples: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(repeat):
        for name, call in peers.items():
            gc.collect()
            gc.disable()
            try:
                begin = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - begin)
            finally:
                gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def bare_calls(fun, jac, x, count: int) -> None:
    for _ in range(count):
        fun(x)
        jac(x)


def overhead_table(steps: int, repeat: int) -> tuple[str, float]:
    from nbadam import minimize

    x0 = np.full(N, 10.0)
    options = {"lr": LR, "maxiter": steps, "gtol": 0, "ftol": 0}

    def fun_and_grad(x):
        return square(x), square_grad(x)

    peers = {
        "minimize, jac=callable": lambda: minimize(square, x0, jac=square_grad,
                                                   options=options),
        "bare fun + jac calls": lambda: bare_calls(square, square_grad, x0, steps + 1),
        "minimize, jac=True": lambda: minimize(fun_and_grad, x0, jac=True, options=options),
        "bare fun calls (returning f, g)": lambda: [fun_and_grad(x0) for _ in range(steps + 1)],
    }
    for call in peers.values():
        call()
    times = interleaved(peers, repeat)
    per_step = {name: seconds / steps * 1e6 for name, seconds in times.items()}
    overhead = per_step["minimize, jac=callable"] - per_step["bare fun + jac calls"]
    overhead_true = (per_step["minimize, jac=True"]
                     - per_step["bare fun calls (returning f, g)"])
    lines = [
        f"### Python-loop overhead (n = {N}, f = x·x, {steps:,} steps, median of {repeat})",
        "",
        "| what | µs per step |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in per_step.items()),
        f"| **overhead, jac=callable** (minimize − bare calls) | **{overhead:.2f}** |",
        f"| **overhead, jac=True** | **{overhead_true:.2f}** |",
        "",
        f"Target: under {OVERHEAD_TARGET_US:g} µs per step beyond fun/jac: "
        f"{'met' if max(overhead, overhead_true) < OVERHEAD_TARGET_US else 'NOT met'}.",
    ]
    return "\n".join(lines), overhead


def rosenbrock_table(steps: int, repeat: int) -> str:
    peers: dict[str, Callable[[int], np.ndarray]] = {
        "minimize, @njit fun/jac (compiled loop)": nbadam_peer(rosen_nb, rosen_der_nb, True),
        "minimize, @njit fun/jac, compiled=False (Python loop)":
            nbadam_peer(rosen_nb, rosen_der_nb, False),
        "minimize, scipy rosen/rosen_der (Python loop)": nbadam_peer(rosen, rosen_der, None),
        "plain NumPy Adam loop (gradient only)": numpy_adam,
        **torch_peers(),
    }
    finals = {name: run(steps) for name, run in peers.items()}  # warm-up and compile
    times = interleaved({name: (lambda run=run: run(steps)) for name, run in peers.items()},
                        repeat)
    reference_name = next(iter(peers))
    reference = finals[reference_name]
    numpy_time = times["plain NumPy Adam loop (gradient only)"]
    lines = [
        f"### Rosenbrock, n = {N}, {steps:,} Adam steps (lr = {LR:g}), median of {repeat}",
        "",
        "| peer | total (ms) | µs per step | vs compiled loop | max abs(x − x_compiled) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds in times.items():
        distance = float(np.max(np.abs(finals[name] - reference)))
        lines.append(f"| {name} | {seconds * 1e3:.1f} | {seconds / steps * 1e6:.2f} | "
                     f"{seconds / times[reference_name]:.1f}x | {distance:.1e} |")
    speedup = numpy_time / times[reference_name]
    verdict = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
    lines += ["", f"Compiled loop vs plain NumPy loop: {speedup:.1f}x faster "
                  f"(target {SPEEDUP_TARGET:g}x: {verdict})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per peer")
    parser.add_argument("--steps", type=int, default=10_000, help="Adam steps per run")
    args = parser.parse_args(argv)
    try:
        import torch
        versions = f", torch {torch.__version__}"
    except ImportError:
        versions = ", torch not installed"
    print(f"NumPy {np.__version__}, Numba {numba.__version__}{versions}\n")
    text, _ = overhead_table(args.steps, args.repeat)
    print(text, "\n", sep="")
    print(rosenbrock_table(args.steps, args.repeat))


if __name__ == "__main__":
    main()
