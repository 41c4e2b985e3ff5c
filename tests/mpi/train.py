"""Data-parallel training of a small MLP; run by tests/test_distributed.py under mpiexec.

    mpiexec -n 2 python tests/mpi/train.py OUT_DIR

Trains every configuration of :data:`CONFIGS` with ``comm=MPI.COMM_WORLD`` and
writes, for each one and each rank, ``OUT_DIR/<name>.rank<r>.npz`` holding the
final parameters and history.  The test compares the ranks with each other
and with single-process training (:func:`train` with ``comm=None``, run in the
test process on the same data).  It also checks checkpoints across rank
counts: ``resume_from_single`` resumes, on every rank, a checkpoint that rank 0
wrote in a single process, and ``to_resume`` leaves a two-rank checkpoint
that the test resumes in a single process.

Without mpi4py this module still imports (the test process uses it for the
single-process side).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import nbadam

SIZES = (12, 16, 3)
N_EXAMPLES, N_VALIDATION = 96, 30

#: name -> fit keyword arguments.  Batches: 16 splits 8/8 and its last batch is full;
#: 20 leaves a last batch of 16; 7 splits 4/3; 1 leaves one rank without examples.
CONFIGS: dict[str, dict] = {
    "f64": dict(dtype="float64", batch_size=16, optimizer="adam"),
    "f64_sharded": dict(dtype="float64", batch_size=16, optimizer="adam", shard_optimizer=True),
    "f32": dict(dtype="float32", batch_size=16, optimizer="adam"),
    "f32_sharded": dict(dtype="float32", batch_size=16, optimizer="adam", shard_optimizer=True),
    "uneven": dict(dtype="float64", batch_size=7, optimizer="nadam"),
    "uneven_sharded": dict(dtype="float64", batch_size=7, optimizer="nadam",
                           shard_optimizer=True),
    "amsgrad_last_batch": dict(dtype="float64", batch_size=20, optimizer="amsgrad",
                               shard_optimizer=True),
    "batch_of_one": dict(dtype="float64", batch_size=1, optimizer="adamw", epochs=1),
}
EPOCHS = 3
LR = 1e-2


def make_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation data: three noisy classes in 12 dimensions."""
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(SIZES[-1], SIZES[0]))
    labels = rng.integers(0, SIZES[-1], size=N_EXAMPLES + N_VALIDATION)
    x = centres[labels] + rng.normal(scale=1.5, size=(labels.size, SIZES[0]))
    return x[:N_EXAMPLES], labels[:N_EXAMPLES], x[N_EXAMPLES:], labels[N_EXAMPLES:]


def train(config: dict, comm=None, **extra) -> tuple[nbadam.MLP, dict]:
    """Train a fresh model with ``config`` on :func:`make_data`; returns it and its history."""
    config = dict(config)
    model = nbadam.MLP(SIZES, dtype=np.dtype(config.pop("dtype")), seed=3)
    x, y, x_val, y_val = make_data()
    # A constant rate: the runs resume a 2-epoch checkpoint to 3 epochs, which a cosine
    # schedule over each call would refuse.
    options = dict(epochs=EPOCHS, lr=LR, schedule="constant", validation_data=(x_val, y_val),
                   progress=False, seed=5)
    options.update(config)
    options.update(extra)
    if comm is None:
        options.pop("shard_optimizer", None)
    history = model.fit(x, y, comm=comm, **options)
    return model, history


def _write(out: str, name: str, rank: int, model: nbadam.MLP, history: dict) -> None:
    np.savez(os.path.join(out, f"{name}.rank{rank}.npz"), params=model.params,
             history=np.array(json.dumps(history)))


def main(out: str) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    for name, config in CONFIGS.items():
        model, history = train(config, comm)
        _write(out, name, rank, model, history)

    # A checkpoint written by one process, resumed by every rank (sharded).
    single = os.path.join(out, "single.npz")
    if rank == 0:
        train(CONFIGS["f64"], None, epochs=2, checkpoint=single)
    comm.Barrier()
    model, history = train(CONFIGS["f64_sharded"], comm, checkpoint=single, resume=True)
    _write(out, "resume_from_single", rank, model, history)

    # A checkpoint written by rank 0 of a sharded run, for the test to resume alone.
    train(CONFIGS["f64_sharded"], comm, epochs=2, checkpoint=os.path.join(out, "ranks.npz"))
    if rank == 0:
        print(f"trained {len(CONFIGS)} configurations on {comm.Get_size()} ranks", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
