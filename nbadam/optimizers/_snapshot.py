"""An optimizer's ``state_dict`` and its validated restore, kept apart from the step.

The snapshot holds the class, size and dtype, the step counts, the
hyperparameters, the groups (when given) with what each sets, the rule's
running scalars (per group), ``clip_grad_norm`` and ``ema`` (when on), and
copies of the state arrays (with the parameter average as ``ema_params``).
:func:`load_state_dict` checks every field before it changes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _launch, _validate, rules, schedules
from . import _compact

if TYPE_CHECKING:
    from ._base import Optimizer

__all__ = ["state_dict", "load_state_dict", "array_names", "array_specs"]

_EMA = "ema_params"


def array_names(opt: Optimizer, precision: str | None = None) -> tuple[str, ...]:
    """The arrays a snapshot of ``opt`` holds (in ``precision``, by default ``opt``'s): the
    rule's state, the 8-bit scales, and the average."""
    precision = opt._precision if precision is None else precision
    return (*_compact.stored_names(opt._update, precision),
            *((_EMA,) if opt._ema is not None else ()))


def array_specs(opt: Optimizer, meta: dict[str, Any]) -> dict[str, tuple]:
    """``name -> (shape, dtype)`` of the arrays of a snapshot of ``opt`` described by ``meta``
    (its precision may differ from ``opt``'s: the arrays are then converted on loading)."""
    precision = _snapshot_precision(meta)
    if precision == "8bit":   # the blocks, and so the scales' shapes, follow the groups
        _checked_groups(opt, meta.get("groups"))
    specs = _compact.array_specs(opt._update, precision, opt._size, opt._dtype, opt._spans)
    if opt._ema is not None:
        specs[_EMA] = ((opt._size,), opt._dtype)
    return specs


def _snapshot_precision(snapshot: dict[str, Any]) -> str:
    precision = snapshot.get("state_precision", "float32")
    if precision not in _compact.PRECISIONS:
        raise ValueError(f"state_dict state_precision is {precision!r}; expected one of "
                         f"{', '.join(map(repr, _compact.PRECISIONS))}")
    return precision


def _serial(value: Any) -> Any:
    """A hyperparameter as JSON stores it (a schedule as its dict, another callable None)."""
    if isinstance(value, schedules.Schedule):
        return value.to_dict()
    if callable(value):
        return None
    return list(value) if isinstance(value, tuple) else value


def state_dict(opt: Optimizer) -> dict[str, Any]:
    """The snapshot of :meth:`nbadam.Optimizer.state_dict` (copies)."""
    running = [dict(zip(opt.rule.running, map(float, row), strict=True))
               for row in opt._running]
    snapshot = {
        "optimizer": type(opt).__name__,
        "size": opt._size,
        "dtype": opt._dtype.name,
        "step_count": opt.step_count,
        "skipped_steps": opt.skipped_steps,
        "hyperparameters": {k: _serial(v) for k, v in opt.hyperparameters().items()},
        "scalars": running[0],
        "state": {name: _launch.to_host(array, opt._device)
                  for name, array in opt._state.items()},
    }
    if not opt._whole:
        snapshot["groups"] = [{"params": [g.start, g.stop],
                               **{k: _serial(v) for k, v in g.overrides.items()}}
                              for g in opt._groups]
        snapshot["group_scalars"] = running
    if opt._precision != "float32":
        snapshot["state_precision"] = opt._precision
    if opt._clip is not None or opt._ema is not None:
        snapshot["options"] = {"clip_grad_norm": opt._clip, "ema": opt._ema_decay}
    if opt._ema is not None:
        snapshot["state"][_EMA] = _launch.to_host(opt._ema, opt._device)
        snapshot["ema_updates"] = opt._ema_updates
    return snapshot


def load_state_dict(opt: Optimizer, snapshot: Any) -> None:
    """Restore ``snapshot`` into ``opt`` after checking all of it."""
    name = type(opt).__name__
    if not isinstance(snapshot, dict):
        raise TypeError(f"state_dict must be a dict from state_dict(), got "
                        f"{type(snapshot).__name__}")
    found = snapshot.get("optimizer")
    if found != name:
        raise ValueError(f"state_dict is for a {found} optimizer; this one is a {name}")
    if snapshot.get("size") != opt._size or snapshot.get("dtype") != opt._dtype.name:
        raise ValueError(
            f"state_dict holds {snapshot.get('size')} x {snapshot.get('dtype')} state; "
            f"this {name} has {opt._size} x {opt._dtype.name} parameters")
    _check_options(opt, snapshot.get("options", {}))
    overrides = _checked_groups(opt, snapshot.get("groups"))   # the 8-bit blocks follow them
    arrays = _checked_state(snapshot.get("state", {}), opt, _snapshot_precision(snapshot))
    values = _checked_hyperparameters(opt, snapshot.get("hyperparameters", {}))
    step_count = _count(snapshot, "step_count", None)
    skipped = _count(snapshot, "skipped_steps", 0)
    first = _checked_running(snapshot.get("scalars", {}), opt.rule)
    per_group = snapshot.get("group_scalars", [snapshot.get("scalars", {})])
    if not isinstance(per_group, list) or len(per_group) != len(opt._groups):
        count = len(per_group) if isinstance(per_group, list) else type(per_group).__name__
        raise ValueError(f"state_dict has scalar state for {count} groups, "
                         f"expected {len(opt._groups)}")
    running = [_checked_running(row, opt.rule) for row in per_group]
    if running[0] != first:
        raise ValueError("state_dict 'scalars' and the first of 'group_scalars' disagree: "
                         f"{first} and {running[0]}")
    ema_updates = _count(snapshot, "ema_updates", 0) if opt._ema is not None else 0
    # Everything is valid: now change the optimizer.
    opt._values.update(values)
    for group, own in zip(opt._groups, overrides, strict=True):
        group._overrides.update(own)
        group.invalidate()
    opt._running[:] = running
    for key, array in arrays.items():
        target = opt._ema if key == _EMA else opt._state[key]
        _launch.copy_into(target, array, opt._device)
    opt.step_count, opt.skipped_steps = step_count, skipped
    opt._ema_updates = ema_updates


def _count(snapshot: dict[str, Any], field: str, default: Any) -> int:
    try:
        return _validate.integer(field, snapshot.get(field, default), 0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"state_dict {field}: {exc}") from None


def _check_options(opt: Optimizer, options: Any) -> None:
    if not isinstance(options, dict):
        raise ValueError(f"state_dict options must be a dict, got {type(options).__name__}")
    for key, ours in (("clip_grad_norm", opt._clip), ("ema", opt._ema_decay)):
        theirs = options.get(key)
        if theirs != ours:
            raise ValueError(f"state_dict was saved with {key}={theirs!r}; this "
                             f"{type(opt).__name__} has {key}={ours!r} (build it with the "
                             "same value to resume)")


def _checked_lr(value: Any) -> Any:
    """A stored ``lr``: None (keep the receiver's), a schedule's dict, or a number."""
    return schedules.from_dict(value) if isinstance(value, dict) else value


def _checked_hyperparameters(opt: Optimizer, hyper: Any) -> dict[str, Any]:
    """The snapshot's hyperparameters, validated, without changing ``opt``."""
    if not isinstance(hyper, dict):
        raise ValueError(f"state_dict hyperparameters must be a dict, got "
                         f"{type(hyper).__name__}")
    hyper = dict(hyper)
    if hyper.get("lr") is None:
        hyper.pop("lr", None)
    values = {}
    for key, value in hyper.items():
        if key not in opt._hyper_names:
            raise ValueError(f"state_dict has unknown hyperparameter {key!r}")
        try:
            value = opt._check(key, _checked_lr(value) if key == "lr" else value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state_dict hyperparameter {key!r}: {exc}") from None
        if key in opt.rule.structural and value != opt._values[key]:
            raise ValueError(f"state_dict has {key}={value!r}; this {type(opt).__name__} has "
                             f"{key}={opt._values[key]!r}")
        values[key] = value
    return values


def _checked_groups(opt: Optimizer, groups: Any) -> list[dict[str, Any]]:
    """Each group's stored hyperparameters, after checking the layout is ``opt``'s."""
    ours = [[g.start, g.stop] for g in opt._groups]
    if groups is None:
        if not opt._whole:
            raise ValueError(f"state_dict has no groups; this {type(opt).__name__} has "
                             f"groups {ours}")
        return [{}]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError("state_dict groups must be a list of dicts")
    theirs = [g.get("params") for g in groups]
    if opt._whole or theirs != ours:
        raise ValueError(f"state_dict has groups {theirs}; this {type(opt).__name__} has "
                         f"{'one group over all parameters' if opt._whole else ours}")
    checked = []
    for index, group in enumerate(groups):
        own = {}
        for key, value in group.items():
            if key == "params" or (key == "lr" and value is None):
                continue
            try:
                own[key] = opt._check_group_key(key, _checked_lr(value) if key == "lr"
                                                else value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"state_dict groups[{index}]: {exc}") from None
        checked.append(own)
    return checked


def _checked_state(arrays: Any, opt: Optimizer, precision: str = "float32",
                   ) -> dict[str, np.ndarray]:
    """The snapshot's arrays, checked for names, shape, dtype and plausibility, and
    converted from the snapshot's ``precision`` to the optimizer's."""
    update = opt._update
    if not isinstance(arrays, dict):
        raise ValueError(f"state_dict state must be a dict of arrays, got "
                         f"{type(arrays).__name__}")
    expected = array_names(opt, precision)
    if set(arrays) != set(expected):
        structural = opt.rule.structural
        hint = f" (was {' or '.join(structural)} set differently?)" if structural else ""
        raise ValueError(f"state_dict has state arrays {sorted(arrays)}, expected "
                         f"{sorted(expected)}{hint}")
    specs = _compact.array_specs(update, precision, opt._size, opt._dtype, opt._spans)
    compact = set(_compact.stored_names(update, precision)) - {
        name for name, flag in zip(update.state, _compact.flags(update, precision),
                                   strict=True) if not flag}
    checked = {}
    for key, array in arrays.items():
        array = np.asarray(array)
        shape, dtype = specs.get(key, ((opt._size,), opt._dtype))
        if array.shape != shape or array.dtype != dtype:
            shown = f"({shape[0]},)" if len(shape) == 1 else str(shape)
            raise ValueError(f"state_dict array {key!r} is {array.shape} {array.dtype}; "
                             f"expected {shown} {dtype}"
                             + (f" (state_precision {precision!r})" if key in compact else ""))
        checked[key] = array
    for key in checked:
        scales = checked[key]
        if key.endswith(_compact.ABSMAX) and key in compact and np.any(scales < 0):
            index = int(np.flatnonzero(scales < 0)[0])
            raise ValueError(f"state_dict array {key!r} holds the blocks' largest magnitudes, "
                             f"which are >= 0 (NaN in a block a non-finite value reached), "
                             f"but {key}[{index}] = {scales[index]}")
    stored = {name: checked[name] for name in _compact.stored_names(update, precision)}
    values = _compact.to_values(update, precision, stored, opt._spans)
    for key in update.nonnegative:
        bad = values[key] < 0
        if np.any(bad):
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(f"state_dict array {key!r} must be >= 0 (it accumulates "
                             f"squares or magnitudes), but {key}[{index}] = "
                             f"{values[key][index]}")
    if precision != opt._precision:   # into the receiver's format
        stored = _compact.to_stored(update, opt._precision, values, opt._spans, opt._dtype)
    else:
        stored = {name: np.array(array, copy=True) for name, array in stored.items()}
    if _EMA in checked:
        stored[_EMA] = checked[_EMA]
    return stored


def _checked_running(scalars: Any, rule: rules.Rule) -> list[float]:
    """One group's running scalars, validated, in the rule's order."""
    if not isinstance(scalars, dict) or set(scalars) != set(rule.running):
        found = sorted(scalars) if isinstance(scalars, dict) else type(scalars).__name__
        raise ValueError(f"state_dict has scalar state {found}, expected "
                         f"{sorted(rule.running)}")
    values = []
    for key in rule.running:
        try:
            values.append(rule.checks.get(key, _validate.real)(key, scalars[key]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state_dict scalar {key!r}: {exc}") from None
    return values
