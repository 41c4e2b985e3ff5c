"""asv: one CPU step of every update rule, and the memory roofline beside it.

``setup`` compiles (two warm-up steps) and allocates; ``time_*`` times only
the step.  The rules are those of ``nbadam.rules.names()``.
``Bandwidth.track_gbps`` is the step's effective bandwidth (the bytes the
rule must move, ``_peers.step_bytes``, over the median step time),
and ``Bandwidth.track_roofline_fraction`` divides it by the bandwidth of the
same-traffic kernel timed in the same call, interleaved: 1.0 means the step
runs at the machine's memory speed, the most it can do at large ``n``.
``AdamKernel`` times the kernel without the public ``step`` around it.
"""

from __future__ import annotations

import numpy as np

from nbadam import rules

from .scripts import _peers

RULES = list(rules.names())

SIZES = [1_000, 100_000, 10_000_000]
DTYPES = ["float32", "float64"]
#: Bandwidth is a large-vector figure (at n = 1e3 the call overhead dominates,
#: which ``time_step`` shows), so the ``track_`` benchmarks skip the smallest size.
BANDWIDTH_SIZES = [100_000, 10_000_000]

# Small machines are noisy: a few samples of at least 10 ms each, at most 1 s
# per benchmark, rather than asv's default of up to 20 s.
_TIMING = {"repeat": (3, 10, 1.0), "warmup_time": 0.05, "sample_time": 0.01, "timeout": 300}


class Step:
    """``Optimizer.step(grad)``, the public call, for rule x dtype x n."""

    params = (RULES, DTYPES, SIZES)
    param_names = ["rule", "dtype", "n"]
    repeat = _TIMING["repeat"]
    warmup_time = _TIMING["warmup_time"]
    sample_time = _TIMING["sample_time"]
    timeout = _TIMING["timeout"]

    def setup(self, rule, dtype, n):
        self.peer = _peers.NbadamStep(n, np.dtype(dtype), rule)
        self.peer.setup()
        self.optimizer, self.grad = self.peer.optimizer, self.peer.grad

    def teardown(self, rule, dtype, n):
        _peers.release([getattr(self, "peer", None)])

    def time_step(self, rule, dtype, n):
        self.optimizer.step(self.grad)


class Bandwidth:
    """Effective GB/s of ``Optimizer.step`` and its fraction of the roofline."""

    params = (RULES, DTYPES, BANDWIDTH_SIZES)
    param_names = ["rule", "dtype", "n"]
    timeout = _TIMING["timeout"]

    setup = Step.setup
    teardown = Step.teardown

    def track_gbps(self, rule, dtype, n):
        seconds = _peers.median_time(self.peer.step)
        return _peers.step_bytes(rule, dtype, n) / seconds / 1e9

    track_gbps.unit = "GB/s"

    def track_roofline_fraction(self, rule, dtype, n):
        roofline = _peers.Roofline(n, np.dtype(dtype))
        roofline.setup()
        samples = _peers.interleaved([self.peer, roofline], repeat=5, min_time=0.005)
        step_gbps = _peers.step_bytes(rule, dtype, n) / np.median(samples[self.peer.name])
        roof_gbps = _peers.update_bytes(_peers.ROOFLINE, dtype, n) / np.median(
            samples[roofline.name])
        _peers.release([roofline])
        return float(step_gbps / roof_gbps)

    track_roofline_fraction.unit = "step GB/s / roofline GB/s"


class Roofline:
    """The same-traffic kernel (Adam's traffic, no arithmetic) for dtype x n."""

    params = (DTYPES, SIZES)
    param_names = ["dtype", "n"]
    repeat = _TIMING["repeat"]
    warmup_time = _TIMING["warmup_time"]
    sample_time = _TIMING["sample_time"]
    timeout = _TIMING["timeout"]

    def setup(self, dtype, n):
        self.peer = _peers.Roofline(n, np.dtype(dtype))
        self.peer.setup()

    def teardown(self, dtype, n):
        _peers.release([getattr(self, "peer", None)])

    def time_same_traffic(self, dtype, n):
        self.peer.step()

    def track_gbps(self, dtype, n):
        seconds = _peers.median_time(self.peer.step)
        return _peers.update_bytes(_peers.ROOFLINE, dtype, n) / seconds / 1e9

    track_gbps.unit = "GB/s"


class AdamKernel:
    """The float32/float64 kernel of rule ``adam`` alone, through the launcher.

    The difference from ``Step.time_step`` (rule ``adam``) is the cost of the
    public ``step``: validation, host scalars and dispatch.
    """

    params = (DTYPES, SIZES)
    param_names = ["dtype", "n"]
    repeat = _TIMING["repeat"]
    warmup_time = _TIMING["warmup_time"]
    sample_time = _TIMING["sample_time"]
    timeout = _TIMING["timeout"]

    def setup(self, dtype, n):
        self.peer = _peers.Kernel(n, np.dtype(dtype), "adam")
        self.peer.setup()

    def teardown(self, dtype, n):
        _peers.release([getattr(self, "peer", None)])

    def time_kernel(self, dtype, n):
        self.peer.step()


class CompactState:
    """Adam's float32 step with its moments kept as float32, bfloat16 or blockwise 8-bit
    codes (``state_precision``).

    ``time_step`` times the public step; ``track_ratio`` is a compact step's time over
    the float32 step's, interleaved in the same call (below 1: the compact state pays).
    """

    params = (["float32", "bfloat16", "8bit"], [100_000, 10_000_000])
    param_names = ["state_precision", "n"]
    repeat = _TIMING["repeat"]
    warmup_time = _TIMING["warmup_time"]
    sample_time = _TIMING["sample_time"]
    timeout = _TIMING["timeout"]

    def setup(self, state_precision, n):
        self.peer = _peers.NbadamStep(n, np.float32, "adam", state_precision=state_precision)
        self.peer.setup()

    def teardown(self, state_precision, n):
        _peers.release([getattr(self, "peer", None)])

    def time_step(self, state_precision, n):
        self.peer.step()

    def track_ratio_to_float32(self, state_precision, n):
        if state_precision == "float32":
            return 1.0
        other = _peers.NbadamStep(n, np.float32, "adam")
        other.setup()
        samples = _peers.interleaved([self.peer, other], repeat=5, min_time=0.005)
        ratio = float(np.median(samples[self.peer.name] / samples[other.name]))
        _peers.release([other])
        return ratio

    track_ratio_to_float32.unit = "step time / float32-state step time"
