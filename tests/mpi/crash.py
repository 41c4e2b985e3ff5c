"""A rank that fails in the middle of data-parallel training; run under mpiexec.

    mpiexec -n 2 python tests/mpi/crash.py MODE

After its first epoch, rank 1 fails while rank 0 goes on into the next
``Allreduce``:

``raise``
    raises an exception: ``fit`` prints one line naming the rank and calls
    ``MPI_Abort``, so the job ends with a non-zero status;
``kill``
    dies at once (SIGKILL), with no Python code run: ``mpiexec`` notices the
    lost process and ends the job;
``hang``
    waits for a message that never comes: only ``mpiexec``'s time limit
    (``MPIEXEC_TIMEOUT``) ends the job.

``disagree`` instead starts the ranks with different batch sizes, which
``fit`` refuses on every rank before training.
"""

from __future__ import annotations

import os
import signal
import sys

from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import CONFIGS, train  # noqa: E402


def main(mode: str) -> None:
    comm = MPI.COMM_WORLD

    def fail(epoch: int, logs: dict) -> None:
        if comm.Get_rank() != 1:
            return
        if mode == "raise":
            raise RuntimeError(f"injected failure after epoch {epoch}")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "hang":
            print("rank 1 waits for a message that never comes", flush=True)
            comm.recv(source=0, tag=77)  # never sent

    if mode == "disagree":
        train(CONFIGS["f64"], comm, batch_size=16 if comm.Get_rank() == 0 else 8)
    train(CONFIGS["f64"], comm, epochs=50, callback=fail)
    print(f"rank {comm.Get_rank()}: training finished, which it must not", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
