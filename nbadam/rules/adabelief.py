r"""AdaBelief (Zhuang et al., 2020), as ``optax.adabelief``: Adam with the variance of the
prediction error in place of the second moment.

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
    s_t &= \beta_2 s_{t-1} + (1-\beta_2) (g_t - m_t)^2 + \bar\epsilon \\
    \theta_t &= \theta_{t-1} - \gamma\,
                \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

:math:`\bar\epsilon` (``eps_root``) is added to the stored :math:`s_t`
itself, so it accumulates in the state, as in optax.
"""

from __future__ import annotations

import math

from .. import _validate
from ._pieces import bias_corrected, bias_correction, maximize_sign, moving_average
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "one_minus_beta1", "beta1", "one_minus_beta2", "beta2", "eps_root",
           "one", "bc1", "bc2", "eps", "neg_lr")


@piece
def adabelief_scalars(h, running, lr, t):
    """The per-step scalars of AdaBelief (:data:`SCALARS`)."""
    beta1, beta2 = h.betas
    return (maximize_sign(h), 1.0 - beta1, beta1, 1.0 - beta2, beta2, h.eps_root, 1.0,
            bias_correction(beta1, t), bias_correction(beta2, t), h.eps, -lr)


@piece
def adabelief_element(i, param, grad, state, c):
    """One element of AdaBelief, in optax's order."""
    exp_avg, exp_avg_var = state
    grad_sign, one_minus_beta1, beta1, one_minus_beta2, beta2, eps_root, one, bc1, bc2, \
        eps, neg_lr = c
    g = grad[i] * grad_sign
    m = moving_average(exp_avg[i], g, beta1, one_minus_beta1)
    error = g - m
    s = moving_average(exp_avg_var[i], error * error, beta2, one_minus_beta2) + eps_root
    exp_avg[i] = m
    exp_avg_var[i] = s
    step = bias_corrected(m, bc1, one) / (math.sqrt(bias_corrected(s, bc2, one)) + eps)
    param[i] = param[i] + neg_lr * step


ADABELIEF_UPDATE = Update("adabelief", ("exp_avg", "exp_avg_var"), SCALARS,
                          adabelief_scalars, adabelief_element, nonnegative=("exp_avg_var",),
                          compact=("exp_avg", "exp_avg_var"), roots=("exp_avg_var",))

ADABELIEF = Rule("adabelief", "AdaBelief: Adam on the belief in the gradient (optax)",
                 "AdaBelief",
                 defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-16, "eps_root": 1e-16},
                 updates=(ADABELIEF_UPDATE,),
                 checks={"eps_root": _validate.nonnegative},
                 docs={"eps_root": ("float", [
                     "    Added to the variance of the prediction error at every step,",
                     "    inside the square root (>= 0)."])})

RULES = (ADABELIEF,)
