"""Learning-rate schedules: callables mapping an update count to a learning rate.

A schedule is called with the number of updates already applied, so the
first step uses ``schedule(0)`` (as optax does).  Any callable ``count -> lr``
may be passed as ``lr=`` to an optimizer or to :func:`nbadam.minimize`; the
classes here add validation, a readable ``repr`` and serialisation into
checkpoints (:func:`from_dict` rebuilds one from :meth:`Schedule.to_dict`).
A schedule may also set beta1 at each step (:meth:`Schedule.beta1`), as
:func:`one_cycle` does by default.

Only the schedules of this module are serialised.  A subclass of
:class:`Schedule` defined elsewhere (even one named like a built-in) is code,
and loading a checkpoint never imports code, so its :meth:`~Schedule.to_dict`
raises ``TypeError`` and an optimizer holding it refuses to ``save``; pass it
wrapped in a plain function (``lr=lambda count: my_schedule(count)``) to save
the rest of the state, as for any other callable.

Growing schedules saturate rather than fail: a rate that would exceed the
largest float is infinite (then capped by ``end_value`` if given), one that
falls below the smallest is zero.

Examples
--------
>>> from nbadam import schedules
>>> sched = schedules.warmup_cosine_decay(peak_value=1e-3, warmup_steps=10,
...                                       decay_steps=100)
>>> [round(sched(k), 6) for k in (0, 5, 10, 55, 100, 200)]
[0.0, 0.0005, 0.001, 0.0005, 0.0, 0.0]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from . import _validate

__all__ = [
    "Schedule", "constant", "exponential_decay", "step_decay", "warmup_cosine_decay",
    "one_cycle", "from_dict",
]


def _store(schedule: Schedule, **fields: Any) -> None:
    """Set validated fields on a frozen dataclass instance."""
    for name, value in fields.items():
        object.__setattr__(schedule, name, value)


def _count(count: int) -> int:
    return _validate.integer("count", count, minimum=0)


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` for ``base > 0, exponent >= 0``, saturating to inf, never raising."""
    try:
        return base ** exponent
    except OverflowError:  # float ** raises where float * would give inf
        return math.inf


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Base class: a frozen, serialisable ``count -> lr`` callable.

    Subclasses are dataclasses whose fields are the schedule's arguments;
    they compare by value and :meth:`to_dict` gives their fields as plain data.

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.step_decay(0.1, step_size=10)
    >>> isinstance(sched, schedules.Schedule), sched(0), round(sched(10), 6)
    (True, 0.1, 0.01)
    """

    def __call__(self, count: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def beta1(self, count: int) -> float | None:
        """The beta1 this schedule sets at ``count``, or None to keep the rule's own.

        An optimizer whose ``lr`` is a schedule calls this at every step as
        it calls the schedule; a value replaces the first of the rule's
        ``betas`` for that step (as torch's ``OneCycleLR`` with
        ``cycle_momentum=True`` sets ``group["betas"]``).  Only
        :class:`OneCycle` gives one; a rule without ``betas`` refuses a
        schedule that does.
        """
        return None

    def to_dict(self) -> dict[str, Any]:
        """The schedule as plain JSON-ready data (see :func:`from_dict`).

        Raises
        ------
        TypeError
            If this is not one of the schedules of :mod:`nbadam.schedules`
            (a user subclass cannot be rebuilt from data alone).

        Examples
        --------
        >>> from nbadam import schedules
        >>> schedules.constant(0.01).to_dict()
        {'schedule': 'Constant', 'value': 0.01}
        """
        kind = type(self).__name__
        if _KINDS.get(kind) is not type(self):
            raise TypeError(
                f"cannot serialise the lr schedule {self!r}: {type(self).__module__}."
                f"{type(self).__qualname__} is not one of nbadam's schedules "
                f"({', '.join(sorted(_KINDS))}), and a checkpoint never stores code; use a "
                "built-in schedule, or pass yours as a plain function "
                "(lr=lambda count: schedule(count)), which is saved as None so that loading "
                "keeps the receiving optimizer's lr")
        return {"schedule": kind, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
    """``lr = value`` at every count."""

    value: float

    def __post_init__(self):
        _store(self, value=_validate.nonnegative("value", self.value))

    def __call__(self, count: int) -> float:
        _count(count)
        return self.value


@dataclasses.dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """``init_value * decay_rate ** (count / transition_steps)``.

    With ``end_value``, the value is floored (decay) or capped (growth) there.
    A growing rate saturates: past the largest float it is ``inf`` (so the cap
    holds at any count), never an ``OverflowError``.
    """

    init_value: float
    decay_rate: float
    transition_steps: int = 1
    staircase: bool = False
    end_value: float | None = None

    def __post_init__(self):
        _store(self, init_value=_validate.positive("init_value", self.init_value))
        _store(self, decay_rate=_validate.positive("decay_rate", self.decay_rate))
        _store(self, transition_steps=_validate.integer(
            "transition_steps", self.transition_steps, 1))
        _store(self, staircase=_validate.flag("staircase", self.staircase))
        if self.end_value is not None:
            _store(self, end_value=_validate.nonnegative("end_value",
                                                                         self.end_value))

    def __call__(self, count: int) -> float:
        exponent = _count(count) / self.transition_steps
        if self.staircase:
            exponent = math.floor(exponent)
        value = self.init_value * _power(self.decay_rate, exponent)
        if self.end_value is not None:
            # end_value is a floor when decaying, a cap when growing (as optax).
            if self.decay_rate < 1.0:
                value = max(value, self.end_value)
            else:
                value = min(value, self.end_value)
        return value


@dataclasses.dataclass(frozen=True)
class StepDecay(Schedule):
    """``init_value * gamma ** (count // step_size)``, as ``torch.optim.lr_scheduler.StepLR``.

    With ``gamma > 1`` the rate saturates at ``inf`` past the largest float
    (which an optimizer then refuses, naming the step), never raising
    ``OverflowError``.
    """

    init_value: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        _store(self, init_value=_validate.positive("init_value", self.init_value))
        _store(self, step_size=_validate.integer("step_size", self.step_size, 1))
        _store(self, gamma=_validate.positive("gamma", self.gamma))

    def __call__(self, count: int) -> float:
        return self.init_value * _power(self.gamma, _count(count) // self.step_size)


@dataclasses.dataclass(frozen=True)
class WarmupCosineDecay(Schedule):
    """Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the whole schedule, warm-up included (as optax);
    after it the value stays at ``end_value``.
    """

    peak_value: float
    warmup_steps: int
    decay_steps: int
    init_value: float = 0.0
    end_value: float = 0.0

    def __post_init__(self):
        _store(self, peak_value=_validate.positive("peak_value", self.peak_value))
        _store(self, warmup_steps=_validate.integer("warmup_steps", self.warmup_steps, 0))
        _store(self, decay_steps=_validate.integer("decay_steps", self.decay_steps, 1))
        _store(self, init_value=_validate.nonnegative("init_value", self.init_value))
        _store(self, end_value=_validate.nonnegative("end_value", self.end_value))
        if self.warmup_steps > self.decay_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be <= decay_steps "
                             f"({self.decay_steps}), which counts the whole schedule")

    def __call__(self, count: int) -> float:
        count = _count(count)
        if count < self.warmup_steps:
            return self.init_value + (self.peak_value - self.init_value) * count / self.warmup_steps
        span = self.decay_steps - self.warmup_steps
        if span == 0 or count >= self.decay_steps:
            return self.end_value if span else self.peak_value
        cosine = 0.5 * (1.0 + math.cos(math.pi * (count - self.warmup_steps) / span))
        return self.end_value + (self.peak_value - self.end_value) * cosine


@dataclasses.dataclass(frozen=True)
class OneCycle(Schedule):
    """The one-cycle policy of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing).

    Starts at ``max_lr / div_factor``, rises to ``max_lr`` over
    ``pct_start * total_steps`` updates, then anneals to
    ``max_lr / (div_factor * final_div_factor)`` at ``total_steps - 1``.

    With ``cycle_momentum`` (the default, as torch) it also gives beta1
    (:meth:`beta1`): ``max_momentum`` where the rate is lowest, falling to
    ``base_momentum`` at the peak and rising back, along the same cosines.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self):
        _store(self, max_lr=_validate.positive("max_lr", self.max_lr))
        _store(self, total_steps=_validate.integer("total_steps", self.total_steps, 2))
        pct = _validate.real("pct_start", self.pct_start)
        if not 0.0 < pct < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {pct!r}")
        _store(self, pct_start=pct)
        _store(self, div_factor=_validate.positive("div_factor", self.div_factor))
        _store(self, final_div_factor=_validate.positive("final_div_factor", self.final_div_factor))
        _store(self, cycle_momentum=_validate.flag("cycle_momentum", self.cycle_momentum))
        _store(self, base_momentum=_validate.unit_interval("base_momentum", self.base_momentum))
        _store(self, max_momentum=_validate.unit_interval("max_momentum", self.max_momentum))

    def _phase(self, count: int) -> tuple[int, float]:
        """The phase (0 rising, 1 annealing) of ``count`` and how far into it, as torch."""
        count = min(_count(count), self.total_steps - 1)
        peak_at = float(self.pct_start * self.total_steps) - 1.0
        if count <= peak_at:
            return 0, count / peak_at if peak_at > 0 else 1.0
        return 1, (count - peak_at) / ((self.total_steps - 1) - peak_at)

    def __call__(self, count: int) -> float:
        phase, frac = self._phase(count)
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        start, end = (initial, self.max_lr) if phase == 0 else (self.max_lr, final)
        return _cosine(start, end, frac)

    def beta1(self, count: int) -> float | None:
        """beta1 at ``count`` (None with ``cycle_momentum=False``: the rule's own)."""
        if not self.cycle_momentum:
            return None
        phase, frac = self._phase(count)
        if phase == 0:
            return _cosine(self.max_momentum, self.base_momentum, frac)
        return _cosine(self.base_momentum, self.max_momentum, frac)


def _cosine(start: float, end: float, frac: float) -> float:
    """torch's ``OneCycleLR._annealing_cos``: from ``start`` to ``end`` as ``frac`` goes 0 to 1."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * frac) + 1)


def constant(value: float) -> Constant:
    """A constant learning rate ``value``.

    Parameters
    ----------
    value : float
        The learning rate (>= 0; 0 leaves the parameters unchanged, as torch allows).

    Returns
    -------
    Constant

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.constant(1e-3)
    >>> sched(0), sched(10_000)
    (0.001, 0.001)
    """
    return Constant(value)


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int = 1,
                      staircase: bool = False, end_value: float | None = None) -> ExponentialDecay:
    """``init_value * decay_rate ** (count / transition_steps)`` (see :class:`ExponentialDecay`).

    Parameters
    ----------
    init_value : float
        The learning rate at count 0 (> 0).
    decay_rate : float
        Factor applied every ``transition_steps`` updates (> 0; above 1 it grows).
    transition_steps : int, default 1
        Updates over which the rate changes by ``decay_rate`` (>= 1).
    staircase : bool, default False
        Change the rate in steps, every ``transition_steps`` updates, rather
        than continuously.
    end_value : float, optional
        A floor when decaying, a cap when growing (>= 0).

    Returns
    -------
    ExponentialDecay

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.exponential_decay(1e-2, 0.5, transition_steps=100)
    >>> [round(sched(k), 6) for k in (0, 50, 100, 200)]
    [0.01, 0.007071, 0.005, 0.0025]
    >>> stairs = schedules.exponential_decay(1e-2, 0.5, 100, staircase=True, end_value=3e-3)
    >>> [stairs(k) for k in (0, 99, 100, 200)]
    [0.01, 0.01, 0.005, 0.003]
    """
    return ExponentialDecay(init_value, decay_rate, transition_steps, staircase, end_value)


def step_decay(init_value: float, step_size: int, gamma: float = 0.1) -> StepDecay:
    """Multiply by ``gamma`` every ``step_size`` updates (see :class:`StepDecay`).

    Parameters
    ----------
    init_value : float
        The learning rate at count 0 (> 0).
    step_size : int
        Updates between two changes (>= 1).
    gamma : float, default 0.1
        The factor applied at each change (> 0).

    Returns
    -------
    StepDecay

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.step_decay(1.0, step_size=30, gamma=0.5)
    >>> [sched(k) for k in (0, 29, 30, 60)]
    [1.0, 1.0, 0.5, 0.25]
    """
    return StepDecay(init_value, step_size, gamma)


def warmup_cosine_decay(peak_value: float, warmup_steps: int, decay_steps: int,
                        init_value: float = 0.0, end_value: float = 0.0) -> WarmupCosineDecay:
    """Linear warm-up then cosine decay (see :class:`WarmupCosineDecay`).

    Parameters
    ----------
    peak_value : float
        The learning rate at the end of the warm-up (> 0).
    warmup_steps : int
        Updates of linear warm-up from ``init_value`` (>= 0).
    decay_steps : int
        Length of the whole schedule, warm-up included (>= ``warmup_steps``).
    init_value : float, default 0
        The learning rate at count 0 (>= 0).
    end_value : float, default 0
        The learning rate from ``decay_steps`` on (>= 0).

    Returns
    -------
    WarmupCosineDecay

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.warmup_cosine_decay(1e-3, warmup_steps=10, decay_steps=110)
    >>> [round(sched(k), 6) for k in (0, 5, 10, 60, 110, 500)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0, 0.0]
    """
    return WarmupCosineDecay(peak_value, warmup_steps, decay_steps, init_value, end_value)


def one_cycle(max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, *, cycle_momentum: bool = True,
              base_momentum: float = 0.85, max_momentum: float = 0.95) -> OneCycle:
    """The one-cycle policy, cycling beta1 too by default (see :class:`OneCycle`).

    Parameters
    ----------
    max_lr : float
        The peak learning rate (> 0).
    total_steps : int
        Length of the cycle (>= 2); later counts keep the final value.
    pct_start : float, default 0.3
        Fraction of the cycle spent rising, in (0, 1).
    div_factor : float, default 25
        The cycle starts at ``max_lr / div_factor``.
    final_div_factor : float, default 1e4
        The cycle ends at ``max_lr / (div_factor * final_div_factor)``.
    cycle_momentum : bool, default True
        Also drive beta1, the first of the rule's ``betas``, inversely to the
        rate (torch's ``OneCycleLR`` default); an optimizer whose rule has no
        ``betas`` refuses the schedule then.  False leaves beta1 alone.
    base_momentum : float, default 0.85
        beta1 at the peak of the rate, in [0, 1).
    max_momentum : float, default 0.95
        beta1 at the start and the end of the cycle, in [0, 1).

    Returns
    -------
    OneCycle

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.one_cycle(0.1, total_steps=100)
    >>> [round(sched(k), 9) for k in (0, 29, 99)]
    [0.004, 0.1, 4e-07]
    >>> [round(sched.beta1(k), 9) for k in (0, 29, 99)]
    [0.95, 0.85, 0.95]
    >>> schedules.one_cycle(0.1, 100, cycle_momentum=False).beta1(29) is None
    True
    """
    return OneCycle(max_lr, total_steps, pct_start, div_factor, final_div_factor,
                    cycle_momentum, base_momentum, max_momentum)


_KINDS = {cls.__name__: cls for cls in
          (Constant, ExponentialDecay, StepDecay, WarmupCosineDecay, OneCycle)}


def from_dict(data: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict` output.

    Parameters
    ----------
    data : dict
        What :meth:`Schedule.to_dict` returned (for instance read back from a
        checkpoint's JSON).

    Returns
    -------
    Schedule

    Raises
    ------
    ValueError
        If ``data`` does not describe one of the schedules of this module,
        with exactly its fields and valid values.

    Examples
    --------
    >>> from nbadam import schedules
    >>> sched = schedules.one_cycle(0.1, total_steps=1000)
    >>> schedules.from_dict(sched.to_dict()) == sched
    True
    """
    kinds = ", ".join(sorted(_KINDS))
    kind = data.get("schedule") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"not a serialised nbadam schedule: {_short(data)}; known kinds: "
                         f"{kinds}")
    cls = _KINDS[kind]
    fields = {key: value for key, value in data.items() if key != "schedule"}
    if cls is OneCycle and "cycle_momentum" not in fields:
        # Stored before one_cycle drove beta1: it ran without, and resumes so.
        fields["cycle_momentum"] = False
    names = {field.name for field in dataclasses.fields(cls)}
    required = {field.name for field in dataclasses.fields(cls)
                if field.default is dataclasses.MISSING}
    unknown, missing = sorted(set(fields) - names, key=str), sorted(required - set(fields))
    if unknown or missing:
        raise ValueError(f"serialised {kind} schedule has unknown fields {unknown or 'none'} "
                         f"and lacks {missing or 'none'}; its fields are {sorted(names)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"serialised {kind} schedule is invalid: {exc}") from None


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
