"""Numba's thread pool next to OpenBLAS's: what each threading setup costs.

Each configuration runs in a fresh process (the threading layer is fixed at a
process's first parallel launch).  One iteration is three float32 BLAS matrix
products of an MLP layer (batch 128, 784x256) followed by one parallel Adam
step over 235,146 parameters -- the inner loop of MNIST training.

Usage: ``python -m benchmarks.scripts.threads [--repeat 7]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = {
    "nbadam default (chosen by the package)": {},
    "OpenMP, default wait policy (spinning)": {"NUMBA_THREADING_LAYER": "omp",
                                               "OMP_WAIT_POLICY": "ACTIVE"},
    "OpenMP, OMP_WAIT_POLICY=PASSIVE": {"NUMBA_THREADING_LAYER": "omp",
                                        "OMP_WAIT_POLICY": "PASSIVE"},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
}


def _child(repeat: int) -> dict[str, float]:
    import numpy as np

    from nbadam import _config, _launch

    from ._peers import Kernel

    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 784)).astype(np.float32)
    w = rng.standard_normal((784, 256)).astype(np.float32)
    b = rng.standard_normal((256, 128)).astype(np.float32)
    adam = Kernel(235_146, np.float32, "adam")    # the MLP's parameters

    def kernel_step() -> None:
        # The parallel build, whatever the threshold: this measures its thread pool.
        _launch.cpu(adam.pair, _config.PARALLEL_MIN_SIZE, *adam.args)

    kernel_step()

    def loop(blas: bool, kernel: bool, iters: int = 200) -> float:
        start = time.perf_counter()
        for _ in range(iters):
            if blas:
                h = a @ w
                h @ b
                a.T @ h
            if kernel:
                kernel_step()
        return (time.perf_counter() - start) / iters * 1e6

    loop(True, True, 50)
    out = {}
    for label, blas, kernel in (("both", True, True), ("blas", True, False),
                                ("kernel", False, True)):
        out[label] = sorted(loop(blas, kernel) for _ in range(repeat))[repeat // 2]
    import numba
    out["layer"] = numba.threading_layer()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.repeat)))
        return
    print("| setup | layer | BLAS + Adam step (us) | BLAS alone | step alone | "
          "slowdown vs sum |\n|---|---|---|---|---|---|")
    for label, extra in CONFIGS.items():
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
        env.update(extra)
        out = subprocess.run([sys.executable, "-m", "benchmarks.scripts.threads", "--child",
                              "--repeat", str(args.repeat)], env=env, check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ratio = r["both"] / (r["blas"] + r["kernel"])
        print(f"| {label} | {r['layer']} | {r['both']:.0f} | {r['blas']:.0f} | "
              f"{r['kernel']:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
