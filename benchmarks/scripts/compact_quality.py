"""How far compact optimizer state moves Adam's trajectory: a noisy quadratic, 1,000 steps.

``f(x) = 1/2 sum h_i (x_i - c_i)^2`` with curvatures ``h`` spread over four
decades, float32, and the same noisy gradients (the exact gradient plus
Gaussian noise drawn from a fixed seed) for every variant.  Reported: the
distance of each variant's final point from the float32-state trajectory's,
relative to how far that trajectory moved, ``|x - x_f32| / |x_f32 - x0|``,
and the final loss.  Variants: ``state_precision="bfloat16"`` (stochastic
rounding, nbadam's), bfloat16 rounded to nearest even (the float32 step with
its moments rounded after each step in NumPy: what the kernels would give
without the noise), and bitsandbytes' ``Adam8bit`` where torch and
bitsandbytes are installed (a benchmark peer only).

Usage: ``python -m benchmarks.scripts.compact_quality [--n 262144] [--steps 1000] [--lr 1e-2]``
"""

from __future__ import annotations

import argparse

import numpy as np


def problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curvatures, centre and start of the quadratic."""
    rng = np.random.default_rng(seed)
    h = (10.0 ** rng.uniform(-2, 2, n)).astype(np.float32)
    return h, rng.standard_normal(n).astype(np.float32), np.zeros(n, np.float32)


def gradients(h, c, noise: float, seed: int):
    """``grad(x, step)``: the exact gradient plus noise drawn from ``(seed, step)``."""
    def grad(x, step):
        rng = np.random.default_rng([seed, step])
        return (h * (x - c) + noise * rng.standard_normal(x.size)).astype(np.float32)
    return grad


def run_nbadam(x0, grad, steps, lr, precision):
    import nbadam
    x = x0.copy()
    opt = nbadam.Adam(x, lr=lr, state_precision=precision)
    for step in range(steps):
        opt.step(grad(x, step))
    return x


def run_nearest_even(x0, grad, steps, lr):
    """The float32 step with both moments rounded to nearest-even bfloat16 after each step."""
    import nbadam
    from nbadam._kernels import compact
    x = x0.copy()
    opt = nbadam.Adam(x, lr=lr)
    for step in range(steps):
        opt.step(grad(x, step))
        for array in opt.state.values():
            array[:] = compact.bf16_decode(compact.bf16_encode(array))
    return x


def run_bitsandbytes(x0, grad, steps, lr):
    """bitsandbytes' ``Adam8bit`` on the CPU, or None where it does not import."""
    try:
        import bitsandbytes as bnb
        import torch
    except ImportError:
        return None
    p = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    opt = bnb.optim.Adam8bit([p], lr=lr, min_8bit_size=0)
    for step in range(steps):
        p.grad = torch.from_numpy(grad(p.detach().numpy(), step))
        opt.step()
    return p.detach().numpy().copy()


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.compact_quality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=262_144)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    h, c, x0 = problem(args.n, args.seed)
    grad = gradients(h, c, args.noise, args.seed)

    def loss(x):
        return float(0.5 * np.sum(h.astype(np.float64) * (x.astype(np.float64) - c) ** 2))

    reference = run_nbadam(x0, grad, args.steps, args.lr, "float32")
    moved = float(np.linalg.norm(reference.astype(np.float64) - x0))
    runs = {"bfloat16 (stochastic rounding)": run_nbadam(x0, grad, args.steps, args.lr,
                                                         "bfloat16"),
            "bfloat16, nearest even (NumPy)": run_nearest_even(x0, grad, args.steps, args.lr),
            "bitsandbytes Adam8bit": run_bitsandbytes(x0, grad, args.steps, args.lr)}
    results = {}
    print(f"n = {args.n:,}, {args.steps} steps, lr {args.lr:g}, noise {args.noise:g}, "
          f"seed {args.seed}; float32-state loss {loss(reference):.6g}")
    print("| state | distance from the float32-state point | final loss |")
    print("|:---|---:|---:|")
    for name, x in runs.items():
        if x is None:
            print(f"| {name} | (not installed) | |")
            continue
        distance = float(np.linalg.norm(x.astype(np.float64) - reference)) / moved
        results[name] = (distance, loss(x))
        print(f"| {name} | {distance:.3g} | {loss(x):.6g} |")
    return results


if __name__ == "__main__":
    main()
