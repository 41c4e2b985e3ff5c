"""One GPU Adam step: nbadam vs torch ``Adam(fused=True)`` vs a device-to-device copy.

For each n (default 1e5, 1e6, 1e7, 1e8, float32) the script times, with CUDA
events after a warm-up, one loop of back-to-back steps of

* nbadam: ``nbadam.Adam(params, device="cuda").step(grad)`` with parameters
  and gradient in Numba device arrays (the public call, Python overhead included);
* nbadam's ``same_traffic`` kernel: Adam's reads and writes, no arithmetic;
* torch: ``torch.optim.Adam([p], fused=True).step()`` on CUDA (skipped when
  torch has no CUDA);
* a device-to-device copy (``cudaMemcpy``) of 3.5 n elements, which reads and
  writes the 7 n elements' worth of bytes an Adam step moves: the yardstick.

It reports, per n, the time per step, the bandwidth at 28 bytes per float32
element (read θ, g, m, v; write θ, m, v), the fraction of the copy's
bandwidth, and torch's time over nbadam's (> 1: nbadam is faster).  At n = 1e3
it reports the launch overhead: host wall time per ``step`` call in a loop of
many, against the kernel's own time from events.

Usage::

    python -m benchmarks.gpu_step [--sizes 1e5 1e6 1e7 1e8] [--dtype float32]
                                  [--json results.json]

Needs an NVIDIA GPU visible to ``numba.cuda``; exits with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np

import nbadam

#: Passes over the vectors per Adam step: read θ, g, m, v and write θ, m, v.
PASSES = 7
DEFAULT_SIZES = [100_000, 1_000_000, 10_000_000, 100_000_000]
LAUNCH_SIZE = 1_000
#: Work per timed loop, in element-steps, so small n still runs long enough.
LOOP_ELEMENTS = 2_000_000_000


def _steps_for(n: int) -> int:
    return int(min(2_000, max(5, LOOP_ELEMENTS // n)))


def _numba_time(cuda, func, steps: int, warmup: int = 3) -> float:
    """Seconds per call of ``func``, from numba.cuda events around ``steps`` calls."""
    for _ in range(warmup):
        func()
    cuda.synchronize()
    start, end = cuda.event(), cuda.event()
    start.record()
    for _ in range(steps):
        func()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / steps


def _torch_time(torch, func, steps: int, warmup: int = 3) -> float:
    """Seconds per call of ``func``, from torch.cuda events around ``steps`` calls."""
    for _ in range(warmup):
        func()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        func()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / steps


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def nbadam_step(cuda, n: int, dtype: np.dtype, steps: int) -> float:
    rng = np.random.default_rng(0)
    params = cuda.to_device(rng.standard_normal(n).astype(dtype))
    grad = cuda.to_device(rng.standard_normal(n).astype(dtype))
    opt = nbadam.Adam(params, lr=1e-3, device="cuda")
    return _numba_time(cuda, lambda: opt.step(grad), steps)


def same_traffic(cuda, n: int, dtype: np.dtype, steps: int) -> float:
    from nbadam import _cuda

    arrays = [cuda.to_device(np.ones(n, dtype=dtype)) for _ in range(4)]
    return _numba_time(cuda, lambda: _cuda.step("same_traffic", n, *arrays), steps)


def device_copy(cuda, n: int, dtype: np.dtype, steps: int) -> float:
    count = PASSES * n // 2
    src = cuda.device_array(count, dtype=dtype)
    dst = cuda.device_array(count, dtype=dtype)
    return _numba_time(cuda, lambda: dst.copy_to_device(src), steps)


def torch_fused(torch, n: int, dtype: np.dtype, steps: int) -> float:
    tdtype = getattr(torch, np.dtype(dtype).name)
    gen = torch.Generator(device="cuda").manual_seed(0)
    param = torch.nn.Parameter(torch.randn(n, dtype=tdtype, device="cuda", generator=gen))
    param.grad = torch.randn(n, dtype=tdtype, device="cuda", generator=gen)
    opt = torch.optim.Adam([param], lr=1e-3, fused=True)
    seconds = _torch_time(torch, opt.step, steps)
    del opt, param
    torch.cuda.empty_cache()
    return seconds


def launch_overhead(cuda, torch, dtype: np.dtype, steps: int = 2_000) -> dict[str, float]:
    """Microseconds per step at n = LAUNCH_SIZE: host wall time and kernel time."""
    rng = np.random.default_rng(0)
    params = cuda.to_device(rng.standard_normal(LAUNCH_SIZE).astype(dtype))
    grad = cuda.to_device(rng.standard_normal(LAUNCH_SIZE).astype(dtype))
    opt = nbadam.Adam(params, lr=1e-3, device="cuda")
    for _ in range(10):
        opt.step(grad)
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step(grad)
    cuda.synchronize()
    result = {"nbadam_wall_us": (time.perf_counter() - start) / steps * 1e6,
              "nbadam_events_us": _numba_time(cuda, lambda: opt.step(grad), steps) * 1e6}
    if torch is not None:
        tdtype = getattr(torch, np.dtype(dtype).name)
        param = torch.nn.Parameter(torch.randn(LAUNCH_SIZE, dtype=tdtype, device="cuda"))
        param.grad = torch.randn(LAUNCH_SIZE, dtype=tdtype, device="cuda")
        topt = torch.optim.Adam([param], lr=1e-3, fused=True)
        for _ in range(10):
            topt.step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            topt.step()
        torch.cuda.synchronize()
        result["torch_fused_wall_us"] = (time.perf_counter() - start) / steps * 1e6
    return result


def _gbps(n: int, dtype: np.dtype, seconds: float) -> float:
    return PASSES * np.dtype(dtype).itemsize * n / seconds / 1e9


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)

    import numba
    from numba import cuda
    if numba.config.ENABLE_CUDASIM:
        raise SystemExit("gpu_step: NUMBA_ENABLE_CUDASIM=1 is set; the simulator times nothing")
    if not cuda.is_available():
        raise SystemExit("gpu_step: numba.cuda sees no CUDA GPU; nothing to measure")
    torch = _torch_cuda()
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    bytes_per_element = PASSES * dtype.itemsize
    print(f"GPU: {name}; numba.cuda: {cuda.implementation}; torch: "
          f"{torch.__version__ if torch else 'no CUDA build'}; {dtype.name}, "
          f"{bytes_per_element} bytes/element\n")

    rows = []
    header = ("| n | steps | nbadam (us) | nbadam GB/s | same_traffic GB/s | copy GB/s "
              "| nbadam / copy | torch fused (us) | torch GB/s | torch / nbadam time |")
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for size in args.sizes:
        n = int(size)
        steps = _steps_for(n)
        ours = nbadam_step(cuda, n, dtype, steps)
        roofline = same_traffic(cuda, n, dtype, steps)
        copy = device_copy(cuda, n, dtype, steps)
        theirs = torch_fused(torch, n, dtype, steps) if torch is not None else math.nan
        row = {"n": n, "steps": steps, "nbadam_s": ours, "same_traffic_s": roofline,
               "copy_s": copy, "torch_fused_s": theirs,
               "nbadam_gbps": _gbps(n, dtype, ours), "same_traffic_gbps": _gbps(n, dtype, roofline),
               "copy_gbps": _gbps(n, dtype, copy), "torch_gbps": _gbps(n, dtype, theirs),
               "fraction_of_copy": copy / ours, "torch_over_nbadam": theirs / ours}
        rows.append(row)
        print(f"| {n:.0e} | {steps} | {ours * 1e6:.1f} | {row['nbadam_gbps']:.0f} "
              f"| {row['same_traffic_gbps']:.0f} | {row['copy_gbps']:.0f} "
              f"| {row['fraction_of_copy']:.2f} | {theirs * 1e6:.1f} | {row['torch_gbps']:.0f} "
              f"| {row['torch_over_nbadam']:.2f} |")

    overhead = launch_overhead(cuda, torch, dtype)
    print(f"\nLaunch overhead at n = {LAUNCH_SIZE}: nbadam step() "
          f"{overhead['nbadam_wall_us']:.1f} us host wall time per call "
          f"({overhead['nbadam_events_us']:.1f} us between events)", end="")
    if "torch_fused_wall_us" in overhead:
        print(f"; torch fused step() {overhead['torch_fused_wall_us']:.1f} us", end="")
    print()

    result = {"gpu": name, "numba_cuda": cuda.implementation, "dtype": dtype.name,
              "torch": torch.__version__ if torch else None, "python": platform.python_version(),
              "bytes_per_element": bytes_per_element, "rows": rows,
              "launch_overhead": overhead}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
