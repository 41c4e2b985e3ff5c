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


# -- the rules that follow optax ------------------------------------------------------------
#
# Lion, AdaBelief, Adan and Yogi follow optax (``docs/rules/``), so their reference follows
# optax's definitions and its order of operations, which differ from torch's in ways that
# move the last bits:
#
# * a moving average is ``(1 − β)·x + β·m`` (optax's ``update_moment``), not a lerp;
# * a moment is bias-corrected as ``m · (1 / (1 − β^t))``, the reciprocal formed in the
#   array's dtype (``1 − β^t`` is a float64 host scalar cast first): optax writes
#   ``m / (1 − β^t)``, and XLA turns the division of an array by a scalar into that product;
# * the finished update ``u`` is scaled by ``−γ`` last: ``θ ← θ + (−γ)·u``;
# * decoupled weight decay (Lion, Adan) is added to the update before that scaling:
#   ``u ← u + λ·θ``, and skipped when λ is 0.
#
# ``maximize`` (nbadam's, not optax's) negates the gradient first, as for the other rules.

OPTAX_RULES = ("lion", "adabelief", "adan", "yogi")
GOLDEN_OPTAX_DIR = GOLDEN_DIR.parent / "goldens_optax"

#: nbadam's defaults of each class, the keyword arguments of the reference.
OPTAX_DEFAULTS = {
    "Lion": {"rule": "lion", "lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0},
    "AdaBelief": {"rule": "adabelief", "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-16,
                  "eps_root": 1e-16},
    "Adan": {"rule": "adan", "lr": 1e-3, "betas": (0.98, 0.92, 0.99), "eps": 1e-8,
             "eps_root": 1e-8, "weight_decay": 0.0},
    "Yogi": {"rule": "yogi", "lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-3,
             "initial_accumulator": 1e-6},
}

#: The state arrays of each rule, by nbadam's names.
OPTAX_STATE = {
    "lion": ("exp_avg",),
    "adabelief": ("exp_avg", "exp_avg_var"),
    "adan": ("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad"),
    "yogi": ("exp_avg", "exp_avg_sq"),
}


class OptaxReference:
    """One optimizer of the optax family over a flat float32 or float64 vector.

    Parameters
    ----------
    rule : {"lion", "adabelief", "adan", "yogi"}
        The update rule.
    params : array_like, shape (n,)
        Initial parameters; copied. float32 stays float32, anything else becomes float64.
    lr : float
        Learning rate γ.
    betas : tuple of float
        (β1, β2), or (β1, β2, β3) for Adan, as optax's ``b1, b2[, b3]``.
    eps, eps_root : float
        ε added to the square root and ε̄ added under it (AdaBelief: to the stored
        variance; Adan: to the bias-corrected squared term).  Not Lion's; Yogi has no ε̄.
    weight_decay : float
        Decoupled decay λ of Lion and Adan.
    initial_accumulator : float
        Yogi's starting value of both moments.
    maximize : bool
        Ascend instead of descend (the gradient is negated first).

    Attributes
    ----------
    params : ndarray
        Current parameters.
    step_count : int
        Number of steps taken.
    exp_avg, exp_avg_var, exp_avg_diff, exp_avg_sq, prev_grad : ndarray
        The rule's state (see :data:`OPTAX_STATE`); the others are absent.
    """

    def __init__(self, rule, params, *, lr, betas, eps=0.0, eps_root=0.0, weight_decay=0.0,
                 initial_accumulator=0.0, maximize=False):
        if rule not in OPTAX_RULES:
            raise ValueError(f"rule must be one of {OPTAX_RULES}, got {rule!r}")
        if len(betas) != (3 if rule == "adan" else 2):
            raise ValueError(f"{rule} takes {3 if rule == 'adan' else 2} betas, got {betas!r}")
        params = np.asarray(params)
        if params.dtype != np.float32:
            params = params.astype(np.float64)
        self.rule = rule
        self.params = params.copy()
        self.dtype = self.params.dtype
        self.lr = float(lr)
        self.betas = tuple(float(beta) for beta in betas)
        self.eps = float(eps)
        self.eps_root = float(eps_root)
        self.weight_decay = float(weight_decay)
        self.maximize = bool(maximize)
        self.step_count = 0
        start = float(initial_accumulator) if rule == "yogi" else 0.0
        for name in OPTAX_STATE[rule]:
            setattr(self, name, np.full_like(self.params, start))

    def _scalar(self, value):
        """Cast a host (float64) scalar to the array dtype."""
        return self.dtype.type(value)

    def _average(self, moment, x, beta):
        """(1 − β)·x + β·m."""
        s = self._scalar
        return s(1 - beta) * x + s(beta) * moment

    def _corrected(self, moment, beta):
        """m · (1 / (1 − β^t)), the reciprocal in the array dtype."""
        s = self._scalar
        return moment * (s(1) / s(1 - beta ** float(self.step_count)))

    def step(self, grad):
        """Apply one update with gradient ``grad`` (shape (n,), cast to the params' dtype)."""
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.params.shape:
            raise ValueError(f"grad has shape {grad.shape}, params have {self.params.shape}")
        self.step_count += 1
        if self.maximize:
            grad = -grad
        update = getattr(self, f"_update_{self.rule}")(grad)
        if self.weight_decay != 0:
            update = update + self._scalar(self.weight_decay) * self.params
        self.params = self.params + self._scalar(-self.lr) * update

    def _update_lion(self, grad):
        beta1, beta2 = self.betas
        update = np.sign(self._average(self.exp_avg, grad, beta1))
        self.exp_avg = self._average(self.exp_avg, grad, beta2)
        return update

    def _update_adabelief(self, grad):
        beta1, beta2 = self.betas
        self.exp_avg = self._average(self.exp_avg, grad, beta1)
        error = grad - self.exp_avg
        self.exp_avg_var = (self._average(self.exp_avg_var, error * error, beta2)
                            + self._scalar(self.eps_root))
        denom = np.sqrt(self._corrected(self.exp_avg_var, beta2)) + self._scalar(self.eps)
        return self._corrected(self.exp_avg, beta1) / denom

    def _update_adan(self, grad):
        s = self._scalar
        beta1, beta2, beta3 = self.betas
        diff = np.zeros_like(grad) if self.step_count == 1 else grad - self.prev_grad
        self.exp_avg = self._average(self.exp_avg, grad, beta1)
        self.exp_avg_diff = self._average(self.exp_avg_diff, diff, beta2)
        corrected_grad = grad + s(1 - beta2) * diff
        self.exp_avg_sq = self._average(self.exp_avg_sq, corrected_grad * corrected_grad, beta3)
        self.prev_grad = grad.copy()
        update = (self._corrected(self.exp_avg, beta1)
                  + s(1 - beta2) * self._corrected(self.exp_avg_diff, beta2))
        denom = np.sqrt(self._corrected(self.exp_avg_sq, beta3) + s(self.eps_root)) + s(self.eps)
        return update / denom

    def _update_yogi(self, grad):
        s = self._scalar
        beta1, beta2 = self.betas
        self.exp_avg = self._average(self.exp_avg, grad, beta1)
        squared = grad * grad
        v = self.exp_avg_sq
        self.exp_avg_sq = v - (s(1 - beta2) * np.sign(v - squared)) * squared
        denom = np.sqrt(self._corrected(self.exp_avg_sq, beta2)) + s(self.eps)
        return self._corrected(self.exp_avg, beta1) / denom


def optax_reference_from_config(config, params):
    """Build an :class:`OptaxReference` from an optax golden file's ``config``.

    ``config["kwargs"]`` holds nbadam's keyword arguments for ``config["optimizer"]``
    (absent ones take the class's defaults, :data:`OPTAX_DEFAULTS`).
    """
    name = config["optimizer"]
    if name not in OPTAX_DEFAULTS:
        raise ValueError(f"optimizer must be one of {sorted(OPTAX_DEFAULTS)}, got {name!r}")
    settings = dict(OPTAX_DEFAULTS[name])
    unknown = sorted(set(config["kwargs"]) - (set(settings) - {"rule"}))
    if unknown:
        raise ValueError(f"unsupported {name} keywords {unknown}")
    settings.update(config["kwargs"])
    rule = settings.pop("rule")
    return OptaxReference(rule, np.asarray(params, dtype=config["dtype"]), **settings)


def optax_golden_cases():
    """Sorted paths of the golden ``.npz`` files recorded from optax."""
    return sorted(GOLDEN_OPTAX_DIR.glob("*.npz"))


#: float64 trajectories agree with optax's to this many units of roundoff of the scale
#: (``param_scale``); optax's order of operations is followed, so in practice exactly.
FLOAT64_OPTAX_ROUNDINGS = 4
FLOAT64_UNIT_ROUNDOFF = 2.0**-53


def optax_relative_tolerance(config, steps):
    """Allowed |difference| / scale against an optax golden after ``steps`` steps.

    float64: a few roundings of the scale, at any step.  float32: the foundation's bound
    (:func:`relative_tolerance`), 16 roundings per step.
    """
    if config["dtype"] == "float64":
        return FLOAT64_OPTAX_ROUNDINGS * FLOAT64_UNIT_ROUNDOFF + 0.0 * np.asarray(steps)
    return relative_tolerance(config, steps)
