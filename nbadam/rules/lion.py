r"""Lion (Chen et al., 2023), as ``optax.lion``: the sign of an interpolated momentum.

.. math::

    c_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
    \theta_t &= \theta_{t-1} - \gamma\,\bigl(\operatorname{sign}(c_t)
                + \lambda\,\theta_{t-1}\bigr) \\
    m_t &= \beta_2 m_{t-1} + (1-\beta_2) g_t

One state array, the momentum :math:`m` (``exp_avg``).  Weight decay is
decoupled and scaled by the learning rate, added to the sign before the
learning rate multiplies the update (optax's ``add_decayed_weights`` then
``scale_by_learning_rate``).
"""

from __future__ import annotations

from ._pieces import maximize_sign, moving_average, sign
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "weight_decay", "one_minus_beta1", "beta1", "one_minus_beta2",
           "beta2", "neg_lr", "zero", "one")


@piece
def lion_scalars(h, running, lr, t):
    """The per-step scalars of Lion (:data:`SCALARS`)."""
    beta1, beta2 = h.betas
    return (maximize_sign(h), h.weight_decay, 1.0 - beta1, beta1, 1.0 - beta2, beta2, -lr,
            0.0, 1.0)


@piece
def lion_element(i, param, grad, state, c):
    """One element of Lion, in optax's order: the sign, the decay, then ``-lr``.

    The decay is skipped when ``weight_decay`` is 0, as optax does (``0 * inf``
    would turn an overflowed parameter into NaN); the test is hoisted out of
    the loop.
    """
    (exp_avg,) = state
    grad_sign, weight_decay, one_minus_beta1, beta1, one_minus_beta2, beta2, neg_lr, \
        zero, one = c
    p = param[i]
    g = grad[i] * grad_sign
    m = exp_avg[i]
    update = sign(moving_average(m, g, beta1, one_minus_beta1), zero, one)
    exp_avg[i] = moving_average(m, g, beta2, one_minus_beta2)
    if weight_decay:
        update = update + weight_decay * p
    param[i] = p + neg_lr * update


LION_UPDATE = Update("lion", ("exp_avg",), SCALARS, lion_scalars, lion_element,
                     compact=("exp_avg",))

LION = Rule("lion", "Lion: the sign of an interpolated momentum (optax)", "Lion",
            defaults={"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0},
            updates=(LION_UPDATE,),
            docs={"betas": ("(float, float)", [
                      "    beta1 interpolates the momentum and the gradient for the sign,",
                      "    beta2 is the momentum's decay rate; each in [0, 1)."]),
                  "weight_decay": ("float", [
                      "    Decoupled decay scaled by lr: the step is",
                      "    lr * (sign(c) + weight_decay * x), as optax (>= 0)."])})

RULES = (LION,)
