"""Peers for the step benchmarks: what nbadam's Adam step is measured against.

Every peer holds its own parameter, gradient and state vectors of ``n``
elements and exposes ``step()``, one optimizer update, plus ``sync()``, which
waits for queued device work (a no-op on the CPU).  ``setup()`` compiles and
warms up so that no peer's first-call cost lands in a timing.

* :class:`NbadamStep` -- the public ``Optimizer.step`` (what users call), for
  every rule of :mod:`nbadam.rules`, on the CPU or (``device="cuda"``) the GPU.
* :class:`Kernel` -- the same rule's CPU kernel alone, through the launcher,
  with the scalars ``step`` would compute: ``NbadamStep`` minus the Python call.
* :class:`NumpyAdam` -- Adam written with NumPy ufuncs, in place, with one
  scratch buffer (``out=``), the same formulas as ``REFERENCE.md``.
* :class:`TorchAdam` -- ``torch.optim.Adam`` with ``fused=True`` or
  ``foreach=True`` over a tensor sharing the NumPy buffers (CPU) or on CUDA.
* :class:`Roofline` -- nbadam's ``same_traffic`` kernel: Adam's memory traffic
  (read four vectors, write three) and no arithmetic, through the same
  serial/parallel launcher as the optimizers.
* :class:`DeviceCopy` -- a device-to-device copy moving as many bytes as the
  roofline kernel, the GPU's yardstick.

The module also holds the traffic model (:func:`step_bytes`, read from each
rule's state arrays) and the timing helpers shared by the asv suites and
:mod:`benchmarks.scripts.compare`.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nbadam import rules
from nbadam._kernels.roofline import PASSES, SAME_TRAFFIC
from nbadam.optimizers import make_optimizer

#: The roofline as an update (``state`` is ``exp_avg``, ``exp_avg_sq``; no scalars).
ROOFLINE = SAME_TRAFFIC


def rule_update(rule: str) -> rules.Update:
    """The update ``rule`` runs with its default hyperparameters (AMSGrad's has 3 state arrays)."""
    return rules.get(rule).update({})


def passes(update: Any) -> int:
    """Vector passes per element and step of ``update`` (a rule's update or :data:`ROOFLINE`).

    The gradient is read once; the parameters and every state array are read
    and written once.

    >>> passes(rule_update("adam")), passes(rule_update("amsgrad")), passes(ROOFLINE)
    (7, 9, 7)
    """
    return PASSES.get(update.name, 1 + 2 * (1 + len(update.state)))


def update_bytes(update: Any, dtype, n: int = 1) -> int:
    """Bytes one launch of ``update`` moves for ``n`` elements of ``dtype``."""
    return passes(update) * np.dtype(dtype).itemsize * n


def step_bytes(rule: str, dtype, n: int = 1) -> int:
    """Bytes one step of ``rule`` (a name in ``nbadam.rules.names()``) moves.

    >>> step_bytes("adam", np.float32)
    28
    >>> step_bytes("amsgrad", np.float32)
    36
    >>> [step_bytes(rule, np.float32) for rule in ("lion", "adabelief", "adan", "yogi")]
    [20, 28, 44, 28]
    >>> step_bytes("prodigy", np.float32)   # two passes (nbadam._kernels.roofline.PASSES)
    52
    """
    return update_bytes(rule_update(rule), dtype, n)


def step_scalars(optimizer: Any, t: int | None = None) -> tuple:
    """The scalars ``optimizer.step`` hands its kernel at step ``t`` (default: the next).

    Computed as ``step`` computes them, in the parameters' dtype, on a copy
    of the first group's running scalar state (which NAdam's scalars update
    in place).
    """
    t = optimizer.step_count + 1 if t is None else t
    group = optimizer.groups[0]      # the whole vector, for an optimizer without groups
    return optimizer._in_dtype(optimizer._update.scalars(group.hyper(), group.running.copy(),
                                                         optimizer.current_lr(), t))


def cuda_available() -> bool:
    """Whether Numba can see a CUDA GPU (False when numba.cuda cannot load)."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means no GPU here
        return False


def torch_module():
    """``torch``, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def match_torch_threads() -> int | None:
    """Give torch's intra-op pool as many threads as Numba uses; return that count."""
    torch = torch_module()
    if torch is None:
        return None
    import numba
    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def make_vectors(n: int, dtype, seed: int, count: int) -> list[np.ndarray]:
    """``count`` vectors: parameters ~ N(0, 1), gradient ~ N(0, 1), zeros after.

    The first two are written here, so their pages are real: a vector that is
    only ever read straight from ``np.zeros`` maps the kernel's shared zero
    page, which stays in cache and makes a memory-bound kernel look faster
    than memory.  The zeros are state, written by the warm-up steps.
    """
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal(n, dtype=np.dtype(dtype).type) for _ in range(2)]
    out += [np.zeros(n, dtype=dtype) for _ in range(count - 2)]
    return out


class Peer:
    """Base class: ``name``, ``step()``, ``sync()``, ``setup()``, ``close()``."""

    name = "peer"
    device = "cpu"

    def setup(self) -> None:
        """Compile and warm up: two steps, then wait for them."""
        self.step()
        self.step()
        self.sync()

    def step(self) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for queued device work (CPU peers finish inside ``step``)."""

    def close(self) -> None:
        """Drop the vectors (the compare script holds 800 MB per peer at n=5e7)."""
        self.__dict__.clear()


class NbadamStep(Peer):
    """``make_optimizer(rule, params, device=device).step(grad)``, the public call.

    ``rule`` is a name in ``nbadam.rules.names()``; on ``device="cuda"`` the
    parameters start on the host and the gradient lives on the device.
    """

    def __init__(self, n: int, dtype=np.float32, rule: str = "adam", device: str = "cpu",
                 seed: int = 0, state_precision: str = "float32"):
        self.name = "nbadam" if device == "cpu" else f"nbadam_{device}"
        if state_precision != "float32":
            self.name += f"_{state_precision}"
        self.device = device
        self.params, grad = make_vectors(n, dtype, seed, 2)
        if device == "cpu":
            self.grad = grad
        else:
            from numba import cuda
            self._cuda = cuda
            self.grad = cuda.to_device(grad)
        extra = {} if state_precision == "float32" else {"state_precision": state_precision}
        self.optimizer = make_optimizer(rule, self.params, device=device, **extra)

    def step(self) -> None:
        self.optimizer.step(self.grad)

    def sync(self) -> None:
        if self.device != "cpu":
            self._cuda.synchronize()


class Kernel(Peer):
    """The CPU kernel of ``rule`` alone: ``_launch.cpu(kernels(update), n, *args)``.

    The arguments are those ``step`` passes at its first step (the optimizer's
    parameters and state, the gradient, step 1's scalars), so the difference
    from :class:`NbadamStep` is the cost of the public call: validation, host
    scalars and dispatch.  ``pair`` and ``args`` are there for callers that
    pick the serial or parallel build themselves.
    """

    name = "kernel"

    def __init__(self, n: int, dtype=np.float32, rule: str = "adam", seed: int = 0):
        from nbadam import _launch
        from nbadam._kernels import cpu

        params, grad = make_vectors(n, dtype, seed, 2)
        optimizer = make_optimizer(rule, params)
        self.update = optimizer._update
        self.pair = cpu.kernels(self.update)
        self.args = (optimizer._params, grad, optimizer._state_arrays,
                     step_scalars(optimizer, 1))
        self.n, self._launch = n, _launch.cpu

    def step(self) -> None:
        self._launch(self.pair, self.n, *self.args)


class NumpyAdam(Peer):
    """Adam (torch's definition, defaults) as in-place NumPy ufuncs.

    Each line is one pass over a vector; no temporaries are allocated
    (``out=`` into one scratch buffer) and every scalar has the vectors'
    dtype, so float32 stays float32.  Thirteen ufunc sweeps over memory where
    the fused kernel makes one: this is what fusing buys.
    """

    name = "numpy"

    def __init__(self, n: int, dtype=np.float32, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, seed: int = 0):
        self.params, self.grad, self.exp_avg, self.exp_avg_sq, self.scratch = make_vectors(
            n, dtype, seed, 5)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.c = np.dtype(dtype).type
        self.step_count = 0

    def step(self, grad: np.ndarray | None = None) -> None:
        g = self.grad if grad is None else grad
        c, (beta1, beta2) = self.c, self.betas
        self.step_count += 1
        t = self.step_count
        m, v, tmp, p = self.exp_avg, self.exp_avg_sq, self.scratch, self.params
        # m <- m + (1 - beta1) (g - m)
        np.subtract(g, m, out=tmp)
        tmp *= c(1.0 - beta1)
        m += tmp
        # v <- beta2 v + (1 - beta2) g^2
        v *= c(beta2)
        np.multiply(g, g, out=tmp)
        tmp *= c(1.0 - beta2)
        v += tmp
        # theta <- theta - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        np.sqrt(v, out=tmp)
        tmp /= c((1.0 - beta2 ** t) ** 0.5)
        tmp += c(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= c(-(self.lr / (1.0 - beta1 ** t)))
        p += tmp


class TorchAdam(Peer):
    """``torch.optim.Adam(fused=True)`` or ``(foreach=True)`` over one tensor.

    On the CPU the tensors share the NumPy vectors' memory (no copies); on
    CUDA they live on the device.
    """

    def __init__(self, n: int, dtype=np.float32, impl: str = "fused", device: str = "cpu",
                 seed: int = 0):
        torch = torch_module()
        if torch is None:
            raise ImportError("torch is not installed")
        if impl not in ("fused", "foreach"):
            raise ValueError(f"impl must be 'fused' or 'foreach', got {impl!r}")
        self.name = f"torch_{impl}" if device == "cpu" else f"torch_{device}_{impl}"
        self.device = device
        self._torch = torch
        params, grad = make_vectors(n, dtype, seed, 2)
        self._numpy = (params, grad)        # keep the shared buffers alive
        param = torch.nn.Parameter(torch.from_numpy(params).to(device))
        param.grad = torch.from_numpy(grad).to(device)
        self.param = param
        self.optimizer = torch.optim.Adam([param], lr=1e-3, **{impl: True})

    def step(self) -> None:
        self.optimizer.step()

    def sync(self) -> None:
        if self.device != "cpu":
            self._torch.cuda.synchronize()


class Roofline(Peer):
    """The ``same_traffic`` kernel: Adam's memory traffic, no arithmetic."""

    name = "roofline"

    def __init__(self, n: int, dtype=np.float32, seed: int = 0):
        from nbadam import _launch
        from nbadam._kernels import cpu as kernels
        self._launch, self._kernel = _launch.cpu, kernels.same_traffic
        self.n = n
        self.params, self.grad, *state = make_vectors(n, dtype, seed, 2 + len(ROOFLINE.state))
        self.state = tuple(state)

    def step(self) -> None:
        self._launch(self._kernel, self.n, self.params, self.grad, self.state, ())


class DeviceCopy(Peer):
    """A device-to-device copy moving the roofline's bytes (7 passes: 3.5 n elements, twice)."""

    name = "cuda_copy"

    def __init__(self, n: int, dtype=np.float32, seed: int = 0):
        from numba import cuda
        self._cuda = cuda
        count = math.ceil(passes(ROOFLINE) * n / 2)
        self.src = cuda.device_array(count, dtype=dtype)
        self.dst = cuda.device_array(count, dtype=dtype)

    def step(self) -> None:
        self.dst.copy_to_device(self.src)

    def sync(self) -> None:
        self._cuda.synchronize()


def cpu_peers(n: int, dtype=np.float32, torch: bool = True) -> list[Peer]:
    """nbadam, NumPy, torch fused and foreach (when importable), roofline."""
    peers: list[Peer] = [NbadamStep(n, dtype), NumpyAdam(n, dtype)]
    if torch and torch_module() is not None:
        peers += [TorchAdam(n, dtype, "fused"), TorchAdam(n, dtype, "foreach")]
    peers.append(Roofline(n, dtype))
    return peers


def rule_peers(n: int, dtype=np.float32, rule: str = "adam", device: str = "cpu") -> list[Peer]:
    """``rule``'s public step (named after the rule) and the yardstick of its device.

    The yardstick is the roofline kernel on the CPU, a device-to-device copy
    on the GPU; both move Adam's bytes, so a rule's share of the memory
    bandwidth is its bytes (:func:`step_bytes`) over its time against theirs.
    """
    step = NbadamStep(n, dtype, rule=rule, device=device)
    step.name = rule
    return [step, Roofline(n, dtype) if device == "cpu" else DeviceCopy(n, dtype)]


def gpu_peers(n: int, dtype=np.float32, torch: bool = True) -> list[Peer]:
    """nbadam on CUDA, torch CUDA fused (when available), a device copy."""
    peers: list[Peer] = [NbadamStep(n, dtype, device="cuda")]
    module = torch_module() if torch else None
    if module is not None and module.cuda.is_available():
        peers.append(TorchAdam(n, dtype, "fused", device="cuda"))
    peers.append(DeviceCopy(n, dtype))
    return peers


# -- timing -------------------------------------------------------------------

def seconds_per_call(step: Callable[[], None], sync: Callable[[], None], number: int) -> float:
    """Seconds per call of ``step`` over ``number`` calls, synchronised at the end."""
    sync()
    start = time.perf_counter()
    for _ in range(number):
        step()
    sync()
    return (time.perf_counter() - start) / number


def sample(peer: Peer, number: int) -> float:
    """Seconds per step of ``peer`` over ``number`` steps.

    A peer that runs in another process (:class:`._bnb_worker.Adam8bitPeer`)
    times itself there, through its ``seconds_per_call(number)``, so that the
    round trip to it stays out of the sample; the others are timed here.
    """
    timer = getattr(peer, "seconds_per_call", None)
    if timer is not None:
        return timer(number)
    return seconds_per_call(peer.step, peer.sync, number)


def calibrate(peer: Peer, min_time: float) -> int:
    """Calls per sample so that one sample lasts at least ``min_time`` seconds."""
    number = 1
    while True:
        elapsed = sample(peer, number) * number
        if elapsed >= min_time or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.2))


def interleaved(peers: Sequence[Peer], repeat: int, min_time: float = 0.01,
                numbers: Sequence[int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """``repeat`` samples per peer, taken in rounds so noise hits all alike.

    Each round times every peer once, in a fresh random order (seeded), so
    that no peer always runs right after the same neighbour (whose threads
    may still be spinning, or whose vectors fill the caches).  Returns the
    seconds per step of each sample, by peer name; sample ``r`` of every
    peer comes from round ``r``.
    """
    if numbers is None:
        numbers = [calibrate(peer, min_time) for peer in peers]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {peer.name: [] for peer in peers}
    for _ in range(repeat):
        for i in rng.permutation(len(peers)):
            peer = peers[i]
            samples[peer.name].append(sample(peer, numbers[i]))
    return {name: np.asarray(times) for name, times in samples.items()}


def median_time(step: Callable[[], None], repeat: int = 5, min_time: float = 0.005,
                sync: Callable[[], None] = lambda: None) -> float:
    """Median seconds per call of ``step`` (for asv ``track_`` benchmarks)."""
    peer = Peer()
    peer.step, peer.sync = step, sync
    number = calibrate(peer, min_time)
    return float(np.median([seconds_per_call(step, sync, number) for _ in range(repeat)]))


def release(peers: Sequence[Peer]) -> None:
    """Close the peers and collect, so the next size starts with free memory.

    ``None`` entries are ignored: asv calls ``teardown`` even when ``setup``
    raised ``NotImplementedError`` before a peer existed.
    """
    for peer in peers:
        if peer is not None:
            peer.close()
    gc.collect()
