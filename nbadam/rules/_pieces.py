"""Pieces shared by the rules: the common prologue and the Adam moments.

Per-element pieces (``prologue``, ``first_moment``, ...) run once per element
inside every target's loop; per-step pieces (``prologue_scalars``,
``bias_corrections``) run once per step on the host or in the compiled
``minimize`` loop.  The order of operations is that of ``torch.optim``'s
for-loop implementation, so float64 results agree with torch to the last
few ulps: ``addcdiv`` is ``x + (value * a) / b``, ``addcmul`` is
``x + (value * a) * b``, and ``lerp`` is ``m + w * (g - m)``.
"""

from __future__ import annotations

from ._rule import piece


# -- per step ----------------------------------------------------------------------------
@piece
def prologue_scalars(h, lr):
    """``(grad_sign, l2, decay)`` of the common prologue.

    ``grad_sign`` is -1 for ``maximize``; weight decay is either the L2
    coefficient ``l2`` added to the gradient or the decoupled factor
    ``decay = 1 - lr * weight_decay`` that multiplies the parameter (1 when
    off: multiplying by 1 is exact, infinities included).
    """
    sign = -1.0 if h.maximize else 1.0
    if h.decoupled_weight_decay:
        return sign, 0.0, 1.0 - lr * h.weight_decay
    return sign, h.weight_decay, 1.0


@piece
def bias_corrections(beta1, beta2, t):
    """``(1 - beta1**t, 1 - beta2**t)``, with ``t`` a float so that both Python and
    Numba call ``pow`` (Numba multiplies repeatedly for an integer exponent)."""
    tf = float(t)
    return 1.0 - beta1 ** tf, 1.0 - beta2 ** tf


# -- per element -------------------------------------------------------------------------
@piece
def prologue(g, p, grad_sign, l2):
    """The gradient after ``maximize`` and the L2 term.

    The L2 term is skipped when ``l2`` is 0, as torch does, because
    ``0 * inf`` would turn an overflowed parameter's gradient into NaN; the
    test is loop-invariant and LLVM hoists it out of the loop.
    """
    g = g * grad_sign
    if l2:
        g = g + l2 * p
    return g


@piece
def first_moment(m, g, one_minus_beta1):
    """``m`` moved towards ``g``: torch's ``exp_avg.lerp_(grad, 1 - beta1)``."""
    return m + one_minus_beta1 * (g - m)


@piece
def second_moment(v, g, beta2, one_minus_beta2):
    """torch's ``exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)``."""
    return v * beta2 + (one_minus_beta2 * g) * g


@piece
def nan_max(a, b):
    """``max(a, b)`` that propagates a NaN in ``b``, as ``torch.maximum`` does with
    the new value (a NaN already in ``a`` is replaced by ``b``, as before)."""
    if not b <= a:
        return b
    return a



# -- optax's order (the rules that follow optax) ------------------------------------------
# optax writes a moving average as ``(1 - decay) * x + decay * m`` (``update_moment``),
# divides a moment by its bias correction through the reciprocal (XLA turns the division
# of a vector by a scalar into a multiplication by ``1 / scalar``, in the vector's dtype)
# and scales the finished update by ``-lr`` last.
@piece
def maximize_sign(h):
    """The multiplier of the raw gradient: -1 for ``maximize``, else 1.

    It is the scalar named ``grad_sign``, into which gradient clipping folds
    its coefficient, so it must multiply the gradient before anything else.
    """
    return -1.0 if h.maximize else 1.0


@piece
def bias_correction(beta, t):
    """``1 - beta**t``, with ``t`` a float (``pow``, as :func:`bias_corrections`)."""
    return 1.0 - beta ** float(t)


@piece
def moving_average(m, x, decay, one_minus_decay):
    """optax's ``update_moment``: ``(1 - decay) * x + decay * m``."""
    return one_minus_decay * x + decay * m


@piece
def bias_corrected(m, bc, one):
    """``m`` divided by the bias correction ``bc`` as optax computes it: ``m * (1 / bc)``.

    ``one / bc`` does not depend on the element; LLVM hoists it out of the loop.
    """
    return m * (one / bc)


@piece
def sign(x, zero, one):
    """``jnp.sign``: ``one`` with the sign of ``x``, and ``x`` itself when it is 0 or NaN."""
    if x > zero:
        return one
    if x < zero:
        return -one
    return x
