"""What parameter groups, gradient clipping and the parameter average cost per step.

One run, float32 ``nbadam.Adam.step`` at each size: one group (the default),
2 and 8 equal groups (one fused launch each), ``clip_grad_norm`` (one extra
read of the gradient for its norm; the scale is fused into the update) active
on every step, and ``ema`` (the average updated in the same pass: one more
array read and written).  Every round times every variant once, in a fresh
random order; the table has medians over rounds and each variant's median
ratio to the plain step in the same rounds.

Usage: ``python -m benchmarks.scripts.groups_cost [--sizes 1e6 1e7] [--repeat 15]``
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def _size(text: str) -> int:
    return int(float(text))


def variants(n: int) -> dict[str, dict]:
    def split(count):
        edges = np.linspace(0, n, count + 1).astype(int)
        bounds = zip(edges[:-1], edges[1:], strict=True)
        return [{"params": slice(int(a), int(b))} for a, b in bounds]
    return {"plain": {}, "2 groups": {"groups": split(2)}, "8 groups": {"groups": split(8)},
            "clip_grad_norm": {"clip_grad_norm": 1e-3}, "ema": {"ema": 0.999},
            "8 groups + clip + ema": {"groups": split(8), "clip_grad_norm": 1e-3,
                                      "ema": 0.999}}


def measure(n: int, repeat: int, min_time: float = 0.05) -> dict[str, list[float]]:
    import nbadam

    rng = np.random.default_rng(0)
    grad = rng.standard_normal(n).astype(np.float32)
    opts = {name: nbadam.Adam(rng.standard_normal(n).astype(np.float32), lr=1e-3, **kwargs)
            for name, kwargs in variants(n).items()}
    for opt in opts.values():          # compile and warm up
        for _ in range(3):
            opt.step(grad)
    start = time.perf_counter()
    opts["plain"].step(grad)
    number = max(1, int(min_time / max(time.perf_counter() - start, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in opts}
    names = list(opts)
    for _ in range(repeat):
        random.shuffle(names)
        for name in names:
            step = opts[name].step
            start = time.perf_counter()
            for _ in range(number):
                step(grad)
            samples[name].append((time.perf_counter() - start) / number)
    return samples


def table(sizes, repeat: int, min_time: float = 0.05) -> list[str]:
    """The markdown table of every variant at each size (see the module docstring)."""
    lines = ["| n | variant | median (us) | / plain (median of paired ratios) |",
             "|---:|:---|---:|---:|"]
    for n in sizes:
        samples = measure(n, repeat, min_time)
        plain = np.array(samples["plain"])
        for name, values in samples.items():
            ratio = float(np.median(np.array(values) / plain))
            lines.append(f"| {n:,} | {name} | {np.median(values) * 1e6:,.0f} | {ratio:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.groups_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_size, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    print("\n".join(table(args.sizes, args.repeat)))

if __name__ == "__main__":
    main()
