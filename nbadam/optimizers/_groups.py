"""Parameter groups: slices of the flat vector with hyperparameters of their own.

A group is what torch calls a ``param_group``: ``{"params": slice(lo, hi),
"lr": ..., ...}``.  In nbadam's flat design a group is a contiguous slice of
the one parameter vector, so the optimizer runs one fused launch per group on
views of the parameters, the gradient and the state (no copies).  A group
keeps only the hyperparameters it sets; the others are read from the
optimizer at each step, so ``opt.lr = x`` still changes every group that does
not set its own ``lr``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import Optimizer

__all__ = ["ParamGroup", "parse_groups"]


class ParamGroup(MutableMapping):
    """One parameter group of an optimizer: read and change it like torch's ``param_groups``.

    ``group["params"]`` is the group's ``slice`` of the flat vector (fixed);
    every hyperparameter of the rule can be read, set (validated, from the next
    step on) or deleted (to follow the optimizer's value again).  Structural
    hyperparameters (flags that choose the state arrays)
    are the optimizer's for every group.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.zeros(6)
    >>> opt = nbadam.Adam(x, lr=1e-2, weight_decay=0.01, decoupled_weight_decay=True,
    ...                   groups=[{"params": slice(0, 4)},
    ...                           {"params": slice(4, 6), "weight_decay": 0.0}])
    >>> opt.groups[1]["weight_decay"], opt.groups[0]["weight_decay"]
    (0.0, 0.01)
    >>> opt.groups[0]["lr"] = 0.0          # freeze the first four parameters
    >>> opt.step(np.ones(6)), x[:4]
    (True, array([0., 0., 0., 0.]))
    """

    def __init__(self, optimizer: Optimizer, index: int, start: int, stop: int,
                 overrides: dict[str, Any]):
        self._optimizer = optimizer
        self.index = index
        self.start, self.stop = start, stop
        self._overrides = overrides
        self._hyper: tuple | None = None
        #: This group's row of the optimizer's running scalars (set by the optimizer).
        self.running: Any = None

    # -- the mapping ------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key == "params":
            return slice(self.start, self.stop)
        if key in self._overrides:
            return self._overrides[key]
        if key in self._optimizer._group_keys():
            return self._optimizer._values[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise ValueError("a group's 'params' are fixed at construction (they choose the "
                             "views of the state); build a new optimizer for another split")
        self._overrides[key] = self._optimizer._check_group_key(key, value)
        self._hyper = None

    def __delitem__(self, key: str) -> None:
        if key not in self._overrides:
            raise KeyError(f"{key!r} is not set by this group (it follows the optimizer's)")
        del self._overrides[key]
        self._hyper = None

    def __iter__(self) -> Iterator[str]:
        yield "params"
        yield from self._optimizer._group_keys()

    def __len__(self) -> int:
        return 1 + len(self._optimizer._group_keys())

    def __repr__(self) -> str:
        own = ", ".join(f"{k}={v!r}" for k, v in self._overrides.items())
        return f"ParamGroup(params=slice({self.start}, {self.stop}){', ' + own if own else ''})"

    # -- what the optimizer reads --------------------------------------------------------
    @property
    def size(self) -> int:
        """Elements in the group."""
        return self.stop - self.start

    @property
    def overrides(self) -> dict[str, Any]:
        """The hyperparameters this group sets itself (a copy)."""
        return dict(self._overrides)

    @property
    def scalars(self) -> dict[str, float]:
        """The rule's running scalars of this group (a product of momentum terms, ...)."""
        opt = self._optimizer
        return {name: float(value) for name, value in
                zip(opt.rule.running, opt._running[self.index], strict=True)}

    def hyper(self) -> tuple:
        """The group's hyperparameters as the rule's scalar function takes them."""
        if self._hyper is None:
            opt = self._optimizer
            values = {**opt._values, **self._overrides}
            self._hyper = opt.rule.hyper(values, values["maximize"])
        return self._hyper

    def invalidate(self) -> None:
        """Forget the cached hyperparameters (the optimizer's changed)."""
        self._hyper = None


def _bounds(value: Any, size: int, where: str) -> tuple[int, int]:
    """``(start, stop)`` of a group's ``params``: a slice with step 1, a range, or a pair."""
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise ValueError(f"{where}['params'] must be a slice with step 1 (a contiguous part "
                             f"of the flat vector), got {value!r}")
        start, stop = value.start, value.stop
    elif isinstance(value, range) and value.step == 1:
        start, stop = value.start, value.stop
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        start, stop = value
    else:
        raise ValueError(f"{where}['params'] must be a slice(start, stop), a range or a pair "
                         f"(start, stop) of the flat vector, got {value!r}")
    start = 0 if start is None else start
    stop = size if stop is None else stop
    for name, bound in (("start", start), ("stop", stop)):
        if isinstance(bound, bool) or not hasattr(bound, "__index__"):
            raise ValueError(f"{where}['params'] {name} must be an integer, got {bound!r}")
    start, stop = start.__index__(), stop.__index__()
    if not 0 <= start < stop <= size:
        raise ValueError(f"{where}['params'] = [{start}, {stop}) is not a non-empty part of the "
                         f"{size} parameters: use 0 <= start < stop <= {size} (no negative "
                         "indices)")
    return start, stop


def parse_groups(groups: Any, size: int, check: Any) -> list[tuple[int, int, dict[str, Any]]]:
    """Validate ``groups``: ``[(start, stop, overrides)]`` in the order given.

    ``check(key, value)`` validates one hyperparameter of a group (and refuses
    keys a group cannot set).  Groups must be disjoint; elements in no group
    are left untouched by the optimizer.
    """
    if isinstance(groups, (dict, str)) or not isinstance(groups, Sequence) or not groups:
        raise ValueError("groups must be a non-empty list of dicts, each with 'params' (a "
                         "slice of the flat vector) and any hyperparameters, got "
                         f"{type(groups).__name__}")
    parsed = []
    for index, group in enumerate(groups):
        where = f"groups[{index}]"
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"{where} must be a dict with a 'params' slice, got {group!r}")
        start, stop = _bounds(group["params"], size, where)
        overrides = {}
        for key, value in group.items():
            if key == "params":
                continue
            try:
                overrides[key] = check(key, value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
        parsed.append((start, stop, overrides))
    ordered = sorted(range(len(parsed)), key=lambda k: parsed[k][0])
    for first, second in zip(ordered, ordered[1:], strict=False):
        if parsed[second][0] < parsed[first][1]:
            raise ValueError(f"groups[{first}] [{parsed[first][0]}, {parsed[first][1]}) and "
                             f"groups[{second}] [{parsed[second][0]}, {parsed[second][1]}) "
                             "overlap; every parameter belongs to at most one group")
    return parsed
