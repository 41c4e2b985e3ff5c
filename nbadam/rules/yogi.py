r"""Yogi (Zaheer et al., 2018), as ``optax.yogi``: an additive second moment that grows
or shrinks by :math:`(1-\beta_2) g^2` each step.

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
    v_t &= v_{t-1} - (1-\beta_2)\,\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2 \\
    \theta_t &= \theta_{t-1} - \gamma\,
                \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

Both moments start at ``initial_accumulator`` (optax's
``initial_accumulator_value``), not at zero.
"""

from __future__ import annotations

import math

from .. import _validate
from ._pieces import bias_corrected, bias_correction, maximize_sign, moving_average, sign
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "one_minus_beta1", "beta1", "one_minus_beta2", "zero", "one", "bc1",
           "bc2", "eps", "neg_lr")


@piece
def yogi_scalars(h, running, lr, t):
    """The per-step scalars of Yogi (:data:`SCALARS`)."""
    beta1, beta2 = h.betas
    return (maximize_sign(h), 1.0 - beta1, beta1, 1.0 - beta2, 0.0, 1.0,
            bias_correction(beta1, t), bias_correction(beta2, t), h.eps, -lr)


@piece
def yogi_element(i, param, grad, state, c):
    """One element of Yogi, in optax's order (``((1 - beta2) * sign) * g**2``)."""
    exp_avg, exp_avg_sq = state
    grad_sign, one_minus_beta1, beta1, one_minus_beta2, zero, one, bc1, bc2, eps, neg_lr = c
    g = grad[i] * grad_sign
    m = moving_average(exp_avg[i], g, beta1, one_minus_beta1)
    v = exp_avg_sq[i]
    g2 = g * g
    v = v - (one_minus_beta2 * sign(v - g2, zero, one)) * g2
    exp_avg[i] = m
    exp_avg_sq[i] = v
    step = bias_corrected(m, bc1, one) / (math.sqrt(bias_corrected(v, bc2, one)) + eps)
    param[i] = param[i] + neg_lr * step


def yogi_initial(h):
    """Both moments start at ``initial_accumulator``, as optax's ``full_like``."""
    return (h.initial_accumulator, h.initial_accumulator)


YOGI_UPDATE = Update("yogi", ("exp_avg", "exp_avg_sq"), SCALARS, yogi_scalars, yogi_element,
                     nonnegative=("exp_avg_sq",), initial=yogi_initial,
                     compact=("exp_avg", "exp_avg_sq"), roots=("exp_avg_sq",))

YOGI = Rule("yogi", "Yogi: an additive second moment (optax)", "Yogi",
            defaults={"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-3,
                      "initial_accumulator": 1e-6},
            updates=(YOGI_UPDATE,),
            checks={"initial_accumulator": _validate.nonnegative},
            docs={"initial_accumulator": ("float", [
                "    The value both moments start at (>= 0); it takes effect when the",
                "    optimizer is built."])})

RULES = (YOGI,)
