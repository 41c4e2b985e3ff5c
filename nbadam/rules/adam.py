r"""Adam, AMSGrad and AdamW (torch's ``Adam`` and ``AdamW``).

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
    \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
                \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

AMSGrad replaces :math:`v_t` in the denominator by its running maximum
:math:`\bar v_t = \max(\bar v_{t-1}, v_t)` (of the raw :math:`v_t`, as torch);
AdamW is Adam with decoupled weight decay.
"""

from __future__ import annotations

import math

from .. import _validate
from ._pieces import (
    bias_corrections,
    first_moment,
    nan_max,
    prologue,
    prologue_scalars,
    second_moment,
)
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "l2", "decay", "one_minus_beta1", "beta2", "one_minus_beta2",
           "neg_step_size", "bc2_sqrt", "eps")


@piece
def adam_scalars(h, running, lr, t):
    """The per-step scalars of Adam and AMSGrad (:data:`SCALARS`)."""
    beta1, beta2 = h.betas
    sign, l2, decay = prologue_scalars(h, lr)
    bc1, bc2 = bias_corrections(beta1, beta2, t)
    return (sign, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2, -(lr / bc1), math.sqrt(bc2),
            h.eps)


@piece
def adam_element(i, param, grad, state, c):
    """One element of Adam: the moments, then the step."""
    exp_avg, exp_avg_sq = state
    grad_sign, l2, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, \
        bc2_sqrt, eps = c
    p = param[i]
    g = prologue(grad[i], p, grad_sign, l2)
    m = first_moment(exp_avg[i], g, one_minus_beta1)
    v = second_moment(exp_avg_sq[i], g, beta2, one_minus_beta2)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    param[i] = p * decay + (neg_step_size * m) / (math.sqrt(v) / bc2_sqrt + eps)


@piece
def amsgrad_element(i, param, grad, state, c):
    """One element of AMSGrad: Adam with the running maximum of ``v`` in the denominator."""
    exp_avg, exp_avg_sq, max_exp_avg_sq = state
    grad_sign, l2, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, \
        bc2_sqrt, eps = c
    p = param[i]
    g = prologue(grad[i], p, grad_sign, l2)
    m = first_moment(exp_avg[i], g, one_minus_beta1)
    v = second_moment(exp_avg_sq[i], g, beta2, one_minus_beta2)
    v_max = nan_max(max_exp_avg_sq[i], v)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    max_exp_avg_sq[i] = v_max
    param[i] = p * decay + (neg_step_size * m) / (math.sqrt(v_max) / bc2_sqrt + eps)


ADAM_UPDATE = Update("adam", ("exp_avg", "exp_avg_sq"), SCALARS, adam_scalars, adam_element,
                     nonnegative=("exp_avg_sq",), compact=("exp_avg", "exp_avg_sq"),
                     roots=("exp_avg_sq",))
AMSGRAD_UPDATE = Update("adam_amsgrad", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), SCALARS,
                        adam_scalars, amsgrad_element,
                        nonnegative=("exp_avg_sq", "max_exp_avg_sq"),
                        compact=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                        roots=("exp_avg_sq", "max_exp_avg_sq"))


def _choose(hyper):
    return AMSGRAD_UPDATE if hyper["amsgrad"] else ADAM_UPDATE


_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
             "amsgrad": False}

_AMSGRAD = {"checks": {"amsgrad": _validate.flag},
            "docs": {"amsgrad": ("bool", ["    Normalise by the running maximum of the "
                                          "second moment (AMSGrad)."])}}

ADAM = Rule("adam", "Adam", "Adam",
            defaults={**_DEFAULTS, "decoupled_weight_decay": False},
            updates=(ADAM_UPDATE, AMSGRAD_UPDATE), choose=_choose, structural=("amsgrad",),
            **_AMSGRAD)

ADAMW = Rule("adamw", "AdamW: Adam with decoupled weight decay", "AdamW",
             defaults={**_DEFAULTS, "weight_decay": 1e-2},
             updates=(ADAM_UPDATE, AMSGRAD_UPDATE), choose=_choose, structural=("amsgrad",),
             constants={"decoupled_weight_decay": True}, **_AMSGRAD)

AMSGRAD = Rule("amsgrad", "AMSGrad: Adam with the running maximum of v", "Adam",
               defaults={k: v for k, v in ADAM.defaults.items() if k != "amsgrad"},
               updates=(AMSGRAD_UPDATE,), pinned={"amsgrad": True})

RULES = (ADAM, ADAMW, AMSGRAD)
