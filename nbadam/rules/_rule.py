"""What an update rule is: :class:`Update` (the maths) and :class:`Rule` (the public face).

An :class:`Update` is one fused per-element update, written once as plain
Python: its state arrays, the function that turns the hyperparameters and the
step count into the per-step scalars, and the per-element function.  The
kernel layer (:mod:`nbadam._kernels`) compiles the per-element function for
each target and puts the loops around it; the optimizers call the scalar
function from Python and the compiled ``minimize`` loop calls its Numba
build, so both compute the same scalars bit for bit.

A :class:`Rule` is what a user names: a ``minimize`` method, an optimizer
class, an ``MLP.fit(optimizer=...)`` choice.  It holds the title, the
hyperparameters with torch's defaults, the values it fixes, its running
scalar state and which :class:`Update` a set of hyperparameters selects
(a flag may select a second update with one more state array).

An update may also need sums over the whole vector before it can update any
element (a step size estimated from the whole vector): it then has a *reduction*, a per-element
function ``reduce`` that updates the state and returns the terms to sum, and
a scalar function ``finish`` that turns the sums into the per-element
function's scalars.  The kernels run the two as two passes.

Functions marked with :func:`piece` are the building blocks both layers
compile: a per-element function and the pieces it calls by bare global name
(``prologue``, ``nan_max``, ...), and a scalar function and its helpers.
Each target compiles a copy whose pieces are replaced by the target's
compiled pieces, so a piece is written once and works on every target.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from .. import _validate
from .._kernels._build import piece

__all__ = ["Rule", "Update", "piece", "HYPERPARAMETER_CHECKS", "MAX_SUMS"]

#: The most sums a reduction may return (the kernels add tuples of up to this length).
MAX_SUMS = 4


def _checked_betas(name: str, value: Any) -> tuple[float, float]:
    return _validate.betas(value)


def _checked_lr(name: str, value: Any) -> Any:
    return _validate.learning_rate(value)


#: How each hyperparameter is validated, by name.  A rule whose hyperparameter is
#: not here names its check in :attr:`Rule.checks`.
HYPERPARAMETER_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lr": _checked_lr,
    "betas": _checked_betas,
    "eps": _validate.nonnegative,
    "weight_decay": _validate.nonnegative,
    "decoupled_weight_decay": _validate.flag,
    "maximize": _validate.flag,
}


@dataclasses.dataclass(frozen=True, eq=False)
class Update:
    """One fused per-element update: state, per-step scalars and per-element maths.

    Attributes
    ----------
    name : str
        Unique among updates; names the compiled loops and their cache files.
    state : tuple of str
        The per-element state arrays (torch's names), in the order the
        per-element function unpacks them; all start at zero.
    scalar_names : tuple of str
        The per-step scalars, in the order :attr:`scalars` returns them and
        :attr:`element` unpacks them.
    scalars : callable
        A :func:`piece` ``scalars(h, running, lr, t) -> tuple of float``:
        ``h`` the rule's hyperparameters (a named tuple, see
        :meth:`Rule.hyper`), ``running`` a float64 array of the rule's
        running scalar state (updated in place), ``lr`` the learning rate and
        ``t`` the step count (1 for the first step).  All arithmetic in
        float64; ``x ** 0.5`` is written ``math.sqrt(x)``, which Python and
        LLVM both round correctly (LLVM rewrites a constant ``** 0.5`` into a
        square root, which Python's ``pow`` does not match in the last bit).
    initial : callable, optional
        ``initial(h) -> tuple of float``: the value each state array starts
        at, from the hyperparameters (a rule whose accumulators start at a
        hyperparameter's value); by default every array starts at zero.
    nonnegative : tuple of str
        State arrays that can never be negative (sums of squares, maxima of
        magnitudes): a checkpoint holding a negative value there is refused.
    from_params : tuple of str
        State arrays that start as a copy of the parameters instead of at a
        number (schedule-free's ``z``, a copy of the starting point ``p0``);
        :attr:`initial` is not consulted for them.  Each group's slice starts
        at that group's parameters.
    evaluation : Update, optional
        For a rule whose parameters are not the point to report (schedule-free
        takes gradients at ``y`` and reports the average ``x``): the update that
        turns a copy of the parameters into that point, in place.  Its
        :attr:`state` names arrays of this update, which it reads only; its
        scalar function takes the same arguments and must not change
        ``running``.  None (the default) when the parameters are the point.
    compact : tuple of str
        State arrays that ``state_precision="bfloat16"`` or ``"8bit"`` may store in fewer
        bits (moments, which tolerate the rounding); the others stay float32.
        Empty: the update supports float32 state only.
    roots : tuple of str
        Compact arrays that :attr:`element` uses under a square root (second
        moments, never negative): ``state_precision="8bit"`` stores their
        square roots, which halves the range of exponents the codes must
        span.  The other compact arrays are stored as they are.
    element : callable
        A :func:`piece` ``element(i, param, grad, state, c)`` that updates
        element ``i`` of ``param`` and of the arrays of the tuple ``state``
        in place, from ``grad[i]`` and the tuple ``c`` of scalars (in the
        parameters' dtype).  No literal constants: every number it needs is
        a scalar, so a float32 kernel does float32 arithmetic only.
    reduce : callable, optional
        A :func:`piece` ``reduce(i, param, grad, state, c) -> tuple`` for an
        update that needs sums over the whole vector: it updates element
        ``i`` of the state in place, from the scalars ``c`` of
        :attr:`scalars`, and returns one float64 term per sum (between one
        and four).  The kernels add the terms in float64 (the reduction
        pass), then call :attr:`finish`, then run :attr:`element` (the update
        pass).
    sum_names : tuple of str
        The names of the sums, in the order :attr:`reduce` returns the terms.
    finish : callable, optional
        With :attr:`reduce`: a :func:`piece` ``finish(h, running, lr, t,
        sums) -> tuple of float`` that reads the sums (a float64 array, over
        every group of the optimizer), updates ``running`` in place and
        returns the scalars of :attr:`element` (:attr:`finish_names`).
    finish_names : tuple of str
        The scalars :attr:`finish` returns.
    """

    name: str
    state: tuple[str, ...]
    scalar_names: tuple[str, ...]
    scalars: Callable[..., tuple]
    element: Callable[..., None]
    nonnegative: tuple[str, ...] = ()
    initial: Callable[[tuple], tuple] | None = None
    from_params: tuple[str, ...] = ()
    evaluation: Update | None = None
    reduce: Callable[..., tuple] | None = None
    sum_names: tuple[str, ...] = ()
    finish: Callable[..., tuple] | None = None
    finish_names: tuple[str, ...] = ()
    compact: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()

    def evaluation_state(self, state: tuple) -> tuple:
        """The arrays of ``state`` (this update's, in its order) that :attr:`evaluation` reads."""
        return tuple(state[self.state.index(name)] for name in self.evaluation.state)

    @property
    def element_scalar_names(self) -> tuple[str, ...]:
        """The scalars :attr:`element` unpacks: :attr:`finish_names` with a reduction."""
        return self.finish_names if self.reduce is not None else self.scalar_names

    def initial_values(self, hyper: tuple) -> tuple[float, ...]:
        """The starting value of each state array for hyperparameters ``hyper``."""
        if self.initial is None:
            return (0.0,) * len(self.state)
        values = tuple(float(v) for v in self.initial(hyper))
        if len(values) != len(self.state):
            raise ValueError(f"update {self.name!r}: initial() returned {len(values)} values "
                             f"for {len(self.state)} state arrays")
        return values

    def __post_init__(self):
        if (self.reduce is None) != (self.finish is None):
            raise ValueError(f"update {self.name!r}: reduce and finish go together")
        if self.reduce is not None and not 1 <= len(self.sum_names) <= MAX_SUMS:
            raise ValueError(f"update {self.name!r}: a reduction has 1 to {MAX_SUMS} sums, "
                             f"got sum_names={self.sum_names!r}")
        extra = (self.reduce, self.finish) if self.reduce is not None else ()
        for func in (self.scalars, self.element, *extra):
            if not getattr(func, "__nbadam_piece__", False):
                raise TypeError(f"update {self.name!r}: {func.__name__} must be marked "
                                "with nbadam.rules.piece")
        for name in (*self.nonnegative, *self.compact):
            if name not in self.state:
                raise ValueError(f"update {self.name!r}: {name!r} is not one of its state "
                                 f"arrays {self.state}")
        stray = [name for name in self.roots if name not in self.compact]
        if stray:
            raise ValueError(f"update {self.name!r}: roots must be compact arrays: "
                             f"{', '.join(map(repr, stray))}")
        if not self.name.isidentifier():
            raise ValueError(f"update name {self.name!r} must be a Python identifier")
        unknown = [name for name in (*self.from_params,
                                     *(self.evaluation.state if self.evaluation else ()))
                   if name not in self.state]
        if unknown:
            raise ValueError(f"update {self.name!r}: from_params and evaluation name state "
                             f"arrays it does not have: {', '.join(map(repr, unknown))}")

    def __repr__(self) -> str:
        return f"Update({self.name!r}, state={self.state})"


@dataclasses.dataclass(frozen=True, eq=False)
class Rule:
    """An update rule as users name it: a method, an optimizer class, a training choice.

    Attributes
    ----------
    name : str
        The lower-case name: the ``method`` of :func:`nbadam.minimize`, the
        ``optimizer`` of :meth:`nbadam.MLP.fit` and the command line.
    title : str
        One line for listings (``show_options``).
    optimizer : str
        The name of the optimizer class that runs it (the class's
        ``__name__``; checkpoints record it).
    defaults : mapping
        The hyperparameters a user sets, with torch's defaults, ``lr`` first.
    updates : tuple of Update
        The updates the rule can run; :attr:`choose` picks one.
    choose : callable
        ``choose(hyper) -> Update`` for the hyperparameters as a mapping;
        by default the only update.
    constants : mapping
        Values the kernels see as hyperparameters but nobody sets (a rule
        that always decouples weight decay has ``decoupled_weight_decay=True``).
    pinned : mapping
        Hyperparameters of the optimizer class that this name fixes: a name
        for a variant of another rule's class, with a flag set.
    structural : tuple of str
        Hyperparameters fixed at construction, because they choose the
        update and so the state arrays.
    shared : tuple of str
        Hyperparameters that are the optimizer's for every group (a group
        cannot set them): those of a rule whose running scalars all groups
        share.
    running : mapping
        The running scalar state and its initial values (a running product
        of momentum coefficients starts at 1, or at the value of the
        hyperparameter a string names: a step size starting at ``d0``),
        kept in float64 and saved in checkpoints.
    checks : mapping
        Validators ``check(name, value) -> value`` for hyperparameters that
        :data:`HYPERPARAMETER_CHECKS` does not know, and for running scalars
        (others must be finite numbers).
    docs : mapping
        ``name -> (type, description lines)`` for the rule's own
        hyperparameters, which :func:`nbadam.show_options` prints.
    """

    name: str
    title: str
    optimizer: str
    defaults: Mapping[str, Any]
    updates: tuple[Update, ...]
    choose: Callable[[Mapping[str, Any]], Update] | None = None
    constants: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pinned: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    structural: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    running: Mapping[str, float | str] = dataclasses.field(default_factory=dict)
    checks: Mapping[str, Callable[[str, Any], Any]] = dataclasses.field(default_factory=dict)
    docs: Mapping[str, tuple[str, list[str]]] = dataclasses.field(default_factory=dict)
    #: The named tuple type of :meth:`hyper` (made from the other fields).
    Hyper: type = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        if not (self.name.isidentifier() and self.name == self.name.lower()):
            raise ValueError(f"rule name {self.name!r} must be a lower-case identifier")
        if next(iter(self.defaults), None) != "lr":
            raise ValueError(f"rule {self.name!r}: defaults must start with 'lr'")
        if not self.updates:
            raise ValueError(f"rule {self.name!r} needs at least one Update")
        for key in self.defaults:
            if key not in self.checks and key not in HYPERPARAMETER_CHECKS:
                raise ValueError(f"rule {self.name!r}: hyperparameter {key!r} has no check; "
                                 "give one in Rule.checks")
        fields = [k for k in (*self.pinned, *self.defaults, *self.constants)
                  if k != "lr"] + ["maximize"]
        # Named after the rule and importable from this module: Numba's disk cache
        # records argument types by module and name.
        hyper = collections.namedtuple(f"_{self.name}_hyper", list(dict.fromkeys(fields)))
        hyper.__module__ = __name__
        globals()[hyper.__name__] = hyper
        object.__setattr__(self, "Hyper", hyper)

    def initial_running(self, hyper: tuple) -> list[float]:
        """The running scalars' starting values for hyperparameters ``hyper``
        (:meth:`hyper`'s named tuple)."""
        return [float(getattr(hyper, start)) if isinstance(start, str) else float(start)
                for start in self.running.values()]

    def check(self, name: str, value: Any) -> Any:
        """``value`` validated as hyperparameter ``name`` of this rule."""
        value = self.checks.get(name, HYPERPARAMETER_CHECKS.get(name, _unknown))(name, value)
        if name == "lr" and callable(value) and "betas" not in self.defaults \
                and _validate.scheduled_beta1(value, 0) is not None:
            raise ValueError(f"the lr schedule {value!r} also sets beta1, but rule "
                             f"{self.name!r} has no betas; pass cycle_momentum=False to "
                             "schedules.one_cycle (as torch's OneCycleLR refuses an optimizer "
                             "without momentum or betas)")
        return value

    def update(self, values: Mapping[str, Any]) -> Update:
        """The :class:`Update` that hyperparameters ``values`` select."""
        if self.choose is None:
            return self.updates[0]
        return self.choose({**self.defaults, **self.pinned, **values})

    def hyper(self, values: Mapping[str, Any], maximize: bool = False) -> tuple:
        """The hyperparameters the scalar function sees, as a :attr:`Hyper` named tuple.

        Values missing from ``values`` take the rule's defaults; ``lr`` is
        not part of it (it may follow a schedule and is passed per step).
        """
        merged = {**self.defaults, **self.pinned, **values, **self.constants,
                  "maximize": bool(maximize)}
        return self.Hyper(**{k: _as_float(merged[k]) for k in self.Hyper._fields})

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, optimizer={self.optimizer!r})"


def _as_float(value: Any) -> Any:
    """Numbers as Python floats (Numba then sees float64), tuples element by element,
    None as NaN."""
    if isinstance(value, bool):
        return value
    if value is None:   # "not set": NaN, which the scalar function reads
        return math.nan
    if isinstance(value, tuple):
        return tuple(_as_float(v) for v in value)
    return float(value)


def _unknown(name: str, value: Any) -> Any:
    raise ValueError(f"unknown hyperparameter {name!r}")

