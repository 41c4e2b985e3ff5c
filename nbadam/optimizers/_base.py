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

import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .. import _launch, _validate, checkpoint, rules, schedules

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
        obj._hyper = None


class _Fixed(_Hyper):
    """A hyperparameter that chooses the update (and so the state): fixed at construction."""

    def __set__(self, obj, value):
        raise AttributeError(f"{self.name} is fixed at construction (it chooses the state "
                             f"arrays); build a new {type(obj).__name__} to change it")


class _Running:
    """A running scalar of the rule (NAdam's ``mu_product``), kept in float64."""

    def __init__(self, index: int, name: str):
        self.index, self.name = index, name

    def __get__(self, obj, objtype=None):
        return self if obj is None else float(obj._running[self.index])

    def __set__(self, obj, value):
        obj._running[self.index] = _validate.real(self.name, value)


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
                 nonfinite: str = "propagate", device: str = "cpu", **hyperparameters: Any):
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
        if self._device == "cuda":
            public, params = _launch.cuda_launcher().params_vector(params)
        else:
            params = public = _validate.params_vector(params)
        self._values = values
        self._hyper = None
        self._update = rule.update(values)
        self._params = params
        self._public_params = public
        self._dtype = params.dtype
        self._size = params.size
        self._scalar_buffer = (None if params.dtype == np.float64
                               else np.empty(len(self._update.scalar_names), dtype=params.dtype))
        self.step_count = 0
        self.skipped_steps = 0
        self.last_lr: float | None = None
        self._running = np.array(list(rule.running.values()), dtype=np.float64)
        starts = self._update.initial_values(rule.hyper(values, values["maximize"]))
        self._state = {name: _launch.full(self._size, start, self._dtype, self._device)
                       for name, start in zip(self._update.state, starts, strict=True)}
        self._state_arrays = tuple(self._state.values())

    def _check(self, name: str, value: Any) -> Any:
        if name == "nonfinite":
            return _check_nonfinite(name, value)
        return self.rule.check(name, value)

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

    def params_host(self) -> np.ndarray:
        """A NumPy copy of the parameters (waits for the GPU on ``device="cuda"``)."""
        return _launch.to_host(self._params, self._device)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The per-element state arrays by torch's names (live views, not copies)."""
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
        """The learning rate the next :meth:`step` will use."""
        lr = self._values["lr"]
        if callable(lr):
            return _validate.scheduled_lr(lr, self.step_count)
        return lr

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
        lr = self.current_lr()
        t = self.step_count + 1
        hyper = self._hyper
        if hyper is None:
            hyper = self._hyper = self.rule.hyper(self._values, self._values["maximize"])
        scalars = self._update.scalars(hyper, self._running, lr, t)
        _launch.step(self._update, self._size, self._params, grad, self._state_arrays,
                     self._in_dtype(scalars), device=self._device)
        self.step_count = t
        self.last_lr = lr
        return True

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
        """A snapshot (copies) of hyperparameters, step count and state.

        ``lr`` is stored as a number, an :mod:`nbadam.schedules` schedule's
        ``to_dict()``, or ``None`` for another callable (loading then keeps
        the learning rate of the receiving optimizer).
        """
        hyper = self.hyperparameters()
        lr = hyper["lr"]
        if isinstance(lr, schedules.Schedule):
            hyper["lr"] = lr.to_dict()
        elif callable(lr):
            hyper["lr"] = None
        for key, value in hyper.items():
            if isinstance(value, tuple):
                hyper[key] = list(value)
        return {
            "optimizer": type(self).__name__,
            "size": self._size,
            "dtype": self._dtype.name,
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "hyperparameters": hyper,
            "scalars": {name: float(value) for name, value in
                        zip(self.rule.running, self._running, strict=True)},
            "state": {name: _launch.to_host(array, self._device)
                      for name, array in self._state.items()},
        }

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
            dtype or state arrays do not match this optimizer, or a value is
            invalid (a NaN hyperparameter, negative second moments, ...).
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict from state_dict(), got "
                            f"{type(state_dict).__name__}")
        found = state_dict.get("optimizer")
        if found != name:
            raise ValueError(f"state_dict is for a {found} optimizer; this one is a {name}")
        if state_dict.get("size") != self._size or state_dict.get("dtype") != self._dtype.name:
            raise ValueError(
                f"state_dict holds {state_dict.get('size')} x {state_dict.get('dtype')} state; "
                f"this {name} has {self._size} x {self._dtype.name} parameters")
        arrays = _checked_state(state_dict.get("state", {}), self._update, self._size,
                                self._dtype, self.rule.structural)
        values = self._checked_hyperparameters(state_dict.get("hyperparameters", {}))
        step_count = _validate.integer("step_count", state_dict.get("step_count"), 0)
        skipped = _validate.integer("skipped_steps", state_dict.get("skipped_steps", 0), 0)
        running = _checked_running(state_dict.get("scalars", {}), self.rule)
        # Everything is valid: now change the optimizer.
        self._values.update(values)
        self._hyper = None
        self._running[:] = running
        for key, array in arrays.items():
            _launch.copy_into(self._state[key], array, self._device)
        self.step_count, self.skipped_steps = step_count, skipped

    def _checked_hyperparameters(self, hyper: Any) -> dict[str, Any]:
        """The snapshot's hyperparameters, validated, without changing ``self``."""
        name = type(self).__name__
        if not isinstance(hyper, dict):
            raise ValueError(f"state_dict hyperparameters must be a dict, got "
                             f"{type(hyper).__name__}")
        hyper = dict(hyper)
        if hyper.get("lr") is None:
            hyper.pop("lr", None)
        elif isinstance(hyper["lr"], dict):
            hyper["lr"] = schedules.from_dict(hyper["lr"])
        values = {}
        for key, value in hyper.items():
            if key not in self._hyper_names:
                raise ValueError(f"state_dict has unknown hyperparameter {key!r}")
            try:
                value = self._check(key, value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"state_dict hyperparameter {key!r}: {exc}") from None
            if key in self.rule.structural and value != self._values[key]:
                raise ValueError(f"state_dict has {key}={value!r}; this {name} has "
                                 f"{key}={self._values[key]!r}")
            values[key] = value
        return values

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file atomically (no pickle)."""
        checkpoint.save_optimizer(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Restore the state written by :meth:`save` into this optimizer."""
        state_dict = checkpoint.load_optimizer(path, self._state, size=self._size,
                                               dtype=self._dtype)
        try:
            self.load_state_dict(state_dict)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None


def _checked_state(arrays: Any, update: rules.Update, size: int, dtype: np.dtype,
                   structural: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The snapshot's state arrays, checked for names, shape, dtype and plausibility."""
    if not isinstance(arrays, dict):
        raise ValueError(f"state_dict state must be a dict of arrays, got "
                         f"{type(arrays).__name__}")
    if set(arrays) != set(update.state):
        hint = f" (was {' or '.join(structural)} set differently?)" if structural else ""
        raise ValueError(f"state_dict has state arrays {sorted(arrays)}, expected "
                         f"{sorted(update.state)}{hint}")
    checked = {}
    for key, array in arrays.items():
        array = np.asarray(array)
        if array.shape != (size,) or array.dtype != dtype:
            raise ValueError(f"state_dict array {key!r} is {array.shape} {array.dtype}; "
                             f"expected ({size},) {dtype}")
        if key in update.nonnegative and np.any(array < 0):
            index = int(np.flatnonzero(array < 0)[0])
            raise ValueError(f"state_dict array {key!r} must be >= 0 (it accumulates "
                             f"squares or magnitudes), but {key}[{index}] = {array[index]}")
        checked[key] = array
    return checked


def _checked_running(scalars: Any, rule: rules.Rule) -> list[float]:
    """The snapshot's running scalars, validated, in the rule's order."""
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
