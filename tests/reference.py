"""Slow, obviously-correct NumPy implementation of the update rules in ``docs/reference.rst``.

This module is the yardstick the kernels are tested against, so it is written for the
reader, not for speed: one method per rule, one line per formula, element-wise NumPy in
the parameters' dtype. It imports nothing from ``nbadam``.

Conventions (all from ``docs/reference.rst``):

* The step count is incremented before the update, so the first step has ``t = 1``.
* Every scalar that depends only on the step or the hyperparameters (``1 - beta1``, the bias
  corrections, NAdam's ``mu`` and its running product) is computed on the host as a Python
  float, i.e. in float64, and cast to the array dtype with ``dtype.type(x)`` right where it
  meets an array. Array arithmetic therefore stays in float32 for float32 parameters.
* Operations run in the order ``docs/reference.rst`` writes them. Where it writes ``scalar · x / y``
  for arrays x and y (Adam, NAdam, Adamax), the quotient is formed first and then scaled,
  ``scalar · (x / y)``; RAdam's rectified step is evaluated left to right.

The module also gives access to the golden trajectories recorded from ``torch.optim`` by
``tests/data/make_goldens.py``: :func:`golden_cases`, :func:`load_golden` and
:func:`reference_from_config`.
"""

import json
import math
import pathlib

import numpy as np

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "data" / "goldens"

RULES = ("adam", "nadam", "adamax", "radam")

# torch's defaults per optimizer class; AdamW is Adam with decoupled weight decay.
TORCH_DEFAULTS = {
    "Adam": {
        "rule": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
    },
    "AdamW": {
        "rule": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-2,
        "decoupled_weight_decay": True,
    },
    "NAdam": {
        "rule": "nadam",
        "lr": 2e-3,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
    },
    "Adamax": {
        "rule": "adamax",
        "lr": 2e-3,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
    },
    "RAdam": {
        "rule": "radam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
    },
}
TORCH_COMMON_DEFAULTS = {
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "amsgrad": False,
    "maximize": False,
    "momentum_decay": 4e-3,
}
# Keywords that choose torch's implementation, not the rule.
TORCH_IMPLEMENTATION_KWARGS = {"foreach", "fused", "capturable", "differentiable"}


class ReferenceOptimizer:
    """One optimizer over a flat float32 or float64 parameter vector.

    Parameters
    ----------
    rule : {"adam", "nadam", "adamax", "radam"}
        The update rule. AdamW is ``"adam"`` with ``decoupled=True``.
    params : array_like, shape (n,)
        Initial parameters; copied. float32 stays float32, anything else must be float64.
    lr, betas, eps, weight_decay : float
        Learning rate γ, (β1, β2), ε and weight decay λ.
    amsgrad : bool
        Adam only: normalise by the running maximum of the raw second moment.
    maximize : bool
        Ascend instead of descend (the gradient is negated first).
    decoupled : bool
        Decoupled weight decay θ ← θ·(1 − γλ) instead of the L2 term g ← g + λθ.
        Not defined for Adamax.
    momentum_decay : float
        NAdam's ψ.

    Attributes
    ----------
    params : ndarray
        Current parameters.
    step_count : int
        Number of steps taken.
    exp_avg : ndarray
        First moment m.
    exp_avg_sq : ndarray or None
        Second moment v (not Adamax).
    max_exp_avg_sq : ndarray or None
        Running maximum of v (AMSGrad only).
    exp_inf : ndarray or None
        Adamax's infinity norm u.
    mu_product : float or None
        NAdam's Π_t, a float64 host scalar.
    """

    def __init__(
        self,
        rule,
        params,
        *,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad=False,
        maximize=False,
        decoupled=False,
        momentum_decay=4e-3,
    ):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if amsgrad and rule != "adam":
            raise ValueError(
                f"amsgrad is only defined for rule 'adam', got rule {rule!r}"
            )
        if decoupled and rule == "adamax":
            raise ValueError("decoupled weight decay is not defined for rule 'adamax'")
        params = np.asarray(params)
        if params.dtype != np.float32:
            params = params.astype(np.float64)
        if params.ndim != 1:
            raise ValueError(f"params must be 1-D, got shape {params.shape}")
        self.rule = rule
        self.params = params.copy()
        self.dtype = self.params.dtype
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(beta) for beta in betas)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = bool(amsgrad)
        self.maximize = bool(maximize)
        self.decoupled = bool(decoupled)
        self.momentum_decay = float(momentum_decay)

        zeros = np.zeros_like(self.params)
        self.step_count = 0
        self.exp_avg = zeros.copy()
        self.exp_avg_sq = zeros.copy() if rule != "adamax" else None
        self.max_exp_avg_sq = zeros.copy() if amsgrad else None
        self.exp_inf = zeros.copy() if rule == "adamax" else None
        self.mu_product = 1.0 if rule == "nadam" else None

    def _scalar(self, value):
        """Cast a host (float64) scalar to the array dtype."""
        return self.dtype.type(value)

    def step(self, grad):
        """Apply one update with gradient ``grad`` (shape (n,), cast to the params' dtype)."""
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.params.shape:
            raise ValueError(
                f"grad has shape {grad.shape}, params have {self.params.shape}"
            )
        self.step_count += 1

        # Common prologue.
        if self.maximize:
            grad = -grad
        if self.weight_decay != 0:
            if self.decoupled:
                self.params *= self._scalar(1 - self.lr * self.weight_decay)
            else:
                grad = grad + self._scalar(self.weight_decay) * self.params

        getattr(self, f"_step_{self.rule}")(grad)

    def _update_exp_avg(self, grad):
        """m ← m + (1 − β1)·(g − m)."""
        s = self._scalar
        self.exp_avg += s(1 - self.beta1) * (grad - self.exp_avg)

    def _update_moments(self, grad):
        """m as in :meth:`_update_exp_avg`;  v ← β2·v + ((1 − β2)·g)·g."""
        s = self._scalar
        self._update_exp_avg(grad)
        self.exp_avg_sq[...] = (
            s(self.beta2) * self.exp_avg_sq + (s(1 - self.beta2) * grad) * grad
        )

    def _step_adam(self, grad):
        s = self._scalar
        t = self.step_count
        self._update_moments(grad)
        second_moment = self.exp_avg_sq
        if self.amsgrad:
            np.maximum(self.max_exp_avg_sq, self.exp_avg_sq, out=self.max_exp_avg_sq)
            second_moment = self.max_exp_avg_sq
        bias_correction1 = 1 - self.beta1**t
        bias_correction2 = 1 - self.beta2**t
        denom = np.sqrt(second_moment) / s(math.sqrt(bias_correction2)) + s(self.eps)
        self.params -= s(self.lr / bias_correction1) * (self.exp_avg / denom)

    def _step_nadam(self, grad):
        s = self._scalar
        t = self.step_count
        psi = self.momentum_decay
        mu = self.beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = self.beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        self.mu_product *= mu
        self._update_moments(grad)
        bias_correction2 = 1 - self.beta2**t
        denom = np.sqrt(self.exp_avg_sq / s(bias_correction2)) + s(self.eps)
        grad_coef = self.lr * (1 - mu) / (1 - self.mu_product)
        exp_avg_coef = self.lr * mu_next / (1 - self.mu_product * mu_next)
        self.params -= s(grad_coef) * (grad / denom)
        self.params -= s(exp_avg_coef) * (self.exp_avg / denom)

    def _step_adamax(self, grad):
        s = self._scalar
        t = self.step_count
        self._update_exp_avg(grad)
        np.maximum(
            s(self.beta2) * self.exp_inf, np.abs(grad) + s(self.eps), out=self.exp_inf
        )
        bias_correction1 = 1 - self.beta1**t
        self.params -= s(self.lr / bias_correction1) * (self.exp_avg / self.exp_inf)

    def _step_radam(self, grad):
        s = self._scalar
        t = self.step_count
        self._update_moments(grad)
        bias_correction1 = 1 - self.beta1**t
        bias_correction2 = 1 - self.beta2**t
        rho_inf = 2 / (1 - self.beta2) - 1
        rho_t = rho_inf - 2 * t * self.beta2**t / bias_correction2
        bias_corrected_exp_avg = self.exp_avg / s(bias_correction1)
        if rho_t > 5:
            rect = math.sqrt(
                (rho_t - 4)
                * (rho_t - 2)
                * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            update = (
                s(self.lr)
                * bias_corrected_exp_avg
                * s(rect)
                * s(math.sqrt(bias_correction2))
            )
            self.params -= update / (np.sqrt(self.exp_avg_sq) + s(self.eps))
        else:
            self.params -= s(self.lr) * bias_corrected_exp_avg


def reference_from_config(config, params):
    """Build a :class:`ReferenceOptimizer` from a golden file's ``config``.

    Parameters
    ----------
    config : dict
        ``{"optimizer": "Adam" | "AdamW" | "NAdam" | "Adamax" | "RAdam", "dtype": ...,
        "kwargs": {...}}`` with torch's keyword names; absent keywords take torch's
        defaults (those of ``docs/reference.rst``).
    params : array_like
        Initial parameters, converted to ``config["dtype"]``.
    """
    name = config["optimizer"]
    if name not in TORCH_DEFAULTS:
        raise ValueError(
            f"optimizer must be one of {sorted(TORCH_DEFAULTS)}, got {name!r}"
        )
    settings = {**TORCH_COMMON_DEFAULTS, **TORCH_DEFAULTS[name]}
    kwargs = {
        k: v
        for k, v in config["kwargs"].items()
        if k not in TORCH_IMPLEMENTATION_KWARGS
    }
    unknown = sorted(set(kwargs) - (set(settings) - {"rule"}))
    if unknown:
        raise ValueError(f"unsupported {name} keywords {unknown}")
    settings.update(kwargs)
    return ReferenceOptimizer(
        settings["rule"],
        np.asarray(params, dtype=config["dtype"]),
        lr=settings["lr"],
        betas=settings["betas"],
        eps=settings["eps"],
        weight_decay=settings["weight_decay"],
        amsgrad=settings["amsgrad"],
        maximize=settings["maximize"],
        decoupled=settings["decoupled_weight_decay"],
        momentum_decay=settings["momentum_decay"],
    )


def golden_cases():
    """Sorted paths of the golden ``.npz`` files."""
    return sorted(GOLDEN_DIR.glob("*.npz"))


def load_golden(path):
    """Load one golden file.

    Returns
    -------
    config : dict
        The parsed JSON configuration.
    arrays : dict of ndarray
        ``params0``, ``grads``, ``params`` and the final state under torch's names.
    """
    with np.load(path, allow_pickle=False) as data:
        config = json.loads(str(data["config"][()]))
        arrays = {name: data[name] for name in data.files if name != "config"}
    return config, arrays


# Tolerances for comparing a trajectory with a golden one; the derivation is in
# the docstring of tests/test_reference.py.
FLOAT64_RTOL = 1e-10
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
FLOAT32_ROUNDINGS_PER_STEP = 16


def param_scale(arrays):
    """Per element ``max_t |θ_t| + max_t |Δθ_t|`` over the golden trajectory, in float64."""
    full = np.vstack([arrays["params0"][None, :], arrays["params"]]).astype(np.float64)
    return np.abs(full).max(axis=0) + np.abs(np.diff(full, axis=0)).max(axis=0)


def relative_tolerance(config, steps):
    """Allowed |difference| / scale after ``steps`` steps (an array when ``steps`` is one)."""
    if config["dtype"] == "float64":
        return FLOAT64_RTOL + 0.0 * np.asarray(steps)
    return FLOAT32_ROUNDINGS_PER_STEP * np.asarray(steps) * FLOAT32_UNIT_ROUNDOFF
