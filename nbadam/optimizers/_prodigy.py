"""The class of Prodigy, with ``prodigyopt``'s numbers (see :mod:`nbadam.rules.prodigy`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import rules
from ._base import LearningRate, Optimizer

__all__ = ["Prodigy"]


class Prodigy(Optimizer):
    r"""Prodigy (Mishchenko & Defazio, 2023): Adam with its step size estimated on the fly,
    as ``prodigyopt.Prodigy`` 1.1.2.

    .. math::

        m_t &= \beta_1 m_{t-1} + d_t(1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + d_t^2(1-\beta_2) g_t^2 \\
        s_t &= \beta_3 s_{t-1} + \tfrac{d_t}{d_0}\hat\gamma_t\, g_t, \qquad
        r_t = \beta_3 r_{t-1} + \tfrac{d_t}{d_0}\hat\gamma_t\,\langle g_t, x_0 - x_t\rangle \\
        d_{t+1} &= \min\bigl(\max(d_\text{max}, d_\text{coef}\, r_t/\lVert s_t\rVert_1),\
                   d_t\,\text{growth\_rate}\bigr), \qquad
        x_{t+1} = x_t - \hat\gamma_t\, \frac{m_t}{\sqrt{v_t} + d_{t+1}\epsilon}

    with :math:`\hat\gamma_t = d_t\gamma` (times Adam's bias correction with
    ``use_bias_correction``).  Leave ``lr`` at 1: :math:`d` is the step size,
    estimated from the distance to the starting point.  Each step makes two
    passes over the vector (the sums, then the update).  State ``exp_avg``,
    ``exp_avg_sq``, ``s`` and ``p0`` (a copy of the starting parameters);
    running scalars ``d``, ``d_max``, ``d_numerator`` and ``k``, shared by the
    groups, whose ``lr`` must be the same or 0 (frozen), and which may set
    ``weight_decay``, ``eps`` and ``safeguard_warmup``.

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1.0
        Multiplies the estimated step size (>= 0), or a schedule ``count -> lr``.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the two moments, each in [0, 1); ``betas[0] = 0`` steps
        along the gradient.
    beta3 : float or None, default None
        Decay rate of ``s`` and of the numerator of ``d``, in [0, 1); None for
        ``sqrt(betas[1])``.
    eps : float, default 1e-8
        Added to the square root, times ``d`` (> 0).
    weight_decay : float, default 0
        Weight decay (>= 0): decoupled, times ``d * lr``, or added to the gradient.
    decouple : bool, default True
        Decoupled weight decay; False adds it to the gradient.
    use_bias_correction : bool, default False
        Scale the step by Adam's bias correction.
    safeguard_warmup : bool, default False
        Leave the learning rate out of ``s`` (for warm-up schedules).
    d0 : float, default 1e-6
        The starting estimate of ``d`` (> 0).
    d_coef : float, default 1.0
        Multiplies the estimate of ``d`` (> 0); the preferred way to tune Prodigy.
    growth_rate : float, default inf
        The largest factor ``d`` may grow by in a step (>= 1); 1.02 warms up.
    maximize, nonfinite, device, groups, clip_grad_norm, ema, state_precision
        As for :class:`~nbadam.Adam`.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([3.0, -2.0])
    >>> opt = nbadam.Prodigy(x)
    >>> for _ in range(300):
    ...     _ = opt.step(2.0 * (x - 1.0))
    >>> bool(np.abs(x - 1.0).max() < 1e-2), opt.d > opt.d0
    (True, True)
    """

    rule = rules.get("prodigy")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), beta3: float | None = None,
                 eps: float = 1e-8, weight_decay: float = 0.0, decouple: bool = True,
                 use_bias_correction: bool = False, safeguard_warmup: bool = False,
                 d0: float = 1e-6, d_coef: float = 1.0, growth_rate: float = math.inf, *,
                 maximize: bool = False, nonfinite: str = "propagate", device: str = "cpu",
                 groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, beta3=beta3, eps=eps,
                         weight_decay=weight_decay, decouple=decouple,
                         use_bias_correction=use_bias_correction,
                         safeguard_warmup=safeguard_warmup, d0=d0, d_coef=d_coef,
                         growth_rate=growth_rate, maximize=maximize, nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)
