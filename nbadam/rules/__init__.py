"""The rule registry: every update rule nbadam knows, by name.

A rule is a value (:class:`Rule`, with its :class:`Update`\\ s), defined
once in one module per family: :mod:`.adam`, :mod:`.nadam`, :mod:`.adamax` and
:mod:`.radam` follow ``torch.optim``; :mod:`.lion`, :mod:`.adabelief`, :mod:`.adan`
and :mod:`.yogi` follow optax; :mod:`.schedulefree` follows the ``schedulefree``
package and :mod:`.prodigy` ``prodigyopt``.  Everything that lists rules reads this
registry: the
optimizer classes, the methods and options of :func:`nbadam.minimize`,
:meth:`nbadam.MLP.fit` and the command line.  An unknown name is an error.

Examples
--------
>>> from nbadam import rules
>>> rules.names()  # doctest: +NORMALIZE_WHITESPACE
('adam', 'adamw', 'amsgrad', 'nadam', 'adamax', 'radam', 'lion', 'adabelief', 'adan', 'yogi',
 'adamwschedulefree', 'prodigy')
>>> rule = rules.get("NAdam")
>>> rule.optimizer, rule.defaults["lr"], rule.running
('NAdam', 0.002, {'mu_product': 1.0})
"""

from __future__ import annotations

from . import adabelief, adam, adamax, adan, lion, nadam, prodigy, radam, schedulefree, yogi
from ._rule import HYPERPARAMETER_CHECKS, Rule, Update, piece

__all__ = ["Rule", "Update", "piece", "register", "unregister", "get", "names",
           "HYPERPARAMETER_CHECKS"]

_REGISTRY: dict[str, Rule] = {}


def register(rule: Rule, *, replace: bool = False) -> Rule:
    """Add ``rule`` under ``rule.name``; refuse a name taken unless ``replace``."""
    if not isinstance(rule, Rule):
        raise TypeError(f"rule must be a nbadam.rules.Rule, got {type(rule).__name__}")
    if rule.name in _REGISTRY and not replace:
        raise ValueError(f"a rule named {rule.name!r} is already registered; pass "
                         "replace=True to replace it")
    _REGISTRY[rule.name] = rule
    return rule


def unregister(name: str) -> None:
    """Remove the rule ``name`` (for tests that register a rule of their own)."""
    _REGISTRY.pop(get(name).name)


def get(name: str, what: str = "rule") -> Rule:
    """The rule called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        If no rule has that name; ``what`` names the argument in the message.
    """
    if isinstance(name, str) and name.lower() in _REGISTRY:
        return _REGISTRY[name.lower()]
    raise ValueError(f"unknown {what} {name!r}; the registered rules are "
                     f"{', '.join(map(repr, _REGISTRY))}")


def names() -> tuple[str, ...]:
    """The registered rule names, in registration order."""
    return tuple(_REGISTRY)


for _module in (adam, nadam, adamax, radam, lion, adabelief, adan, yogi, schedulefree, prodigy):
    for _rule in _module.RULES:
        register(_rule)
del _module, _rule
