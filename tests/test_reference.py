"""The NumPy reference reproduces the golden trajectories recorded from ``torch.optim``
(and, for the rules that follow optax, those recorded from optax: the end of this file).

Tolerances
----------
For one element, write the scale ``S = max_t |θ_t| + max_t |Δθ_t|`` (over the torch
trajectory, including θ_0; Δθ_t = θ_t − θ_{t−1}).

float64
    ``|θ_t − θ_t^torch| ≤ 1e-10 · S``. A correct float64 implementation agrees to about
    1e-15 relative after hundreds of steps, so any mistake in a rule (a bias correction, where
    ε goes, the RAdam switch) shows up far above this.

float32
    ``|θ_t − θ_t^torch| ≤ c · t · u · S`` with ``u = 2**-24`` and ``c = 16``.

    Why this holds: the gradients are fixed data, not a function of θ, so the two
    implementations see the same inputs and differ only by the rounding of differently ordered
    floating-point operations (torch fuses lerp, addcmul and ``add(alpha=)`` into FMAs,
    forms ``(value·m)/denom`` instead of ``value·(m/denom)``, and its vectorised sqrt is
    within 1 ulp instead of correctly rounded). There is no chaotic feedback to amplify them:
    decoupled weight decay multiplies θ by 1 − γλ ≤ 1, and an L2 term λθ enters a step that is
    normalised by the gradient's own magnitude. To first order, one step adds to the
    difference

    * at most ``u·|θ_t|`` from each implementation's rounding of ``θ − Δθ``: ``2u·|θ_t|``;
    * the relative error of ``Δθ_t``, the sum of the relative errors of the rounded
      operations that produce it. Each implementation uses about eight (three for the
      moment, three for the normaliser ``√v̂ + ε``, two for the final scaling; NAdam's two
      terms and RAdam's longer product are of the same size), so ``≤ 16u·|Δθ_t|`` for both.

    Older rounding errors in m and v are damped by β1 and β2 in the moving averages rather
    than accumulated. Summing over ``t`` steps gives
    ``|θ_t − θ_t^torch| ≤ t·(2u·max|θ| + 16u·max|Δθ|) ≤ 16·t·u·S``. This is a first-order,
    worst-case-alignment estimate; rounding errors of random sign add far more slowly, and the
    measured worst case on the goldens is about 5% of it.

The final state (m, v, max v, Adamax's u) is checked with the same constants relative to its
input scale: ``G = max_t |g_eff|`` for m, ``G²`` for v and its maximum, and ``G + ε`` for u,
where ``g_eff`` is the gradient after ``maximize`` and the L2 term.

NAdam's ``mu_product`` is a float64 host scalar in the reference. torch keeps it in the default
dtype: in the float64 goldens the two agree to rounding; in the float32 goldens torch
multiplies in float32, so its relative error grows by up to ``u`` per step and underflows to 0
after ~150 steps (harmless: 1 − Π is then 1).
"""

import functools

import numpy as np
import pytest
from reference import (
    FLOAT32_UNIT_ROUNDOFF,
    OPTAX_DEFAULTS,
    OPTAX_STATE,
    golden_cases,
    load_golden,
    optax_golden_cases,
    optax_reference_from_config,
    optax_relative_tolerance,
    param_scale,
    reference_from_config,
    relative_tolerance,
)

OPTIMIZERS = ("Adam", "AdamW", "NAdam", "Adamax", "RAdam")
STATE_NAMES = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf")
CASES = golden_cases()


def case_id(path):
    return path.stem


@functools.cache
def replay(path):
    """Run the reference on one golden case; return config, golden arrays, optimizer, trajectory."""
    config, arrays = load_golden(path)
    optimizer = reference_from_config(config, arrays["params0"])
    trajectory = np.empty_like(arrays["params"])
    for t, grad in enumerate(arrays["grads"]):
        optimizer.step(grad)
        trajectory[t] = optimizer.params
    return config, arrays, optimizer, trajectory


def effective_grad_scale(arrays, optimizer):
    """Per element ``max_t |g_eff|``: the gradient after ``maximize`` and the L2 term."""
    grads = arrays["grads"].astype(np.float64)
    if optimizer.maximize:
        grads = -grads
    if not optimizer.decoupled:
        previous = np.vstack([arrays["params0"][None, :], arrays["params"][:-1]])
        grads = grads + optimizer.weight_decay * previous.astype(np.float64)
    return np.abs(grads).max(axis=0)


def test_goldens_cover_every_optimizer_in_both_dtypes():
    seen = set()
    for path in CASES:
        config, _ = load_golden(path)
        seen.add((config["optimizer"], config["dtype"]))
        assert path.stem.endswith("_" + config["dtype"])
    assert seen == {
        (name, dtype) for name in OPTIMIZERS for dtype in ("float32", "float64")
    }


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_golden_file_layout(path):
    config, arrays = load_golden(path)
    steps = config["steps"]
    n = arrays["params0"].shape[0]
    assert arrays["grads"].shape == arrays["params"].shape == (steps, n)
    for name in ("params0", "grads", "params", *STATE_NAMES):
        if name in arrays:
            assert arrays[name].dtype == config["dtype"], name
    assert arrays["step"].dtype == np.float64 and arrays["step"] == steps
    assert np.all(np.isfinite(arrays["params"]))


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_trajectory_matches_torch(path):
    config, arrays, optimizer, trajectory = replay(path)
    assert trajectory.dtype == optimizer.params.dtype == np.dtype(config["dtype"])
    steps = np.arange(1, config["steps"] + 1)[:, None]
    scale = param_scale(arrays)
    error = np.abs(trajectory.astype(np.float64) - arrays["params"])
    allowed = relative_tolerance(config, steps) * scale
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert np.all(error <= allowed), (
        f"step {worst[0] + 1}, element {worst[1]}: |difference| {error[worst]:.3e} "
        f"> allowed {allowed[worst]:.3e}"
    )


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_final_state_matches_torch(path):
    config, arrays, optimizer, _ = replay(path)
    assert optimizer.step_count == arrays["step"] == config["steps"]
    grad_scale = effective_grad_scale(arrays, optimizer)
    input_scales = {
        "exp_avg": grad_scale,
        "exp_avg_sq": grad_scale**2,
        "max_exp_avg_sq": grad_scale**2,
        "exp_inf": grad_scale + optimizer.eps,
    }
    rtol = relative_tolerance(config, config["steps"])
    for name in STATE_NAMES:
        ours = getattr(optimizer, name)
        assert (ours is None) == (name not in arrays), name
        if ours is None:
            continue
        assert ours.dtype == arrays[name].dtype, name
        error = np.abs(ours.astype(np.float64) - arrays[name])
        assert np.all(error <= rtol * input_scales[name]), name

    assert (optimizer.mu_product is None) == ("mu_product" not in arrays)
    if optimizer.mu_product is not None:
        torch_mu_product = float(arrays["mu_product"])
        if config["dtype"] == "float64":
            assert optimizer.mu_product == pytest.approx(
                torch_mu_product, rel=1e-15, abs=0
            )
        else:
            # torch's float32 product: one rounding per step, then underflow to 0.
            float32_tiny = float(np.finfo(np.float32).tiny)
            assert optimizer.mu_product == pytest.approx(
                torch_mu_product,
                rel=config["steps"] * FLOAT32_UNIT_ROUNDOFF,
                abs=float32_tiny,
            )


# -- the rules that follow optax ---------------------------------------------------------------
# The goldens of tests/data/goldens_optax were recorded from optax (JAX's 64-bit mode on, the
# update op by op; see tests/data/make_goldens_optax.py).  The reference follows optax's order
# of operations, so float64 agrees to a few roundings of the scale (in practice exactly) and
# float32 within the bound above.

OPTAX_OPTIMIZERS = ("Lion", "AdaBelief", "Adan", "Yogi")
OPTAX_CASES = optax_golden_cases()


@functools.cache
def replay_optax(path):
    config, arrays = load_golden(path)
    optimizer = optax_reference_from_config(config, arrays["params0"])
    trajectory = np.empty_like(arrays["params"])
    for t, grad in enumerate(arrays["grads"]):
        optimizer.step(grad)
        trajectory[t] = optimizer.params
    return config, arrays, optimizer, trajectory


def test_optax_goldens_cover_every_rule_in_both_dtypes_with_default_and_other_settings():
    seen = {}
    for path in OPTAX_CASES:
        config, arrays = load_golden(path)
        assert path.stem.endswith("_" + config["dtype"])
        assert config["steps"] >= 150 and config["jax_enable_x64"] and not config["jit"]
        seen.setdefault((config["optimizer"], config["dtype"]), set()).add(
            bool(config["kwargs"]))
    assert seen == {(name, dtype): {False, True} for name in OPTAX_OPTIMIZERS
                    for dtype in ("float32", "float64")}


@pytest.mark.parametrize("path", OPTAX_CASES, ids=case_id)
def test_optax_golden_file_layout(path):
    config, arrays = load_golden(path)
    steps = config["steps"]
    n = arrays["params0"].shape[0]
    assert arrays["grads"].shape == arrays["params"].shape == (steps, n)
    rule = OPTAX_DEFAULTS[config["optimizer"]]["rule"]
    assert set(arrays) == {"params0", "grads", "params", "step", *OPTAX_STATE[rule]}
    for name in ("params0", "grads", "params", *OPTAX_STATE[rule]):
        assert arrays[name].dtype == config["dtype"], name
    assert arrays["step"].dtype == np.float64 and arrays["step"] == steps
    assert np.all(np.isfinite(arrays["params"]))
    # The gradients depend on the parameters, and some entries are exact zeros.
    assert np.any(arrays["grads"] == 0.0) and np.all(np.isfinite(arrays["grads"]))


@pytest.mark.parametrize("path", OPTAX_CASES, ids=case_id)
def test_trajectory_matches_optax(path):
    config, arrays, optimizer, trajectory = replay_optax(path)
    assert trajectory.dtype == optimizer.params.dtype == np.dtype(config["dtype"])
    steps = np.arange(1, config["steps"] + 1)[:, None]
    error = np.abs(trajectory.astype(np.float64) - arrays["params"])
    allowed = optax_relative_tolerance(config, steps) * param_scale(arrays)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert np.all(error <= allowed), (
        f"step {worst[0] + 1}, element {worst[1]}: |difference| {error[worst]:.3e} "
        f"> allowed {allowed[worst]:.3e}"
    )


@pytest.mark.parametrize("path", OPTAX_CASES, ids=case_id)
def test_final_state_matches_optax(path):
    config, arrays, optimizer, _ = replay_optax(path)
    assert optimizer.step_count == arrays["step"] == config["steps"]
    rtol = optax_relative_tolerance(config, config["steps"])
    for name in OPTAX_STATE[optimizer.rule]:
        ours = getattr(optimizer, name)
        assert ours.dtype == arrays[name].dtype, name
        scale = np.abs(arrays[name]).max() + np.finfo(arrays[name].dtype).tiny
        error = np.abs(ours.astype(np.float64) - arrays[name])
        assert np.all(error <= rtol * scale), name
