r"""NAdam (Dozat), with torch's momentum-decay schedule :math:`\mu_t`.

.. math::

    \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}), \qquad
    \Pi_t = \Pi_{t-1}\,\mu_t \\
    \theta_t &= \theta_{t-1}
      - \gamma\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
      - \gamma\,\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m_t}{d_t},
      \qquad d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon

The running product :math:`\Pi_t` is the rule's scalar state ``mu_product``.
"""

from __future__ import annotations

import math

from .. import _validate
from ._pieces import bias_corrections, first_moment, prologue, prologue_scalars, second_moment
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "l2", "decay", "one_minus_beta1", "beta2", "one_minus_beta2", "bc2",
           "eps", "neg_grad_coef", "neg_avg_coef")


@piece
def nadam_scalars(h, running, lr, t):
    """The per-step scalars of NAdam (:data:`SCALARS`); advances ``running[0]``, the
    product of the momentum coefficients."""
    beta1, beta2 = h.betas
    psi = h.momentum_decay
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (float(t) * psi))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** (float(t + 1) * psi))
    mu_product = running[0] * mu
    running[0] = mu_product
    sign, l2, decay = prologue_scalars(h, lr)
    _, bc2 = bias_corrections(beta1, beta2, t)
    return (sign, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2, bc2, h.eps,
            -lr * (1.0 - mu) / (1.0 - mu_product),
            (-lr * mu_next) / (1.0 - mu_product * mu_next))


@piece
def nadam_element(i, param, grad, state, c):
    """One element of NAdam: ``sqrt(v / bc2)``, dividing before the root, as torch."""
    exp_avg, exp_avg_sq = state
    grad_sign, l2, decay, one_minus_beta1, beta2, one_minus_beta2, bc2, eps, \
        neg_grad_coef, neg_avg_coef = c
    p = param[i]
    g = prologue(grad[i], p, grad_sign, l2)
    m = first_moment(exp_avg[i], g, one_minus_beta1)
    v = second_moment(exp_avg_sq[i], g, beta2, one_minus_beta2)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    denom = math.sqrt(v / bc2) + eps
    p = p * decay + (neg_grad_coef * g) / denom
    param[i] = p + (neg_avg_coef * m) / denom


NADAM_UPDATE = Update("nadam", ("exp_avg", "exp_avg_sq"), SCALARS, nadam_scalars, nadam_element,
                      nonnegative=("exp_avg_sq",), compact=("exp_avg", "exp_avg_sq"),
                      roots=("exp_avg_sq",))


def _mu_product(name, value):
    """A product of momentum coefficients, each in [0, 1): a number in [0, 1]."""
    value = _validate.real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (a product of momentum coefficients), "
                         f"got {value!r}")
    return value


NADAM = Rule("nadam", "NAdam", "NAdam",
             defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                       "momentum_decay": 4e-3, "decoupled_weight_decay": False},
             updates=(NADAM_UPDATE,), running={"mu_product": 1.0},
             checks={"momentum_decay": _validate.nonnegative, "mu_product": _mu_product},
             docs={"momentum_decay": ("float", ["    The momentum decay psi of mu_t (>= 0)."])})

RULES = (NADAM,)
