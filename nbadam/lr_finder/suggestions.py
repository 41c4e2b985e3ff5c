"""The smoothed loss of a learning-rate range test, and the rates it suggests (fastai's).

Each suggestion function takes the learning rates and the smoothed losses of
the part of the test that :func:`nbadam.lr_find` keeps for suggesting
(fastai drops the first tenth and the last five points) and returns
``(suggestion, (lr, loss))``: the suggested rate and the point of the curve
to mark on the plot.  They follow fastai's ``valley``, ``steep``,
``minimum`` and ``slide`` (``fastai/callback/schedule.py``) step for step,
in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["smooth", "valley", "steep", "minimum", "slide", "SUGGESTIONS"]

Point = tuple[float, tuple[float, float]]


def smooth(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
    r"""The debiased exponential moving average of ``losses`` (fastai's ``AvgSmoothLoss``).

    .. math::

        a_k = \beta a_{k-1} + (1 - \beta) \ell_k, \quad a_0 = 0, \qquad
        s_k = a_k / (1 - \beta^k)

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam.lr_finder import smooth
    >>> smooth(np.array([1.0, 1.0, 4.0]), beta=0.5).round(6).tolist()
    [1.0, 1.0, 2.714286]
    """
    out = np.empty(len(losses))
    average = 0.0
    for k, loss in enumerate(losses, 1):
        average = beta * average + (1.0 - beta) * float(loss)
        out[k - 1] = average / (1.0 - beta ** k)
    return out


def valley(lrs: np.ndarray, losses: np.ndarray) -> Point:
    """About two thirds down the longest descending stretch of the curve (fastai's default).

    The longest strictly decreasing subsequence of ``losses``, found as
    fastai does (including where it records the start of the stretch); the
    suggestion lies ``int(len / 3) + int(len / 6)`` points past its start.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam.lr_finder import valley
    >>> lrs = np.logspace(-5, 0, 12)
    >>> losses = np.array([2, 2, 1.9, 1.7, 1.4, 1.0, 0.7, 0.5, 0.45, 0.6, 2, 5.0])
    >>> suggestion, point = valley(lrs, losses)
    >>> bool(np.isclose(suggestion, lrs[3]))
    True
    """
    n = len(losses)
    lengths = np.ones(n, dtype=np.int64)
    max_start = max_end = 0
    for i in range(1, n):
        # fastai's inner loop over j < i, whose running length the update below watches.
        candidates = np.where(losses[:i] > losses[i], lengths[:i] + 1, 1)
        running = np.maximum.accumulate(candidates)
        longer = np.flatnonzero(running > lengths[max_end])
        if longer.size:
            max_end, max_start = i, i - int(running[longer[0]])
        lengths[i] = running[-1]
    sections = (max_end - max_start) / 3
    index = max(max_start + int(sections) + int(sections / 2), 0)
    return float(lrs[index]), (float(lrs[index]), float(losses[index]))


def steep(lrs: np.ndarray, losses: np.ndarray) -> Point:
    """Where the loss falls fastest per decade of learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam.lr_finder import steep
    >>> lrs = np.logspace(-4, 0, 5)
    >>> steep(lrs, np.array([3.0, 2.9, 1.0, 0.8, 4.0]))[0]
    0.001
    """
    slopes = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    lr = float(lrs[int(np.argmin(slopes))])
    return lr, (lr, float(losses[_nearest(lrs, lr)]))


def minimum(lrs: np.ndarray, losses: np.ndarray) -> Point:
    """A tenth of the rate where the smoothed loss is lowest.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam.lr_finder import minimum
    >>> minimum(np.array([1e-3, 1e-2, 1e-1]), np.array([2.0, 1.0, 3.0]))[0]
    0.001
    """
    lr = float(lrs[int(np.argmin(losses))])
    return lr / 10, (lr, float(losses[_nearest(lrs, lr)]))


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> Point:
    """fastai's interval slide rule: walk left from the end until the slope settles.

    Compares the loss's gradient (``np.gradient``, per point) ``lr_diff``
    points apart, from the right end leftwards, while they differ by more
    than ``thresh``; NaN when there are not more than ``lr_diff`` points.

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam.lr_finder import slide
    >>> lrs = np.logspace(-6, 0, 40)
    >>> losses = np.r_[np.full(20, 2.0), np.linspace(2.0, 0.5, 15), [0.6, 1, 2, 4, 8]]
    >>> bool(lrs[0] < slide(lrs, losses)[0] < lrs[-1])
    True
    """
    if len(losses) <= lr_diff:
        return math.nan, (math.nan, math.nan)
    gradient = np.gradient(losses)
    right = -1
    left = right - lr_diff
    local_min_lr = lrs[left]
    while left >= -len(losses) and abs(gradient[right] - gradient[left]) > thresh:
        local_min_lr = lrs[left]
        right -= 1
        left -= 1
    suggestion = float(local_min_lr) * adjust_value
    loss = float(np.interp(np.log10(suggestion), np.log10(lrs), losses))
    return suggestion, (suggestion, loss)


def _nearest(lrs: np.ndarray, lr: float) -> int:
    return int(np.argmin(np.abs(lrs - lr)))


#: The suggestion methods by name, the default first.
SUGGESTIONS: dict[str, Callable[[np.ndarray, np.ndarray], Point]] = {
    "valley": valley, "steep": steep, "minimum": minimum, "slide": slide}
