r"""Prodigy (Mishchenko & Defazio, 2023), as ``prodigyopt.Prodigy`` 1.1.2: Adam whose
step size :math:`d` is estimated from the distance travelled.

With :math:`\gamma` the learning rate, :math:`\hat\gamma_t = d_t\gamma\,b_t` (:math:`b_t`
Adam's bias correction, or 1) and :math:`x_0` the starting point:

.. math::

    m_t &= \beta_1 m_{t-1} + d_t(1-\beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + d_t^2(1-\beta_2) g_t^2 \\
    s_t &= \beta_3 s_{t-1} + \tfrac{d_t}{d_0}\hat\gamma_t\, g_t, \qquad
    r_t = \beta_3 r_{t-1} + \tfrac{d_t}{d_0}\hat\gamma_t\,\langle g_t, x_0 - x_t\rangle \\
    \hat d_t &= d_\text{coef}\, r_t / \lVert s_t\rVert_1, \qquad
    d_{t+1} = \min\bigl(\max(d_\text{max}, \hat d_t),\ d_t\,\text{growth\_rate}\bigr) \\
    x_{t+1} &= x_t - \hat\gamma_t\, \frac{m_t}{\sqrt{v_t} + d_{t+1}\epsilon}

The two sums over the whole vector make it a rule with a reduction: the first
pass (``prodigy_reduce``) updates ``m``, ``v`` and ``s`` and returns the
terms of :math:`\langle g, x_0 - x\rangle` and :math:`\lVert s\rVert_1`; the
scalar function ``prodigy_finish`` turns the sums into the new :math:`d`;
the second pass (``prodigy_element``) takes the step.  The running scalars
``d``, ``d_max``, ``d_numerator`` (:math:`r`) and ``k`` (the steps taken,
for the bias correction) are shared by every group, as prodigyopt shares them
over its parameter groups.  The operations follow prodigyopt's order; the
sums are accumulated in float64.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate
from ._pieces import maximize_sign, prologue
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "l2", "active", "beta1", "alpha1", "beta2", "alpha2", "beta3",
           "alpha_s")
SUMS = ("numerator", "s_abs")
FINISH = ("apply", "grad_sign", "l2", "momentum", "decoupled", "neg_decay_dlr", "neg_step",
          "d_eps")
#: The running scalars, in the order of ``running``.
D, D_MAX, D_NUMERATOR, K = range(4)


@piece
def prodigy_beta3(h):
    """``beta3``, or ``sqrt(beta2)`` when it is not set (NaN in the hyperparameters)."""
    if h.beta3 == h.beta3:
        return h.beta3
    return math.sqrt(h.betas[1])


@piece
def prodigy_dlr(h, running, lr):
    """``d * lr * bias_correction``: the step size of the step."""
    beta1, beta2 = h.betas
    if h.use_bias_correction:
        k1 = running[3] + 1.0
        bias_correction = math.sqrt(1.0 - beta2 ** k1) / (1.0 - beta1 ** k1)
    else:
        bias_correction = 1.0
    return running[0] * lr * bias_correction


@piece
def prodigy_l2(h):
    """The coupled weight decay added to the gradient (0 when decoupled)."""
    if h.decouple:
        return 0.0
    return h.weight_decay


@piece
def prodigy_scalars(h, running, lr, t):
    """The scalars of the reduction pass (:data:`SCALARS`); ``active`` is 0 when ``lr`` is 0
    (prodigyopt then updates nothing)."""
    beta1, beta2 = h.betas
    d = running[0]
    dlr = prodigy_dlr(h, running, lr)
    d_ratio = d / h.d0
    alpha_s = d_ratio * d if h.safeguard_warmup else d_ratio * dlr
    return (maximize_sign(h), prodigy_l2(h), 1.0 if lr > 0.0 else 0.0, beta1,
            d * (1.0 - beta1), beta2, d * d * (1.0 - beta2), prodigy_beta3(h), alpha_s)


@piece
def prodigy_reduce(i, param, grad, state, c):
    """The moments and ``s`` of element ``i``; its terms of ``<g, p0 - p>`` and ``|s|``.

    Every array is read before, and written after, the tests of scalars (``active``
    picks the value stored, the old one when 0): an array whose last use fell in one
    branch would keep Numba's reference counting in the loop, which then neither
    inlines this function nor vectorises (``tests/test_prodigy.py`` checks the IR).
    """
    exp_avg, exp_avg_sq, s, p0 = state
    grad_sign, l2, active, beta1, alpha1, beta2, alpha2, beta3, alpha_s = c
    p = param[i]
    g = prologue(grad[i], p, grad_sign, l2)
    distance = p0[i] - p
    m_old = exp_avg[i]
    v_old = exp_avg_sq[i]
    s_old = s[i]
    m = m_old * beta1 + alpha1 * g
    v = v_old * beta2 + (alpha2 * g) * g
    s_new = s_old * beta3 + alpha_s * g
    exp_avg[i] = m if active else m_old
    exp_avg_sq[i] = v if active else v_old
    s[i] = s_new if active else s_old
    numerator = np.float64(g) * np.float64(distance) if active else 0.0
    s_abs = abs(np.float64(s_new)) if active else 0.0
    return (numerator, s_abs)


@piece
def prodigy_finish(h, running, lr, t, sums):
    """The new ``d`` from the sums, and the scalars of the update pass (:data:`FINISH`).

    With no gradient yet (``sums[1] == 0``) prodigyopt returns before the
    update: ``apply`` is 0 and the running scalars are left as they are.
    """
    beta1 = h.betas[0]
    sign = maximize_sign(h)
    l2 = prodigy_l2(h)
    numerator_sum, denominator = sums[0], sums[1]
    if denominator == 0.0:
        return (0.0, sign, l2, 0.0, 0.0, 0.0, 0.0, 0.0)
    d, d_max = running[0], running[1]
    dlr = prodigy_dlr(h, running, lr)
    numerator = running[2] * prodigy_beta3(h) + d / h.d0 * dlr * numerator_sum
    d_hat = h.d_coef * numerator / denominator
    # Python's max(a, b) and min(a, b), as prodigyopt (a NaN d_hat changes nothing).
    if d == h.d0 and d_hat > d:
        d = d_hat
    if d_hat > d_max:
        d_max = d_hat
    grown = d * h.growth_rate
    d = grown if grown < d_max else d_max
    running[0] = d
    running[1] = d_max
    running[2] = numerator
    running[3] = running[3] + 1.0
    decoupled = 1.0 if h.weight_decay != 0.0 and h.decouple else 0.0
    neg_step = -dlr if beta1 > 0.0 else -dlr * d
    return (1.0, sign, l2, 1.0 if beta1 > 0.0 else 0.0, decoupled, -h.weight_decay * dlr,
            neg_step, d * h.eps)


@piece
def prodigy_element(i, param, grad, state, c):
    """The step of element ``i`` with the new ``d``, in prodigyopt's order.

    As in :func:`prodigy_reduce`, the arrays are read before the tests of scalars and
    written after them (``apply`` 0 stores the parameter unchanged).
    """
    exp_avg, exp_avg_sq, s, p0 = state
    apply, grad_sign, l2, momentum, decoupled, neg_decay_dlr, neg_step, d_eps = c
    p = param[i]
    m = exp_avg[i]
    v = exp_avg_sq[i]
    # beta1 = 0: prodigyopt keeps no first moment and steps along the gradient
    g = prologue(grad[i], p, grad_sign, l2)
    u = m if momentum else g
    denom = math.sqrt(v) + d_eps
    q = p + neg_decay_dlr * p if decoupled else p
    new = q + (neg_step * u) / denom
    param[i] = new if apply else p


PRODIGY_UPDATE = Update("prodigy", ("exp_avg", "exp_avg_sq", "s", "p0"), SCALARS,
                        prodigy_scalars, prodigy_element, nonnegative=("exp_avg_sq",),
                        from_params=("p0",), reduce=prodigy_reduce, sum_names=SUMS,
                        finish=prodigy_finish, finish_names=FINISH)


def _beta3(name, value):
    if value is None:
        return None
    return _validate.unit_interval(name, value)


def _growth_rate(name, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    value = _validate.real(name, value)
    if value < 1.0:
        raise ValueError(f"{name} must be >= 1 (the largest factor d may grow by in a step; "
                         f"inf for no limit), got {value!r}")
    return value


def _positive_running(name, value):
    return _validate.positive(name, value)


def _step_counter(name, value):
    value = _validate.nonnegative(name, value)
    if value != int(value):
        raise ValueError(f"{name} counts steps and must be a whole number, got {value!r}")
    return value


PRODIGY = Rule(
    "prodigy", "Prodigy: Adam with a step size estimated on the fly (prodigyopt)", "Prodigy",
    defaults={"lr": 1.0, "betas": (0.9, 0.999), "beta3": None, "eps": 1e-8,
              "weight_decay": 0.0, "decouple": True, "use_bias_correction": False,
              "safeguard_warmup": False, "d0": 1e-6, "d_coef": 1.0, "growth_rate": math.inf},
    updates=(PRODIGY_UPDATE,),
    shared=("betas", "beta3", "decouple", "use_bias_correction", "d0", "d_coef",
            "growth_rate"),
    running={"d": "d0", "d_max": "d0", "d_numerator": 0.0, "k": 0.0},
    checks={"beta3": _beta3, "eps": _validate.positive, "decouple": _validate.flag,
            "use_bias_correction": _validate.flag, "safeguard_warmup": _validate.flag,
            "d0": _validate.positive, "d_coef": _validate.positive,
            "growth_rate": _growth_rate, "d": _positive_running, "d_max": _positive_running,
            "d_numerator": _validate.real, "k": _step_counter},
    docs={
        "beta3": ("float or None", ["    Decay of s and of the numerator of d; None for "
                                    "sqrt(betas[1])."]),
        "decouple": ("bool", ["    Decoupled weight decay; False adds it to the "
                              "gradient."]),
        "use_bias_correction": ("bool", ["    Scale the step by Adam's bias correction."]),
        "safeguard_warmup": ("bool", ["    Leave the learning rate out of s (for warm-up "
                                      "schedules)."]),
        "d0": ("float", ["    The starting estimate of d (> 0)."]),
        "d_coef": ("float", ["    Multiplies the estimate of d (> 0)."]),
        "growth_rate": ("float", ["    The largest factor d grows by in a step (>= 1, inf "
                                  "for no limit)."]),
    })

RULES = (PRODIGY,)
