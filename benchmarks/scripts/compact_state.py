"""What compact optimizer state buys: the Adam step with bfloat16 moments against float32.

One run, float32 parameters, ``nbadam.Adam.step`` with ``state_precision``
"float32" (28 bytes moved per element: the parameters, the gradient and both
moments read, the parameters and the moments written) and "bfloat16" (20
bytes: the moments are 2-byte codes), and the roofline kernel that moves the
float32 step's 28 bytes and computes nothing, timed in interleaved rounds.
The roofline of each format is its bytes per element at the bandwidth the
roofline kernel reaches in the same rounds.  Ratios are medians of the
per-round ratios.

Usage: ``python -m benchmarks.scripts.compact_state [--sizes 1e6 1e7 5e7] [--repeat 15]``
"""

from __future__ import annotations

import argparse

import numpy as np

from . import _peers

#: Bytes moved per element by each format's Adam step.
BYTES = {"float32": 28, "bfloat16": 20}


def _size(text: str) -> int:
    return int(float(text))


def measure(n: int, repeat: int, min_time: float = 0.02) -> dict[str, np.ndarray]:
    """Per-round seconds of each format's step and of the roofline kernel at size ``n``."""
    peers = [_peers.NbadamStep(n, np.float32, "adam"),
             _peers.NbadamStep(n, np.float32, "adam", state_precision="bfloat16"),
             _peers.Roofline(n, np.float32)]
    try:
        for peer in peers:
            peer.setup()
        return _peers.interleaved(peers, repeat, min_time)
    finally:
        _peers.release(peers)


def table(sizes, repeat: int, min_time: float = 0.02) -> list[str]:
    """The markdown table: times, the ratio to the float32 step and each format's roofline."""
    lines = ["| n | float32 state (us) | bfloat16 state (us) | bfloat16 / float32 | "
             "roofline GB/s | float32 / its roofline | bfloat16 / its roofline |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        samples = measure(n, repeat, min_time)
        f32, bf16, roof = (samples["nbadam"], samples["nbadam_bfloat16"], samples["roofline"])
        ratio = float(np.median(bf16 / f32))
        gbps = BYTES["float32"] * n / float(np.median(roof)) / 1e9
        # Each format's roofline: its bytes at the roofline kernel's bandwidth of that round.
        own = {fmt: roof * BYTES[fmt] / BYTES["float32"] for fmt in BYTES}
        lines.append(f"| {n:,} | {np.median(f32) * 1e6:,.0f} | {np.median(bf16) * 1e6:,.0f} | "
                     f"{ratio:.2f} | {gbps:.1f} | {np.median(f32 / own['float32']):.2f} | "
                     f"{np.median(bf16 / own['bfloat16']):.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.compact_state",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_size, nargs="+",
                        default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.02)
    args = parser.parse_args(argv)
    print("\n".join(table(args.sizes, args.repeat, args.min_time)))


if __name__ == "__main__":
    main()
