"""Per-element pieces that the loops add around any rule: the parameter average.

``ema_element`` moves element ``i`` of the running average ``ema`` towards
the just-updated parameter, as ``torch.lerp`` does (``torch.optim.swa_utils``'
EMA is ``torch._foreach_lerp_(ema, params, 1 - decay)``): for a weight below
one half ``ema + w * (p - ema)``, otherwise ``p - (p - ema) * (1 - w)``.  The
kernels call it right after the rule's own element function, so the average
costs one more read and write of ``ema`` and no second read of ``param``.
"""

from __future__ import annotations

from ._build import piece


@piece
def ema_element(i, param, ema, weights):
    # weights = (w, 1 - w, 1 if w < 0.5 else 0), in the arrays' dtype.
    weight, one_minus_weight, low = weights
    start = ema[i]
    end = param[i]
    if low:
        ema[i] = start + weight * (end - start)
    else:
        ema[i] = end - (end - start) * one_minus_weight
