"""The MLP's side of :func:`nbadam.lr_find`: training steps on a copy, batches as ``fit``'s.

:func:`mlp_steps` validates the data and the optimizer as :meth:`MLP.fit`
does, copies the model (and an optimizer instance's state), and returns
``step(lr) -> loss``: one update of the copy on the next batch, with the
batches of ``fit``'s first epochs for the same seed.  The model and any
optimizer given are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _validate, distributed
from ..optimizers import Optimizer
from .training import Trainer, epoch_order, make_optimizer

if TYPE_CHECKING:
    from .mlp import MLP

__all__ = ["mlp_steps"]


def mlp_steps(model: MLP, x: Any, y: Any, optimizer: Any, options: dict[str, Any] | None,
              start_lr: float, batch_size: int, seed: int | None, shuffle: bool, l2: float,
              label_smoothing: float) -> Callable[[float], float]:
    """``step(lr) -> the batch's mean loss`` (before the update), on a copy of ``model``."""
    from .mlp import MLP

    batch_size = _validate.integer("batch_size", batch_size, 1)
    seed = model.seed if seed is None else _validate.integer("seed", seed, 0, maximum=None)
    shuffle = _validate.flag("shuffle", shuffle)
    l2 = _validate.nonnegative("l2", l2)
    label_smoothing = _validate.unit_interval("label_smoothing", label_smoothing)
    x, divisor = model._check_x(x, "x")
    labels = model._check_y(y, x.shape[0], "y")
    work = MLP(model.sizes, activation=model.activation, dtype=model.dtype, seed=model.seed)
    work.params[...] = model.params
    if isinstance(optimizer, (Optimizer, distributed.ShardedOptimizer)):
        if options:
            raise ValueError("optimizer_options apply to a named optimizer; set them on the "
                             f"{type(optimizer).__name__} instance instead")
        make_optimizer(model, optimizer, None, None)     # the checks fit makes
        opt = _copy_of(optimizer, work.params)
    else:
        opt = make_optimizer(work, optimizer, start_lr, options)
    rows = min(batch_size, x.shape[0])
    trainer = Trainer(work, opt, rows, l2=l2, label_smoothing=label_smoothing)
    batches = _batches(seed, x.shape[0], rows, shuffle)

    def step(lr: float) -> float:
        set_lr(opt, lr)
        batch = next(batches)
        loss, _ = trainer.step(x, divisor, labels, batch)
        return loss / batch.size

    return step


def set_lr(opt: Optimizer, lr: float) -> None:
    """Every group's learning rate to ``lr`` (a group that sets its own too), as fastai."""
    opt.lr = lr
    for group in opt.groups:
        if "lr" in group.overrides:
            group["lr"] = lr


def _batches(seed: int, n: int, rows: int, shuffle: bool) -> Iterator[np.ndarray]:
    """The batches of ``fit``'s epochs 0, 1, ... for ``seed``, without end."""
    epoch = 0
    while True:
        order = epoch_order(seed, epoch, n, shuffle)
        for start in range(0, n, rows):
            yield order[start:start + rows]
        epoch += 1


def _copy_of(opt: Any, params: np.ndarray) -> Optimizer:
    """A new optimizer on ``params`` with ``opt``'s settings, groups and state (copies)."""
    if isinstance(opt, distributed.ShardedOptimizer):
        raise ValueError("lr_find runs on one process: pass the rule's name (and "
                         "optimizer_options), not a ShardedOptimizer")
    snapshot = opt.state_dict()
    hyper = dict(opt.hyperparameters())
    groups = None
    if "groups" in snapshot:
        groups = [{"params": group["params"], **group.overrides} for group in opt.groups]
    copy = type(opt)(params, groups=groups, clip_grad_norm=opt.clip_grad_norm,
                     ema=opt.ema_decay, **hyper)
    copy.load_state_dict(snapshot)
    return copy
