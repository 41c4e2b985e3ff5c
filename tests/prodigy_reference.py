"""A NumPy Prodigy over one flat vector, in prodigyopt 1.1.2's order of operations.

Written from ``prodigyopt/prodigy.py`` (one tensor, ``slice_p = 1``), with the
sums accumulated in float64 (``math.fsum``, correctly rounded) and no fused
multiply-adds.  ``maximize`` negates the gradient first, as nbadam's other rules.
"""

import math

import numpy as np


class ProdigyReference:
    def __init__(self, params, *, lr=1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8,
                 weight_decay=0.0, decouple=True, use_bias_correction=False,
                 safeguard_warmup=False, d0=1e-6, d_coef=1.0, growth_rate=math.inf,
                 maximize=False):
        self.params = np.array(params, copy=True)
        self.dtype = self.params.dtype
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.beta3 = math.sqrt(betas[1]) if beta3 is None else beta3
        self.decouple, self.bias = decouple, use_bias_correction
        self.safeguard, self.d0, self.d_coef, self.growth = (safeguard_warmup, d0, d_coef,
                                                              growth_rate)
        self.sign = -1.0 if maximize else 1.0
        self.d = self.d_max = d0
        self.d_numerator, self.k = 0.0, 0
        self.exp_avg = np.zeros_like(self.params)
        self.exp_avg_sq = np.zeros_like(self.params)
        self.s = np.zeros_like(self.params)
        self.p0 = self.params.copy()

    def _c(self, value):
        return self.dtype.type(value)

    def step(self, grad):
        c, p = self._c, self.params
        beta1, beta2 = self.betas
        bc = (math.sqrt(1 - beta2 ** (self.k + 1)) / (1 - beta1 ** (self.k + 1))
              if self.bias else 1.0)
        d = self.d
        dlr = d * self.lr * bc
        if self.lr == 0:
            return
        g = grad.astype(self.dtype) * c(self.sign)
        if self.weight_decay != 0 and not self.decouple:
            g = g + c(self.weight_decay) * p
        distance = self.p0 - p
        numerator_sum = _sum(g.astype(np.float64) * distance.astype(np.float64))
        self.exp_avg = self.exp_avg * c(beta1) + c(d * (1 - beta1)) * g
        self.exp_avg_sq = self.exp_avg_sq * c(beta2) + (c(d * d * (1 - beta2)) * g) * g
        alpha = (d / self.d0) * d if self.safeguard else (d / self.d0) * dlr
        self.s = self.s * c(self.beta3) + c(alpha) * g
        denom_sum = _sum(np.abs(self.s.astype(np.float64)))
        if denom_sum == 0:
            return
        numerator = self.d_numerator * self.beta3 + (d / self.d0) * dlr * numerator_sum
        d_hat = self.d_coef * numerator / denom_sum
        if d == self.d0:
            d = max(d, d_hat)
        self.d_max = max(self.d_max, d_hat)
        d = min(self.d_max, d * self.growth)
        self.d, self.d_numerator, self.k = d, numerator, self.k + 1
        denom = np.sqrt(self.exp_avg_sq) + c(d * self.eps)
        if self.weight_decay != 0 and self.decouple:
            p = p + c(-self.weight_decay * dlr) * p
        if beta1 > 0:
            p = p + (c(-dlr) * self.exp_avg) / denom
        else:
            p = p + (c(-dlr * d) * g) / denom
        self.params = p


def _sum(terms):
    """The correctly rounded sum of float64 ``terms`` (``math.fsum``); with a NaN or an
    infinity among them, or a sum past float64's range, the IEEE sum (NaN for
    ``inf + -inf``, infinity on overflow), which fsum refuses."""
    if np.all(np.isfinite(terms)):
        try:
            return math.fsum(terms.tolist())
        except OverflowError:
            pass
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.sum(terms))
