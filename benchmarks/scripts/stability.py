"""Long runs without memory growth: resident memory and Python allocations over time.

Runs ``--small-steps`` steps of Adam on a 10-element vector and ``--large-steps``
steps on a 1e6-element float32 vector, sampling the resident set size (RSS)
and tracemalloc's traced Python memory at the start (after warm-up), middle
and end.  Prints a markdown table.

Usage::

    python -m benchmarks.scripts.stability [--small-steps 1000000] [--large-steps 100000]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _run(size: int, steps: int, dtype) -> dict[str, float]:
    import nbadam

    rng = np.random.default_rng(0)
    params = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(8)]
    opt = nbadam.Adam(params, lr=1e-4, nonfinite="skip")
    for grad in grads:                      # warm-up: compile, first touch
        opt.step(grad)
    tracemalloc.start()
    rss0, (traced0, _) = _rss_mib(), tracemalloc.get_traced_memory()
    start = time.perf_counter()
    mid = None
    for k in range(steps):
        opt.step(grads[k & 7])
        if k == steps // 2:
            mid = _rss_mib()
    seconds = time.perf_counter() - start
    traced1, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"size": size, "steps": steps, "seconds": seconds, "rss_start": rss0,
            "rss_mid": mid, "rss_end": _rss_mib(), "traced_growth": traced1 - traced0,
            "traced_peak": peak - traced0, "finite": bool(np.isfinite(params).all())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-steps", type=int, default=1_000_000)
    parser.add_argument("--large-steps", type=int, default=100_000)
    args = parser.parse_args(argv)
    rows = [_run(10, args.small_steps, np.float64), _run(1_000_000, args.large_steps, np.float32)]
    print("| n | steps | seconds | RSS start / mid / end (MiB) | traced growth (B) | "
          "traced peak (B) | finite |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']:,} | {r['steps']:,} | {r['seconds']:.1f} | {r['rss_start']:.1f} / "
              f"{r['rss_mid']:.1f} / {r['rss_end']:.1f} | {r['traced_growth']} | "
              f"{r['traced_peak']} | {r['finite']} |")


if __name__ == "__main__":
    main()
