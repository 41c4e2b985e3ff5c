"""The step of a rule with a reduction: a reduction pass, then the update pass.

:meth:`Optimizer.step <nbadam.optimizers.Optimizer.step>` hands such a rule
here.  For each group, the rule's scalar function gives the scalars of the
reduction pass, whose kernel updates the state and returns the group's float64
sums; the sums are added over the groups (in their order), and the rule's
``finish`` turns them, for each group, into the scalars of the update pass.
Every group's ``finish`` sees the same sums and the same learning rate, so
the groups' running scalars stay equal, as the rule's shared step size needs.

The groups share the learning rate: every group's must be the same, or 0.
A group at 0 is frozen: it takes part in neither pass (with ``ema``, its
update pass runs with the scalars of a step that summed nothing, which
change no parameter, so that its average still follows its parameters).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _launch


def step(opt: Any, grad: Any, coef: float, t: int) -> float:
    """Step ``t`` of optimizer ``opt``, whose update has a reduction; returns the first
    group's learning rate.  ``coef`` is the gradient clipping's coefficient."""
    update = opt._update
    groups = opt._groups
    lrs = [opt._group_lr(group) for group in groups]
    rates = sorted({lr for lr in lrs if lr != 0.0})
    if len(rates) > 1:
        raise ValueError(f"{type(opt).__name__} shares its step size over the groups, so every "
                         f"group's lr must be the same or 0 (frozen); at step {t} they are "
                         f"{lrs}")
    lr = rates[0] if rates else 0.0
    totals = np.zeros(len(update.sum_names))
    for group, group_lr in zip(groups, lrs, strict=True):
        if group_lr == 0.0:
            continue
        scalars = _clipped(update.scalar_names,
                           update.scalars(opt._group_hyper(group), group.running, group_lr, t),
                           coef)
        params, g, state = _views(opt, group, grad)
        totals += _launch.reduce(update, group.size, params, g, state,
                                 _in_dtype(scalars, opt._dtype), device=opt._device)
    averaged = opt._ema is not None and opt._ema_updates > 0
    for group, group_lr in zip(groups, lrs, strict=True):
        scalars = update.finish(opt._group_hyper(group), group.running, lr, t, totals)
        if group_lr == 0.0:
            if not averaged:
                continue
            scalars = update.finish(opt._group_hyper(group), group.running.copy(), 0.0, t,
                                    np.zeros_like(totals))
        scalars = _clipped(update.finish_names, scalars, coef)
        opt._launch_group(group, grad, _in_dtype(scalars, opt._dtype), averaged)
    if opt._ema is not None and not averaged:
        _launch.copy_into(opt._ema, opt._params, opt._device)   # the first copies
    if opt._ema is not None:
        opt._ema_updates += 1
    return lrs[0]


def _clipped(names: tuple[str, ...], scalars: tuple, coef: float) -> tuple:
    """``scalars`` with the clipping coefficient folded into ``grad_sign``."""
    if coef == 1.0:
        return scalars
    scalars = list(scalars)
    scalars[names.index("grad_sign")] *= coef
    return tuple(scalars)


def _views(opt: Any, group: Any, grad: Any) -> tuple[Any, Any, tuple]:
    """The group's slices of the parameters, the gradient and the state (no copies)."""
    if opt._whole:
        return opt._params, grad, opt._state_arrays
    lo, hi = group.start, group.stop
    return opt._params[lo:hi], grad[lo:hi], tuple(a[lo:hi] for a in opt._state_arrays)


def _in_dtype(values: tuple, dtype: np.dtype) -> tuple:
    """Host scalars (float64) in the kernels' dtype."""
    if dtype == np.float64:
        return tuple(float(v) for v in values)
    return tuple(np.array(values, dtype=dtype))
