"""Data-parallel training over MPI: gradient all-reduce, sharded optimizer state, abort on error.

nbadam does not bring its own transport: it uses MPI through
`mpi4py <https://mpi4py.readthedocs.io>`_ (``pip install 'nbadam[mpi]'``
installs mpi4py and MPICH, whose ``mpiexec`` starts the processes).  Every
rank holds the whole flat parameter vector; one training step is

1. each rank computes the mean gradient of its shard of the global batch,
2. :func:`allreduce_mean` scales it by ``local_count / global_count`` and
   sums it over the ranks in place, one ``Allreduce`` of the flat gradient,
   so every rank holds the mean gradient of the whole global batch,
3. every rank applies the same optimizer step to the same vector.

:class:`ShardedOptimizer` is the ZeRO stage 1 variant: each rank keeps the
optimizer state (``exp_avg``, ``exp_avg_sq``, ...) for one contiguous slice
of the vector only, receives only that slice of the summed gradient
(``Reduce_scatter``), updates it, and an ``Allgatherv`` rebuilds the full
parameters on every rank.  State memory per rank drops by the number of
ranks; the bytes sent per step stay those of one all-reduce.

:func:`abort_on_error` turns an exception on one rank into ``MPI_Abort`` of
the whole job, so the other ranks, blocked in a collective, do not wait
forever.  ``mpi4py`` itself is imported only when one of these functions
needs it.

Examples
--------
Single-process here (``MPI.COMM_SELF``); under ``mpiexec -n 4`` the same code
with ``MPI.COMM_WORLD`` shares the work between four ranks.

>>> import numpy as np
>>> from nbadam import distributed
>>> [distributed.shard_bounds(10, 4, rank) for rank in range(4)]
[(0, 3), (3, 6), (6, 8), (8, 10)]
>>> MPI = distributed.require_mpi()
>>> grad = np.array([2.0, 4.0])
>>> distributed.allreduce_mean(grad, MPI.COMM_SELF, weight=0.5)
array([1., 2.])
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _validate, checkpoint
from .optimizers import Optimizer

__all__ = [
    "require_mpi", "check_comm", "shard_bounds", "shard_counts", "allreduce_mean",
    "sum_over_ranks", "ShardedOptimizer", "state_memory_bytes", "abort_on_error", "check_same",
    "check_in_sync", "allreduce_bytes",
]

#: The command that installs what this module needs.
INSTALL_HINT = "pip install 'nbadam[mpi]'"


def require_mpi() -> Any:
    """Import and return ``mpi4py.MPI``, or raise an ImportError saying how to install it.

    Importing ``mpi4py.MPI`` initialises MPI.  Outside ``mpiexec`` that gives a
    single-process ``COMM_WORLD`` (MPI's singleton start), which is valid.

    Raises
    ------
    ImportError
        If mpi4py or the MPI library it needs cannot be loaded.

    Examples
    --------
    >>> from nbadam.distributed import require_mpi
    >>> require_mpi().COMM_SELF.Get_size()
    1
    """
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"distributed training needs mpi4py and an MPI library: "
                          f"{INSTALL_HINT} ({exc})") from None
    return MPI


def check_comm(comm: Any) -> Any:
    """Return ``comm`` if it is an mpi4py intracommunicator, else raise TypeError.

    Examples
    --------
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> distributed.check_comm(MPI.COMM_SELF).Get_size()
    1
    >>> distributed.check_comm("world")
    Traceback (most recent call last):
        ...
    TypeError: comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, got 'world'
    """
    MPI = require_mpi()
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, "
                        f"got {comm!r}")
    return comm


def _mpi_type(dtype: np.dtype) -> Any:
    MPI = require_mpi()
    return MPI.DOUBLE if dtype == np.float64 else MPI.FLOAT


def shard_bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``range(n)`` that rank ``rank`` of ``size`` owns.

    The shards are balanced: they differ in length by at most one, the longer
    ones first, and they tile ``range(n)`` in rank order.  A rank may own an
    empty shard when ``n < size``.

    Parameters
    ----------
    n : int
        Number of items (>= 0).
    size : int
        Number of ranks (>= 1).
    rank : int
        This rank, in ``[0, size)``.

    Returns
    -------
    tuple of int
        ``(lo, hi)`` with ``0 <= lo <= hi <= n``.

    Examples
    --------
    >>> from nbadam.distributed import shard_bounds
    >>> [shard_bounds(7, 3, rank) for rank in range(3)]
    [(0, 3), (3, 5), (5, 7)]
    >>> shard_bounds(1, 2, 1)
    (1, 1)
    """
    n = _validate.integer("n", n, 0)
    size = _validate.integer("size", size, 1)
    rank = _validate.integer("rank", rank, 0)
    if rank >= size:
        raise ValueError(f"rank must be in [0, {size}) for size={size}, got {rank}")
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def shard_counts(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lengths and offsets of the ``size`` shards of ``range(n)`` (:func:`shard_bounds`).

    These are the ``counts`` and ``displs`` of MPI's vector collectives
    (``Allgatherv``, ``Gatherv``, ``Reduce_scatter``).

    Examples
    --------
    >>> from nbadam.distributed import shard_counts
    >>> counts, displs = shard_counts(7, 3)
    >>> counts.tolist(), displs.tolist()
    ([3, 2, 2], [0, 3, 5])
    """
    bounds = np.array([shard_bounds(n, size, rank) for rank in range(size)], dtype=np.int64)
    return bounds[:, 1] - bounds[:, 0], bounds[:, 0]


def allreduce_mean(grad: np.ndarray, comm: Any, weight: float = 1.0) -> np.ndarray:
    r"""Combine the ranks' gradients into the global mean, in place: one ``Allreduce``.

    Each rank passes the mean gradient of its own examples and ``weight =
    local_count / global_count``; ``grad`` is scaled by ``weight`` and summed
    over the ranks (``MPI.IN_PLACE``, ``MPI.SUM``), so every rank ends up with

    .. math::

        g = \sum_r \frac{c_r}{C}\, g_r = \frac{1}{C} \sum_{\text{examples } i} \nabla \ell_i,

    the mean gradient of the global batch, exactly as if one process had
    computed it, however unevenly the batch was split.  A rank without
    examples passes a zero gradient (any weight).

    Parameters
    ----------
    grad : numpy.ndarray
        This rank's gradient: 1-D, C-contiguous, writable float32 or float64;
        overwritten with the result.
    comm : mpi4py.MPI.Intracomm
        The ranks to reduce over (``MPI.COMM_WORLD``).
    weight : float, default 1.0
        This rank's share of the global batch, in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``grad`` itself.

    Notes
    -----
    Compared with one process computing the whole batch, only the order of
    the additions differs (two partial sums added by MPI instead of one BLAS
    reduction over the batch), and ``weight / local_count`` may differ from
    ``1 / global_count`` by an ulp when the split is not a power of two.  The
    results agree to a few units in the last place per step.  The weight
    costs one extra pass over the vector; with ``weight == 1`` it is skipped.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> grad = np.array([3.0, -6.0], dtype=np.float32)
    >>> distributed.allreduce_mean(grad, MPI.COMM_SELF, weight=1 / 3)
    array([ 1., -2.], dtype=float32)
    """
    MPI = require_mpi()
    comm = check_comm(comm)
    grad = _validate.params_vector(grad, "grad")
    weight = _validate.real("weight", weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be this rank's share of the batch, in [0, 1], "
                         f"got {weight}")
    if weight != 1.0:
        np.multiply(grad, grad.dtype.type(weight), out=grad)
    if comm.Get_size() > 1:
        comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM)
    return grad


def sum_over_ranks(values: Sequence[float], comm: Any) -> np.ndarray:
    """Sum a few numbers over the ranks (float64 ``Allreduce``); every rank gets the sums.

    Used for metrics: summed losses, correct counts, example counts.

    Examples
    --------
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> distributed.sum_over_ranks([1.5, 2], MPI.COMM_SELF)
    array([1.5, 2. ])
    """
    MPI = require_mpi()
    sums = np.array(values, dtype=np.float64).reshape(-1)
    if check_comm(comm).Get_size() > 1:
        comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
    return sums


def state_memory_bytes(optimizer: Any) -> int:
    """Bytes of per-element optimizer state this process holds (``exp_avg``, ``exp_avg_sq``, ...).

    Works for an :class:`nbadam.Optimizer` (the whole vector) and a
    :class:`ShardedOptimizer` (this rank's slice).

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> from nbadam.distributed import state_memory_bytes
    >>> state_memory_bytes(nbadam.Adam(np.zeros(1000, dtype=np.float32)))
    8000
    """
    return int(sum(array.nbytes for array in optimizer.state.values()))


def allreduce_bytes(n: int, itemsize: int, ranks: int) -> float:
    r"""Bytes each rank sends in a bandwidth-optimal (ring) all-reduce of ``n`` items.

    .. math:: 2\,\frac{p-1}{p}\, n \cdot \text{itemsize}

    A reduce-scatter followed by an all-gather (what :class:`ShardedOptimizer`
    does) sends the same: half each.

    Examples
    --------
    >>> from nbadam.distributed import allreduce_bytes
    >>> allreduce_bytes(235_146, 4, 2)     # the 784-256-128-10 MLP in float32
    940584.0
    >>> round(allreduce_bytes(235_146, 4, 64) / 1e6, 2)
    1.85
    """
    n = _validate.integer("n", n, 0)
    ranks = _validate.integer("ranks", ranks, 1)
    return 2.0 * (ranks - 1) / ranks * n * itemsize


class ShardedOptimizer:
    """An nbadam optimizer whose state is split between the ranks (ZeRO stage 1).

    Rank ``r`` builds ``optimizer_class`` on the contiguous view
    ``params[lo:hi]`` (:func:`shard_bounds`), so it holds ``exp_avg``,
    ``exp_avg_sq`` (and ``max_exp_avg_sq``) for that slice only: optimizer
    memory per rank is divided by the number of ranks.  :meth:`step` updates
    the slice and rebuilds the whole vector on every rank with one
    ``Allgatherv``.  Because the update is elementwise, each element sees
    exactly the arithmetic of an unsharded optimizer given the same gradient:
    the parameters are the same bit for bit.

    Parameters
    ----------
    optimizer_class : type
        An nbadam optimizer class, such as :class:`~nbadam.Adam` (any class of
        :func:`nbadam.optimizers.optimizer_class`).
    params : numpy.ndarray
        The full flat parameter vector, the same on every rank, updated in place.
    comm : mpi4py.MPI.Intracomm
        The ranks sharing the state (``MPI.COMM_WORLD``).
    **hyperparameters
        Passed to ``optimizer_class`` (``lr``, ``betas``, ``weight_decay``,
        ...); the device is always the CPU.

    Attributes
    ----------
    local : nbadam.Optimizer
        The optimizer over this rank's slice; its ``state`` is this rank's share.
    bounds : tuple of int
        ``(lo, hi)``, this rank's slice of the vector.

    Notes
    -----
    Every method that communicates (:meth:`step`, :meth:`reduce_scatter`,
    :meth:`state_dict`, :meth:`save`) is collective: all ranks call it, in the
    same order.  Hyperparameters (``lr``, ``betas``, ...) read and write
    through to :attr:`local`; set them on every rank alike.

    Checkpoints hold the full, unsharded state: :meth:`state_dict` gathers the
    slices to one rank with ``Gatherv`` and :meth:`save` writes the same file
    as :meth:`nbadam.Optimizer.save`, so a run can resume on any number of
    ranks, or in a single process with a plain optimizer.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> x = np.array([1.0, -2.0, 3.0])
    >>> opt = distributed.ShardedOptimizer(nbadam.Adam, x, MPI.COMM_SELF, lr=0.1)
    >>> opt.step(2.0 * x), opt.step_count, opt.bounds
    (True, 1, (0, 3))
    >>> x
    array([ 0.9, -1.9,  2.9])
    >>> opt.state_memory_bytes()      # 2 arrays x 3 float64 on the only rank
    48
    """

    def __init__(self, optimizer_class: type[Optimizer], params: np.ndarray, comm: Any,
                 **hyperparameters: Any):
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"optimizer_class must be an nbadam optimizer class such as "
                            f"nbadam.Adam, got {optimizer_class!r}")
        unsupported = sorted(k for k in ("groups", "clip_grad_norm", "ema")
                             if hyperparameters.get(k) is not None)
        if hyperparameters.get("state_precision", "float32") != "float32":
            unsupported.append("state_precision")
        if unsupported:
            raise ValueError(f"ShardedOptimizer does not support {', '.join(unsupported)} "
                             "yet: each rank's optimizer sees only its slice of the vector, "
                             "so groups, the gradient's global norm, the average and the "
                             "compact state's rounding would be those of the slice; use a "
                             "plain optimizer with an allreduced gradient "
                             "(nbadam.distributed.allreduce_mean) instead")
        rule = optimizer_class.rule
        if rule is not None and any(update.reduce is not None for update in rule.updates):
            raise ValueError(f"ShardedOptimizer does not run {optimizer_class.__name__}: its "
                             "step needs sums over the whole vector, and each rank sees only "
                             "its slice; use a plain optimizer with an allreduced gradient "
                             "(nbadam.distributed.allreduce_mean) instead")
        if rule is not None and any(update.evaluation is not None for update in rule.updates):
            raise ValueError(f"ShardedOptimizer does not run {optimizer_class.__name__}: it "
                             "reports an averaged point (eval_params) that the shards do not "
                             "gather; use a plain optimizer with an allreduced gradient "
                             "(nbadam.distributed.allreduce_mean) instead")
        if hyperparameters.get("device", "cpu") != "cpu":
            raise ValueError(f"ShardedOptimizer runs on the CPU, got "
                             f"device={hyperparameters['device']!r}")
        hyperparameters.pop("device", None)
        comm = check_comm(comm)
        params = _validate.params_vector(params)
        size, rank = comm.Get_size(), comm.Get_rank()
        counts, displs = shard_counts(params.size, size)
        lo, hi = shard_bounds(params.size, size, rank)
        local = optimizer_class(params[lo:hi], **hyperparameters)
        self.__dict__.update(
            _comm=comm, _params=params, _local=local, _lo=lo, _hi=hi,
            _vector=(counts.tolist(), displs.tolist()), _mpi_type=_mpi_type(params.dtype),
            _grad_shard=np.empty(hi - lo, params.dtype))

    # -- delegation to the optimizer over the slice ---------------------------
    def __getattr__(self, name: str) -> Any:
        # The hyperparameters and running scalars of the rule, read through to the slice's
        # optimizer; the rest of Optimizer's surface is delegated below the class.
        local = self.__dict__.get("_local")
        if local is not None and (name in local._hyper_names or name in local._scalar_state):
            return getattr(local, name)
        raise AttributeError(f"ShardedOptimizer has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        local = self.__dict__.get("_local")
        if local is None or name not in local._hyper_names:
            allowed = ", ".join(local._hyper_names) if local is not None else "none yet"
            raise AttributeError(f"cannot set {name!r} on a ShardedOptimizer; only its "
                                 f"hyperparameters ({allowed}) can be set")
        setattr(local, name, value)

    def __repr__(self) -> str:
        return (f"ShardedOptimizer({self._local!r}, slice [{self._lo}, {self._hi}) of "
                f"{self._params.size}, rank {self._comm.Get_rank()} of {self._comm.Get_size()})")

    @property
    def local(self) -> Optimizer:
        """The optimizer over this rank's slice ``params[lo:hi]``."""
        return self._local

    @property
    def comm(self) -> Any:
        """The communicator the state is split over."""
        return self._comm

    @property
    def bounds(self) -> tuple[int, int]:
        """``(lo, hi)``: the slice of the vector whose state this rank holds."""
        return self._lo, self._hi

    @property
    def params(self) -> np.ndarray:
        """The full parameter vector, identical on every rank after each :meth:`step`."""
        return self._params

    def state_memory_bytes(self) -> int:
        """Bytes of optimizer state held by this rank (about 1/size of the unsharded state)."""
        return state_memory_bytes(self._local)

    # -- the step -----------------------------------------------------------------
    def reduce_scatter(self, grad: np.ndarray, weight: float = 1.0) -> np.ndarray:
        """This rank's slice of the weighted sum of every rank's ``grad``: one ``Reduce_scatter``.

        The sharded counterpart of :func:`allreduce_mean`: ``grad`` (this
        rank's mean gradient, full length) is scaled in place by ``weight =
        local_count / global_count``, and the call returns, in a buffer of
        this optimizer, elements ``[lo, hi)`` of the sum over the ranks,
        ready for :meth:`step`.  It sends half the bytes of an all-reduce;
        the ``Allgatherv`` in :meth:`step` sends the other half.
        """
        MPI = require_mpi()
        grad = _validate.gradient(grad, self._params.size, self._params.dtype)
        weight = _validate.real("weight", weight)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be this rank's share of the batch, in [0, 1], "
                             f"got {weight}")
        if not grad.flags.writeable:
            raise ValueError("grad is read-only; reduce_scatter scales it in place")
        if weight != 1.0:
            np.multiply(grad, grad.dtype.type(weight), out=grad)
        if self._comm.Get_size() == 1:
            return grad
        self._comm.Reduce_scatter(grad, [self._grad_shard, self._mpi_type],
                                  recvcounts=self._vector[0], op=MPI.SUM)
        return self._grad_shard

    def step(self, grad: np.ndarray) -> bool:
        """Update this rank's slice, then rebuild the full vector on every rank (collective).

        Parameters
        ----------
        grad : numpy.ndarray
            Either the full gradient, already reduced and the same on every
            rank (for example by :func:`allreduce_mean`), of which elements
            ``[lo, hi)`` are used; or just those elements, as returned by
            :meth:`reduce_scatter`.

        Returns
        -------
        bool
            True when the update was applied; False when ``nonfinite="skip"``
            skipped it on every rank because some rank's slice of ``grad``
            held NaN or infinity.  The ranks agree on this with one small
            all-reduce, made only when ``nonfinite`` is not ``"propagate"``.
        """
        MPI = require_mpi()
        n, lo, hi = self._params.size, self._lo, self._hi
        if not isinstance(grad, np.ndarray) or grad.ndim != 1 or grad.size not in (n, hi - lo):
            shape = getattr(grad, "shape", type(grad).__name__)
            raise ValueError(f"grad must be 1-D with the full {n} elements or this rank's "
                             f"{hi - lo} (reduce_scatter's result), got {shape}")
        local_grad = grad[lo:hi] if grad.size == n else grad
        local_grad = _validate.gradient(local_grad, hi - lo, self._params.dtype)
        if self._local.nonfinite != "propagate":
            bad = np.flatnonzero(~np.isfinite(local_grad))
            finite = bad.size == 0
            if self._comm.Get_size() > 1:
                finite = self._comm.allreduce(finite, op=MPI.LAND)
            if not finite:
                if self._local.nonfinite == "raise":
                    where = (f"grad[{lo + bad[0]}] = {local_grad[bad[0]]}" if bad.size
                             else "in another rank's slice")
                    raise FloatingPointError(
                        f"grad holds a non-finite value ({where}) at step "
                        f"{self.step_count + 1}; parameters and state are unchanged on "
                        f"every rank")
                self._local.skipped_steps += 1
                return False
        self._local.step(local_grad)
        if self._comm.Get_size() > 1:
            counts, displs = self._vector
            self._comm.Allgatherv(MPI.IN_PLACE, [self._params, counts, displs, self._mpi_type])
        return True

    # -- checkpoints ----------------------------------------------------------------
    def state_dict(self, root: int = 0) -> dict[str, Any]:
        """The full, unsharded snapshot, gathered to rank ``root`` (collective).

        On ``root`` the result is exactly what an unsharded optimizer of the
        same class would return (:meth:`nbadam.Optimizer.state_dict`), so
        :meth:`load_state_dict` of a sharded or plain optimizer, on any
        number of ranks, accepts it.  On the other ranks it holds the same
        metadata and an empty ``"state"``.  Only ``root`` allocates the full
        state, and only for the moment of the call.
        """
        snapshot = self._local.state_dict()
        full = self._comm.Get_rank() == root
        counts, displs = self._vector
        gathered = {}
        for name, piece in snapshot["state"].items():
            whole = np.empty(self._params.size, self._params.dtype) if full else None
            if self._comm.Get_size() == 1:
                whole = piece
            else:
                self._comm.Gatherv(piece, [whole, counts, displs, self._mpi_type]
                                   if full else None, root=root)
            if full:
                gathered[name] = whole
        snapshot["size"] = self._params.size
        snapshot["state"] = gathered
        return snapshot

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a full snapshot: every rank passes the whole of it and keeps its slice.

        Accepts what :meth:`state_dict` returns on its root, or what a plain
        optimizer's :meth:`~nbadam.Optimizer.state_dict` returns.  Not
        collective (every rank reads the same snapshot, e.g. from one file).
        """
        name = self._local.__class__.__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict from state_dict(), got "
                            f"{type(state_dict).__name__}")
        if state_dict.get("size") != self._params.size:
            raise ValueError(f"state_dict holds {state_dict.get('size')} x "
                             f"{state_dict.get('dtype')} state; this sharded {name} has "
                             f"{self._params.size} x {self._params.dtype} parameters")
        local = dict(state_dict, size=self._hi - self._lo)
        arrays = state_dict.get("state", {})
        if not isinstance(arrays, Mapping):
            raise TypeError("state_dict['state'] must map names to arrays")
        sliced = {}
        for key, array in arrays.items():
            array = np.asarray(array)
            if array.shape != (self._params.size,):
                raise ValueError(f"state_dict array {key!r} has shape {array.shape}; expected "
                                 f"({self._params.size},)")
            sliced[key] = array[self._lo:self._hi]
        local["state"] = sliced
        self._local.load_state_dict(local)

    def save(self, path: str | os.PathLike, root: int = 0) -> None:
        """Gather the full state and write it from rank ``root`` (collective).

        The file is that of :meth:`nbadam.Optimizer.save`: a plain optimizer
        of the same class can :meth:`~nbadam.Optimizer.load` it too.
        """
        snapshot = self.state_dict(root)
        if self._comm.Get_rank() != root:
            return
        checkpoint.save_optimizer(path, snapshot)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save` (or a plain optimizer's); every rank reads it."""
        state_dict = checkpoint.load_optimizer(path, self._local.state, size=self._params.size,
                                               dtype=self._params.dtype)
        try:
            self.load_state_dict(state_dict)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None


#: Members of :class:`~nbadam.Optimizer` a ShardedOptimizer answers for this rank's
#: slice exactly as the optimizer over that slice does.
_DELEGATED = ("device", "state", "step_count", "skipped_steps", "last_lr", "hyperparameters",
              "current_lr", "state_precision")
_DELEGATED_DOCS = {
    "step_count": "Steps applied (the same on every rank).",
    "skipped_steps": "Steps skipped for a non-finite gradient (``nonfinite=\"skip\"``).",
    "last_lr": "The learning rate of the last applied step.",
}


def _delegate(name: str) -> Any:
    """A member of ShardedOptimizer that reads ``name`` of :attr:`ShardedOptimizer.local`."""
    member = getattr(Optimizer, name, None)
    if callable(member):
        @functools.wraps(member)
        def method(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self._local, name)(*args, **kwargs)
        return method
    doc = member.__doc__ if isinstance(member, property) else _DELEGATED_DOCS[name]
    return property(lambda self: getattr(self._local, name), doc=doc)


for _name in _DELEGATED:
    setattr(ShardedOptimizer, _name, _delegate(_name))
del _name


#: Seconds between printing the failure and ``MPI_Abort`` (see :func:`abort_on_error`).
_ABORT_GRACE_S = 0.5


@contextlib.contextmanager
def abort_on_error(comm: Any, program: str = "nbadam") -> Iterator[None]:
    """End the whole MPI job if the block raises on this rank, rather than hang.

    The other ranks are usually blocked in a collective (the next
    ``Allreduce``) that the failed rank will never join.  On an exception this
    prints one line to stderr naming the rank and the error, then calls
    ``comm.Abort(1)``, which makes ``mpiexec`` kill every rank and exit
    non-zero.  The line is printed half a second before the abort, so that
    ``mpiexec`` has forwarded it before it ends the job.  On a single rank
    the exception propagates as usual.

    A rank that dies without an exception (killed, out of memory) is caught
    by ``mpiexec`` itself, which then ends the job; a rank that hangs is not:
    run ``mpiexec`` with a time limit (MPICH: ``MPIEXEC_TIMEOUT=seconds`` or
    ``mpiexec -timeout seconds``) as the backstop.

    Examples
    --------
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> with distributed.abort_on_error(MPI.COMM_SELF):
    ...     total = sum(range(4))
    >>> total
    6
    """
    try:
        yield
    except BaseException as exc:
        comm = check_comm(comm)
        if comm.Get_size() == 1:
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        print(f"{program}: rank {comm.Get_rank()} of {comm.Get_size()} failed: "
              f"{type(exc).__name__}: {message}; aborting all ranks", file=sys.stderr,
              flush=True)
        # MPI_Abort tears the job down at once, and mpiexec's forwarding of this rank's
        # stderr can lose a line still in flight: give it a moment to pass the line on.
        time.sleep(_ABORT_GRACE_S)
        comm.Abort(1)
        raise  # not reached: Abort does not return


def check_same(comm: Any, values: Mapping[str, Any], what: str = "fit") -> None:
    """Raise ValueError on every rank unless every rank passed equal ``values`` (collective).

    One small ``allgather``.  Catches ranks started with different arguments,
    which would otherwise hang in mismatched collectives or silently diverge.

    Examples
    --------
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> distributed.check_same(MPI.COMM_SELF, {"batch_size": 128})
    """
    comm = check_comm(comm)
    if comm.Get_size() == 1:
        return
    everyone = comm.allgather(dict(values))
    for key in values:
        seen = [ranks.get(key) for ranks in everyone]
        if any(value != seen[0] for value in seen):
            listing = ", ".join(f"rank {rank}: {value!r}" for rank, value in enumerate(seen))
            raise ValueError(f"the ranks disagree on {key} ({listing}); every rank must call "
                             f"{what} with the same arguments and data")


def check_in_sync(array: np.ndarray, comm: Any, what: str = "parameters") -> None:
    """Raise RuntimeError on every rank unless ``array`` is bit for bit the same on all ranks.

    Compares CRC-32 checksums (one small ``allgather``); ``fit`` calls it
    after every epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam import distributed
    >>> MPI = distributed.require_mpi()
    >>> distributed.check_in_sync(np.zeros(3), MPI.COMM_SELF)
    """
    comm = check_comm(comm)
    if comm.Get_size() == 1:
        return
    checksums = comm.allgather(zlib.crc32(np.ascontiguousarray(array)))
    if len(set(checksums)) > 1:
        raise RuntimeError(f"the {what} differ between ranks (CRC-32 by rank: "
                           f"{[f'{value:08x}' for value in checksums]}); the ranks no "
                           "longer train the same model")
