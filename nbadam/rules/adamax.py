r"""Adamax (Kingma & Ba): Adam with the infinity norm.

.. math::

    u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
    \theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

Weight decay is L2 only, as in torch.
"""

from __future__ import annotations

from ._pieces import bias_corrections, first_moment, nan_max, prologue, prologue_scalars
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "l2", "one_minus_beta1", "beta2", "eps", "neg_step_size")


@piece
def adamax_scalars(h, running, lr, t):
    """The per-step scalars of Adamax (:data:`SCALARS`)."""
    beta1, beta2 = h.betas
    sign, l2, _ = prologue_scalars(h, lr)
    bc1, _ = bias_corrections(beta1, beta2, t)
    return sign, l2, 1.0 - beta1, beta2, h.eps, -(lr / bc1)


@piece
def adamax_element(i, param, grad, state, c):
    """One element of Adamax."""
    exp_avg, exp_inf = state
    grad_sign, l2, one_minus_beta1, beta2, eps, neg_step_size = c
    p = param[i]
    g = prologue(grad[i], p, grad_sign, l2)
    m = first_moment(exp_avg[i], g, one_minus_beta1)
    u = nan_max(exp_inf[i] * beta2, abs(g) + eps)
    exp_avg[i] = m
    exp_inf[i] = u
    param[i] = p + (neg_step_size * m) / u


ADAMAX_UPDATE = Update("adamax", ("exp_avg", "exp_inf"), SCALARS, adamax_scalars,
                       adamax_element, nonnegative=("exp_inf",),
                       compact=("exp_avg", "exp_inf"))

ADAMAX = Rule("adamax", "Adamax", "Adamax",
              defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
              updates=(ADAMAX_UPDATE,), constants={"decoupled_weight_decay": False})

RULES = (ADAMAX,)
