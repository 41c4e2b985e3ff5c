r"""Schedule-free Adam with decoupled decay (Defazio et al., 2024): ``schedulefree``'s optimizer.

The parameters are the point :math:`y` where gradients are taken; ``z`` is
the base (SGD-like) sequence and the averaged point :math:`x`, where the
objective is reported, is never stored: the package keeps :math:`y` in train
mode and moves it to :math:`x` in eval mode.  With :math:`k = t - 1`:

.. math::

    \gamma_t &= \gamma\,\min\!\bigl(1, t / T_{\text{warmup}}\bigr), \qquad
    \gamma_{\max} = \max(\gamma_{\max}, \gamma_t), \qquad
    w_t = t^{r}\,\gamma_{\max}^{p}, \qquad
    c_t = w_t / \textstyle\sum_{s \le t} w_s \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
    u_t = \frac{g_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon} + \lambda\, y_{t-1} \\
    y_t &= \operatorname{lerp}(y_{t-1}, z_{t-1}, c_t)
           + \gamma_t\bigl(\beta_1 (1 - c_t) - 1\bigr)\, u_t, \qquad
    z_t = z_{t-1} - \gamma_t u_t \\
    x_t &= \operatorname{lerp}(y_t, z_t, 1 - 1/\beta_1)

``lr_max`` (:math:`\gamma_{\max}`, starting at -1) and ``weight_sum``
(:math:`\sum w`, starting at 0) are the rule's running scalars; ``z`` starts
as a copy of the parameters.  The order of operations is the package's torch
code (its default ``foreach`` path, which computes what its for-loop does):
``lerp`` is torch's, ``w < 0.5 ? a + w (b - a) : b - (b - a)(1 - w)`` with
``1 - w`` in the arrays' dtype.
"""

from __future__ import annotations

import math

from .. import _validate
from ._pieces import maximize_sign, second_moment
from ._rule import Rule, Update, piece

SCALARS = ("grad_sign", "beta2", "one_minus_beta2", "bias_correction2", "eps",
           "weight_decay", "ckp1", "one", "half", "y_coef", "lr")
EVAL_SCALARS = ("weight", "one", "half")


@piece
def torch_lerp(start, end, weight, one, half):
    """``torch.lerp(start, end, weight)``: the weight's side of one half picks the formula."""
    if abs(weight) < half:
        return start + weight * (end - start)
    return end - (end - start) * (one - weight)


@piece
def adamw_schedulefree_scalars(h, running, lr, t):
    """The per-step scalars (:data:`SCALARS`); advances ``running``: ``lr_max``, ``weight_sum``.

    Exactly the package's ``step``: the warmup scales the learning rate the
    rule is given (a schedule's value), ``lr_max`` is the largest such rate so
    far, and a step's weight in the average is ``t**r * lr_max**weight_lr_power``.
    """
    beta1, beta2 = h.betas
    tf = float(t)
    sched = tf / h.warmup_steps if tf - 1.0 < h.warmup_steps else 1.0
    bias_correction2 = 1.0 - beta2 ** tf
    lr = lr * sched
    lr_max = running[0] if running[0] > lr else lr
    running[0] = lr_max
    weight = (tf ** h.r) * (lr_max ** h.weight_lr_power)
    weight_sum = running[1] + weight
    running[1] = weight_sum
    ckp1 = weight / weight_sum if weight_sum != 0.0 else 0.0
    return (maximize_sign(h), beta2, 1.0 - beta2, bias_correction2, h.eps, h.weight_decay,
            ckp1, 1.0, 0.5, lr * (beta1 * (1.0 - ckp1) - 1.0), lr)


@piece
def adamw_schedulefree_element(i, param, grad, state, c):
    """One element in the package's order: ``v``, the normalised gradient, ``y``, then ``z``.

    The decay term is skipped when ``weight_decay`` is 0, as the package does.
    """
    z, exp_avg_sq = state
    grad_sign, beta2, one_minus_beta2, bias_correction2, eps, weight_decay, ckp1, one, half, \
        y_coef, lr = c
    y = param[i]
    g = grad[i] * grad_sign
    v = second_moment(exp_avg_sq[i], g, beta2, one_minus_beta2)
    exp_avg_sq[i] = v
    g = g / (math.sqrt(v / bias_correction2) + eps)
    if weight_decay:
        g = g + weight_decay * y
    z_old = z[i]
    param[i] = torch_lerp(y, z_old, ckp1, one, half) + y_coef * g
    z[i] = z_old - lr * g


@piece
def adamw_schedulefree_eval_scalars(h, running, lr, t):
    """The eval-mode weight ``1 - 1/beta1`` (:data:`EVAL_SCALARS`)."""
    beta1, _ = h.betas
    return (1.0 - 1.0 / beta1, 1.0, 0.5)


@piece
def adamw_schedulefree_eval_element(i, param, grad, state, c):
    """``param`` (a copy of ``y``) moved to ``x``: the package's ``eval()``."""
    (z,) = state
    weight, one, half = c
    param[i] = torch_lerp(param[i], z[i], weight, one, half)


EVAL_UPDATE = Update("adamw_schedulefree_eval", ("z",), EVAL_SCALARS,
                     adamw_schedulefree_eval_scalars, adamw_schedulefree_eval_element)

UPDATE = Update("adamw_schedulefree", ("z", "exp_avg_sq"), SCALARS,
                adamw_schedulefree_scalars, adamw_schedulefree_element,
                nonnegative=("exp_avg_sq",), from_params=("z",), evaluation=EVAL_UPDATE,
                compact=("exp_avg_sq",), roots=("exp_avg_sq",))


def _betas(name, value):
    """A pair in [0, 1) whose beta1 is not 0: the averaged point divides by it."""
    beta1, beta2 = _validate.betas(value)
    if beta1 == 0.0:
        raise ValueError("betas[0] must be in (0, 1) for AdamWScheduleFree: the averaged "
                         "point is lerp(y, z, 1 - 1/beta1); got 0.0")
    return beta1, beta2


def _warmup_steps(name, value):
    return _validate.integer(name, value)


def _lr_max(name, value):
    """The largest learning rate so far, or -1 before the first step (the package's start)."""
    value = _validate.real(name, value)
    if value < 0.0 and value != -1.0:
        raise ValueError(f"{name} must be >= 0 (a learning rate) or -1 (before the first "
                         f"step), got {value!r}")
    return value


ADAMW_SCHEDULEFREE = Rule(
    "adamwschedulefree", "Schedule-free Adam, decay at y (Defazio et al., 2024)",
    "AdamWScheduleFree",
    defaults={"lr": 2.5e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
              "warmup_steps": 0, "r": 0.0, "weight_lr_power": 2.0},
    updates=(UPDATE,), running={"lr_max": -1.0, "weight_sum": 0.0},
    checks={"betas": _betas, "warmup_steps": _warmup_steps, "r": _validate.nonnegative,
            "weight_lr_power": _validate.nonnegative, "lr_max": _lr_max,
            "weight_sum": _validate.nonnegative},
    docs={"betas": ("(float, float)", [
              "    beta1 in (0, 1) interpolates y between z and x; beta2 in [0, 1) is",
              "    the decay rate of the second moment."]),
          "weight_decay": ("float", [
              "    Decay lambda added to the normalised gradient at y (>= 0)."]),
          "warmup_steps": ("int", [
              "    Steps of linear warmup of lr (>= 0), on top of any schedule."]),
          "r": ("float", ["    Polynomial weighting t**r of the average (>= 0)."]),
          "weight_lr_power": ("float", [
              "    The average weights each step by lr_max**weight_lr_power (>= 0)."])})

RULES = (ADAMW_SCHEDULEFREE,)
