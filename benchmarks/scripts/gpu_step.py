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

The peers are timed in turn, ``--rounds`` times (each a loop of back-to-back
calls between two CUDA events, after a warm-up), and the script reports
medians: per n, the time per step, the bandwidth at 28 bytes per float32
element (read θ, g, m, v; write θ, m, v), the fraction of the copy's
bandwidth and nbadam's time over torch's (< 1: nbadam is faster), both
ratios taken round by round.  At n = 1e3 it reports the launch overhead:
host wall time per call of ``Adam.step``, of nbadam's bare kernel launch, of
the same launch through Numba's dispatcher and of torch's fused step.

Usage::

    python -m benchmarks.scripts.gpu_step [--sizes 1e5 1e6 1e7 1e8] [--dtype float32]
                                          [--rounds 9] [--json results.json]

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

from . import _peers

#: Passes over the vectors per Adam step: read θ, g, m, v and write θ, m, v (as
#: many as the same-traffic kernel makes).
PASSES = _peers.passes(_peers.rule_update("adam"))
DEFAULT_SIZES = [100_000, 1_000_000, 10_000_000, 100_000_000]
LAUNCH_SIZE = 1_000
#: Work per timed loop, in element-steps, so small n still runs long enough.
LOOP_ELEMENTS = 1_000_000_000
PEERS = ("nbadam", "same_traffic", "copy", "torch_fused")


def _steps_for(n: int) -> int:
    return int(min(2_000, max(10, LOOP_ELEMENTS // n)))


def _event_time(cuda, func, steps: int) -> float:
    """Seconds per call of ``func``, from CUDA events around ``steps`` back-to-back calls."""
    cuda.synchronize()
    start, end = cuda.event(), cuda.event()
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


def make_peers(cuda, torch, n: int, dtype: np.dtype) -> dict:
    """One ``step`` callable per peer, on freshly filled device vectors of ``n`` elements."""
    from nbadam import _cuda

    rng = np.random.default_rng(0)
    params = cuda.to_device(rng.standard_normal(n).astype(dtype))
    grad = cuda.to_device(rng.standard_normal(n).astype(dtype))
    opt = nbadam.Adam(params, lr=1e-3, device="cuda")
    roofline = _peers.ROOFLINE
    traffic_param, traffic_grad, *traffic_state = (
        cuda.to_device(rng.standard_normal(n).astype(dtype))
        for _ in range(2 + len(roofline.state)))
    traffic_state = tuple(traffic_state)
    count = PASSES * n // 2          # read + write of 3.5 n elements = 7 n element moves
    src = cuda.to_device(rng.standard_normal(count).astype(dtype))
    dst = cuda.device_array(count, dtype=dtype)
    peers = {"nbadam": lambda: opt.step(grad),
             "same_traffic": lambda: _cuda.step(roofline, n, traffic_param, traffic_grad,
                                                traffic_state, ()),
             "copy": lambda: dst.copy_to_device(src)}
    if torch is not None:
        tdtype = getattr(torch, dtype.name)
        gen = torch.Generator(device="cuda").manual_seed(0)
        param = torch.nn.Parameter(torch.randn(n, dtype=tdtype, device="cuda", generator=gen))
        param.grad = torch.randn(n, dtype=tdtype, device="cuda", generator=gen)
        peers["torch_fused"] = torch.optim.Adam([param], lr=1e-3, fused=True).step
    return peers


def measure_peers(cuda, peers: dict, steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of every peer, ``rounds`` times, the peers interleaved in each round."""
    for func in peers.values():         # compile, allocate state, warm the clocks
        for _ in range(3):
            func()
    cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(rounds):
        for name, func in peers.items():
            times[name].append(_event_time(cuda, func, steps))
    return times


def launch_overhead(cuda, torch, dtype: np.dtype, steps: int = 2_000,
                    rounds: int = 9) -> dict[str, float]:
    """Median microseconds per call at n = LAUNCH_SIZE, host wall time, a loop of ``steps``.

    ``nbadam_step``: ``Adam.step`` (validation, scalars, launch); ``nbadam_launch``:
    nbadam's launch of the kernel alone (through the driver where it can);
    ``numba_dispatcher_launch``: the same kernel launched through Numba's dispatcher;
    ``torch_fused_step``: torch's fused step.
    """
    from nbadam import _cuda
    from nbadam._kernels import cuda as kernels

    rng = np.random.default_rng(0)
    params = cuda.to_device(rng.standard_normal(LAUNCH_SIZE).astype(dtype))
    grad = cuda.to_device(rng.standard_normal(LAUNCH_SIZE).astype(dtype))
    opt = nbadam.Adam(params, lr=1e-3, device="cuda")
    update = opt._update
    # What opt.step launches at its first step: parameters, gradient, state, scalars.
    args = (opt._params, grad, opt._state_arrays, _peers.step_scalars(opt, 1))
    configured = kernels.kernel(update, dtype)[_cuda.grid(LAUNCH_SIZE)]
    calls = {
        "nbadam_step": lambda: opt.step(grad),
        "nbadam_launch": lambda: _cuda.step(update, LAUNCH_SIZE, *args),
        "numba_dispatcher_launch": lambda: configured(*args),
    }
    if torch is not None:
        tdtype = getattr(torch, dtype.name)
        param = torch.nn.Parameter(torch.randn(LAUNCH_SIZE, dtype=tdtype, device="cuda"))
        param.grad = torch.randn(LAUNCH_SIZE, dtype=tdtype, device="cuda")
        calls["torch_fused_step"] = torch.optim.Adam([param], lr=1e-3, fused=True).step
    result: dict[str, list[float]] = {name: [] for name in calls}
    for func in calls.values():
        for _ in range(10):
            func()
    for _ in range(rounds):
        for name, func in calls.items():
            cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                func()
            cuda.synchronize()
            result[name].append((time.perf_counter() - start) / steps * 1e6)
    return {name: float(np.median(values)) for name, values in result.items()}


def _gbps(n: int, dtype: np.dtype, seconds: float) -> float:
    return PASSES * np.dtype(dtype).itemsize * n / seconds / 1e9


def _median_ratio(top: list[float], bottom: list[float]) -> float:
    """Median over rounds of top/bottom (each round timed the two back to back)."""
    if not top or not bottom:
        return math.nan
    return float(np.median(np.asarray(top) / np.asarray(bottom)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--rounds", type=int, default=9,
                        help="timed loops per peer and size; medians are reported")
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
    print(f"GPU: {name}; numba {numba.__version__}; torch "
          f"{torch.__version__ if torch else '(no CUDA build)'}; {dtype.name}, "
          f"{bytes_per_element} bytes/element; medians of {args.rounds} rounds\n")

    rows = []
    header = ("| n | steps/loop | nbadam (µs) | nbadam GB/s | same_traffic GB/s | copy GB/s "
              "| nbadam / copy bandwidth | torch fused (µs) | torch GB/s "
              "| nbadam / torch time |")
    print(header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for size in args.sizes:
        n = int(size)
        steps = _steps_for(n)
        peers = make_peers(cuda, torch, n, dtype)
        times = measure_peers(cuda, peers, steps, args.rounds)
        del peers
        med = {key: float(np.median(times[key])) if key in times else math.nan for key in PEERS}
        row = {"n": n, "steps": steps, "rounds": args.rounds, "times_s": times,
               **{f"{key}_s": med[key] for key in PEERS},
               **{f"{key}_gbps": _gbps(n, dtype, med[key]) for key in PEERS},
               "fraction_of_copy": _median_ratio(times["copy"], times["nbadam"]),
               "nbadam_over_torch": _median_ratio(times["nbadam"], times.get("torch_fused", []))}
        rows.append(row)
        print(f"| {n:.0e} | {steps} | {med['nbadam'] * 1e6:.2f} | {row['nbadam_gbps']:.0f} "
              f"| {row['same_traffic_gbps']:.0f} | {row['copy_gbps']:.0f} "
              f"| {row['fraction_of_copy']:.3f} | {med['torch_fused'] * 1e6:.2f} "
              f"| {row['torch_fused_gbps']:.0f} | {row['nbadam_over_torch']:.3f} |", flush=True)

    overhead = launch_overhead(cuda, torch, dtype, rounds=args.rounds)
    print(f"\nHost wall time per call at n = {LAUNCH_SIZE} (median of {args.rounds} loops "
          "of 2,000): " + ", ".join(f"{key} {value:.1f} µs" for key, value in overhead.items()))

    result = {"gpu": name, "numba": numba.__version__, "dtype": dtype.name,
              "torch": torch.__version__ if torch else None, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "bytes_per_element": bytes_per_element,
              "rows": rows, "launch_overhead_us": overhead}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
