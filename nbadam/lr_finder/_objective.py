"""The objective's side of :func:`nbadam.lr_find`: ``fun``/``jac`` steps on a copy of ``x0``.

``x0``, ``args`` and ``jac`` are read as :func:`nbadam.minimize` reads them;
each step evaluates ``fun`` (and the gradient) at the current point, then
updates the copy.  The NumPy random state the caller owns (the global one,
and any generator passed in ``args``) is recorded first and put back by the
returned ``restore``, so that the test consumes none of the caller's draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..minimize._inputs import _evaluator, _normalize
from ..optimizers import Optimizer, make_optimizer

__all__ = ["objective_steps"]


def objective_steps(fun: Callable, x0: Any, args: Any, jac: Any, optimizer: Any,
                    options: dict[str, Any] | None, start_lr: float
                    ) -> tuple[Callable[[float], float], Callable[[], None]]:
    """``(step(lr) -> fun at the point before the update, restore())``."""
    if isinstance(optimizer, Optimizer) or not isinstance(optimizer, str):
        raise TypeError("for an objective, optimizer is the name of a rule "
                        f"(nbadam.rules.names()), got {optimizer!r}")
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"optimizer_options must be a dict of keyword arguments, got "
                        f"{options!r}")
    options = dict(options or {})
    if "lr" in options:
        raise ValueError("optimizer_options must not set lr: the range test sets it")
    x, args = _normalize(x0, args)
    opt = make_optimizer(optimizer, x, lr=start_lr, **options)
    evaluate, _ = _evaluator(fun, jac, args, x.size, x.dtype, None, None)
    restore = _random_state_keeper(args)

    def step(lr: float) -> float:
        f, g = evaluate(x)
        opt.lr = lr
        opt.step(g)
        return f

    return step, restore


def _random_state_keeper(args: tuple) -> Callable[[], None]:
    """Record the caller's NumPy random states; return the function that puts them back."""
    # The legacy global stream is the caller's, whatever fun draws from it.
    global_state = np.random.get_state()  # noqa: NPY002
    generators = [(item, item.bit_generator.state) for item in args
                  if isinstance(item, np.random.Generator)]
    legacy = [(item, item.get_state()) for item in args
              if isinstance(item, np.random.RandomState)]

    def restore() -> None:
        np.random.set_state(global_state)  # noqa: NPY002
        for generator, state in generators:
            generator.bit_generator.state = state
        for random_state, state in legacy:
            random_state.set_state(state)

    return restore
