"""asv: one GPU step of every update rule (``device="cuda"``), and a device copy.

Skipped (``NotImplementedError`` in ``setup``) when Numba sees no CUDA GPU.
The rules are those of ``nbadam.rules.names()``.  The parameters start on the host
and the gradient lives on the device, as in a training loop whose backward
pass runs on the GPU.  ``time_step`` synchronises after every step, so it is
the latency of a step whose result is needed at once; ``track_gbps`` queues
many steps and synchronises once, so it is the sustained throughput.
"""

from __future__ import annotations

import ctypes.util

import numpy as np

from nbadam import rules

from .scripts import _peers

# asv starts a process for every parameter combination, even one whose setup
# only skips.  Where no CUDA driver library exists at all, the grid collapses to
# one combination (skipped in setup).  The probe loads nothing: initialising
# CUDA here, in asv's parent process, would break the forked benchmark runs.
_DRIVER = ctypes.util.find_library("cuda") is not None
RULES = list(rules.names() if _DRIVER else rules.names()[:1])
SIZES = [1_000, 100_000, 10_000_000] if _DRIVER else [1_000]
DTYPES = ["float32", "float64"] if _DRIVER else ["float32"]


def _require_gpu() -> None:
    if not _peers.cuda_available():
        raise NotImplementedError("no CUDA GPU visible to numba.cuda")


class Step:
    """``Optimizer(params, device="cuda").step(device_grad)`` for rule x dtype x n."""

    params = (RULES, DTYPES, SIZES)
    param_names = ["rule", "dtype", "n"]
    repeat = (3, 10, 1.0)
    warmup_time = 0.05
    timeout = 300

    def setup(self, rule, dtype, n):
        _require_gpu()
        self.peer = _peers.NbadamStep(n, np.dtype(dtype), rule, device="cuda")
        self.peer.setup()
        self.optimizer, self.grad = self.peer.optimizer, self.peer.grad
        self.synchronize = self.peer.sync

    def teardown(self, rule, dtype, n):
        _peers.release([getattr(self, "peer", None)])

    def time_step(self, rule, dtype, n):
        self.optimizer.step(self.grad)
        self.synchronize()

    def track_gbps(self, rule, dtype, n):
        seconds = _peers.median_time(self.peer.step, sync=self.peer.sync)
        return _peers.step_bytes(rule, dtype, n) / seconds / 1e9

    track_gbps.unit = "GB/s"


class DeviceCopy:
    """A device-to-device copy of the roofline's traffic: the GPU's memory yardstick."""

    params = (DTYPES, SIZES)
    param_names = ["dtype", "n"]
    repeat = (3, 10, 1.0)
    warmup_time = 0.05
    timeout = 300

    def setup(self, dtype, n):
        _require_gpu()
        self.peer = _peers.DeviceCopy(n, np.dtype(dtype))
        self.peer.setup()

    def teardown(self, dtype, n):
        _peers.release([getattr(self, "peer", None)])

    def time_copy(self, dtype, n):
        self.peer.step()
        self.peer.sync()

    def track_gbps(self, dtype, n):
        seconds = _peers.median_time(self.peer.step, sync=self.peer.sync)
        return _peers.update_bytes(_peers.ROOFLINE, dtype, n) / seconds / 1e9

    track_gbps.unit = "GB/s"
