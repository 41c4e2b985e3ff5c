"""Tunables shared by the launchers, in one place so tests can patch them.

Nothing here imports the rest of nbadam.  The values are module attributes
rather than constants so that a test (or a user with unusual hardware) can do
``monkeypatch.setattr(nbadam._config, "PARALLEL_MIN_SIZE", 0)``.
"""

from __future__ import annotations

import os

#: Vectors with at least this many elements use the ``parallel=True`` CPU
#: kernel; shorter ones use the serial kernel, whose call costs no thread
#: wake-up.  Measured with ``python -m benchmarks.scripts.threshold`` (see docs).
PARALLEL_MIN_SIZE: int = 65_536

#: CUDA launch configuration: threads per block and an upper bound on blocks
#: (the kernels use a grid-stride loop, so any grid covers any size).
CUDA_THREADS_PER_BLOCK: int = 256
CUDA_MAX_BLOCKS: int = 65_535
#: Blocks per streaming multiprocessor when the grid is capped by occupancy.
CUDA_BLOCKS_PER_SM: int = 32


def _libgomp_loaded() -> bool:
    """Whether GNU OpenMP is already mapped into this process (Linux only)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def configure_threading() -> str:
    """Choose Numba's threading layer before the first parallel launch.

    GNU OpenMP (Numba's usual layer on Linux) keeps its idle workers spinning
    after each parallel region, and OpenBLAS (NumPy's BLAS) does the same after
    each matrix product.  Alternating the two, as a training loop does, makes
    each pool steal the other's cores: on two cores one BLAS + Adam iteration
    went from 0.8 ms to 8.8 ms (``python -m benchmarks.scripts.threads``).  Idle
    workers that sleep fix it, so:

    * a layer chosen with ``NUMBA_THREADING_LAYER`` is always honoured;
    * otherwise, if OpenMP is not loaded yet, ``OMP_WAIT_POLICY=PASSIVE`` is
      set (unless the user set a policy) and OpenMP is preferred;
    * otherwise the ``workqueue`` layer, whose idle workers sleep, is used.

    Returns
    -------
    str
        The layer requested from Numba (``numba.config.THREADING_LAYER``).
    """
    import numba

    if "NUMBA_THREADING_LAYER" in os.environ:
        return numba.config.THREADING_LAYER
    user_policy = os.environ.get("OMP_WAIT_POLICY", "").upper()
    if user_policy == "PASSIVE" or (not user_policy and not _libgomp_loaded()):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
        numba.config.THREADING_LAYER = "default"
    else:
        numba.config.THREADING_LAYER = "workqueue"
    return numba.config.THREADING_LAYER
