"""The training loop behind :meth:`nbadam.MLP.fit`: batches, epochs, checkpoints.

One step follows a gradient from the data to the kernel::

    Trainer.step: model._loss_and_grad (fills model.grad)
                  -> Trainer._reduce_gradient (identity without ``comm``; with it,
                     one Allreduce, or a Reduce_scatter for a sharded optimizer)
                  -> optimizer.step(model.grad) -> nbadam._launch -> kernel

With ``comm`` (data-parallel over MPI, :mod:`nbadam.distributed`) every rank
walks the same global batches and computes the gradient of its shard of each.

The order of the examples in epoch ``e`` depends only on ``(seed, e)``
(:func:`epoch_order`), and a checkpoint holds the parameters, the optimizer
state, the number of finished epochs and the history, so a run resumed from
its checkpoint finishes with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from .. import _validate, distributed, rules, schedules
from .. import checkpoint as _checkpoint
from ..optimizers import Optimizer, optimizer_class
from ._workspace import _Workspace

if TYPE_CHECKING:
    from .mlp import MLP

__all__ = ["History", "Trainer", "epoch_order", "fit"]

_TRAINING_FORMAT = "mlp-training"
#: Steps between refreshes of the progress bar's loss and accuracy.
_POSTFIX_EVERY = 25
#: tqdm's default without the rate and the time left, to leave room for the metrics.
_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The order in which epoch ``epoch`` (0-based) visits ``n`` examples.

    Examples
    --------
    >>> from nbadam.nn.training import epoch_order
    >>> epoch_order(0, 3, 5, shuffle=False)
    array([0, 1, 2, 3, 4])
    >>> bool((epoch_order(0, 3, 5, True) == epoch_order(0, 3, 5, True)).all())
    True
    """
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def make_optimizer(model: MLP, optimizer: Any, lr: Any, options: dict[str, Any] | None,
                   shard_comm: Any = None) -> Optimizer:
    """The optimizer ``fit`` uses: built from a name, or checked if given.

    With ``shard_comm`` a named optimizer is built as a
    :class:`nbadam.distributed.ShardedOptimizer` over that communicator.
    """
    if shard_comm is not None and isinstance(optimizer, Optimizer):
        raise ValueError(f"shard_optimizer=True builds the optimizer itself: pass its name, "
                         f"or a nbadam.distributed.ShardedOptimizer, not a "
                         f"{type(optimizer).__name__} instance")
    if isinstance(optimizer, (Optimizer, distributed.ShardedOptimizer)):
        if getattr(optimizer, "device", "cpu") != "cpu":
            raise ValueError(f"optimizer runs on device={optimizer.device!r}; the MLP trains "
                             "on the CPU, so build it with the default device='cpu'")
        if optimizer.params is not model.params:
            raise ValueError(
                "optimizer was built on another array; build it on the model's parameters, "
                "e.g. nbadam.Adam(model.params, lr=1e-3)")
        if lr is not None or options:
            raise ValueError("lr and optimizer_options apply to a named optimizer; set them "
                             f"on the {type(optimizer).__name__} instance instead")
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in rules.names():
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, rules.names()))} "
                         f"(nbadam.rules) or an nbadam optimizer instance, got {optimizer!r}")
    rule = rules.get(optimizer)
    cls, fixed = optimizer_class(rule), dict(rule.pinned)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"optimizer_options must be a dict of keyword arguments, got "
                        f"{options!r}")
    clash = sorted(set(options) & ({"params", "lr", "device"} | set(fixed)))
    if clash:
        raise ValueError(f"optimizer_options must not set {', '.join(clash)} (pass lr= to "
                         f"fit; the MLP trains on the CPU; {optimizer!r} fixes the rest)")
    kwargs = {**options, **fixed}
    if lr is not None:
        kwargs["lr"] = lr
    if "groups" not in kwargs and shard_comm is None:
        kwargs["groups"] = _no_decay_on_biases(model, rule, kwargs)
    try:
        if shard_comm is not None:
            return distributed.ShardedOptimizer(cls, model.params, shard_comm, **kwargs)
        return cls(model.params, **kwargs)
    except TypeError as exc:
        raise TypeError(f"optimizer_options for {optimizer!r}: {exc}") from None


def _no_decay_on_biases(model: MLP, rule: rules.Rule, kwargs: dict[str, Any]) -> Any:
    """Groups that keep weight decay off the biases, as is standard; None when there is
    no weight decay (one group then, one launch per step)."""
    decay = kwargs.get("weight_decay", rule.defaults.get("weight_decay", 0.0))
    if not decay:
        return None
    groups = []
    for layer in model.layer_slices():
        groups += [{"params": layer["weights"]}, {"params": layer["bias"], "weight_decay": 0.0}]
    return groups


class Trainer:
    """Runs training steps of ``model`` with ``optimizer`` on preallocated buffers.

    Parameters
    ----------
    model : MLP
    optimizer : nbadam.Optimizer
        Built on ``model.params``.
    rows : int
        The largest batch; the buffers are allocated once for it.
    comm : mpi4py.MPI.Intracomm, optional
        Data-parallel training: each rank computes the gradient of its shard
        of every batch, and :meth:`_reduce_gradient` combines them.
    l2, label_smoothing : float, default 0
        Terms of the training loss (see :func:`fit`).
    """

    def __init__(self, model: MLP, optimizer: Optimizer, rows: int, comm: Any = None,
                 l2: float = 0.0, label_smoothing: float = 0.0):
        self.model = model
        self.optimizer = optimizer
        self.comm = comm
        self.l2, self.label_smoothing = l2, label_smoothing
        self.work = _Workspace(model.sizes, model.dtype, rows)
        self.ranks, self.rank = (1, 0) if comm is None else (comm.Get_size(), comm.Get_rank())
        #: This rank's share of the current global batch (set by :meth:`step`).
        self.weight = 1.0

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of the global batch ``rows`` (all of it without comm)."""
        if self.comm is None:
            return rows
        lo, hi = distributed.shard_bounds(rows.size, self.ranks, self.rank)
        return rows[lo:hi]

    def _reduce_gradient(self, grad: np.ndarray) -> np.ndarray:
        """Combine the gradients of all ranks (the all-reduce hook).

        Without a communicator this is the identity.  With one, ``grad`` (the
        mean over this rank's examples) is scaled by :attr:`weight` and summed
        over the ranks in place by one ``Allreduce``
        (:func:`nbadam.distributed.allreduce_mean`); a sharded optimizer gets
        just its slice of the sum from a ``Reduce_scatter`` instead.
        """
        if self.comm is None:
            return grad
        if isinstance(self.optimizer, distributed.ShardedOptimizer):
            return self.optimizer.reduce_scatter(grad, self.weight)
        return distributed.allreduce_mean(grad, self.comm, self.weight)

    def step(self, x: np.ndarray, divisor: np.generic, labels: np.ndarray,
             rows: np.ndarray, weight: float = 1.0) -> tuple[float, int]:
        """One update on examples ``rows``: returns their summed loss and correct count.

        With ``comm``, ``rows`` are this rank's share (:meth:`shard`) of a
        global batch and ``weight`` is ``len(rows) / len(global batch)``; a
        rank whose share is empty still joins the reduction, with a zero
        gradient.
        """
        self.weight = weight
        if rows.size:
            count = self.work.load(x, divisor, rows, labels)
            loss, correct = self.model._loss_and_grad(self.work, count, self.l2,
                                                       self.label_smoothing)
        else:
            self.model.grad[...] = 0
            loss, correct = 0.0, 0
        grad = self._reduce_gradient(self.model.grad)
        self.optimizer.step(grad)
        return loss, correct

    def epoch(self, x: np.ndarray, divisor: np.generic, labels: np.ndarray,
              order: np.ndarray, bar: tqdm) -> dict[str, float]:
        """One pass over ``x`` in ``order``; returns the epoch's mean loss and accuracy.

        With ``comm`` every rank walks the same global batches; the metrics
        are summed over the ranks once, at the end (the progress bar shows
        this rank's share).
        """
        loss, correct, seen = 0.0, 0, 0
        batch = self.work.rows
        for number, start in enumerate(range(0, order.size, batch), 1):
            batch_rows = order[start:start + batch]
            rows = self.shard(batch_rows)
            batch_loss, batch_correct = self.step(x, divisor, labels, rows,
                                                  rows.size / batch_rows.size)
            loss += batch_loss
            correct += batch_correct
            seen += rows.size
            bar.update(1)
            if number % _POSTFIX_EVERY == 0 and seen:
                bar.set_postfix(loss=f"{loss / seen:.4f}", acc=f"{correct / seen:.4f}",
                                refresh=False)
        if self.comm is not None:
            loss, correct, seen = distributed.sum_over_ranks([loss, correct, seen], self.comm)
        return {"loss": loss / seen, "accuracy": correct / seen}

    def evaluate(self, x: np.ndarray, divisor: np.generic,
                 labels: np.ndarray) -> dict[str, float]:
        """Loss and accuracy on validated data, in the training buffers.

        With ``comm`` each rank evaluates a contiguous shard and the sums are
        combined, so every rank gets the scores of the whole set.
        """
        with at_eval_point(self.model, self.optimizer):
            return self._evaluate(x, divisor, labels)

    def _evaluate(self, x: np.ndarray, divisor: np.generic,
                  labels: np.ndarray) -> dict[str, float]:
        if self.comm is None:
            return self.model._evaluate(self.work, x, divisor, labels)
        lo, hi = distributed.shard_bounds(x.shape[0], self.ranks, self.rank)
        loss = correct = 0.0
        if hi > lo:
            scores = self.model._evaluate(self.work, x[lo:hi], divisor, labels[lo:hi])
            loss, correct = scores["loss"] * (hi - lo), round(scores["accuracy"] * (hi - lo))
        loss, correct = distributed.sum_over_ranks([loss, correct], self.comm)
        return {"loss": loss / x.shape[0], "accuracy": correct / x.shape[0]}


@contextlib.contextmanager
def at_eval_point(model: MLP, opt: Any) -> Iterator[None]:
    """Inside, ``model.params`` hold ``opt``'s eval point (a schedule-free rule's average
    ``x``); after, exactly the training weights ``y`` again.  A no-op for other rules."""
    if not getattr(opt, "separate_eval_point", False):
        yield
        return
    training = model.params.copy()
    model.params[...] = opt.eval_params()
    try:
        yield
    finally:
        model.params[...] = training


def _abort_job_on_error(fit_function: Callable) -> Callable:
    """With a multi-rank ``comm``, an exception on any rank ends the MPI job (no hang)."""

    @functools.wraps(fit_function)
    def guarded(*args: Any, comm: Any = None, **kwargs: Any) -> dict[str, list[float]]:
        if comm is None:
            return fit_function(*args, comm=None, **kwargs)
        comm = distributed.check_comm(comm)
        with distributed.abort_on_error(comm):
            return fit_function(*args, comm=comm, **kwargs)

    return guarded


@_abort_job_on_error
def fit(model: MLP, x: Any, y: Any, epochs: int = 10, batch_size: int = 128,
        optimizer: Any = "adam", lr: float | Callable[[int], float] | None = None, *,
        schedule: str = "cosine", optimizer_options: dict[str, Any] | None = None,
        label_smoothing: float = 0.0, l2: float = 0.0,
        validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
        early_stopping: int | None = None, monitor: str = "val_loss", min_delta: float = 0.0,
        shuffle: bool = True, seed: int | None = None, progress: bool = True,
        callback: Callable[[int, dict[str, float]], Any] | None = None,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1,
        resume: bool = False, comm: Any = None, shard_optimizer: bool = False) -> History:
    r"""Train with mini-batches of softmax cross-entropy, continuing any earlier training.

    This is :meth:`nbadam.MLP.fit` (the function itself: ``model.fit(x, y)``
    is ``fit(model, x, y)``).  Everything is validated before anything
    changes: a bad argument leaves the model, the optimizer and the
    checkpoint file as they were.

    Parameters
    ----------
    x, y : array_like
        Training inputs and integer labels (see the class notes).
    epochs : int, default 10
        Passes over the data in this call.  With ``resume=True``: the length
        of the whole run, counting the epochs it already holds (those of the
        checkpoint file, or of the model's earlier calls when there is no
        file), so that rerunning an interrupted command finishes it.
    batch_size : int, default 128
        Examples per step; the last batch of an epoch may be smaller.
    optimizer : str or nbadam.Optimizer, default "adam"
        The name of a rule of :mod:`nbadam.rules` (``nbadam.rules.names()``),
        or an optimizer already built on the model's ``params``.
    lr : float or callable, optional
        Learning rate of a named optimizer, or a schedule (a callable of the
        step count, used as it is).  By default, with ``schedule="cosine"``,
        three times the optimizer's default (3e-3 for Adam, the peak that did
        best on MNIST), with ``"constant"`` the optimizer's own (1e-3 for
        Adam).
    schedule : {"cosine", "constant"}, default "cosine"
        How a numeric ``lr`` of a named optimizer varies over this call:
        ``"cosine"`` decays it from ``lr`` to 0 along half a cosine over the
        call's steps (:func:`nbadam.schedules.warmup_cosine_decay`);
        ``"constant"`` keeps it.  Ignored for a callable ``lr`` and for an
        optimizer instance.
    optimizer_options : dict, optional
        Further keyword arguments for a named optimizer (``betas``,
        ``weight_decay``, ...).
    label_smoothing : float in [0, 1), default 0
        Train against the targets ``(1 - label_smoothing) * onehot +
        label_smoothing / n_classes`` instead of one-hot labels.
    l2 : float, default 0
        Adds :math:`\frac{l_2}{2}\sum W^2` over the weight matrices (not the
        biases) to each batch's mean loss.  scikit-learn's ``alpha`` is
        ``l2 * batch_size``.
    validation_data : tuple (x_val, y_val), optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``: the
        plain cross-entropy, without ``label_smoothing`` or ``l2``).
    validation_split : float in [0, 1), default 0
        Hold out the last ``validation_split`` of ``x`` and ``y`` (before
        any shuffling, the same examples on every call) as the validation
        data instead; not with ``validation_data``.
    early_stopping : int, optional
        Patience: stop when ``monitor`` has not improved by more than
        ``min_delta`` for this many epochs, and put back the weights of the
        best epoch (when training ends after all ``epochs`` too).
    monitor : {"val_loss", "val_accuracy", "loss", "accuracy"}, default "val_loss"
        The metric early stopping watches (losses must fall, accuracies rise).
    min_delta : float, default 0
        The smallest change of ``monitor`` that counts as an improvement.
    shuffle : bool, default True
        Visit the examples in a new random order every epoch; the order of
        epoch ``e`` (counted over all calls) is
        ``np.random.default_rng([seed, e]).permutation(n)``.
    seed : int, optional
        Seed of the data order; by default the model's :attr:`seed`.
    progress : bool, default True
        Show a tqdm bar per epoch (only when stderr is a terminal).
    callback : callable, optional
        Called as ``callback(epoch, logs)`` after each epoch, with the
        epoch's number (1-based, counted over all calls) and its metrics.
    checkpoint : str or os.PathLike, optional
        File to write the training state to (atomically, ``.npz``).
    checkpoint_every : int, default 1
        Write the checkpoint every this many epochs, and after the last.
    resume : bool, default False
        Continue the run of ``checkpoint`` if the file exists (else the
        model's own), until it has ``epochs`` epochs; the result is bit for
        bit that of an uninterrupted run.
    comm : mpi4py.MPI.Intracomm, optional
        Train data-parallel over MPI ranks (``MPI.COMM_WORLD`` under
        ``mpiexec``; see :mod:`nbadam.distributed`).  Every rank calls
        ``fit`` with the same arguments and data, computes the gradient of
        its shard of each global batch, and one ``Allreduce`` of the flat
        gradient per step gives all ranks the same update, so the result
        matches single-process training up to rounding.  Only rank 0 shows
        progress and writes ``checkpoint`` (every rank reads it to resume);
        ``callback`` runs on every rank with the same logs.  An exception on
        any rank ends the MPI job.
    shard_optimizer : bool, default False
        With ``comm``: split the optimizer state between the ranks (ZeRO
        stage 1, :class:`nbadam.distributed.ShardedOptimizer`), dividing
        its memory per rank by their number; same parameters, bit for bit.

    Returns
    -------
    History
        A dict: ``"loss"`` and ``"accuracy"`` per epoch of this call
        (averaged over the epoch's batches, each measured before its update),
        plus ``"val_loss"`` and ``"val_accuracy"`` with validation data.  Its
        attribute ``epoch`` lists the epochs' numbers and ``best_epoch`` is,
        with ``early_stopping``, the epoch whose weights the model kept
        (``None`` without); ``stopped_early`` says whether patience ran out.
        With ``resume=True`` it covers the whole run.

    Notes
    -----
    **A second call continues.**  The model keeps its optimizer (with its
    state and step count, which a schedule sees) and the number of epochs it
    has trained, so ``fit(x, y, epochs=1)`` twice visits the data in the
    orders of epochs 0 and 1 and, with a constant learning rate, ends bit for
    bit where ``fit(x, y, epochs=2)`` does.  A call whose ``optimizer``,
    ``lr``, ``schedule``, ``optimizer_options`` or ``shard_optimizer`` differ
    from the previous call's builds a new optimizer for the current weights
    (its moments start at zero); an optimizer instance is used as it is.
    With ``schedule="cosine"`` each call decays the learning rate over its
    own steps, so a second call is a warm restart (it starts again at
    ``lr``); pass a callable ``lr`` for one schedule over several calls.
    :meth:`MLP.reset` starts afresh: the initial weights of the seed, no
    optimizer, epoch 0.

    **Checkpoints** hold the parameters, the optimizer's state, the number of
    finished epochs, the history of every epoch and the early-stopping state.
    The order of the examples depends only on ``(seed, epoch)``, so a run
    interrupted and resumed with the same arguments (``epochs`` counting the
    whole run) ends exactly where an uninterrupted one does.  A checkpoint of
    other data, another model, another optimizer or other settings is
    refused with a ``ValueError`` that says what differs.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=np.float64)
    >>> y = np.logical_xor(x[:, 0], x[:, 1]).astype(int)
    >>> model = nbadam.MLP((2, 8, 2), activation="tanh", dtype=np.float64)
    >>> history = model.fit(x, y, epochs=60, batch_size=8, lr=0.05, progress=False)
    >>> sorted(history), history["accuracy"][-1], history.epoch[-1]
    (['accuracy', 'loss'], 1.0, 60)
    >>> more = model.fit(x, y, epochs=5, batch_size=8, lr=0.05, progress=False)
    >>> more.epoch, model.epochs_trained
    ([61, 62, 63, 64, 65], 65)
    """
    epochs = _validate.integer("epochs", epochs, 1)
    batch_size = _validate.integer("batch_size", batch_size, 1)
    checkpoint_every = _validate.integer("checkpoint_every", checkpoint_every, 1)
    schedule = _validate.choice("schedule", schedule, SCHEDULES)
    label_smoothing = _validate.unit_interval("label_smoothing", label_smoothing)
    l2 = _validate.nonnegative("l2", l2)
    validation_split = _validate.unit_interval("validation_split", validation_split)
    if early_stopping is not None:
        early_stopping = _validate.integer("early_stopping", early_stopping, 1)
    monitor = _validate.choice("monitor", monitor, MONITORS)
    min_delta = _validate.nonnegative("min_delta", min_delta)
    shuffle = _validate.flag("shuffle", shuffle)
    progress = _validate.flag("progress", progress)
    resume = _validate.flag("resume", resume)
    seed = model.seed if seed is None else _validate.integer("seed", seed, 0, maximum=None)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    shard_optimizer = _validate.flag("shard_optimizer", shard_optimizer)
    if shard_optimizer and comm is None:
        raise ValueError("shard_optimizer=True splits the optimizer state between MPI ranks; "
                         "pass comm= as well (e.g. mpi4py's MPI.COMM_WORLD)")
    if comm is not None:
        # Rank 0's seed decides the data order (a model built with seed=None differs per rank).
        seed = comm.bcast(seed, root=0)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path> to resume from")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path, got {checkpoint!r}")
    rank = 0 if comm is None else comm.Get_rank()
    if checkpoint is not None and rank == 0:
        # Before the first epoch, not after it: rank 0 alone writes the checkpoint.
        _checkpoint.check_writable(checkpoint, "checkpoint")
    x, divisor = model._check_x(x, "x")
    labels = model._check_y(y, x.shape[0], "y")
    validation = None
    if validation_data is not None:
        if validation_split:
            raise ValueError("pass validation_data or validation_split, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val), got "
                             f"{type(validation_data).__name__}")
        x_val, val_divisor = model._check_x(validation_data[0], "validation_data[0]")
        validation = (x_val, val_divisor,
                      model._check_y(validation_data[1], x_val.shape[0], "validation_data[1]"))
    elif validation_split:
        x, labels, validation = _split(x, divisor, labels, validation_split)
    keys = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if validation else [])
    if early_stopping is not None and monitor not in keys:
        raise ValueError(f"early_stopping watches monitor={monitor!r}, which needs "
                         "validation_data or validation_split (or monitor='loss')")
    rows = min(batch_size, x.shape[0])
    steps_per_epoch = -(-x.shape[0] // rows)

    previous = model._training
    named = not isinstance(optimizer, (Optimizer, distributed.ShardedOptimizer))
    settings = (_settings(optimizer, lr, schedule, optimizer_options, shard_optimizer)
                if named else None)
    found = False
    if resume:
        found = os.path.exists(checkpoint)
        if comm is not None:
            # Every rank reads the checkpoint (a shared file system); all must see it alike.
            distributed.check_same(comm, {"whether the checkpoint file exists": found}, "fit")
    # A checkpoint to resume from replaces the model's own training state.
    continuing = not found and previous is not None and (
        previous.optimizer is optimizer if not named else previous.settings == settings)
    anneal = named and schedule == "cosine" and not callable(lr)
    if continuing:
        opt = previous.optimizer
    else:
        opt = make_optimizer(model, optimizer, _peak_lr(optimizer, lr, anneal),
                             optimizer_options, comm if shard_optimizer else None)
    if isinstance(opt, distributed.ShardedOptimizer) and comm is None:
        raise ValueError("a ShardedOptimizer trains data-parallel: pass comm= as well")
    peak = previous.peak_lr if continuing else opt.lr

    early = None if early_stopping is None else {
        "patience": early_stopping, "monitor": monitor, "min_delta": min_delta}
    run: dict[str, Any] = {}  # what a checkpoint records of the run, and a resume compares
    if checkpoint is not None:
        run = {"seed": seed, "shuffle": shuffle, "batch_size": batch_size,
               "n_examples": int(x.shape[0]), "data_crc32": _fingerprint(x, labels),
               "validation_split": validation_split, "l2": l2,
               "label_smoothing": label_smoothing, "early_stopping": early}
        _check_savable_lr(opt)
    if comm is not None:
        distributed.check_same(comm, {
            "the training data": (x.shape, _fingerprint(x, labels)),
            "validation_data": None if validation is None else validation[0].shape,
            "epochs": epochs, "batch_size": batch_size, "shuffle": shuffle,
            "the model": model.config() | {"seed": None},
            "the optimizer": (type(opt).__name__, {key: value for key, value in
                                                   opt.hyperparameters().items()
                                                   if not callable(value)}),
            "the model's epochs": 0 if previous is None else previous.epochs_done,
            "checkpoint": (checkpoint is not None, resume, checkpoint_every)}, "fit")

    # Where this call starts, and what the model has done so far.
    if continuing:
        state = previous
    else:
        state = _State(opt, settings, peak,
                       epochs_done=0 if previous is None else previous.epochs_done,
                       history={} if previous is None else previous.history)
    first_epoch, first_step = state.epochs_done, opt.step_count
    if resume and not found:
        if continuing:
            first_epoch, first_step = state.first_epoch, state.first_step
        if state.epochs_done > epochs:
            raise ValueError(f"resume=True trains until epoch {epochs}, but the model has "
                             f"already trained {state.epochs_done} epochs")
    end = epochs if resume else first_epoch + epochs

    def planned_lr(start_epoch: int, start_step: int) -> Any:
        """The cosine this call decays ``lr`` along, from ``start_step`` to the end epoch."""
        steps = (end - start_epoch) * steps_per_epoch
        if steps < 1:
            return opt.lr
        return schedules.warmup_cosine_decay(peak_value=peak, warmup_steps=start_step,
                                             decay_steps=start_step + steps,
                                             init_value=peak)

    tracker = _EarlyStopping(early, model) if early else None
    if found:
        def expect_lr(meta: dict[str, Any]) -> None:
            nonlocal first_epoch, first_step
            first_epoch, first_step = _call_start(meta)
            if anneal:
                opt.lr = planned_lr(first_epoch, first_step)

        loaded = _load_checkpoint(checkpoint, model, opt, run, keys, epochs, steps_per_epoch,
                                  expect_lr, tracker)
        state = _State(opt, settings, peak, epochs_done=loaded[0], history=loaded[1])
    elif anneal:
        opt.lr = planned_lr(first_epoch, first_step)
    state.first_epoch, state.first_step = first_epoch, first_step
    model._training = state
    if comm is not None:
        distributed.check_same(comm, {"the epoch to resume from": state.epochs_done}, "fit")
        comm.Bcast(model.params, root=0)

    trainer = Trainer(model, opt, rows, comm, l2=l2, label_smoothing=label_smoothing)
    start = state.epochs_done
    stopped = tracker is not None and tracker.exhausted(start)
    for epoch in range(start, end if not stopped else start):
        with tqdm(total=steps_per_epoch, desc=f"Epoch {epoch + 1}/{end}", unit="step",
                  disable=None if progress and rank == 0 else True, leave=True,
                  dynamic_ncols=True, bar_format=_BAR_FORMAT) as bar:
            logs = trainer.epoch(x, divisor, labels, epoch_order(seed, epoch, x.shape[0],
                                                                  shuffle), bar)
            if validation:
                scores = trainer.evaluate(*validation)
                logs.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
            bar.set_postfix({key.replace("accuracy", "acc"): f"{value:.4f}"
                             for key, value in logs.items()})
        done = epoch + 1
        _append(state.history, keys, logs, done)
        state.epochs_done = done
        if tracker is not None:
            tracker.update(done, logs[monitor])
            stopped = tracker.exhausted(done)
        if comm is not None:
            distributed.check_in_sync(model.params, comm)
        last = done == end or stopped
        if checkpoint is not None and (done % checkpoint_every == 0 or last):
            if rank == 0:  # with MPI, rank 0 alone writes the full (unsharded) state
                _save_checkpoint(checkpoint, model, opt, run, state, keys, tracker)
            elif isinstance(opt, distributed.ShardedOptimizer):
                opt.state_dict()  # this rank's part of the gather to rank 0
        if callback is not None:
            callback(done, dict(logs))
        if stopped:
            break
    if tracker is not None:
        tracker.restore()
    shown_from = 0 if found or resume else first_epoch
    history = History({key: state.history[key][shown_from:] for key in keys})
    history.epoch = list(range(shown_from + 1, state.epochs_done + 1))
    history.best_epoch = None if tracker is None else tracker.best_epoch
    history.stopped_early = bool(stopped)
    return history


SCHEDULES = ("cosine", "constant")
#: The peak of the default cosine schedule, in units of the rule's default lr.  A cosine
#: spends most of its steps well below its peak; on MNIST (784-256-128-10, Adam, batch
#: 128, 10 epochs) 3e-3 gave the best and steadiest test accuracy of 1e-3 ... 5e-3
#: (docs/mnist.rst has the measurements).
COSINE_PEAK_FACTOR = 3
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


class History(dict):
    """What :func:`fit` returns: metric name -> one value per epoch, and which epochs.

    Attributes
    ----------
    epoch : list of int
        The numbers of the epochs in the lists (1-based, counted over all
        calls of ``fit`` on the model).
    best_epoch : int or None
        With ``early_stopping``: the epoch whose weights the model kept.
    stopped_early : bool
        Whether early stopping ended training before ``epochs``.
    """

    epoch: list[int]
    best_epoch: int | None = None
    stopped_early: bool = False


@dataclasses.dataclass
class _State:
    """What :func:`fit` keeps on the model between calls (``model._training``)."""

    optimizer: Any
    #: The named optimizer's arguments it was built from (None for an instance).
    settings: Any
    #: The peak of the cosine schedule, or the lr itself.
    peak_lr: Any
    epochs_done: int = 0
    #: Every epoch's metrics since the model was built (a checkpoint holds them all).
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    #: Epoch and step count where the call whose schedule the optimizer holds began.
    first_epoch: int = 0
    first_step: int = 0


class _EarlyStopping:
    """Patience on one metric, and a copy of the best epoch's parameters."""

    def __init__(self, settings: dict[str, Any], model: MLP):
        self.patience, self.min_delta = settings["patience"], settings["min_delta"]
        self.sign = 1.0 if settings["monitor"].endswith("loss") else -1.0
        self.model = model
        self.best_params = np.empty_like(model.params)
        self.best_epoch: int | None = None
        self.last_epoch: int | None = None
        self.best = math.inf

    def update(self, epoch: int, value: float) -> None:
        self.last_epoch = epoch
        if self.sign * value < self.best - self.min_delta:
            self.best, self.best_epoch = self.sign * value, epoch
            with at_eval_point(self.model, self.model.optimizer):   # the weights it scored
                np.copyto(self.best_params, self.model.params)

    def exhausted(self, epochs_done: int) -> bool:
        return self.best_epoch is not None and epochs_done - self.best_epoch >= self.patience

    def restore(self) -> None:
        if self.best_epoch is None:
            return
        opt = self.model.optimizer
        if getattr(opt, "separate_eval_point", False):
            # A schedule-free rule's params are y and its best weights its average x: move
            # y and z there, so that the eval point is the best weights.  Unless the last
            # epoch was the best: then it already is, and training goes on undisturbed.
            if self.best_epoch != self.last_epoch:
                opt.restart_at(self.best_params)
        else:
            np.copyto(self.model.params, self.best_params)

    def metadata(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best": self.best}


def _peak_lr(optimizer: Any, lr: Any, anneal: bool) -> Any:
    """``lr``; for ``lr=None`` and a cosine, COSINE_PEAK_FACTOR times the rule's default."""
    if lr is not None or not anneal or not isinstance(optimizer, str) or \
            optimizer.lower() not in rules.names():
        return lr
    return COSINE_PEAK_FACTOR * rules.get(optimizer).defaults["lr"]


def _settings(optimizer: Any, lr: Any, schedule: str, options: Any, shard: bool) -> tuple:
    """What decides whether a named optimizer continues: its arguments, comparable."""
    name = optimizer.lower() if isinstance(optimizer, str) else optimizer
    try:
        frozen = json.dumps(options, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        frozen = repr(options)
    return name, lr, schedule if not callable(lr) else None, frozen, shard


def _split(x: np.ndarray, divisor: np.generic, labels: np.ndarray,
           fraction: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The first ``1 - fraction`` of the examples to train on, the rest to validate on."""
    n = x.shape[0]
    keep = int(n * (1.0 - fraction))
    if keep < 1 or keep == n:
        raise ValueError(f"validation_split={fraction} of {n} examples leaves "
                         f"{keep} to train on and {n - keep} to validate on; both need one")
    return x[:keep], labels[:keep], (x[keep:], divisor, labels[keep:])


def _append(history: dict[str, list[float]], keys: list[str], logs: dict[str, float],
            done: int) -> None:
    """Record epoch ``done``'s metrics; a metric new to the history is NaN before it."""
    for key in keys:
        values = history.setdefault(key, [])
        values.extend([math.nan] * (done - 1 - len(values)))
        values.append(logs[key])


def _call_start(meta: dict[str, Any]) -> tuple[int, int]:
    """The epoch and step count at which the checkpointed call began (0, 0 if not recorded)."""
    start = meta.get("call_start", [0, 0])
    if (not isinstance(start, list) or len(start) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       for v in start)):
        raise ValueError(f"its 'call_start' entry is malformed: {str(start)[:100]}")
    return start[0], start[1]


def _cosine_spans(saved: Any, current: Any, steps_per_epoch: int) -> tuple[int, int] | None:
    """Epochs two cosine schedules of :func:`fit` decay over, if they differ only in that."""
    kind = "WarmupCosineDecay"
    if not (isinstance(saved, dict) and isinstance(current, dict)
            and saved.get("schedule") == current.get("schedule") == kind):
        return None
    same = {key for key in current if key != "decay_steps"}
    if any(saved.get(key) != current[key] for key in same):
        return None
    spans = []
    for lr in (saved, current):
        steps = lr.get("decay_steps")
        if not isinstance(steps, int):
            return None
        spans.append(round((steps - current["warmup_steps"]) / steps_per_epoch))
    return spans[0], spans[1]


def _check_savable_lr(opt: Optimizer) -> None:
    """Refuse, before training, an lr schedule that no checkpoint could store."""
    lr = opt.hyperparameters().get("lr")
    if isinstance(lr, schedules.Schedule):
        try:
            lr.to_dict()
        except TypeError as exc:
            raise TypeError(f"checkpoint= needs a savable optimizer: {exc}") from None


def _fingerprint(x: np.ndarray, labels: np.ndarray) -> int:
    """CRC-32 of the training data, so a resume on other data is refused."""
    crc = zlib.crc32(json.dumps([x.dtype.str, list(x.shape)]).encode())
    crc = zlib.crc32(x, crc)
    return zlib.crc32(labels.astype(np.int64), crc)


def _save_checkpoint(path: str | os.PathLike, model: MLP, opt: Optimizer, run: dict[str, Any],
                     state: _State, keys: list[str], tracker: _EarlyStopping | None) -> None:
    snapshot = opt.state_dict()  # a ShardedOptimizer gathers its slices here (collective)
    arrays = {"params": model.params}
    arrays.update({f"optimizer.{name}": value for name, value in snapshot.pop("state").items()})
    arrays.update({f"history.{key}": np.array(state.history[key], np.float64)
                   for key in keys})
    meta = {"format": _TRAINING_FORMAT, "model": model.config(), "optimizer": snapshot,
            "run": run, "epochs_done": state.epochs_done, "history": keys,
            "call_start": [state.first_epoch, state.first_step]}
    if tracker is not None:
        meta["early_stopping"] = tracker.metadata()
        arrays["best_params"] = tracker.best_params
    _checkpoint.save_npz(path, arrays, meta)


def _load_checkpoint(path: str | os.PathLike, model: MLP, opt: Optimizer, run: dict[str, Any],
                     keys: list[str], epochs: int, steps_per_epoch: int,
                     expect_lr: Callable[[dict], None],
                     tracker: _EarlyStopping | None) -> tuple[int, dict[str, list[float]]]:
    """Check the checkpoint against this run, then restore it; returns (epochs done, history).

    Everything the metadata says is checked before any array is read, and
    the arrays must then have exactly the shapes and dtypes this run needs,
    so a crafted file cannot make the resume allocate more than that.
    ``expect_lr(meta)`` sets the learning rate this run expects (its cosine
    schedule starts where the checkpointed call started) before the
    optimizer's settings are compared.
    """
    source = os.fspath(path)

    def refuse(problem: str) -> ValueError:
        return ValueError(f"cannot resume from {source}: {problem}")

    def field(meta: dict[str, Any], name: str, kind: type) -> Any:
        value = meta.get(name)
        if not isinstance(value, kind):
            raise refuse(f"its {name!r} entry is malformed: {str(value)[:100]}")
        return value

    def expect(meta: dict[str, Any]) -> dict[str, _checkpoint.ArraySpec]:
        saved_model = {key: value for key, value in field(meta, "model", dict).items()
                       if key != "seed"}
        this_model = {key: value for key, value in model.config().items() if key != "seed"}
        if saved_model != this_model:
            raise refuse(f"it was written for a model with {saved_model}, this one has "
                         f"{this_model}")
        saved_run = field(meta, "run", dict)
        for key, value in run.items():
            if saved_run.get(key, _DEFAULT_RUN.get(key)) != value:
                what = "training data" if key in ("n_examples", "data_crc32") else key
                raise refuse(f"the {what} differs from the checkpointed run "
                             f"({saved_run.get(key, _DEFAULT_RUN.get(key))!r} there, "
                             f"{value!r} here); resuming would not reproduce it")
        if meta.get("history") != keys:
            raise refuse(f"it records {meta.get('history')} per epoch, this run records "
                         f"{keys} (pass validation_data as in the original run)")
        epochs_done = meta.get("epochs_done")
        if not isinstance(epochs_done, int) or isinstance(epochs_done, bool) or epochs_done < 1:
            raise refuse(f"malformed epoch counter {epochs_done!r}")
        if epochs_done > epochs:
            raise refuse(f"it already holds {epochs_done} epochs, more than epochs={epochs}")
        snapshot = field(meta, "optimizer", dict)
        local = opt.local if isinstance(opt, distributed.ShardedOptimizer) else opt
        if snapshot.get("optimizer") != type(local).__name__:
            raise refuse(f"it holds the state of a {str(snapshot.get('optimizer'))[:40]} "
                         f"optimizer, this run uses {type(local).__name__}")
        try:
            expect_lr(meta)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        current = json.loads(json.dumps(local.state_dict()["hyperparameters"]))
        saved = snapshot.get("hyperparameters", {})
        if not isinstance(saved, dict):
            raise refuse("its optimizer settings are malformed")
        changed = sorted(key for key in current if saved.get(key, current[key]) != current[key])
        if changed == ["lr"] and _cosine_spans(saved["lr"], current["lr"], steps_per_epoch):
            there, here = _cosine_spans(saved["lr"], current["lr"], steps_per_epoch)
            raise refuse(f"the checkpointed run decays the learning rate over {there} "
                         f"epochs, this one over {here}; resume with the epochs the run was "
                         "started with (train further afterwards with another fit)")
        if changed:
            pairs = ", ".join(f"{key}={saved[key]!r} there, {current[key]!r} here"
                              for key in changed)
            raise refuse(f"the optimizer settings differ ({pairs})")
        vector = ((model.params.size,), model.dtype)
        sharded = isinstance(opt, distributed.ShardedOptimizer)
        specs = {"params": vector,
                 **{f"history.{key}": ((epochs_done,), np.float64) for key in keys},
                 # Compact state (state_precision) keeps codes and block scales of
                 # its own shapes and dtypes; a sharded optimizer's file holds the
                 # whole (gathered) vector of each of its float arrays.
                 **{f"optimizer.{name}": (vector[0] if sharded else array.shape, array.dtype)
                    for name, array in opt.state.items()}}
        if tracker is not None:
            saved_early = field(meta, "early_stopping", dict)
            best_epoch, best = saved_early.get("best_epoch"), saved_early.get("best")
            counted = (isinstance(best_epoch, int) and not isinstance(best_epoch, bool)
                       and 1 <= best_epoch <= epochs_done)
            if not (isinstance(best, float) and (counted or best_epoch is None)):
                raise refuse(f"its early-stopping state is malformed: {str(saved_early)[:100]}")
            specs["best_params"] = vector
        return specs

    meta, arrays = _checkpoint.load_npz(path, kind=_TRAINING_FORMAT, expected=expect)
    epochs_done = meta["epochs_done"]
    history = {key: [float(value) for value in arrays[f"history.{key}"]] for key in keys}
    snapshot = meta["optimizer"]
    snapshot["state"] = {name: arrays[f"optimizer.{name}"] for name in opt.state}
    try:
        opt.load_state_dict(snapshot)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise refuse(str(exc)) from None
    model.params[...] = arrays["params"]
    if tracker is not None:
        tracker.best_epoch = meta["early_stopping"]["best_epoch"]
        tracker.best = meta["early_stopping"]["best"]
        np.copyto(tracker.best_params, arrays["best_params"])
    return epochs_done, history


#: What a checkpoint written before a run setting existed implies for it.
_DEFAULT_RUN = {"validation_split": 0.0, "l2": 0.0, "label_smoothing": 0.0,
                "early_stopping": None}
