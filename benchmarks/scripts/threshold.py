"""Where the parallel CPU kernel starts to beat the serial one.

Times the serial and the parallel build of the float32 and float64 kernel of
rule ``adam`` at sizes around the threshold, interleaved, and prints medians
and the ratio.  ``nbadam._config.PARALLEL_MIN_SIZE`` is set from this
measurement.

Usage: ``python -m benchmarks.scripts.threshold [--repeat 15]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SIZES = [1_000, 8_000, 32_000, 64_000, 128_000, 256_000, 512_000, 2_000_000, 10_000_000]


def _time(func, args, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func(*args)
    return (time.perf_counter() - start) / number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    from nbadam import _config

    from ._peers import Kernel

    _config.configure_threading()
    print(f"PARALLEL_MIN_SIZE now: {_config.PARALLEL_MIN_SIZE}\n")
    print("| dtype | n | serial (us) | parallel (us) | parallel / serial |\n|---|---|---|---|---|")
    for dtype in (np.float32, np.float64):
        for n in SIZES:
            kernel = Kernel(n, dtype, "adam", seed=n)
            number = max(1, 2_000_000 // n)
            kernel.pair.serial(*kernel.args)
            kernel.pair.parallel(*kernel.args)
            serial, parallel = [], []
            for _ in range(args.repeat):
                serial.append(_time(kernel.pair.serial, kernel.args, number))
                parallel.append(_time(kernel.pair.parallel, kernel.args, number))
            s, q = np.median(serial) * 1e6, np.median(parallel) * 1e6
            print(f"| {np.dtype(dtype).name} | {n} | {s:.1f} | {q:.1f} | {q / s:.2f} |")


if __name__ == "__main__":
    main()
