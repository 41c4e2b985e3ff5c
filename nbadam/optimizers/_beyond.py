"""The classes of the rules beyond ``torch.optim``, with optax's and schedulefree's numbers.

AdamWScheduleFree computes what ``schedulefree.AdamWScheduleFree`` computes, in
its order of operations.  Lion, AdaBelief, Adan and Yogi compute what optax's optimizers of the same
names compute, in optax's order of operations (float64 agrees to the last
ulps); their arguments are named in torch's style (``lr``, ``betas``,
``eps``, ``weight_decay``).  Each class only gives its rule
(:mod:`nbadam.rules`) a documented signature;
:class:`~nbadam.optimizers._base.Optimizer` does the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import rules
from ._base import LearningRate, Optimizer

__all__ = ["Lion", "AdaBelief", "Adan", "Yogi", "AdamWScheduleFree"]


class Lion(Optimizer):
    r"""Lion (Chen et al., 2023): the sign of an interpolated momentum, as ``optax.lion``.

    .. math::

        c_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        \theta_t &= \theta_{t-1} - \gamma\,\bigl(\operatorname{sign}(c_t)
                    + \lambda\,\theta_{t-1}\bigr) \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2) g_t

    Every element moves by :math:`\pm\gamma` (plus the decay), so Lion wants
    a learning rate 3 to 10 times smaller than AdamW's and a weight decay
    as many times larger.  One state array, ``exp_avg``.

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1e-4
        Learning rate (>= 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`).
    betas : tuple of float, default (0.9, 0.99)
        optax's ``b1`` (interpolation of momentum and gradient for the sign)
        and ``b2`` (the momentum's decay rate), each in [0, 1).
    weight_decay : float, default 0
        Decoupled decay :math:`\lambda`, scaled by the learning rate, as
        optax's (whose default is 1e-3) (>= 0).
    maximize, nonfinite, device, groups, clip_grad_norm, ema, state_precision
        As for :class:`~nbadam.Adam`: maximise the objective (the gradient
        is negated), what a non-finite gradient does, where the update runs,
        parameter groups, gradient clipping fused into the update, an
        average of the parameters, and the storage of the moments.
    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([1.0, -2.0])
    >>> opt = nbadam.Lion(x, lr=0.1)
    >>> _ = opt.step(np.array([3.0, -0.5]))   # each element moves by lr
    >>> x
    array([ 0.9, -1.9])
    """

    rule = rules.get("lion")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, *,
                 maximize: bool = False, nonfinite: str = "propagate", device: str = "cpu",
                 groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay,
                         maximize=maximize, nonfinite=nonfinite, device=device, groups=groups,
                         clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class AdaBelief(Optimizer):
    r"""AdaBelief (Zhuang et al., 2020): Adam normalised by the belief in the gradient,
    as ``optax.adabelief``.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2) (g_t - m_t)^2 + \bar\epsilon \\
        \theta_t &= \theta_{t-1} - \gamma\,
                    \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    The denominator is the spread of the gradient around its prediction
    :math:`m_t`, not its magnitude: steps are large where the gradient is
    consistent and small where it is noisy.  State ``exp_avg`` and
    ``exp_avg_var``.

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1e-3
        Learning rate (>= 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`).
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first moment and of the variance, each in [0, 1).
    eps : float, default 1e-16
        Added to the square root (>= 0).  The paper uses 1e-8.
    eps_root : float, default 1e-16
        Added to the variance at every step, inside the square root, and
        kept in the state (>= 0).  The paper uses 0.
    maximize, nonfinite, device, groups, clip_grad_norm, ema, state_precision
        As for :class:`~nbadam.Adam`: maximise the objective (the gradient
        is negated), what a non-finite gradient does, where the update runs,
        parameter groups, gradient clipping fused into the update, an
        average of the parameters, and the storage of the moments.
    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([3.0])
    >>> opt = nbadam.AdaBelief(x, lr=0.1)
    >>> for _ in range(300):
    ...     _ = opt.step(2.0 * (x - 1.0))
    >>> bool(abs(x[0] - 1.0) < 1e-2)
    True
    """

    rule = rules.get("adabelief")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16,
                 eps_root: float = 1e-16, *, maximize: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu", groups: Any = None,
                 clip_grad_norm: float | None = None, ema: float | None = None,
                 state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, eps_root=eps_root,
                         maximize=maximize, nonfinite=nonfinite, device=device, groups=groups,
                         clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class Adan(Optimizer):
    r"""Adan (Xie et al., 2022): adaptive Nesterov momentum, as ``optax.adan``.

    With :math:`\Delta_t = g_t - g_{t-1}` (0 at the first step):

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3) \bigl(g_t + (1-\beta_2)\Delta_t\bigr)^2 \\
        \theta_t &= \theta_{t-1} - \gamma\,\Bigl(
            \frac{\hat m_t + (1-\beta_2)\,\hat v_t}{\sqrt{\hat n_t + \bar\epsilon} + \epsilon}
            + \lambda\,\theta_{t-1}\Bigr)

    where a hat is the moment divided by :math:`1-\beta^t` with its own
    beta.  The difference of successive gradients extrapolates the gradient
    as Nesterov momentum does, without evaluating it elsewhere.  Four state
    arrays: ``exp_avg``, ``exp_avg_diff``, ``exp_avg_sq`` and ``prev_grad``.

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1e-3
        Learning rate (>= 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`).
    betas : tuple of float, default (0.98, 0.92, 0.99)
        Decay rates (optax's ``b1, b2, b3``) of the gradient, of the
        difference of gradients and of the squared term, each in [0, 1).
    eps : float, default 1e-8
        Added to the square root (>= 0).
    eps_root : float, default 1e-8
        Added to the bias-corrected squared term inside the square root (>= 0).
    weight_decay : float, default 0
        Decoupled decay :math:`\lambda`, scaled by the learning rate, as optax (>= 0).
    maximize, nonfinite, device, groups, clip_grad_norm, ema, state_precision
        As for :class:`~nbadam.Adam`: maximise the objective (the gradient
        is negated), what a non-finite gradient does, where the update runs,
        parameter groups, gradient clipping fused into the update, an
        average of the parameters, and the storage of the moments.
    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([3.0, -1.0])
    >>> opt = nbadam.Adan(x, lr=0.05)
    >>> for _ in range(1000):
    ...     _ = opt.step(2.0 * x)
    >>> bool(np.abs(x).max() < 1e-2), sorted(opt.state)
    (True, ['exp_avg', 'exp_avg_diff', 'exp_avg_sq', 'prev_grad'])
    """

    rule = rules.get("adan")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8,
                 eps_root: float = 1e-8, weight_decay: float = 0.0, *,
                 maximize: bool = False, nonfinite: str = "propagate", device: str = "cpu",
                 groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, eps_root=eps_root,
                         weight_decay=weight_decay, maximize=maximize, nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class Yogi(Optimizer):
    r"""Yogi (Zaheer et al., 2018): an additive second moment, as ``optax.yogi``.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        v_t &= v_{t-1} - (1-\beta_2)\,\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2 \\
        \theta_t &= \theta_{t-1} - \gamma\,
                    \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    :math:`v` moves towards :math:`g^2` by at most :math:`(1-\beta_2) g^2`
    a step, so a burst of small gradients cannot shrink it (and blow up the
    step) as fast as Adam's moving average.  State ``exp_avg`` and
    ``exp_avg_sq``, both starting at ``initial_accumulator``.

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1e-2
        Learning rate (>= 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`).
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moments, each in [0, 1).
    eps : float, default 1e-3
        Added to the square root (>= 0).
    initial_accumulator : float, default 1e-6
        The value both moments start at (optax's ``initial_accumulator_value``;
        >= 0).  It takes effect when the optimizer is built.
    maximize, nonfinite, device, groups, clip_grad_norm, ema, state_precision
        As for :class:`~nbadam.Adam`: maximise the objective (the gradient
        is negated), what a non-finite gradient does, where the update runs,
        parameter groups, gradient clipping fused into the update, an
        average of the parameters, and the storage of the moments.
    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.zeros(2, dtype=np.float32)
    >>> opt = nbadam.Yogi(x)
    >>> opt.exp_avg, opt.exp_avg_sq                  # both start at 1e-6
    (array([1.e-06, 1.e-06], dtype=float32), array([1.e-06, 1.e-06], dtype=float32))
    """

    rule = rules.get("yogi")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-2,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-3,
                 initial_accumulator: float = 1e-6, *, maximize: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu", groups: Any = None,
                 clip_grad_norm: float | None = None, ema: float | None = None,
                 state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps,
                         initial_accumulator=initial_accumulator, maximize=maximize,
                         nonfinite=nonfinite, device=device, groups=groups,
                         clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)




class AdamWScheduleFree(Optimizer):
    r"""Schedule-free AdamW (Defazio et al., 2024), as ``schedulefree.AdamWScheduleFree``.

    No learning-rate schedule is needed: the iterate is an average whose
    weights grow with the learning rate.  With :math:`c_t = w_t / \sum_{s\le t} w_s`,
    :math:`w_t = t^r \gamma_{\max}^p` and the normalised gradient
    :math:`u_t = g_t / (\sqrt{v_t/(1-\beta_2^t)} + \epsilon) + \lambda y_{t-1}`:

    .. math::

        y_t &= \operatorname{lerp}(y_{t-1}, z_{t-1}, c_t)
               + \gamma_t\bigl(\beta_1(1 - c_t) - 1\bigr) u_t, \qquad
        z_t = z_{t-1} - \gamma_t u_t \\
        x_t &= \operatorname{lerp}(y_t, z_t, 1 - 1/\beta_1)

    :attr:`params` hold :math:`y`, where gradients are taken (the package's
    train mode); :meth:`eval_params` returns a new array with the average
    :math:`x`, where the loss is reported (its eval mode), without disturbing
    training.  State ``z`` (starting as a copy of the parameters) and
    ``exp_avg_sq``; running scalars ``lr_max`` and ``weight_sum``.

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 2.5e-3
        Learning rate (>= 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`),
        multiplied by the warmup.
    betas : tuple of float, default (0.9, 0.999)
        ``beta1`` in (0, 1), the interpolation of ``y`` between ``z`` and ``x``,
        and ``beta2`` in [0, 1), the decay rate of the second moment.
    eps : float, default 1e-8
        Added to the square root (>= 0).
    weight_decay : float, default 0
        :math:`\lambda`, added to the normalised gradient at ``y`` (>= 0).
    warmup_steps : int, default 0
        Linear warmup: step ``t`` uses ``lr * min(1, t / warmup_steps)``.
    r : float, default 0
        Polynomial weighting ``t**r`` of the average (>= 0).
    weight_lr_power : float, default 2
        The average weights each step by ``lr_max**weight_lr_power`` (>= 0).
    maximize, nonfinite, device, groups, clip_grad_norm, ema, state_precision
        As for :class:`~nbadam.Adam`: maximise the objective (the gradient
        is negated), what a non-finite gradient does, where the update runs,
        parameter groups, gradient clipping fused into the update, and an
        average of the parameters (of ``y``).
    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> y = np.array([3.0, -1.0])
    >>> opt = nbadam.AdamWScheduleFree(y, lr=0.1)
    >>> for _ in range(500):
    ...     _ = opt.step(2.0 * y)
    >>> x = opt.eval_params()          # the averaged point; y keeps training
    >>> bool(np.abs(x).max() < 1e-2), sorted(opt.state)
    (True, ['exp_avg_sq', 'z'])
    """

    rule = rules.get("adamwschedulefree")

    def __init__(self, params: np.ndarray, lr: LearningRate = 2.5e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0, r: float = 0.0,
                 weight_lr_power: float = 2.0, *, maximize: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu", groups: Any = None,
                 clip_grad_norm: float | None = None, ema: float | None = None,
                 state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                         maximize=maximize, nonfinite=nonfinite, device=device, groups=groups,
                         clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)
