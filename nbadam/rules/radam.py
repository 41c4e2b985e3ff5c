r"""Rectified Adam (Liu et al.): plain momentum until the variance is tractable.

.. math::

    \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}

When :math:`\rho_t > 5` the step is Adam's with :math:`\epsilon` added to
:math:`\sqrt{v_t}` and scaled by the rectification
:math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty /
((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`;
before that it is :math:`\theta_t = \theta_{t-1} - \gamma\, m_t/(1-\beta_1^t)`.
"""

from __future__ import annotations

import math

from ._pieces import bias_corrections, first_moment, prologue, prologue_scalars, second_moment
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "l2", "decay", "one_minus_beta1", "beta2", "one_minus_beta2", "bc1",
           "lr", "bc2_sqrt", "eps", "rect", "rectified")


@piece
def radam_scalars(h, running, lr, t):
    """The per-step scalars of RAdam (:data:`SCALARS`); ``rectified`` is 1 or 0."""
    beta1, beta2 = h.betas
    bc1, bc2 = bias_corrections(beta1, beta2, t)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - float(2 * t) * (beta2 ** float(t)) / bc2
    rectified = rho_t > 5.0
    rect = 1.0
    if rectified:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                         / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
    sign, l2, decay = prologue_scalars(h, lr)
    return (sign, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2, bc1, lr, math.sqrt(bc2), h.eps,
            rect, 1.0 if rectified else 0.0)


@piece
def radam_element(i, param, grad, state, c):
    """One element of RAdam; ``rectified`` is the same for every element, so the test
    is hoisted out of the loop."""
    exp_avg, exp_avg_sq = state
    grad_sign, l2, decay, one_minus_beta1, beta2, one_minus_beta2, bc1, lr, bc2_sqrt, eps, \
        rect, rectified = c
    p = param[i]
    g = prologue(grad[i], p, grad_sign, l2)
    m = first_moment(exp_avg[i], g, one_minus_beta1)
    v = second_moment(exp_avg_sq[i], g, beta2, one_minus_beta2)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    update = (m / bc1) * lr
    if rectified:
        update = update * (bc2_sqrt / (math.sqrt(v) + eps)) * rect
    param[i] = p * decay - update


RADAM_UPDATE = Update("radam", ("exp_avg", "exp_avg_sq"), SCALARS, radam_scalars, radam_element,
                      nonnegative=("exp_avg_sq",), compact=("exp_avg", "exp_avg_sq"),
                      roots=("exp_avg_sq",))

RADAM = Rule("radam", "RAdam", "RAdam",
             defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                       "decoupled_weight_decay": False},
             updates=(RADAM_UPDATE,))

RULES = (RADAM,)
