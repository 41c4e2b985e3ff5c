"""What ``nonfinite="skip"`` and ``"raise"`` cost per step, against ``"propagate"``.

Both policies scan the gradient for NaN and infinity (one fused, read-only pass
over ``grad``: 4 or 8 more bytes per element on top of the step's 28 or 56)
before the update.  The three policies are timed interleaved on the same data.

Usage: ``python -m benchmarks.scripts.nonfinite_cost [--repeat 15]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SIZES = [1_000, 100_000, 10_000_000]
POLICIES = ("propagate", "skip", "raise")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    import nbadam

    dtype = np.dtype(args.dtype)
    print(f"| n ({dtype}) | propagate (us) | skip (us) | raise (us) | skip / propagate | "
          f"raise / propagate |\n|---|---|---|---|---|---|")
    for n in SIZES:
        rng = np.random.default_rng(0)
        grad = rng.standard_normal(n).astype(dtype)
        opts = {p: nbadam.Adam(rng.standard_normal(n).astype(dtype), lr=1e-6, nonfinite=p)
                for p in POLICIES}
        number = max(1, 3_000_000 // n)
        times = {p: [] for p in POLICIES}
        for opt in opts.values():
            opt.step(grad)
        for _ in range(args.repeat):
            for policy, opt in opts.items():
                start = time.perf_counter()
                for _ in range(number):
                    opt.step(grad)
                times[policy].append((time.perf_counter() - start) / number * 1e6)
        med = {p: float(np.median(t)) for p, t in times.items()}
        print(f"| {n:,} | {med['propagate']:.1f} | {med['skip']:.1f} | {med['raise']:.1f} | "
              f"{med['skip'] / med['propagate']:.2f} | {med['raise'] / med['propagate']:.2f} |")


if __name__ == "__main__":
    main()
