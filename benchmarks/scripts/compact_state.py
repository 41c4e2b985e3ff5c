"""What compact optimizer state buys: the Adam step with bfloat16 and 8-bit moments against float32.

One run, float32 parameters, ``nbadam.Adam.step`` with ``state_precision``
"float32" (28 bytes moved per element: the parameters, the gradient and both
moments read, the parameters and the moments written), "bfloat16" (20 bytes:
the moments are 2-byte codes) and "8bit" (16 bytes plus the block scales: one
byte per moment and, per moment and block of 256 elements, a float32
``absmax`` read and written, 16 + 16/256 bytes), and the roofline kernel that
moves the float32 step's 28 bytes and computes nothing, timed in interleaved
rounds.  The roofline of each format is its bytes per element (:data:`BYTES`)
at the bandwidth the roofline kernel reaches in the same rounds.  Ratios are
medians of the per-round ratios.

Where torch and bitsandbytes import (in this interpreter, or in the one
``--bnb-python`` names; benchmark peers, never dependencies), bitsandbytes'
``Adam8bit`` CPU step over the same float32 vectors (same lr, betas and eps,
``min_8bit_size=0``) runs in a worker process (:mod:`._bnb_worker`) and is
timed there, in the same rounds; ``--no-bnb`` leaves it out.

Targets: the bfloat16-state step at most 0.85x and the 8-bit-state step at
most 0.75x the float32-state step's time (the lines after the table).

Usage: ``python -m benchmarks.scripts.compact_state [--sizes 1e6 1e7 5e7] [--repeat 15]
[--bnb-python PATH | --no-bnb]``
"""

from __future__ import annotations

import argparse

import numpy as np

from . import _bnb_worker, _peers

#: Bytes moved per element by each format's Adam step.
BYTES = {"float32": 28, "bfloat16": 20, "8bit": 16 + 2 * 4 * 2 / 256}
#: The formats, by the name of their peer.
PEERS = {"float32": "nbadam", "bfloat16": "nbadam_bfloat16", "8bit": "nbadam_8bit"}
#: Targets: a compact format's step time over the float32-state step's, at most.
TARGETS = {"bfloat16": 0.85, "8bit": 0.75}


def _size(text: str) -> int:
    return int(float(text))


def measure(n: int, repeat: int, min_time: float = 0.02,
            bnb: _bnb_worker.Worker | None = None) -> dict[str, np.ndarray]:
    """Per-round seconds of each format's step, the roofline kernel and (``bnb``) Adam8bit."""
    peers = [_peers.NbadamStep(n, np.float32, "adam", state_precision=fmt) for fmt in PEERS]
    peers.append(_peers.Roofline(n, np.float32))
    try:
        if bnb:
            import numba
            peers.append(_bnb_worker.Adam8bitPeer(bnb, n, threads=numba.get_num_threads()))
        for peer in peers:
            peer.setup()
        return _peers.interleaved(peers, repeat, min_time)
    finally:
        _peers.release(peers)


def table(sizes, repeat: int, min_time: float = 0.02,
          bnb: _bnb_worker.Worker | None = None) -> list[str]:
    """The markdown table (times, ratios to the float32 step and to each format's
    roofline), then whether each size meets the targets."""
    header = ["n", "float32 state (us)", "bfloat16 state (us)", "8bit state (us)"]
    if bnb:
        header.append("bnb Adam8bit (us)")
    header += ["bfloat16 / float32", "8bit / float32"]
    if bnb:
        header.append("bnb Adam8bit / 8bit")
    header += ["roofline GB/s", "float32 / its roofline", "bfloat16 / its roofline",
               "8bit / its roofline"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    verdicts = []
    for n in sizes:
        samples = measure(n, repeat, min_time, bnb)
        times = {fmt: samples[name] for fmt, name in PEERS.items()}
        roof = samples["roofline"]
        ratio = {fmt: float(np.median(times[fmt] / times["float32"])) for fmt in TARGETS}
        gbps = BYTES["float32"] * n / float(np.median(roof)) / 1e9
        # Each format's roofline: its bytes at the roofline kernel's bandwidth of that round.
        own = {fmt: float(np.median(times[fmt] / (roof * BYTES[fmt] / BYTES["float32"])))
               for fmt in BYTES}
        row = [f"{n:,}"] + [f"{np.median(times[fmt]) * 1e6:,.0f}" for fmt in PEERS]
        if bnb:
            row.append(f"{np.median(samples[_bnb_worker.NAME]) * 1e6:,.0f}")
        row += [f"{ratio[fmt]:.2f}" for fmt in TARGETS]
        if bnb:
            row.append(f"{np.median(samples[_bnb_worker.NAME] / times['8bit']):.3g}")
        row += [f"{gbps:.1f}"] + [f"{own[fmt]:.2f}" for fmt in BYTES]
        lines.append("| " + " | ".join(row) + " |")
        verdicts.append(f"- n = {n:,}: " + "; ".join(
            f"{fmt} / float32 {ratio[fmt]:.2f} (target <= {target:g}: "
            f"{'met' if ratio[fmt] <= target else 'NOT met'})" for fmt, target in TARGETS.items()))
    bytes_line = ", ".join(f"{fmt} {value:g}" for fmt, value in BYTES.items())
    lines += ["", f"Bytes per element and step: {bytes_line}.",
              "bnb Adam8bit: " + (f"bitsandbytes' Adam8bit CPU step ({bnb.versions}), in a "
                                  "worker process, timed there in the same rounds."
                                  if bnb else f"left out ({bnb.reason})." if bnb is not None
                                  else "not timed here (`python -m benchmarks.scripts."
                                  "compact_state` times it where bitsandbytes is installed)."),
              "", "Targets (step time over the float32-state step's):", "", *verdicts]
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.compact_state",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_size, nargs="+",
                        default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.02)
    parser.add_argument("--bnb-python", default=None, metavar="PATH",
                        help="the Python interpreter that has torch and bitsandbytes (default: "
                             "this one, if it has them)")
    parser.add_argument("--no-bnb", action="store_true",
                        help="leave bitsandbytes' Adam8bit out")
    args = parser.parse_args(argv)
    if args.no_bnb:
        lines = table(args.sizes, args.repeat, args.min_time)
    else:
        with _bnb_worker.Worker(_bnb_worker.default_python(args.bnb_python)) as bnb:
            lines = table(args.sizes, args.repeat, args.min_time, bnb)
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
