"""Data-parallel MLP training over MPI: seconds per epoch on 1 and 2 ranks, bytes, memory.

The 784-256-128-10 ReLU network (235,146 float32 parameters), Adam with lr
1e-3, batch 128 (the global batch: 64 examples per rank on two ranks), on the
MNIST training images.  Each configuration runs in a fresh ``mpiexec`` job:

* 1 rank with 1 BLAS/Numba thread, and with 2 (the single-process baseline
  using both cores);
* 2 ranks with 1 thread each, optimizer state replicated (one ``Allreduce``
  of the flat gradient per step) or sharded (``Reduce_scatter`` of the
  gradient, ``Allgatherv`` of the parameters).

Each job compiles and warms up on 20 batches first, then times ``--epochs``
epochs of ``MLP.fit`` (no validation) and reports the median epoch.  It also
times the step's collectives alone on a vector of the model's size (the
communication share of a step), and measures the optimizer state each rank
holds.  Configurations alternate for ``--rounds`` rounds; the table shows the
median over rounds and, in brackets, the best round (on a shared machine the
least disturbed one).

Usage::

    python -m benchmarks.scripts.mpi_scaling [--epochs 2] [--rounds 1] [--subset N]
                                             [--markdown PATH]

Needs ``pip install 'nbadam[mpi]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = (784, 256, 128, 10)
BATCH = 128
LR = 1e-3
SEED = 0
WARMUP_BATCHES = 20
COLLECTIVE_REPEATS = 50
#: (label, ranks, threads per rank, sharded optimizer state)
RUNS = [
    ("1 rank, 1 thread", 1, 1, False),
    ("1 rank, 2 threads", 1, 2, False),
    ("2 ranks x 1 thread", 2, 1, False),
    ("2 ranks x 1 thread, sharded", 2, 1, True),
]


# -- worker: one mpiexec job ----------------------------------------------------------
def _worker(args: argparse.Namespace) -> None:
    import resource

    import numpy as np

    import nbadam
    from nbadam import distributed
    from nbadam.datasets import load_mnist

    MPI = distributed.require_mpi()
    comm = MPI.COMM_WORLD
    (x, y), _ = load_mnist()
    if args.subset:
        x, y = x[:args.subset], y[:args.subset]

    def optimizer_for(model: nbadam.MLP):
        if args.shard:
            return distributed.ShardedOptimizer(nbadam.Adam, model.params, comm, lr=LR)
        return nbadam.Adam(model.params, lr=LR)

    warm = nbadam.MLP(SIZES, seed=SEED)
    warm.fit(x[:WARMUP_BATCHES * BATCH], y[:WARMUP_BATCHES * BATCH], epochs=1,
             batch_size=BATCH, optimizer=optimizer_for(warm), comm=comm, progress=False)

    model = nbadam.MLP(SIZES, seed=SEED)
    opt = optimizer_for(model)
    marks: list[float] = []
    comm.Barrier()
    start = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=BATCH, optimizer=opt, comm=comm,
                        seed=SEED, progress=False,
                        callback=lambda epoch, logs: marks.append(time.perf_counter()))
    epochs = [after - before for before, after in zip([start] + marks[:-1], marks,
                                                      strict=True)]

    # The step's collectives alone, on a vector of the model's size.
    n = model.params.size
    grad = np.ones(n, model.dtype)
    counts, displs = distributed.shard_counts(n, comm.Get_size())
    samples = []
    for _ in range(COLLECTIVE_REPEATS):
        comm.Barrier()
        begin = time.perf_counter()
        if args.shard:
            opt.reduce_scatter(grad, 0.5)
            if comm.Get_size() > 1:
                comm.Allgatherv(MPI.IN_PLACE, [grad, counts.tolist(), displs.tolist(),
                                               MPI.FLOAT])
        else:
            distributed.allreduce_mean(grad, comm, 0.5)
        samples.append(time.perf_counter() - begin)

    mine = {"epoch_s": statistics.median(epochs), "epochs_s": epochs,
            "collectives_ms": statistics.median(samples) * 1e3,
            "state_bytes": distributed.state_memory_bytes(opt),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    everyone = comm.gather(mine, root=0)
    if comm.Get_rank() == 0:
        steps = -(-len(x) // BATCH)
        print(json.dumps({
            "ranks": comm.Get_size(), "n_params": n, "itemsize": model.dtype.itemsize,
            "steps_per_epoch": steps, "final_loss": history["loss"][-1],
            "epoch_s": max(rank["epoch_s"] for rank in everyone),
            "collectives_ms": max(rank["collectives_ms"] for rank in everyone),
            "state_bytes": [rank["state_bytes"] for rank in everyone],
            "max_rss_mib": [round(rank["max_rss_mib"]) for rank in everyone],
            "library": MPI.Get_library_version().splitlines()[0].strip()}), flush=True)


# -- driver ------------------------------------------------------------------------------
def _mpiexec() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpi_scaling: no mpiexec; pip install 'nbadam[mpi]'")
    return found


def _run(ranks: int, threads: int, shard: bool, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    root = os.fspath(Path(__file__).resolve().parents[2])  # the checkout, for -m
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    command = [_mpiexec(), "-n", str(ranks), sys.executable, "-m",
               "benchmarks.scripts.mpi_scaling", "--worker", "--epochs", str(args.epochs),
               "--subset", str(args.subset or 0)]
    if shard:
        command.append("--shard")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        sys.exit(f"mpi_scaling: {' '.join(command)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _table(results: dict[str, list[dict]]) -> str:
    from nbadam.distributed import allreduce_bytes

    def epoch(label: str, pick) -> float:
        return pick(r["epoch_s"] for r in results[label])

    base = epoch(RUNS[0][0], statistics.median)
    lines = ["| run | s / epoch, median (best) | speed vs 1 rank, 1 thread | collectives / "
             "step (ms) | collectives / epoch (s) | bytes sent / step / rank | optimizer "
             "state / rank (MiB) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, ranks, _, _ in RUNS:
        rows = results[label]
        first = rows[0]
        median = epoch(label, statistics.median)
        collectives = statistics.median(r["collectives_ms"] for r in rows)
        sent = allreduce_bytes(first["n_params"], first["itemsize"], ranks)
        state = max(first["state_bytes"]) / 2**20
        lines.append(f"| {label} | {median:.2f} ({epoch(label, min):.2f}) | "
                     f"{base / median:.2f}x | {collectives:.2f} | "
                     f"{collectives * first['steps_per_epoch'] / 1e3:.2f} | {sent:,.0f} | "
                     f"{state:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.mpi_scaling",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all runs (default 1)")
    parser.add_argument("--subset", type=int, default=0,
                        help="train on the first N images (default: all 60,000)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shard", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    results: dict[str, list[dict]] = {label: [] for label, *_ in RUNS}
    for round_number in range(args.rounds):
        for label, ranks, threads, shard in RUNS:
            result = _run(ranks, threads, shard, args)
            results[label].append(result)
            print(f"round {round_number + 1}: {label}: {result['epoch_s']:.2f} s/epoch, "
                  f"collectives {result['collectives_ms']:.2f} ms/step, state "
                  f"{result['state_bytes']} B/rank, loss {result['final_loss']:.4f}",
                  file=sys.stderr, flush=True)
    first = results[RUNS[0][0]][0]
    report = (f"{first['library']}; {first['n_params']:,} float32 parameters, batch {BATCH}, "
              f"{first['steps_per_epoch']} steps per epoch, {args.epochs} timed epochs, "
              f"{args.rounds} round(s), {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at the end\n\n" + _table(results))
    print(report)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(report + "\n")


if __name__ == "__main__":
    main()
