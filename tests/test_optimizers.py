"""The optimizer classes against torch's goldens and the NumPy reference."""

import numpy as np
import pytest
from conftest import ALL_RULE_IDS, ALL_RULES, DTYPES, RULE_IDS, RULES, accepted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import (
    ReferenceOptimizer,
    golden_cases,
    load_golden,
    param_scale,
    relative_tolerance,
)

import nbadam
from nbadam import _config

TORCH_ONLY_KWARGS = {"foreach", "fused", "capturable", "differentiable"}


def build(config, params):
    """The nbadam optimizer a golden case's torch configuration describes."""
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in TORCH_ONLY_KWARGS}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(nbadam, config["optimizer"])(params, **kwargs)


@pytest.mark.parametrize("path", golden_cases(), ids=lambda p: p.stem)
def test_matches_torch_golden(path):
    config, arrays = load_golden(path)
    params = arrays["params0"].copy()
    opt = build(config, params)
    trajectory = np.empty_like(arrays["params"])
    for t, grad in enumerate(arrays["grads"]):
        assert opt.step(grad)
        trajectory[t] = params
    assert trajectory.dtype == np.dtype(config["dtype"])
    steps = np.arange(1, config["steps"] + 1)[:, None]
    error = np.abs(trajectory.astype(np.float64) - arrays["params"])
    allowed = relative_tolerance(config, steps) * param_scale(arrays)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert np.all(error <= allowed), (
        f"step {worst[0] + 1}, element {worst[1]}: {error[worst]:.3e} > {allowed[worst]:.3e}")
    assert opt.step_count == arrays["step"]
    for name, value in opt.state.items():
        scale = np.abs(arrays[name]).max() + np.finfo(arrays[name].dtype).tiny
        assert np.abs(value.astype(np.float64) - arrays[name]).max() <= (
            relative_tolerance(config, config["steps"]) * scale), name
    if "mu_product" in arrays and config["dtype"] == "float64":
        assert opt.mu_product == pytest.approx(float(arrays["mu_product"]), rel=1e-15)


def reference_for(cls, kwargs, params, **hyper):
    """The NumPy reference configured like ``cls(params, **kwargs, **hyper)``."""
    opt = cls(params.copy(), **kwargs, **hyper)
    rule = {"Adam": "adam", "AdamW": "adam", "NAdam": "nadam", "Adamax": "adamax",
            "RAdam": "radam"}[cls.__name__]
    extra = {"momentum_decay": opt.momentum_decay} if rule == "nadam" else {}
    decoupled = getattr(opt, "decoupled_weight_decay", cls is nbadam.AdamW)
    return ReferenceOptimizer(
        rule, params.copy(), lr=opt.lr, betas=opt.betas, eps=opt.eps,
        weight_decay=opt.weight_decay, amsgrad=getattr(opt, "amsgrad", False),
        maximize=opt.maximize, decoupled=decoupled, **extra)


def assert_close_to_reference(ours, ref, dtype, steps):
    """Within ``16·steps`` rounding units of the running scale (see test_reference)."""
    unit = np.finfo(dtype).eps / 2
    scale = np.maximum(np.abs(ref), 1.0) if ref.size else ref
    np.testing.assert_array_less(np.abs(ours.astype(np.float64) - ref),
                                 16 * steps * unit * scale + np.finfo(dtype).tiny)


# Sizes: empty, one, odd, one past the parallel threshold, large.
SIZES = [0, 1, 7, None, 200_001]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"n{s}")
@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
def test_matches_reference_across_sizes(rule, size, dtype):
    _, cls, kwargs = rule
    size = _config.PARALLEL_MIN_SIZE + 1 if size is None else size
    rng = np.random.default_rng(size)
    params = rng.standard_normal(size).astype(dtype)
    hyper = {"lr": 1e-2, "weight_decay": 0.05}
    ours = cls(params, **kwargs, **hyper)
    ref = reference_for(cls, kwargs, params, **hyper)
    for step in range(1, 9):   # crosses RAdam's switch at step 6
        grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 2, size)).astype(dtype)
        ours.step(grad)
        ref.step(grad)
        assert_close_to_reference(params, ref.params, dtype, step)
    assert params.dtype == dtype and all(s.dtype == dtype for s in ours.state.values())


def intermediate(ref, grad, before):
    """|First of NAdam's two updates|: torch and nbadam round the parameter after it.

    When the gradient and momentum terms nearly cancel, that rounding is at the scale of
    the terms, not of their sum.  Other rules update in one expression (0 here).
    """
    if ref.rule != "nadam":
        return 0.0
    t, (beta1, beta2) = ref.step_count, (ref.beta1, ref.beta2)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * ref.momentum_decay))
    coef = ref.lr * (1.0 - mu) / (1.0 - ref.mu_product)
    g = grad.astype(np.float64) * (-1.0 if ref.maximize else 1.0)
    if ref.weight_decay and not ref.decoupled:
        g = g + ref.weight_decay * before
    with np.errstate(all="ignore"):
        denom = np.sqrt(ref.exp_avg_sq.astype(np.float64) / (1.0 - beta2 ** t)) + ref.eps
        term = np.abs(coef * g / denom)
    return np.nan_to_num(term, nan=0.0, posinf=np.inf)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    rule=st.sampled_from(RULES),
    dtype=st.sampled_from(DTYPES),
    size=st.integers(0, 100_000),
    lr=st.floats(1e-5, 1.0),
    beta1=st.floats(0.0, 0.999),
    beta2=st.floats(0.0, 0.9999),
    eps=st.floats(0.0, 1e-3),
    weight_decay=st.floats(0.0, 0.5),
    maximize=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(rule, dtype, size, lr, beta1, beta2, eps, weight_decay,
                                    maximize, seed):
    """Each step, from the reference's state, lands within a few ulps of the reference's.

    Steps are compared one at a time from identical inputs: over many steps a one-ulp
    difference can be amplified legitimately (with beta1 = 0, ``m + (g - m)`` cancels),
    which the accumulated comparisons above cover for realistic settings.
    """
    _, cls, kwargs = rule
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size).astype(dtype)
    hyper = {"lr": lr, "betas": (beta1, beta2), "eps": eps,
             "weight_decay": weight_decay, "maximize": maximize}
    ours = cls(params, **kwargs, **hyper)
    ref = reference_for(cls, kwargs, params, **hyper)
    unit = np.finfo(dtype).eps / 2
    for _ in range(3):
        before = ref.params.astype(np.float64)
        grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 3, size)).astype(dtype)
        ours.step(grad)
        ref.step(grad)
        after = ref.params.astype(np.float64)
        scale = np.abs(before) + np.abs(after - before) + intermediate(ref, grad, before)
        allowed = 16 * unit * scale + np.finfo(dtype).tiny
        np.testing.assert_array_less(np.abs(params - after), allowed)
        # Continue both from the reference's state.
        params[...] = ref.params
        for name, array in ours.state.items():
            array[...] = getattr(ref, name)
        if hasattr(ref, "mu_product") and ref.mu_product is not None:
            ours.mu_product = ref.mu_product


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_serial_and_parallel_paths_agree_bit_for_bit(rule, dtype, monkeypatch):
    _, cls, kwargs = rule
    rng = np.random.default_rng(7)
    start = rng.standard_normal(4099).astype(dtype)
    grads = rng.standard_normal((12, 4099)).astype(dtype)
    results = []
    for threshold in (10**9, 0):
        monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", threshold)
        params = start.copy()
        opt = cls(params, **accepted(cls, {"lr": 1e-2, "weight_decay": 0.1}), **kwargs)
        for grad in grads:
            opt.step(grad)
        results.append((params, opt.state))
    (p_serial, s_serial), (p_parallel, s_parallel) = results
    assert np.array_equal(p_serial, p_parallel)
    for name in s_serial:
        assert np.array_equal(s_serial[name], s_parallel[name]), name


@pytest.mark.parametrize("lr", [1e-2, nbadam.schedules.warmup_cosine_decay(1e-2, 20, 200)],
                         ids=["constant", "schedule"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_resume_from_checkpoint_is_bit_for_bit(rule, lr, tmp_path):
    _, cls, kwargs = rule
    rng = np.random.default_rng(3)
    start = rng.standard_normal(257)
    grads = rng.standard_normal((200, 257))

    straight = start.copy()
    opt = cls(straight, lr=lr, **kwargs)
    for grad in grads:
        opt.step(grad)

    first = start.copy()
    opt = cls(first, lr=lr, **kwargs)
    for grad in grads[:100]:
        opt.step(grad)
    opt.save(tmp_path / "opt.npz")
    resumed = first.copy()
    fresh = cls(resumed, lr=0.5, **kwargs)       # the checkpoint restores lr
    fresh.load(tmp_path / "opt.npz")
    assert fresh.step_count == 100
    for grad in grads[100:]:
        fresh.step(grad)
    assert np.array_equal(resumed, straight)
    assert fresh.lr == lr


def test_hyperparameters_change_between_steps():
    params = np.zeros(3)
    opt = nbadam.Adam(params, lr=1e-3)
    opt.step(np.ones(3))
    assert params == pytest.approx(-1e-3)
    opt.lr = 1e-1
    opt.betas = (0.0, 0.0)
    opt.step(np.ones(3))
    # beta1 = beta2 = 0: the step is lr * g / (|g| + eps).
    assert params == pytest.approx(-1e-3 - 1e-1 * (1 / (1 + 1e-8)))
    assert opt.last_lr == 1e-1


def test_schedule_is_called_with_updates_done():
    calls = []

    def schedule(count):
        calls.append(count)
        return 1e-3

    opt = nbadam.Adam(np.zeros(2), lr=schedule)
    for _ in range(3):
        opt.step(np.ones(2))
    assert calls == [0, 1, 2]


@pytest.mark.parametrize("policy", ["skip", "raise"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_nonfinite_gradient_leaves_everything_untouched(rule, policy, bad):
    _, cls, kwargs = rule
    params = np.linspace(-1.0, 1.0, 50)
    opt = cls(params, nonfinite=policy, **kwargs)
    opt.step(np.ones(50))
    before = (params.copy(), {k: v.copy() for k, v in opt.state.items()}, opt.step_count)
    grad = np.ones(50)
    grad[17] = bad
    if policy == "raise":
        with pytest.raises(FloatingPointError, match=r"grad\[17\]"):
            opt.step(grad)
    else:
        assert opt.step(grad) is False
        assert opt.skipped_steps == 1
    assert np.array_equal(params, before[0])
    for name, value in opt.state.items():
        assert np.array_equal(value, before[1][name]), name
    assert opt.step_count == before[2]
    assert opt.step(np.ones(50)) is True


def test_nonfinite_propagates_by_default():
    params = np.zeros(4)
    opt = nbadam.Adam(params)
    grad = np.array([1.0, np.nan, 1.0, 1.0])
    assert opt.step(grad)
    assert np.isnan(params[1]) and np.isfinite(params[[0, 2, 3]]).all()


DOUBLE_MATH = ("fpext", "fadd double", "fmul double", "fdiv double", "fsub double",
               "llvm.sqrt.f64")


def kernel_ir(rule_id, dtype, parallel, monkeypatch):
    """LLVM IR of a kernel, compiled afresh (Numba cannot inspect code loaded from cache)."""
    import numba

    from nbadam import _launch
    from nbadam._kernels import cpu
    params = np.ones(8, dtype=dtype)
    cls, kwargs = {r[0]: (r[1], r[2]) for r in ALL_RULES}[rule_id]
    opt = cls(params, **kwargs)
    captured = {}

    def capture(update, size, *args, device="cpu"):
        captured["update"], captured["args"] = update, args

    monkeypatch.setattr(_launch, "step", capture)      # record the launch arguments
    opt.step(np.ones(8, dtype=dtype))
    pair = cpu.kernels(captured["update"])
    source = (pair.parallel if parallel else pair.serial).py_func
    fresh = numba.njit(parallel=parallel, error_model="numpy", nogil=True)(source)
    fresh(*captured["args"])
    (signature,) = fresh.signatures
    return fresh.inspect_llvm(signature)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("rule_id", ALL_RULE_IDS)
def test_float32_kernels_do_no_float64_arithmetic(rule_id, parallel, monkeypatch):
    """The float32 machine code neither widens to double nor computes in it."""
    ir = kernel_ir(rule_id, np.float32, parallel, monkeypatch)
    assert "<8 x float>" in ir or "<4 x float>" in ir or parallel   # vectorised
    for token in DOUBLE_MATH:
        assert token not in ir, token


def test_float64_check_is_able_to_fail(monkeypatch):
    """Control for the test above: a float64 build does show double arithmetic."""
    ir = kernel_ir("adam", np.float64, False, monkeypatch)
    assert any(token in ir for token in DOUBLE_MATH)
