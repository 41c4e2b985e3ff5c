"""The learning-rate range test (fastai's ``Learner.lr_find``): :func:`lr_find`.

Train for up to ``num_it`` steps with a learning rate growing exponentially
from ``start_lr`` towards ``end_lr``, record each step's loss and its
debiased moving average (:func:`smooth`), stop once that average exceeds
four times its minimum, and suggest a rate from the curve
(:mod:`nbadam.lr_finder.suggestions`).  The test runs on copies: the model,
the optimizer, ``x0`` and the caller's random generators are as they were.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _validate
from ..nn.mlp import MLP
from .suggestions import SUGGESTIONS, minimum, slide, smooth, steep, valley

__all__ = ["lr_find", "LRFindResult", "smooth", "valley", "steep", "minimum", "slide",
           "SUGGESTIONS"]

#: Stop when the smoothed loss exceeds this many times its minimum (fastai's 4).
DIVERGENCE_FACTOR = 4.0
#: The last points left out of the suggestions and the plot (fastai's ``[:-5]``).
SKIP_END = 5


@dataclasses.dataclass(frozen=True)
class LRFindResult:
    """What :func:`lr_find` returns: the curve and the suggested learning rates.

    Attributes
    ----------
    lrs : numpy.ndarray
        The learning rate of each step taken (read-only).
    losses : numpy.ndarray
        Each step's loss, measured before its update (the batch's mean loss
        for an MLP, ``fun(x)`` for an objective).
    smoothed : numpy.ndarray
        The debiased moving average of ``losses`` (:func:`smooth`).
    suggestions : dict
        Method name -> suggested learning rate, in the order asked for
        (NaN when the curve was too short for the method).
    points : dict
        Method name -> ``(lr, smoothed loss)``, the point the plot marks.
    diverged : bool
        Whether the test stopped early because the smoothed loss exceeded
        four times its minimum (or stopped being finite).
    num_it : int
        The steps asked for.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> res = nbadam.lr_find(lambda v: float(v @ v), np.ones(2), jac=lambda v: 2 * v,
    ...                      start_lr=1e-4, num_it=50, suggest=("valley", "minimum"))
    >>> sorted(res.suggestions), res.suggestion == res.suggestions["valley"]
    (['minimum', 'valley'], True)
    >>> res.lrs.flags.writeable
    False
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestions: dict[str, float]
    points: dict[str, tuple[float, float]]
    diverged: bool
    num_it: int

    @property
    def suggestion(self) -> float:
        """The first method's suggested learning rate (``valley`` by default)."""
        return next(iter(self.suggestions.values()))

    def plot(self, ax: Any = None, skip_end: int = SKIP_END) -> Any:
        """Draw the smoothed loss against the learning rate (log scale) and the suggestions.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; by default a new figure's axes (no pyplot state).
        skip_end : int, default 5
            Leave out the last points, where the loss shoots up (as fastai).

        Returns
        -------
        matplotlib.axes.Axes

        Raises
        ------
        ImportError
            If matplotlib is not installed (``pip install "nbadam[plot]"``).
        """
        from ..nn.plotting import require_matplotlib

        require_matplotlib()
        skip_end = _validate.integer("skip_end", skip_end, 0)
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(6, 4), layout="constrained").add_subplot()
        stop = len(self.lrs) - skip_end if skip_end else len(self.lrs)
        ax.plot(self.lrs[:stop], self.losses[:stop], color="0.8", lw=0.8, label="loss")
        ax.plot(self.lrs[:stop], self.smoothed[:stop], color="C0", label="smoothed loss")
        for k, (name, (lr, loss)) in enumerate(self.points.items(), 1):
            if math.isfinite(lr):
                ax.plot(lr, loss, "o", color=f"C{k}",
                        label=f"{name}: {self.suggestions[name]:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend(loc="best")
        return ax

    def save_plot(self, path: str | os.PathLike, skip_end: int = SKIP_END) -> None:
        """Draw :meth:`plot` into a new figure and save it (format from the suffix)."""
        ax = self.plot(skip_end=skip_end)
        ax.figure.savefig(path, dpi=100)


def lr_find(model: Any, x: Any, y: Any = None, *, optimizer: Any = "adam",
            optimizer_options: dict[str, Any] | None = None, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
            beta: float = 0.98, suggest: str | Sequence[str] = "valley",
            batch_size: int | None = None, seed: int | None = None, shuffle: bool | None = None,
            l2: float | None = None, label_smoothing: float | None = None,
            args: Any = (), jac: Any = None) -> LRFindResult:
    r"""The learning-rate range test: train with a growing rate and suggest one.

    Step :math:`i = 0, 1, \ldots` uses :math:`\mathrm{lr}_i = \mathrm{start}
    \cdot (\mathrm{end}/\mathrm{start})^{i/\mathrm{num\_it}}`, as fastai's
    ``LRFinder`` (the last rate is one step short of ``end_lr``).  Each
    step's loss is smoothed by a debiased moving average (:func:`smooth`);
    the test stops early when the smoothed loss exceeds four times its
    minimum.  The suggestions read the smoothed curve without its first
    tenth (``num_it // 10`` points) and last five points, up to its first
    NaN, as fastai's.

    Parameters
    ----------
    model : nbadam.MLP or callable
        An MLP to train on ``(x, y)``, or an objective ``fun(x, *args)`` to
        minimise from ``x0 = x`` (as :func:`nbadam.minimize`).
    x : array_like
        The MLP's training inputs, or the objective's starting point ``x0``.
    y : array_like of int, optional
        The MLP's labels; none for an objective.
    optimizer : str or nbadam.Optimizer, default "adam"
        The rule (any of ``nbadam.rules.names()``); for an MLP also an
        optimizer built on ``model.params``, whose state the test starts
        from (on a copy).
    optimizer_options : dict, optional
        The rule's other hyperparameters (``betas``, ``weight_decay``, ...).
    start_lr, end_lr : float, default 1e-7 and 10
        The range, ``0 < start_lr < end_lr``.
    num_it : int, default 100
        Steps at most (>= 2).
    stop_div : bool, default True
        Stop when the smoothed loss exceeds four times its minimum or is not
        finite.
    beta : float, default 0.98
        The smoothing's decay, in [0, 1).
    suggest : str or sequence of str, default "valley"
        Suggestion methods: ``"valley"``, ``"steep"``, ``"minimum"``,
        ``"slide"`` (:mod:`nbadam.lr_finder.suggestions`).
    batch_size, seed, shuffle, l2, label_smoothing
        For an MLP, as :meth:`nbadam.MLP.fit` (defaults 128, the model's
        seed, True, 0, 0): the batches are those of ``fit``'s first epochs.
    args, jac
        For an objective, as :func:`nbadam.minimize` (``jac=None``: finite
        differences).

    Returns
    -------
    LRFindResult

    Raises
    ------
    ValueError
        For a bad range, ``num_it < 2``, an unknown suggestion method, MLP
        options with an objective or the reverse; nothing runs then.

    Notes
    -----
    Nothing the caller holds changes: the test trains a copy of the model
    (or of ``x0``) with a new optimizer (or a copy of the one given, with
    its state), and after an objective's test the global NumPy random state
    and any NumPy generator in ``args`` are put back, so that a following
    run sees the same random draws.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> res = nbadam.lr_find(lambda v: float(v @ v), np.ones(3), jac=lambda v: 2 * v,
    ...                      start_lr=1e-4, end_lr=10.0, num_it=60)
    >>> float(res.lrs[0]), len(res.lrs) == len(res.losses) == len(res.smoothed)
    (0.0001, True)
    >>> bool(1e-3 < res.suggestion < 10.0)
    True
    """
    start_lr = _validate.positive("start_lr", start_lr)
    end_lr = _validate.positive("end_lr", end_lr)
    if not start_lr < end_lr:
        raise ValueError(f"start_lr must be below end_lr, got start_lr={start_lr!r} and "
                         f"end_lr={end_lr!r}")
    num_it = _validate.integer("num_it", num_it, 2)
    stop_div = _validate.flag("stop_div", stop_div)
    beta = _validate.unit_interval("beta", beta)
    methods = _methods(suggest)
    mlp_options = {"batch_size": batch_size, "seed": seed, "shuffle": shuffle, "l2": l2,
                   "label_smoothing": label_smoothing}
    if isinstance(model, MLP):
        if args != () or jac is not None:
            raise ValueError("args and jac apply to an objective; an MLP trains on (x, y)")
        if y is None:
            raise ValueError("an MLP's range test needs labels: lr_find(model, x, y)")
        from ..nn._lr_find import mlp_steps

        defaults = {"batch_size": 128, "seed": None, "shuffle": True, "l2": 0.0,
                    "label_smoothing": 0.0}
        chosen = {k: defaults[k] if v is None else v for k, v in mlp_options.items()}
        step = mlp_steps(model, x, y, optimizer, optimizer_options, start_lr, **chosen)
        restore = _nothing
    elif callable(model):
        given = sorted(k for k, v in mlp_options.items() if v is not None)
        if given or y is not None:
            raise ValueError(f"{', '.join(given) or 'y'} apply to an MLP; an objective "
                             "fun(x, *args) is minimised from x0 = x")
        from ._objective import objective_steps

        step, restore = objective_steps(model, x, args, jac, optimizer, optimizer_options,
                                        start_lr)
    else:
        raise TypeError(f"model must be an nbadam.MLP or a callable objective, got "
                        f"{type(model).__name__}")
    try:
        lrs, losses, smoothed, diverged = _range_test(step, start_lr, end_lr, num_it, beta,
                                                      stop_div)
    finally:
        restore()
    suggestions, points = _suggest(methods, lrs, smoothed, num_it)
    for array in (lrs, losses, smoothed):
        array.flags.writeable = False
    return LRFindResult(lrs, losses, smoothed, suggestions, points, diverged, num_it)


def _methods(suggest: Any) -> tuple[str, ...]:
    names = (suggest,) if isinstance(suggest, str) else tuple(suggest)
    if not names:
        raise ValueError("suggest needs at least one method: "
                         f"{', '.join(map(repr, SUGGESTIONS))}")
    for name in names:
        if name not in SUGGESTIONS:
            raise ValueError(f"suggest must name methods among "
                             f"{', '.join(map(repr, SUGGESTIONS))}; got {name!r}")
    return tuple(dict.fromkeys(names))


def _nothing() -> None:
    return None


def _range_test(step: Callable[[float], float], start_lr: float, end_lr: float, num_it: int,
                beta: float, stop_div: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Run the steps; the rates, losses and smoothed losses, and whether it diverged."""
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    ratio = end_lr / start_lr
    for i in range(num_it):
        lr = start_lr * ratio ** (i / num_it)      # fastai's SchedExp
        loss = float(step(lr))
        average = beta * average + (1.0 - beta) * loss
        value = average / (1.0 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if stop_div and (not math.isfinite(value) or value > DIVERGENCE_FACTOR * best):
            return np.array(lrs), np.array(losses), np.array(smoothed), True
    return np.array(lrs), np.array(losses), np.array(smoothed), False


def _suggest(methods: tuple[str, ...], lrs: np.ndarray, smoothed: np.ndarray,
             num_it: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Each method's suggestion on fastai's part of the curve: ``[num_it // 10:-5]``, to a NaN."""
    part_lrs, part = lrs[num_it // 10:-SKIP_END], smoothed[num_it // 10:-SKIP_END]
    bad = np.flatnonzero(np.isnan(part))
    if bad.size:
        part_lrs, part = part_lrs[:bad[0]], part[:bad[0]]
    suggestions, points = {}, {}
    for name in methods:
        if part.size < 2:
            lr, point = math.nan, (math.nan, math.nan)
        else:
            lr, point = SUGGESTIONS[name](part_lrs, part)
        suggestions[name], points[name] = lr, point
    if part.size < 2 or any(math.isnan(v) for v in suggestions.values()):
        warnings.warn(f"the range test kept {part.size} points to suggest from (of "
                      f"{lrs.size} steps), too few for "
                      f"{', '.join(k for k, v in suggestions.items() if math.isnan(v))}; "
                      "use a larger num_it or a smaller start_lr", RuntimeWarning, stacklevel=3)
    return suggestions, points
