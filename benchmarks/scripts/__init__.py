"""Standalone benchmark and comparison scripts, run as ``python -m benchmarks.scripts.<name>``.

These are not asv benchmarks: asv imports this package with the rest of
``benchmarks/`` but finds nothing to run here (no ``time_``, ``track_``,
``mem_`` or ``peakmem_`` names); ``tests/test_benchmarks.py`` checks that.

* :mod:`.compare` -- the Adam step against NumPy, torch and the memory
  roofline (CPU and GPU tables, plots); :mod:`._peers` holds the peers it
  times, which the asv suites reuse.
* :mod:`.compact_state` -- Adam's step with bfloat16 and 8-bit moments against float32
  ones, their rooflines and bitsandbytes' ``Adam8bit`` (in a worker process,
  :mod:`._bnb_worker`); :mod:`.compact_quality` -- how far they move a trajectory.
* :mod:`.gpu_step` -- one GPU step against torch's fused Adam and a copy.
* :mod:`.groups_cost` -- parameter groups, clipping and the EMA against a plain step.
* :mod:`.minimize_speed` -- the Python loop's overhead and the compiled loop.
* :mod:`.mlp_compare` -- MNIST against PyTorch and scikit-learn: s/epoch, accuracy,
  time to 98%.
* :mod:`.mlp_vs_torch` -- MNIST epochs, memory and fused ops against PyTorch.
* :mod:`.mpi_scaling` -- data-parallel training on 1 and 2 MPI ranks.
* :mod:`.nonfinite_cost` -- the cost of ``nonfinite="skip"`` and ``"raise"``.
* :mod:`.stability` -- memory over long runs.
* :mod:`.threads` -- Numba's thread pool next to OpenBLAS's.
* :mod:`.threshold` -- where the parallel CPU kernel beats the serial one.
"""
