r"""Adan (Xie et al., 2022), as ``optax.adan``: adaptive Nesterov momentum from the
difference of successive gradients.

With :math:`\Delta_t = g_t - g_{t-1}` (0 at the first step) and the betas
as decay rates (optax's ``b1, b2, b3``):

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2) \Delta_t \\
    n_t &= \beta_3 n_{t-1} + (1-\beta_3) \bigl(g_t + (1-\beta_2)\Delta_t\bigr)^2 \\
    u_t &= \frac{\hat m_t + (1-\beta_2)\,\hat v_t}{\sqrt{\hat n_t + \bar\epsilon} + \epsilon}
           \qquad (\hat x_t = x_t / (1-\beta^t)\text{, each with its own beta}) \\
    \theta_t &= \theta_{t-1} - \gamma\,(u_t + \lambda\,\theta_{t-1})

Four state arrays: the three moments and the previous gradient.  Weight
decay is decoupled and scaled by the learning rate, as in optax's chain
(``add_decayed_weights`` then ``scale_by_learning_rate``).
"""

from __future__ import annotations

import math

from .. import _validate
from ._pieces import bias_corrected, bias_correction, maximize_sign, moving_average
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "first", "zero", "one_minus_beta1", "beta1", "one_minus_beta2",
           "beta2", "one_minus_beta3", "beta3", "one", "bc1", "bc2", "bc3", "eps_root", "eps",
           "weight_decay", "neg_lr")


@piece
def adan_scalars(h, running, lr, t):
    """The per-step scalars of Adan (:data:`SCALARS`); ``first`` is 1 at step 1, else 0."""
    beta1, beta2, beta3 = h.betas
    return (maximize_sign(h), 1.0 if t == 1 else 0.0, 0.0, 1.0 - beta1, beta1, 1.0 - beta2,
            beta2, 1.0 - beta3, beta3, 1.0, bias_correction(beta1, t),
            bias_correction(beta2, t), bias_correction(beta3, t), h.eps_root, h.eps,
            h.weight_decay, -lr)


@piece
def adan_element(i, param, grad, state, c):
    """One element of Adan, in optax's order.

    At the first step the difference of gradients is 0 (optax's
    ``where(t == 0, 0, g - g_prev)``); ``first`` is the same for every
    element, so the test is hoisted out of the loop, as is the weight-decay
    test (skipped at 0, as optax does).
    """
    exp_avg, exp_avg_diff, exp_avg_sq, prev_grad = state
    grad_sign, first, zero, one_minus_beta1, beta1, one_minus_beta2, beta2, \
        one_minus_beta3, beta3, one, bc1, bc2, bc3, eps_root, eps, weight_decay, neg_lr = c
    p = param[i]
    g = grad[i] * grad_sign
    previous = prev_grad[i]   # read outside the branch, so that every build vectorises
    diff = zero if first else g - previous
    m = moving_average(exp_avg[i], g, beta1, one_minus_beta1)
    v = moving_average(exp_avg_diff[i], diff, beta2, one_minus_beta2)
    corrected = g + one_minus_beta2 * diff
    n = moving_average(exp_avg_sq[i], corrected * corrected, beta3, one_minus_beta3)
    exp_avg[i] = m
    exp_avg_diff[i] = v
    exp_avg_sq[i] = n
    prev_grad[i] = g
    update = bias_corrected(m, bc1, one) + one_minus_beta2 * bias_corrected(v, bc2, one)
    update = update / (math.sqrt(bias_corrected(n, bc3, one) + eps_root) + eps)
    if weight_decay:
        update = update + weight_decay * p
    param[i] = p + neg_lr * update


ADAN_UPDATE = Update("adan", ("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad"), SCALARS,
                     adan_scalars, adan_element, nonnegative=("exp_avg_sq",),
                     compact=("exp_avg", "exp_avg_diff", "exp_avg_sq"), roots=("exp_avg_sq",))


def _betas3(name, value):
    return _validate.betas3(value)


ADAN = Rule("adan", "Adan: adaptive Nesterov momentum (optax)", "Adan",
            defaults={"lr": 1e-3, "betas": (0.98, 0.92, 0.99), "eps": 1e-8, "eps_root": 1e-8,
                      "weight_decay": 0.0},
            updates=(ADAN_UPDATE,),
            checks={"betas": _betas3, "eps_root": _validate.nonnegative},
            docs={"betas": ("(float, float, float)", [
                      "    Decay rates of the gradient, of the difference of successive",
                      "    gradients and of the squared term, each in [0, 1) (optax's b1,",
                      "    b2, b3)."]),
                  "eps_root": ("float", [
                      "    Added to the bias-corrected squared term inside the square root",
                      "    (>= 0)."]),
                  "weight_decay": ("float", [
                      "    Decoupled decay scaled by lr: the step is",
                      "    lr * (u + weight_decay * x), as optax (>= 0)."])})

RULES = (ADAN,)
