"""AdamWScheduleFree: the schedule-free AdamW of the ``schedulefree`` package.

* The goldens of ``tests/data/goldens_schedulefree`` (recorded from schedulefree 1.4.1 by
  ``tests/data/make_goldens_schedulefree.py``): ``y`` and the eval point ``x`` after every
  step, float64 within ``FLOAT64_ROUNDINGS`` roundings of the scale (torch's CPU kernels
  fuse the multiply-adds of ``add(alpha=)``, ``addcmul`` and ``lerp`` into FMAs, nbadam
  rounds each operation, so they differ in the last bits), float32 within the
  foundation's bound; the running scalars ``lr_max`` and ``weight_sum`` exactly.  Run this
  file as a script to print the worst differences.
* A NumPy reference (:class:`Reference`, the package's operations in its order, one
  rounding each) bit for bit, across sizes, dtypes and settings, and for hypothesis'.
* Checkpoints, ``nonfinite``, groups, schedules, ``eval_params``, ``minimize`` and the MLP.
"""

import pathlib

import numpy as np
import pytest
from conftest import DTYPES, rosenbrock, rosenbrock_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import load_golden, param_scale, relative_tolerance

import nbadam
from nbadam import _config, rules

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "data" / "goldens_schedulefree"
CASES = sorted(GOLDEN_DIR.glob("*.npz"))
SIZES = [0, 1, 7, None, 200_001]
#: float64 agrees with the package to this many units of roundoff of the scale.
FLOAT64_ROUNDINGS = 8
FLOAT64_UNIT_ROUNDOFF = 2.0**-53
OTHER = {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
         "warmup_steps": 3, "r": 0.5, "weight_lr_power": 1.0}


class Reference:
    """schedulefree's ``AdamWScheduleFree.step`` in NumPy, one rounding per operation.

    Host scalars are Python floats, cast to the arrays' dtype where they meet an array;
    ``lerp`` is torch's (``w < 0.5``: ``a + w (b - a)``, else ``b - (b - a)(1 - w)``
    with ``1 - w`` in the arrays' dtype).
    """

    def __init__(self, params, lr=2.5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, maximize=False):
        self.y = np.array(params, copy=True)
        self.dtype = self.y.dtype.type
        self.z = self.y.copy()
        self.exp_avg_sq = np.zeros_like(self.y)
        self.lr, self.betas, self.eps, self.decay = lr, betas, eps, weight_decay
        self.warmup_steps, self.r, self.power = warmup_steps, r, weight_lr_power
        self.maximize = maximize
        self.k, self.lr_max, self.weight_sum = 0, -1.0, 0.0

    def lerp(self, start, end, weight):
        w = self.dtype(weight)
        if abs(w) < 0.5:
            return start + w * (end - start)
        return end - (end - start) * (self.dtype(1) - w)

    def step(self, grad, lr=None):
        s = self.dtype
        beta1, beta2 = self.betas
        k = self.k
        sched = (k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0
        bias_correction2 = 1 - beta2 ** (k + 1)
        lr = (self.lr if lr is None else lr) * sched
        self.lr_max = max(lr, self.lr_max)
        weight = ((k + 1) ** self.r) * (self.lr_max ** self.power)
        self.weight_sum = self.weight_sum + weight
        ckp1 = weight / self.weight_sum if self.weight_sum != 0 else 0.0
        g = -grad if self.maximize else grad
        self.exp_avg_sq = self.exp_avg_sq * s(beta2) + (s(1 - beta2) * g) * g
        g = g / (np.sqrt(self.exp_avg_sq / s(bias_correction2)) + s(self.eps))
        if self.decay != 0:
            g = g + s(self.decay) * self.y
        self.y = self.lerp(self.y, self.z, ckp1) + s(lr * (beta1 * (1 - ckp1) - 1)) * g
        self.z = self.z - s(lr) * g
        self.k = k + 1

    def eval_params(self):
        return self.lerp(self.y, self.z, 1 - 1 / self.betas[0])


def build(config, params):
    kwargs = dict(config["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return nbadam.AdamWScheduleFree(params, **kwargs)


def replay(path):
    """nbadam on one golden case: config, arrays, optimizer, ``y`` and ``x`` trajectories."""
    config, arrays = load_golden(path)
    params = arrays["params0"].copy()
    opt = build(config, params)
    ys, xs = np.empty_like(arrays["params"]), np.empty_like(arrays["params"])
    for t, grad in enumerate(arrays["grads"]):
        assert opt.step(grad)
        ys[t], xs[t] = params, opt.eval_params()
    return config, arrays, opt, ys, xs


def scales(arrays):
    """Per element: ``param_scale`` of the ``y`` and of the ``x`` trajectories, the larger."""
    averaged = {"params0": arrays["params0"], "params": arrays["eval_params"]}
    return np.maximum(param_scale(arrays), param_scale(averaged))


def allowed(config, steps):
    if config["dtype"] == "float64":
        return FLOAT64_ROUNDINGS * FLOAT64_UNIT_ROUNDOFF + 0.0 * np.asarray(steps)
    return relative_tolerance(config, steps)


# -- the goldens ------------------------------------------------------------------------------
def test_goldens_cover_both_dtypes_and_every_hyperparameter():
    configs = [load_golden(path)[0] for path in CASES]
    assert {c["dtype"] for c in configs} == {"float32", "float64"} and len(CASES) >= 8
    given_ = {key for c in configs for key in c["kwargs"]}
    assert given_ == set(nbadam.AdamWScheduleFree.rule.defaults)
    assert all(c["steps"] >= 150 for c in configs)
    assert any(c["kwargs"].get("warmup_steps", 0) > 0 for c in configs)
    assert any(c["kwargs"].get("r", 0.0) > 0 for c in configs)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_matches_the_schedulefree_golden(path):
    config, arrays, opt, ys, xs = replay(path)
    steps = np.arange(1, config["steps"] + 1)[:, None]
    bound = allowed(config, steps) * scales(arrays)
    for name, got in (("params", ys), ("eval_params", xs)):
        assert got.dtype == np.dtype(config["dtype"])
        error = np.abs(got.astype(np.float64) - arrays[name])
        worst = np.unravel_index(np.argmax(error - bound), error.shape)
        assert np.all(error <= bound), (
            f"{name}: step {worst[0] + 1}, element {worst[1]}: {error[worst]:.3e} > "
            f"{bound[worst]:.3e}")
    assert opt.step_count == arrays["step"]
    assert opt.lr_max == arrays["lr_max"] and opt.weight_sum == arrays["weight_sum"]
    rtol = allowed(config, config["steps"])
    for name in ("z", "exp_avg_sq"):
        value = opt.state[name]
        assert value.dtype == arrays[name].dtype
        scale = np.abs(arrays[name]).max() + np.finfo(arrays[name].dtype).tiny
        assert np.abs(value.astype(np.float64) - arrays[name]).max() <= rtol * scale, name


def test_the_golden_comparison_can_fail():
    """Control: a learning rate 1e-12 too large is beyond the float64 bound."""
    path = next(p for p in CASES if p.stem.endswith("default_float64"))
    config, arrays = load_golden(path)
    params = arrays["params0"].copy()
    opt = nbadam.AdamWScheduleFree(params, lr=2.5e-3 * (1.0 + 1e-12))
    for grad in arrays["grads"]:
        opt.step(grad)
    error = np.abs(params - arrays["params"][-1]) / scales(arrays)
    assert error.max() > FLOAT64_ROUNDINGS * FLOAT64_UNIT_ROUNDOFF


def worst_differences():
    """``{case: (max |nbadam - package| / scale for y, the same for x, dtype)}``."""
    out = {}
    for path in CASES:
        config, arrays, _, ys, xs = replay(path)
        scale = scales(arrays)
        out[path.stem] = tuple(
            float((np.abs(got.astype(np.float64) - arrays[name]) / scale).max())
            for name, got in (("params", ys), ("eval_params", xs))) + (config["dtype"],)
    return out


# -- the NumPy reference, bit for bit ----------------------------------------------------------
def assert_same(opt, params, ref):
    np.testing.assert_array_equal(params, ref.y)
    np.testing.assert_array_equal(opt.z, ref.z)
    np.testing.assert_array_equal(opt.exp_avg_sq, ref.exp_avg_sq)
    np.testing.assert_array_equal(opt.eval_params(), ref.eval_params())
    assert (opt.lr_max, opt.weight_sum, opt.step_count) == (ref.lr_max, ref.weight_sum, ref.k)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"n{s}")
@pytest.mark.parametrize("settings_", ["default", "other", "maximize"])
def test_matches_reference_across_sizes(settings_, size, dtype):
    size = _config.PARALLEL_MIN_SIZE + 1 if size is None else size
    rng = np.random.default_rng(size)
    params = rng.standard_normal(size).astype(dtype)
    hyper = {"default": {}, "other": OTHER, "maximize": {**OTHER, "maximize": True}}[settings_]
    ref = Reference(params, **hyper)
    opt = nbadam.AdamWScheduleFree(params, **hyper)
    for _ in range(6):
        grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 2, size)).astype(dtype)
        grad[::11] = 0.0
        opt.step(grad)
        ref.step(grad)
        assert_same(opt, params, ref)
    assert all(s.dtype == dtype for s in opt.state.values())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(DTYPES), size=st.integers(0, 3000), lr=st.floats(0.0, 1.0),
       beta1=st.floats(1e-3, 0.999), beta2=st.floats(0.0, 0.999), eps=st.floats(0.0, 1e-3),
       weight_decay=st.floats(0.0, 0.5), warmup_steps=st.integers(0, 5),
       r=st.floats(0.0, 3.0), weight_lr_power=st.floats(0.0, 4.0), maximize=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_property_matches_reference(dtype, size, lr, beta1, beta2, eps, weight_decay,
                                    warmup_steps, r, weight_lr_power, maximize, seed):
    """Bit for bit: nbadam and the reference perform the same IEEE operations in order."""
    hyper = {"lr": lr, "betas": (beta1, beta2), "eps": eps, "weight_decay": weight_decay,
             "warmup_steps": warmup_steps, "r": r, "weight_lr_power": weight_lr_power,
             "maximize": maximize}
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size).astype(dtype)
    ref = Reference(params, **hyper)
    opt = nbadam.AdamWScheduleFree(params, **hyper)
    with np.errstate(all="ignore"):
        for _ in range(4):
            grad = (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 3, size)).astype(dtype)
            opt.step(grad)
            ref.step(grad)
            assert_same(opt, params, ref)


def test_first_step_and_lr_zero():
    """Step 1: ckp1 = 1, so y moves to z and then by -lr * beta1 ... of u; lr = 0 keeps all."""
    x = np.array([1.0, -2.0])
    opt = nbadam.AdamWScheduleFree(x, lr=0.1)
    opt.step(np.array([3.0, -0.5]))
    u = np.array([3.0, -0.5]) / (np.sqrt(np.array([9.0, 0.25]) * 0.001 / 0.001) + 1e-8)
    np.testing.assert_allclose(x, np.array([1.0, -2.0]) - 0.1 * u, rtol=1e-15)
    assert opt.lr_max == 0.1 and opt.weight_sum == 0.1 ** 2
    still = np.array([1.0, -2.0])
    opt = nbadam.AdamWScheduleFree(still, lr=0.0)
    opt.step(np.array([3.0, -0.5]))        # weight_sum stays 0: ckp1 = 0, as the package
    np.testing.assert_array_equal(still, [1.0, -2.0])
    np.testing.assert_array_equal(opt.eval_params(), [1.0, -2.0])


# -- state that starts at the parameters, eval_params -------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_z_starts_at_the_parameters_and_eval_params_is_new(dtype):
    x = np.array([1.5, -2.0, 0.25], dtype=dtype)
    opt = nbadam.AdamWScheduleFree(x)
    np.testing.assert_array_equal(opt.z, x)
    assert opt.z is not x and not np.shares_memory(opt.z, x)
    np.testing.assert_array_equal(opt.exp_avg_sq, 0.0)
    point = opt.eval_params()
    np.testing.assert_array_equal(point, x)            # y = z: x is y
    point[0] = 99.0
    assert x[0] == dtype(1.5)


def test_eval_params_does_not_disturb_training():
    rng = np.random.default_rng(3)
    grads = rng.standard_normal((20, 50))
    a, b = rng.standard_normal(50), None
    b = a.copy()
    left, right = nbadam.AdamWScheduleFree(a, **OTHER), nbadam.AdamWScheduleFree(b, **OTHER)
    for grad in grads:
        left.step(grad)
        right.step(grad)
        right.eval_params()
        right.eval_params()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(left.z, right.z)
    np.testing.assert_array_equal(left.eval_params(), right.eval_params())


def test_other_rules_eval_at_their_parameters():
    x = np.array([1.0, 2.0])
    opt = nbadam.Adam(x)
    opt.step(np.ones(2))
    assert not opt.separate_eval_point
    point = opt.eval_params()
    np.testing.assert_array_equal(point, x)
    assert point is not x


def test_groups_start_z_at_their_slice_and_leave_the_rest_alone():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(9)
    start = x.copy()
    groups = [{"params": slice(0, 4), "lr": 0.05, "betas": (0.8, 0.99)},
              {"params": slice(5, 9), "warmup_steps": 2}]
    opt = nbadam.AdamWScheduleFree(x, groups=groups)
    np.testing.assert_array_equal(opt.z[[0, 1, 2, 3, 5, 6, 7, 8]], start[[0, 1, 2, 3, 5, 6, 7, 8]])
    first, second = start[0:4].copy(), start[5:9].copy()
    one = nbadam.AdamWScheduleFree(first, lr=0.05, betas=(0.8, 0.99))
    two = nbadam.AdamWScheduleFree(second, warmup_steps=2)
    for _ in range(5):
        grad = rng.standard_normal(9)
        opt.step(grad)
        one.step(grad[0:4])
        two.step(grad[5:9])
    point = opt.eval_params()
    assert x[4] == start[4] and point[4] == start[4]       # in no group
    np.testing.assert_array_equal(x[0:4], first)
    np.testing.assert_array_equal(x[5:9], second)
    np.testing.assert_array_equal(point[0:4], one.eval_params())   # its own beta1
    np.testing.assert_array_equal(point[5:9], two.eval_params())
    np.testing.assert_array_equal(opt.groups[0].running, [one.lr_max, one.weight_sum])
    np.testing.assert_array_equal(opt.groups[1].running, [two.lr_max, two.weight_sum])


def test_restart_at_makes_the_eval_point():
    x = np.array([1.0, -1.0, 3.0])
    opt = nbadam.AdamWScheduleFree(x, lr=0.1)
    for _ in range(4):
        opt.step(x.copy())
    target = np.array([0.5, 0.25, -0.125])
    opt.restart_at(target)
    np.testing.assert_array_equal(x, target)
    np.testing.assert_array_equal(opt.z, target)
    np.testing.assert_array_equal(opt.eval_params(), target)
    assert opt.step_count == 4 and opt.exp_avg_sq.any()


# -- schedules, nonfinite, checkpoints ----------------------------------------------------------
def test_the_warmup_multiplies_a_schedule():
    schedule = nbadam.schedules.exponential_decay(0.05, 0.5, transition_steps=4)
    rng = np.random.default_rng(8)
    x = rng.standard_normal(6)
    ref = Reference(x, warmup_steps=3)
    opt = nbadam.AdamWScheduleFree(x, lr=schedule, warmup_steps=3)
    for count in range(8):
        grad = rng.standard_normal(6)
        opt.step(grad)
        ref.step(grad, lr=schedule(count))
        assert_same(opt, x, ref)
        assert opt.last_lr == schedule(count)   # the schedule's value; the warmup is the rule's


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_a_nonfinite_gradient_changes_nothing(policy):
    x = np.array([1.0, 2.0, 3.0])
    opt = nbadam.AdamWScheduleFree(x, nonfinite=policy, lr=0.1)
    opt.step(np.ones(3))
    before = opt.state_dict()
    bad = np.array([1.0, np.nan, 0.0])
    if policy == "raise":
        with pytest.raises(FloatingPointError, match="grad"):
            opt.step(bad)
    else:
        assert opt.step(bad) is False
    after = opt.state_dict()
    for name in ("z", "exp_avg_sq"):
        np.testing.assert_array_equal(after["state"][name], before["state"][name])
    np.testing.assert_array_equal(x, before["params"] if "params" in before else x)
    assert opt.step_count == 1 and (opt.lr_max, opt.weight_sum) == (0.1, 0.1 ** 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, dtype):
    rng = np.random.default_rng(2)
    grads = rng.standard_normal((12, 40)).astype(dtype)
    start = rng.standard_normal(40).astype(dtype)
    whole = start.copy()
    reference = nbadam.AdamWScheduleFree(whole, **OTHER)
    for grad in grads:
        reference.step(grad)
    for how in ("state_dict", "file"):
        first = start.copy()
        opt = nbadam.AdamWScheduleFree(first, **OTHER)
        for grad in grads[:5]:
            opt.step(grad)
        resumed = first.copy()
        twin = nbadam.AdamWScheduleFree(resumed, **OTHER)   # z starts at resumed: replaced
        if how == "state_dict":
            twin.load_state_dict(opt.state_dict())
        else:
            opt.save(tmp_path / "opt.npz")
            twin.load(tmp_path / "opt.npz")
        for grad in grads[5:]:
            twin.step(grad)
        np.testing.assert_array_equal(resumed, whole)
        np.testing.assert_array_equal(twin.z, reference.z)
        np.testing.assert_array_equal(twin.eval_params(), reference.eval_params())
        assert (twin.lr_max, twin.weight_sum) == (reference.lr_max, reference.weight_sum)


def test_bad_checkpoints_and_hyperparameters_are_refused():
    opt = nbadam.AdamWScheduleFree(np.zeros(3))
    state = opt.state_dict()
    state["state"]["exp_avg_sq"][1] = -1.0
    with pytest.raises(ValueError, match=r"exp_avg_sq\[1\] = -1.0"):
        nbadam.AdamWScheduleFree(np.zeros(3)).load_state_dict(state)
    for name, value, match in [("betas", (0.0, 0.999), r"betas\[0\] must be in \(0, 1\)"),
                               ("betas", (0.9, 1.0), r"betas\[1\]"),
                               ("warmup_steps", -1, "warmup_steps must be >= 0"),
                               ("warmup_steps", 2.5, "warmup_steps must be an integer"),
                               ("r", -0.5, "r must be >= 0"),
                               ("weight_lr_power", float("nan"), "weight_lr_power"),
                               ("weight_decay", -0.1, "weight_decay")]:
        with pytest.raises((TypeError, ValueError), match=match):
            nbadam.AdamWScheduleFree(np.zeros(2), **{name: value})
    with pytest.raises(ValueError, match="lr_max must be >= 0"):
        opt.lr_max = -0.5
    with pytest.raises(ValueError, match="weight_sum must be >= 0"):
        opt.weight_sum = -1.0


def test_registry_entry():
    rule = rules.get("AdamWScheduleFree")
    assert rule.name in rules.names() and rule.optimizer == "AdamWScheduleFree"
    assert nbadam.optimizers.optimizer_class(rule.name) is nbadam.AdamWScheduleFree
    assert rule.running == {"lr_max": -1.0, "weight_sum": 0.0}
    assert rule.update({}).from_params == ("z",)
    assert "warmup_steps : int, default 0" in nbadam.show_options(rule.name, disp=False)


# -- minimize -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_minimize_returns_the_averaged_point(dtype):
    start = np.linspace(-1.2, 1.0, 6).astype(dtype)
    options = {"lr": 1e-2, "warmup_steps": 10, "maxiter": 120, "gtol": 0, "ftol": 0}
    python = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad,
                             method="adamwschedulefree", options={**options, "compiled": False})
    compiled = nbadam.minimize(rosenbrock, start, jac=rosenbrock_grad,
                               method="AdamWScheduleFree", options={**options, "compiled": True})
    y = start.copy()
    opt = nbadam.AdamWScheduleFree(y, lr=1e-2, warmup_steps=10)
    for _ in range(120):
        opt.step(rosenbrock_grad(y))
    x = opt.eval_params()
    for res in (python, compiled):
        assert res.nit == 120 and res.nfev == res.njev == 122 and res.x.dtype == dtype
        np.testing.assert_array_equal(res.x, x)
        assert res.fun == rosenbrock(x)
        np.testing.assert_array_equal(res.jac, rosenbrock_grad(x))
    assert not np.array_equal(x, y)


def test_minimize_projects_the_average_and_reaches_the_minimum():
    res = nbadam.minimize(rosenbrock, np.array([-1.2, 1.0]), jac=rosenbrock_grad,
                          method="adamwschedulefree",
                          options={"lr": 2e-2, "maxiter": 20000, "gtol": 0})
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=5e-3)
    bounded = nbadam.minimize(rosenbrock, np.array([-1.2, 1.0]), jac=rosenbrock_grad,
                              method="adamwschedulefree", bounds=[(-2.0, 0.5), (-2.0, 0.5)],
                              options={"lr": 5e-2, "maxiter": 400, "gtol": 0})
    assert np.all(bounded.x <= 0.5)


def test_minimize_batch_refuses_the_rule():
    with pytest.raises(ValueError, match="minimize_batch does not run method "
                                         "'adamwschedulefree'"):
        nbadam.minimize_batch(rosenbrock, np.zeros((2, 3)), jac=rosenbrock_grad,
                              method="adamwschedulefree")


# -- the MLP ------------------------------------------------------------------------------------
def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((240, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def test_mlp_trains_from_y_and_evaluates_at_x():
    x, y = _data()
    fit = {"batch_size": 32, "optimizer": "adamwschedulefree", "schedule": "constant",
           "lr": 1e-2, "progress": False}
    once = nbadam.MLP([6, 16, 2], seed=1)
    history = once.fit(x, y, epochs=4, validation_data=(x[:60], y[:60]), **fit)
    twice = nbadam.MLP([6, 16, 2], seed=1)
    twice.fit(x, y, epochs=2, **fit)
    twice.fit(x, y, epochs=2, **fit)                 # continues from y, bit for bit
    np.testing.assert_array_equal(once.params, twice.params)
    averaged = once.averaged()
    np.testing.assert_array_equal(averaged.params, once.optimizer.eval_params())
    assert not np.array_equal(averaged.params, once.params)
    scores = averaged.evaluate(x[:60], y[:60])
    assert history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-6)
    assert history["val_accuracy"][-1] == scores["accuracy"]
    assert history["accuracy"][-1] > 0.8


def test_mlp_early_stopping_keeps_the_best_averaged_point():
    x, y = _data()
    model = nbadam.MLP([6, 8, 2], seed=2)
    history = model.fit(x, y, epochs=12, batch_size=32, optimizer="adamwschedulefree",
                        lr=0.5, schedule="constant", validation_split=0.25,
                        early_stopping=1, monitor="val_loss", min_delta=10.0,
                        progress=False)
    assert history.best_epoch == 1 and history.stopped_early    # only epoch 1 improves enough
    np.testing.assert_array_equal(model.params, model.optimizer.z)
    np.testing.assert_array_equal(model.averaged().params, model.params)


def test_cli_offers_the_rule():
    from nbadam import cli
    args = cli.build_parser().parse_args(["mnist", "--optimizer", "adamwschedulefree"])
    assert args.optimizer == "adamwschedulefree"


if __name__ == "__main__":
    print("max |difference| / scale, in units of roundoff of the case's dtype")
    for case, (y_error, x_error, dtype) in worst_differences().items():
        unit = np.finfo(dtype).eps / 2
        print(f"{case:48s} y: {y_error:.1e} ({y_error / unit:.1f} u); "
              f"x: {x_error:.1e} ({x_error / unit:.1f} u)")
