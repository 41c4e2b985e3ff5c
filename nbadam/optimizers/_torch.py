"""The classes of the rules that ``torch.optim`` has, with torch's signatures and defaults.

Each class only gives its rule (:mod:`nbadam.rules`) a documented signature;
:class:`~nbadam.optimizers._base.Optimizer` does the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import rules
from ._base import LearningRate, Optimizer

__all__ = ["Adam", "AdamW", "NAdam", "Adamax", "RAdam"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), with torch's arguments, defaults and update.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
                    \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1e-3
        Learning rate (>= 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`).
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moments, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator (>= 0).
    weight_decay : float, default 0
        L2 penalty added to the gradient, or decoupled decay with
        ``decoupled_weight_decay=True`` (>= 0).
    amsgrad : bool, default False
        Normalise by the running maximum of the second moment.
    maximize : bool, default False
        Maximise the objective (the gradient is negated).
    decoupled_weight_decay : bool, default False
        Shrink the parameters by ``1 - lr * weight_decay`` instead of adding
        an L2 term (this is AdamW).
    nonfinite : {"propagate", "skip", "raise"}, default "propagate"
        What a gradient holding NaN or infinity does: flow into the state
        (no extra cost, as torch), skip the whole step, or raise
        ``FloatingPointError``; skip and raise leave the state untouched.
    device : {"cpu", "cuda"}, default "cpu"
        Where the update runs.  With ``"cuda"`` the state lives on the current
        GPU and ``params`` is a device array (Numba, CuPy, PyTorch CUDA tensor),
        updated in place, or a NumPy array, copied to the GPU once (read the
        result from :attr:`params` or :meth:`params_host`).  Without a usable
        GPU, ``"cuda"`` raises ``RuntimeError``.
    groups : list of dict, optional
        Parameter groups, as torch's ``param_groups``: each a dict with
        ``"params"`` (a ``slice`` of the flat vector, a ``range`` or a pair
        ``(start, stop)``) and any of the hyperparameters above (``lr``,
        ``betas``, ``eps``, ``weight_decay``, ``maximize``, ...; a schedule
        for ``lr``), the others taken from the optimizer.  Groups are
        disjoint; elements in no group are never changed; ``lr=0.0``
        freezes a group.  Read and change them through :attr:`groups`.
        Default: one group over the whole vector.
    clip_grad_norm : float, optional
        Before each step, scale the gradient by ``min(1, max_norm / (norm +
        1e-6))``, ``norm`` its L2 norm over the whole vector, as
        ``torch.nn.utils.clip_grad_norm_``; the scale is fused into the update
        (the caller's gradient is not modified) and the norm before clipping
        is :attr:`last_grad_norm`.
    ema : float, optional
        Keep an exponential moving average of the parameters with this decay
        in [0, 1), :attr:`ema_params`, updated in the same pass as the step
        (as torch's ``AveragedModel`` with ``get_ema_multi_avg_fn(decay)``).
    state_precision : {"float32", "bfloat16", "8bit"}, default "float32"
        How the moments are stored (float32 parameters only for the compact
        formats).  ``"bfloat16"`` keeps them as bfloat16 codes, stochastically
        rounded after each step: 4 bytes of state per element instead of 8,
        20 bytes moved per step instead of 28.  ``"8bit"`` keeps them as
        8-bit codes with one float32 scale per block of 256 elements: 2.03
        bytes of state per element, 16 moved per step (see
        :attr:`state_precision` and :doc:`/compact_state`).

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([1.0, -2.0])
    >>> opt = nbadam.Adam(x, lr=0.1)
    >>> for _ in range(200):
    ...     _ = opt.step(2.0 * x)          # gradient of |x|^2
    >>> bool(np.abs(x).max() < 1e-2), opt.step_count
    (True, 200)
    """

    rule = rules.get("adam")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, nonfinite: str = "propagate",
                 device: str = "cpu", groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, decoupled_weight_decay=decoupled_weight_decay,
                         maximize=maximize, nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (torch's ``AdamW``; ``weight_decay=1e-2``).

    Same parameters as :class:`Adam`, without ``decoupled_weight_decay``
    (always on).

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.ones(3, dtype=np.float32)
    >>> opt = nbadam.AdamW(x, lr=1e-2)
    >>> _ = opt.step(np.zeros(3, dtype=np.float32))   # decay alone shrinks x
    >>> x
    array([0.9999, 0.9999, 0.9999], dtype=float32)
    """

    rule = rules.get("adamw")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 nonfinite: str = "propagate",
                 device: str = "cpu", groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class NAdam(Optimizer):
    r"""NAdam (Dozat) with torch's momentum-decay schedule :math:`\mu_t`.

    .. math::

        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}), \qquad
        \Pi_t = \Pi_{t-1}\,\mu_t \\
        \theta_t &= \theta_{t-1}
          - \gamma\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
          - \gamma\,\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m_t}{d_t},
          \qquad d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon

    Parameters are those of :class:`Adam` (no ``amsgrad``) plus
    ``momentum_decay`` (:math:`\psi`, default 4e-3); ``lr`` defaults to 2e-3.
    The running product :math:`\Pi_t` is kept in float64 as ``mu_product``
    and saved in checkpoints.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([3.0])
    >>> opt = nbadam.NAdam(x, lr=0.1)
    >>> for _ in range(300):
    ...     _ = opt.step(2.0 * (x - 1.0))
    >>> bool(abs(x[0] - 1.0) < 1e-2)
    True
    """

    rule = rules.get("nadam")

    def __init__(self, params: np.ndarray, lr: LearningRate = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False,
                 nonfinite: str = "propagate",
                 device: str = "cpu", groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay,
                         decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                         nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba): Adam with the infinity norm.

    .. math::

        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

    Parameters are those of :class:`Adam` without ``amsgrad`` and
    ``decoupled_weight_decay`` (weight decay is L2); ``lr`` defaults to 2e-3.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([1.0, -1.0])
    >>> opt = nbadam.Adamax(x, lr=0.5)
    >>> _ = opt.step(np.array([1.0, -1.0]))
    >>> x
    array([ 0.5, -0.5])
    """

    rule = rules.get("adamax")

    def __init__(self, params: np.ndarray, lr: LearningRate = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 nonfinite: str = "propagate",
                 device: str = "cpu", groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         maximize=maximize, nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)


class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al.): plain momentum until the variance is tractable.

    .. math::

        \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}

    When :math:`\rho_t > 5` the step is Adam's with :math:`\epsilon` added to
    :math:`\sqrt{v_t}` and scaled by the rectification
    :math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty /
    ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`;
    before that it is :math:`\theta_t = \theta_{t-1} - \gamma\, m_t/(1-\beta_1^t)`.

    Parameters are those of :class:`Adam` without ``amsgrad``.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([2.0])
    >>> opt = nbadam.RAdam(x, lr=0.1)
    >>> for _ in range(500):
    ...     _ = opt.step(2.0 * x)
    >>> bool(abs(x[0]) < 1e-2)
    True
    """

    rule = rules.get("radam")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, nonfinite: str = "propagate",
                 device: str = "cpu", groups: Any = None, clip_grad_norm: float | None = None,
                 ema: float | None = None, state_precision: str = "float32"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                         nonfinite=nonfinite,
                         device=device, groups=groups, clip_grad_norm=clip_grad_norm, ema=ema,
                         state_precision=state_precision)
