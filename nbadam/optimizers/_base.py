"""The optimizer machinery shared by every rule's class (see :mod:`nbadam.optimizers`).

:class:`Optimizer` does everything: it validates the hyperparameters its
rule declares, holds the state arrays the rule's update names (torch's
names: ``exp_avg``, ``exp_avg_sq``, ...) and its running scalars, and on
each :meth:`~Optimizer.step` calls the update's scalar function on the host
(float64, then cast once to the parameters' dtype) and hands one fused
kernel launch to :mod:`nbadam._launch`.  The classes below only give each
rule its documented signature (:mod:`._torch`, ...); :func:`optimizer_class`
makes a class for any registered rule, including one a user registers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .. import _launch, _validate, checkpoint, rules
from . import _compact, _groups, _reduction, _snapshot

__all__ = ["Optimizer", "optimizer_class", "make_optimizer"]

LearningRate = float | Callable[[int], float]
NONFINITE_POLICIES = ("propagate", "skip", "raise")
#: Keyword arguments every optimizer takes besides its rule's hyperparameters.
_COMMON = ("maximize", "nonfinite")
_CLASSES: dict[str, type[Optimizer]] = {}


class _Hyper:
    """A hyperparameter attribute, validated by the rule on every assignment."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, objtype=None):
        return self if obj is None else obj._values[self.name]

    def __set__(self, obj, value):
        obj._values[self.name] = obj._check(self.name, value)
        for group in obj._groups:
            group.invalidate()


class _Fixed(_Hyper):
    """A hyperparameter that chooses the update (and so the state): fixed at construction."""

    def __set__(self, obj, value):
        raise AttributeError(f"{self.name} is fixed at construction (it chooses the state "
                             f"arrays); build a new {type(obj).__name__} to change it")


class _Running:
    """A running scalar of the rule (a product of momentum terms), kept in float64 per group.

    Reading gives the first group's value (``opt.groups[k].scalars`` has each
    group's); setting sets it for every group.
    """

    def __init__(self, index: int, name: str):
        self.index, self.name = index, name

    def __get__(self, obj, objtype=None):
        return self if obj is None else float(obj._running[0, self.index])

    def __set__(self, obj, value):
        obj._running[:, self.index] = obj.rule.checks.get(self.name, _validate.real)(
            self.name, value)


def _check_nonfinite(name: str, value: Any) -> str:
    return _validate.choice(name, value, NONFINITE_POLICIES)


class Optimizer:
    """Base class: state, hyperparameters, ``step`` and checkpoints.

    A subclass sets ``rule``, a :class:`nbadam.rules.Rule`; its
    hyperparameters become validated attributes.  Use a concrete class such
    as :class:`Adam` (or :func:`optimizer_class` for any registered rule);
    every one of them has the methods and attributes below.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.zeros(3)
    >>> opt = nbadam.RAdam(x, lr=1e-2)
    >>> isinstance(opt, nbadam.Optimizer), opt.device, opt.step_count
    (True, 'cpu', 0)
    >>> opt.step(np.ones(3)), opt.step_count, opt.last_lr
    (True, 1, 0.01)
    >>> snapshot = opt.state_dict()            # copies: hyperparameters, step count, state
    >>> sorted(snapshot["state"])
    ['exp_avg', 'exp_avg_sq']
    """

    rule: ClassVar[rules.Rule | None] = None
    maximize = _Hyper("maximize")
    nonfinite = _Hyper("nonfinite")

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        rule = cls.__dict__.get("rule")
        if rule is None:
            return
        for name in rule.defaults:
            setattr(cls, name, (_Fixed if name in rule.structural else _Hyper)(name))
        for index, name in enumerate(rule.running):
            setattr(cls, name, _Running(index, name))
        _CLASSES.setdefault(cls.__name__, cls)

    def __init__(self, params: np.ndarray, *, maximize: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu", groups: Any = None,
                 clip_grad_norm: float | None = None, ema: float | None = None,
                 state_precision: str = "float32", **hyperparameters: Any):
        rule = self.rule
        if rule is None:
            raise TypeError("Optimizer is a base class: use a rule's class such as "
                            "nbadam.Adam, or nbadam.optimizers.optimizer_class(name)")
        unknown = [name for name in hyperparameters if name not in rule.defaults]
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) "
                            f"{', '.join(map(repr, unknown))}; its hyperparameters are "
                            f"{', '.join(rule.defaults)}")
        self._device = _validate.device(device)
        # Validate every hyperparameter before touching the parameters.
        values = {name: self._check(name, value) for name, value in
                  {**rule.defaults, **hyperparameters, "maximize": maximize,
                   "nonfinite": nonfinite}.items()}
        self._values = values
        self._clip = None if clip_grad_norm is None else _validate.nonnegative(
            "clip_grad_norm", clip_grad_norm)
        self._ema_decay = None if ema is None else _ema_decay(ema)
        if self._device == "cuda":
            public, params = _launch.cuda_launcher().params_vector(params)
        else:
            params = public = _validate.params_vector(params)
        layout = ([(0, params.size, {})] if groups is None
                  else _groups.parse_groups(groups, params.size, self._check_group_key))
        self._update = rule.update(values)
        self._precision = _compact.check(state_precision, self._update, params.dtype,
                                         type(self).__name__)
        flags = _compact.flags(self._update, self._precision)
        self._compact = (self._precision, flags) if any(flags) else None
        self._params = params
        self._public_params = public
        self._dtype = params.dtype
        self._size = params.size
        self._scalar_buffer = (None if params.dtype == np.float64
                               else np.empty(len(self._update.scalar_names), dtype=params.dtype))
        self.step_count = 0
        self.skipped_steps = 0
        self.last_lr: float | None = None
        self._groups = [_groups.ParamGroup(self, index, start, stop, overrides)
                        for index, (start, stop, overrides) in enumerate(layout)]
        self._whole = groups is None
        self._running = np.array([rule.initial_running(group.hyper())
                                  for group in self._groups], dtype=np.float64)
        self._running.shape = (len(self._groups), len(rule.running))
        for group in self._groups:
            group.running = self._running[group.index]   # a view, updated in place
        self._spans = [(group.start, group.stop) for group in self._groups]
        specs = _compact.array_specs(self._update, self._precision, self._size, self._dtype,
                                     self._spans)
        self._state = {name: _launch.zeros(shape[0], dtype, self._device)
                       for name, (shape, dtype) in specs.items()}
        self._block_offsets = _compact.block_offsets(self._spans)[0]
        for group, first in zip(self._groups, self._block_offsets, strict=True):
            starts = self._update.initial_values(group.hyper())
            for name, start, flag in zip(self._update.state, starts, flags, strict=True):
                array, lo, hi = self._state[name], group.start, group.stop
                if name in self._update.from_params:   # starts at the group's parameters
                    _launch.copy_array(array[lo:hi], params[lo:hi], self._device)
                elif start != 0.0:
                    values = np.full(group.size, start, self._dtype)
                    codes, scales = (_compact.encode_span(self._precision, values,
                                                          self._update, name)
                                     if flag else (values, None))
                    _launch.copy_into(array[lo:hi], codes, self._device)
                    if scales is not None:
                        absmax = self._state[name + _compact.ABSMAX]
                        _launch.copy_into(absmax[first:first + scales.size], scales,
                                          self._device)
        self._state_arrays = tuple(self._state[name] for name in self._update.state)
        self._absmax = (tuple(self._state[name] for name in _compact.stored_names(
            self._update, self._precision)[len(self._update.state):])
            if self._precision == "8bit" else None)
        self._ema = (None if self._ema_decay is None
                     else _launch.zeros(self._size, self._dtype, self._device))
        self._ema_updates = 0
        self._ema_weights = None if self._ema is None else _ema_weights(self._ema_decay,
                                                                          self._dtype)
        self._sign_index = (self._update.scalar_names.index("grad_sign")
                            if "grad_sign" in self._update.scalar_names else None)
        self.last_grad_norm: float | None = None

    def _check(self, name: str, value: Any) -> Any:
        if name == "nonfinite":
            return _check_nonfinite(name, value)
        return self.rule.check(name, value)

    def _group_keys(self) -> tuple[str, ...]:
        """The hyperparameters a group may set: the rule's, but the structural and shared ones."""
        fixed = (*self.rule.structural, *self.rule.shared)
        return (*(k for k in self.rule.defaults if k not in fixed), "maximize")

    def _check_group_key(self, key: str, value: Any) -> Any:
        if key in self.rule.structural:
            raise ValueError(f"{key!r} chooses the state arrays, so it is the optimizer's for "
                             f"every group; set it on the {type(self).__name__} itself")
        if key in self.rule.shared:
            raise ValueError(f"{key!r} is shared by every group of {type(self).__name__} (its "
                             "running scalars are the optimizer's); set it on the optimizer")
        if key not in self._group_keys():
            raise ValueError(f"unknown group key {key!r}; a group of {type(self).__name__} "
                             f"takes 'params' and {', '.join(map(repr, self._group_keys()))}")
        return self._check(key, value)

    # -- groups, clipping, averaging ----------------------------------------------
    @property
    def groups(self) -> list[_groups.ParamGroup]:
        """The parameter groups, in the order given (one group over everything by default).

        Each is a :class:`~nbadam.optimizers.ParamGroup`: ``groups[k]["lr"] = x``
        changes that group's learning rate from the next step on, as torch's
        ``param_groups``.  Elements in no group are never changed.
        """
        return list(self._groups)

    @property
    def clip_grad_norm(self) -> float | None:
        """``max_norm`` of gradient clipping, or None (fixed at construction)."""
        return self._clip

    @property
    def state_precision(self) -> str:
        """How the moments are stored: ``"float32"``, ``"bfloat16"`` or ``"8bit"`` (fixed
        at construction).

        With ``"bfloat16"`` the arrays of :attr:`state` that the rule marks as
        compact hold ``uint16`` codes (the upper half of each float32); with
        ``"8bit"`` they hold ``uint8`` codes, and :attr:`state` also holds
        each one's block scales as ``<name>_absmax`` (float32, one per 256
        elements of each group).  :meth:`state_values` decodes them.
        """
        return self._precision

    def state_values(self) -> dict[str, np.ndarray]:
        """The rule's state arrays as values: host copies, compact arrays decoded to float32."""
        stored = {name: _launch.to_host(array, self._device)
                  for name, array in self._state.items()}
        return _compact.to_values(self._update, self._precision, stored, self._spans)

    @property
    def ema_decay(self) -> float | None:
        """The decay of the parameter average, or None (fixed at construction)."""
        return self._ema_decay

    @property
    def ema_params(self) -> np.ndarray | None:
        """The exponential moving average of the parameters (``ema=decay``), or None.

        Updated after every applied step as torch's
        ``AveragedModel(..., multi_avg_fn=get_ema_multi_avg_fn(decay))`` with
        ``update_parameters`` after each step: the first update copies the
        parameters, the next ones move the average towards them by ``1 - decay``.
        """
        return self._ema

    @property
    def _hyper_names(self) -> tuple[str, ...]:
        return (*self.rule.defaults, *_COMMON)

    @property
    def _scalar_state(self) -> tuple[str, ...]:
        return tuple(self.rule.running)

    # -- public surface -------------------------------------------------------
    @property
    def params(self) -> np.ndarray:
        """The parameter vector, updated in place by :meth:`step`.

        On ``device="cuda"`` this is the array passed in when it already lived
        on the GPU (a Numba device array, CuPy array, PyTorch CUDA tensor), and
        otherwise the Numba device array the NumPy parameters were copied to;
        :meth:`params_host` copies it back.
        """
        return self._public_params

    @property
    def device(self) -> str:
        """Where the update runs: ``"cpu"`` or ``"cuda"`` (fixed at construction)."""
        return self._device

    @property
    def separate_eval_point(self) -> bool:
        """Whether :meth:`eval_params` differs from :attr:`params` (schedule-free rules)."""
        return self._update.evaluation is not None

    def eval_params(self) -> Any:
        """A new array holding the point to evaluate and report the objective at.

        For most rules that is a copy of :attr:`params`.  A schedule-free rule
        takes gradients at :attr:`params` (its ``y``, the package's train mode)
        and reports the average ``x`` (its eval mode): this computes ``x`` from
        ``y`` and the state by the package's formula, bit for bit, and leaves
        training undisturbed.  Elements in no group are copied as they are.
        On ``device="cuda"`` the result is a Numba device array, like
        :attr:`ema_params`.
        """
        out = _launch.zeros(self._size, self._dtype, self._device)
        _launch.copy_array(out, self._params, self._device)
        evaluation = self._update.evaluation
        if evaluation is None:
            return out
        for group in self._groups:
            values = evaluation.scalars(group.hyper(), group.running.copy(), 0.0,
                                        self.step_count)
            scalars = (values if self._dtype == np.float64
                       else tuple(np.asarray(values, dtype=self._dtype)))
            lo, hi = group.start, group.stop
            state = tuple(array[lo:hi] for array in
                          self._update.evaluation_state(self._state_arrays))
            _launch.step(evaluation, group.size, out[lo:hi], out[lo:hi], state, scalars,
                         device=self._device)
        return out

    def restart_at(self, point: Any) -> None:
        """Move the parameters, and the state arrays that start at them, to ``point``.

        For a schedule-free rule (``z`` starts at the parameters) :meth:`eval_params`
        is then ``point`` exactly, and training goes on from there with the
        other state (second moments, running scalars) kept; for other rules it
        only sets :attr:`params`.  Early stopping uses it to keep the best
        epoch's averaged point.  ``point`` is a vector like :attr:`params` on
        the optimizer's device.
        """
        _launch.copy_array(self._params, point, self._device)
        for name in self._update.from_params:
            for group in self._groups:
                lo, hi = group.start, group.stop
                _launch.copy_array(self._state[name][lo:hi], self._params[lo:hi],
                                   self._device)

    def params_host(self) -> np.ndarray:
        """A NumPy copy of the parameters (waits for the GPU on ``device="cuda"``)."""
        return _launch.to_host(self._params, self._device)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The state arrays by torch's names (live views, not copies): the per-element ones
        and, with ``state_precision="8bit"``, their block scales (``<name>_absmax``)."""
        return dict(self._state)

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_state", {})
        if name in state:
            return state[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def hyperparameters(self) -> dict[str, Any]:
        """The current hyperparameters, by keyword name."""
        return {name: self._values[name] for name in self._hyper_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return (f"{type(self).__name__}(<{self._size} x {self._dtype}>, {args}, "
                f"step_count={self.step_count})")

    def current_lr(self) -> float:
        """The learning rate the next :meth:`step` will use (the first group's)."""
        return self._group_lr(self._groups[0])

    def _group_lr(self, group: _groups.ParamGroup) -> float:
        lr = group["lr"]
        if callable(lr):
            return _validate.scheduled_lr(lr, self.step_count)
        return lr

    def _group_hyper(self, group: _groups.ParamGroup) -> tuple:
        """The group's hyperparameters for the next step, with beta1 from its lr schedule.

        A schedule that sets beta1 (``schedules.one_cycle`` with
        ``cycle_momentum``) replaces the first of ``betas`` for this step, as
        torch's ``OneCycleLR`` sets ``group["betas"]``; the scalar function
        then sees it (the bias correction ``1 - beta1**t`` uses it, as in torch).
        """
        hyper = group.hyper()
        lr = group["lr"]
        if callable(lr):
            beta1 = _validate.scheduled_beta1(lr, self.step_count)
            if beta1 is not None:
                hyper = hyper._replace(betas=(beta1, *hyper.betas[1:]))
        return hyper

    def step(self, grad: np.ndarray) -> bool:
        """Apply one update to :attr:`params` in place.

        Parameters
        ----------
        grad : numpy.ndarray
            The gradient, 1-D, C-contiguous, same size and dtype as the parameters.
            On ``device="cuda"``, a device array (Numba, CuPy, PyTorch CUDA
            tensor), read in place, or a NumPy array, copied to the GPU each step.

        Returns
        -------
        bool
            True when the update was applied; False when ``nonfinite="skip"``
            skipped it because ``grad`` held NaN or infinity.

        Raises
        ------
        FloatingPointError
            With ``nonfinite="raise"``, if ``grad`` holds NaN or infinity; the
            parameters and state are left untouched.
        """
        if self._device == "cuda":
            grad = _launch.cuda_launcher().gradient(grad, self._size, self._dtype)
        else:
            grad = _validate.gradient(grad, self._size, self._dtype)
        policy = self._values["nonfinite"]
        if policy != "propagate" and not _launch.all_finite(grad, self._device):
            if policy == "raise":
                host = _launch.to_host(grad, self._device)
                index = int(np.flatnonzero(~np.isfinite(host))[0])
                raise FloatingPointError(
                    f"grad holds a non-finite value (grad[{index}] = {host[index]}) at step "
                    f"{self.step_count + 1}; parameters and state are unchanged")
            self.skipped_steps += 1
            return False
        coef = self._clip_coefficient(grad)
        t = self.step_count + 1
        if self._update.reduce is not None:
            self.last_lr = _reduction.step(self, grad, coef, t)
            self.step_count = t
            return True
        averaged = self._ema is not None and self._ema_updates > 0
        last_lr = None
        for group in self._groups:
            lr = self._group_lr(group)
            last_lr = lr if last_lr is None else last_lr
            scalars = self._update.scalars(self._group_hyper(group), group.running, lr, t)
            g = grad
            if coef != 1.0:
                if self._sign_index is None:   # no gradient multiplier to fuse it into
                    g = grad * grad.dtype.type(coef)
                else:
                    scalars = list(scalars)
                    scalars[self._sign_index] *= coef
            self._launch_group(group, g, self._in_dtype(tuple(scalars)), averaged)
        if self._ema is not None and not averaged:
            _launch.copy_into(self._ema, self._params, self._device)   # the first copies
        if self._ema is not None:
            self._ema_updates += 1
        self.step_count = t
        self.last_lr = last_lr
        return True

    def _launch_group(self, group: _groups.ParamGroup, grad: Any, scalars: tuple,
                      averaged: bool) -> None:
        """One fused launch on the group's slice of every array (no copies)."""
        ema = self._ema if averaged else None
        absmax = self._absmax
        if self._whole:
            params, state = self._params, self._state_arrays
        else:
            lo, hi = group.start, group.stop
            params, grad = self._params[lo:hi], grad[lo:hi]
            state = tuple(array[lo:hi] for array in self._state_arrays)
            ema = None if ema is None else ema[lo:hi]
            if absmax is not None:   # the group's own blocks
                first = self._block_offsets[group.index]
                count = _compact.block_offsets([(lo, hi)])[1]
                absmax = tuple(array[first:first + count] for array in absmax)
        # Compact state: the stochastic rounding of step t draws on t; 8-bit state has scales.
        extra = ({} if self._compact is None
                 else {"compact": self._compact, "absmax": absmax} if absmax is not None
                 else {"compact": self._compact, "seed": self.step_count + 1})
        if ema is None:
            _launch.step(self._update, group.size, params, grad, state, scalars,
                         device=self._device, **extra)
        else:
            _launch.step(self._update, group.size, params, grad, state, scalars,
                         device=self._device, ema=ema, ema_weights=self._ema_weights, **extra)

    def _clip_coefficient(self, grad: Any) -> float:
        """``min(1, max_norm / (norm + 1e-6))`` of ``torch.nn.utils.clip_grad_norm_``."""
        if self._clip is None:
            return 1.0
        norm = math.sqrt(_launch.sum_squares(grad, self._device))
        self.last_grad_norm = norm
        ratio = self._clip / (norm + 1e-6)
        # torch.clamp(ratio, max=1): a NaN norm makes every gradient NaN, as in torch.
        return ratio if not ratio >= 1.0 else 1.0

    def _in_dtype(self, values: tuple) -> tuple:
        """Host scalars (computed in float64) in the kernel's dtype.

        float64 kernels take Python floats as they are.  For float32 the values
        go through one preallocated float32 buffer: unpacking it yields
        ``np.float32`` scalars about three times faster than ``np.float32(x)``
        one by one, which matters for small vectors.
        """
        if self._scalar_buffer is None:
            return values
        self._scalar_buffer[:] = values
        return tuple(self._scalar_buffer)

    # -- checkpoints ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies) of hyperparameters, groups, step count and state.

        ``lr`` is stored as a number, an :mod:`nbadam.schedules` schedule's
        ``to_dict()``, or ``None`` for another callable (loading then keeps
        the learning rate of the receiving optimizer); so is each group's.
        With ``ema`` the average and the number of its updates are included.
        """
        return _snapshot.state_dict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot; refuse one of another kind.

        Every field is checked before anything changes: a refused snapshot
        leaves the optimizer exactly as it was.

        Raises
        ------
        TypeError
            If ``state_dict`` is not a dict.
        ValueError
            If the snapshot comes from another optimizer class, its size,
            dtype, state arrays, groups, ``clip_grad_norm`` or ``ema`` do not
            match this optimizer, or a value is invalid (a NaN hyperparameter,
            negative second moments, ...).
        """
        _snapshot.load_state_dict(self, state_dict)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file atomically (no pickle)."""
        checkpoint.save_optimizer(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Restore the state written by :meth:`save` into this optimizer."""
        state_dict = checkpoint.load_optimizer(
            path, _snapshot.array_names(self), size=self._size, dtype=self._dtype,
            specs=lambda meta: _snapshot.array_specs(self, meta))
        try:
            self.load_state_dict(state_dict)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None


def _ema_decay(value: Any) -> float:
    decay = _validate.real("ema", value)
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema is the decay of the parameter average and must lie in [0, 1) "
                         f"(0.999 is common), got {value!r}")
    return decay


def _ema_weights(decay: float, dtype: np.dtype) -> tuple:
    """``(w, 1 - w, low)`` for ``torch.lerp(ema, param, w)`` with ``w = 1 - decay``.

    torch rounds the weight to the tensors' dtype and computes ``1 - w`` in it.
    """
    weight = dtype.type(1.0 - decay)
    one = dtype.type(1.0)
    low = one if abs(weight) < 0.5 else dtype.type(0.0)
    values = (weight, one - weight, low)
    return tuple(float(v) for v in values) if dtype == np.float64 else values


def optimizer_class(rule: str | rules.Rule) -> type[Optimizer]:
    """The optimizer class that runs ``rule`` (a registered name or a :class:`~nbadam.rules.Rule`).

    The built-in rules have the classes below; for another rule a class is
    made on first use, named ``rule.optimizer``, taking the rule's
    hyperparameters as keyword arguments.

    Examples
    --------
    >>> from nbadam.optimizers import optimizer_class
    >>> optimizer_class("adam").__name__
    'Adam'
    """
    rule = rules.get(rule) if isinstance(rule, str) else rule
    cls = _CLASSES.get(rule.optimizer)
    # A name that pins hyperparameters (amsgrad) runs the class of the rule it pins.
    if cls is None or (cls.rule is not rule and not rule.pinned):
        cls = type(rule.optimizer, (Optimizer,), {
            "rule": rule, "__module__": __name__,
            "__doc__": f"{rule.title}, over one flat parameter vector (see Optimizer)."})
        _CLASSES[rule.optimizer] = cls
    return cls


def make_optimizer(rule: str | rules.Rule, params: Any, **hyperparameters: Any) -> Optimizer:
    """An optimizer for rule ``rule`` (as :func:`optimizer_class`), with what the name pins.

    ``make_optimizer("amsgrad", x)`` is ``nbadam.Adam(x, amsgrad=True)``.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam.optimizers import make_optimizer
    >>> opt = make_optimizer("amsgrad", np.zeros(3), lr=0.1)
    >>> type(opt).__name__, opt.amsgrad, sorted(opt.state)
    ('Adam', True, ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'])
    """
    rule = rules.get(rule) if isinstance(rule, str) else rule
    clash = sorted(set(hyperparameters) & set(rule.pinned))
    if clash:
        raise ValueError(f"{rule.name!r} fixes {', '.join(clash)}; leave "
                         f"{'it' if len(clash) == 1 else 'them'} out")
    return optimizer_class(rule)(params, **rule.pinned, **hyperparameters)
