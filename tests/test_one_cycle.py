"""The one-cycle schedule's beta1 (torch's ``cycle_momentum``) through every entry point.

The goldens of ``tests/data/goldens_onecycle`` were recorded from torch's ``OneCycleLR`` by
``tests/data/make_goldens_onecycle.py``: the lr and beta1 each step uses, and float64
trajectories of ``torch.optim.Adam``/``AdamW`` under it (one and two parameter groups).
"""

import json
import math
import pathlib

import numba
import numpy as np
import pytest
from reference import (
    FLOAT64_OPTAX_ROUNDINGS,
    FLOAT64_UNIT_ROUNDOFF,
    param_scale,
    relative_tolerance,
)
from toy_rule import TOY

import nbadam
from nbadam import rules, schedules
from nbadam.optimizers import optimizer_class

GOLDENS = pathlib.Path(__file__).resolve().parent / "data" / "goldens_onecycle"


def _golden(case):
    with np.load(GOLDENS / f"{case}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("config"))), arrays


def _schedule(kwargs, group=0):
    args = {**kwargs, "max_lr": kwargs["max_lr"][group]}
    return schedules.one_cycle(**args)


def _ulps(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b) / np.spacing(np.maximum(np.abs(a), np.abs(b))), initial=0.0)


# -- the schedule against torch's OneCycleLR ---------------------------------------------------

@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDENS.glob("schedule_*.npz")))
def test_lr_and_beta1_match_torch_onecyclelr(case):
    config, golden = _golden(case)
    sched = _schedule(config["kwargs"])
    steps = config["kwargs"]["total_steps"]
    lrs = [sched(k) for k in range(steps)]
    assert _ulps(lrs, golden["lr"][:, 0]) <= 1
    beta1 = [sched.beta1(k) for k in range(steps)]
    if config["kwargs"].get("cycle_momentum", True):
        assert _ulps(beta1, golden["beta1"][:, 0]) <= 1
        assert beta1[0] == config["kwargs"].get("max_momentum", 0.95)
    else:
        assert beta1 == [None] * steps
        assert np.all(golden["beta1"] == 0.9)     # torch leaves Adam's beta1 alone


def test_beta1_is_max_where_lr_is_lowest_and_base_at_the_peak():
    sched = schedules.one_cycle(1.0, 100, base_momentum=0.8, max_momentum=0.9)
    lrs = np.array([sched(k) for k in range(100)])
    beta1 = np.array([sched.beta1(k) for k in range(100)])
    assert beta1[lrs.argmax()] == 0.8 and beta1[0] == beta1[99] == 0.9
    assert sched.beta1(10**6) == sched.beta1(99)
    # beta1 falls while the rate rises, and rises while it falls
    assert np.all(np.sign(np.diff(beta1)) == -np.sign(np.diff(lrs)))


@pytest.mark.parametrize("kwargs,name", [
    ({"base_momentum": 1.0}, "base_momentum"), ({"max_momentum": -0.1}, "max_momentum"),
    ({"max_momentum": math.nan}, "max_momentum"), ({"cycle_momentum": 1}, "cycle_momentum"),
])
def test_bad_momentum_arguments_name_the_parameter(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        schedules.one_cycle(0.1, 10, **kwargs)


def test_the_stored_form_round_trips_with_the_momentum_fields():
    sched = schedules.one_cycle(0.2, 50, base_momentum=0.8, max_momentum=0.93)
    data = json.loads(json.dumps(sched.to_dict()))
    assert data["cycle_momentum"] is True and data["base_momentum"] == 0.8
    again = schedules.from_dict(data)
    assert again == sched and [again.beta1(k) for k in range(50)] == \
        [sched.beta1(k) for k in range(50)]
    off = schedules.one_cycle(0.2, 50, cycle_momentum=False)
    assert schedules.from_dict(off.to_dict()) == off


def test_a_one_cycle_stored_before_the_momentum_fields_resumes_without_them():
    legacy = {"schedule": "OneCycle", "max_lr": 0.1, "total_steps": 10, "pct_start": 0.3,
              "div_factor": 25.0, "final_div_factor": 1e4}
    sched = schedules.from_dict(legacy)
    assert sched.cycle_momentum is False and sched.beta1(3) is None


def test_other_schedules_and_plain_callables_leave_beta1_alone():
    for sched in (schedules.constant(0.1), schedules.warmup_cosine_decay(0.1, 2, 10)):
        assert sched.beta1(0) is None
    x, y = np.ones(4), np.ones(4)
    a = nbadam.Adam(x, lr=lambda k: 0.01)
    b = nbadam.Adam(y, lr=0.01)
    for _ in range(5):
        a.step(np.full(4, 0.5))
        b.step(np.full(4, 0.5))
    np.testing.assert_array_equal(x, y)


# -- an optimizer under one_cycle against torch Adam + OneCycleLR (float64) -------------------

@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDENS.glob("adam*.npz")))
def test_trajectory_matches_torch_under_onecyclelr(case):
    config, golden = _golden(case)
    slices = config["slices"]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config["options"].items()}
    if config["optimizer"] == "Adam":
        options.setdefault("weight_decay", 0.0)
    x = golden["params0"].copy()
    cls = getattr(nbadam, config["optimizer"])
    if len(slices) == 1:
        opt = cls(x, lr=_schedule(config["kwargs"]), **options)
    else:
        groups = [{"params": slice(lo, hi), "lr": _schedule(config["kwargs"], k)}
                  for k, (lo, hi) in enumerate(slices)]
        opt = cls(x, lr=1.0, groups=groups, **options)
    # A few roundings of each element's scale, at every step (as the optax goldens).
    allowed = FLOAT64_OPTAX_ROUNDINGS * FLOAT64_UNIT_ROUNDOFF * param_scale(golden)
    for t, grad in enumerate(golden["grads"]):
        for k, group in enumerate(opt.groups):
            assert group["lr"](t) == golden["lr"][t, k]
            assert group["lr"].beta1(t) == golden["beta1"][t, k]
        opt.step(grad)
        assert np.all(np.abs(x - golden["params"][t]) <= allowed), f"step {t + 1}"
    # Control: without the beta1 cycle the trajectory leaves torch's.
    y = golden["params0"].copy()
    lr = schedules.one_cycle(**{**config["kwargs"], "max_lr": config["kwargs"]["max_lr"][0],
                                "cycle_momentum": False})
    plain = cls(y, lr=lr, **options)
    for grad in golden["grads"]:
        plain.step(grad)
    assert np.max(np.abs(y - golden["params"][-1])) > 1e-6


def test_float32_follows_the_float64_trajectory():
    config, golden = _golden("adam_one_group")
    x = golden["params0"].astype(np.float32)
    opt = nbadam.Adam(x, lr=_schedule(config["kwargs"]))
    scale = param_scale(golden)
    for t, grad in enumerate(golden["grads"]):
        opt.step(grad.astype(np.float32))
        allowed = relative_tolerance({"dtype": "float32"}, t + 1) * scale
        assert np.all(np.abs(x - golden["params"][t]) <= allowed), f"step {t + 1}"


def test_a_checkpoint_resumes_the_cycle_exactly(tmp_path):
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(30, 5))
    sched = schedules.one_cycle(0.05, 30, base_momentum=0.8)
    x = np.zeros(5)
    whole = nbadam.Adam(x, lr=sched)
    for g in grads:
        whole.step(g)
    y = np.zeros(5)
    first = nbadam.Adam(y, lr=sched)
    for g in grads[:12]:
        first.step(g)
    first.save(tmp_path / "opt.npz")
    z = y.copy()
    second = nbadam.Adam(z, lr=0.1)
    second.load(tmp_path / "opt.npz")
    assert second.lr == sched
    for g in grads[12:]:
        second.step(g)
    np.testing.assert_array_equal(z, x)


# -- rules without betas: refused, as torch's OneCycleLR refuses ---------------------------------

def test_a_rule_without_betas_refuses_a_schedule_that_sets_beta1():
    cls = optimizer_class(TOY)
    x = np.zeros(3)
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        cls(x, lr=schedules.one_cycle(0.1, 10))
    opt = cls(x, lr=schedules.one_cycle(0.1, 10, cycle_momentum=False))
    with pytest.raises(ValueError, match="has no betas"):
        opt.lr = schedules.one_cycle(0.1, 10)
    with pytest.raises(ValueError, match="has no betas"):
        cls(x, groups=[{"params": slice(0, 3), "lr": schedules.one_cycle(0.1, 10)}])
    assert opt.step(np.ones(3)) and x.any()


def test_minimize_with_a_rule_without_betas_refuses_it():
    rules.register(TOY)
    try:
        with pytest.raises(ValueError, match="has no betas"):
            nbadam.minimize(lambda v: float(v @ v), np.ones(2), jac=lambda v: 2 * v,
                            method="toy", options={"lr": schedules.one_cycle(0.1, 10)})
    finally:
        rules.unregister("toy")


# -- minimize: Python loop, compiled loop, batch -----------------------------------------------

@numba.njit
def _quadratic(x):
    return 0.5 * np.sum(np.arange(1.0, x.size + 1.0) * x * x)


@numba.njit
def _quadratic_grad(x):
    return np.arange(1.0, x.size + 1.0) * x


def test_minimize_steps_as_the_optimizer_under_one_cycle():
    sched = schedules.one_cycle(0.1, 80)
    x0 = np.linspace(-1.0, 1.0, 6)
    opts = {"lr": sched, "maxiter": 80, "gtol": 0, "ftol": 0, "return_best": False}
    res = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad, options=opts)
    assert res.nit == 80
    x = x0.copy()
    opt = nbadam.Adam(x, lr=sched)
    for _ in range(80):
        opt.step(_quadratic_grad(x))
    np.testing.assert_array_equal(res.x, x)
    off = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad,
                          options={**opts, "lr": schedules.one_cycle(0.1, 80,
                                                                     cycle_momentum=False)})
    assert not np.array_equal(off.x, res.x)


def test_the_compiled_loop_falls_back_or_refuses_when_beta1_is_scheduled():
    sched = schedules.one_cycle(0.1, 50)
    x0 = np.linspace(-1.0, 1.0, 4)
    opts = {"lr": sched, "maxiter": 50, "gtol": 0, "ftol": 0}
    auto = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad, options=opts)
    python = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad,
                             options={**opts, "compiled": False})
    np.testing.assert_array_equal(auto.x, python.x)
    with pytest.raises(ValueError, match="beta1"):
        nbadam.minimize(_quadratic, x0, jac=_quadratic_grad, options={**opts, "compiled": True})
    # Without the cycle the compiled loop runs, and agrees with the Python loop.
    plain = {**opts, "lr": schedules.one_cycle(0.1, 50, cycle_momentum=False)}
    compiled = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad,
                               options={**plain, "compiled": True})
    np.testing.assert_array_equal(
        compiled.x, nbadam.minimize(_quadratic, x0, jac=_quadratic_grad,
                                    options={**plain, "compiled": False}).x)


def test_minimize_batch_refuses_a_schedule_that_sets_beta1():
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        nbadam.minimize_batch(lambda x: 0.5 * np.sum(x * x, axis=1), np.ones((2, 3)),
                              jac=lambda x: x, options={"lr": schedules.one_cycle(0.1, 10)})


# -- the MLP ---------------------------------------------------------------------------------

def test_mlp_fit_follows_the_beta1_cycle():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4))
    y = (x[:, 0] > 0).astype(int)
    cycled = nbadam.MLP((4, 8, 2), dtype=np.float64)
    cycled.fit(x, y, epochs=2, batch_size=16, lr=schedules.one_cycle(0.01, 8), progress=False)
    plain = nbadam.MLP((4, 8, 2), dtype=np.float64)
    plain.fit(x, y, epochs=2, batch_size=16, progress=False,
              lr=schedules.one_cycle(0.01, 8, cycle_momentum=False))
    model = nbadam.MLP((4, 8, 2), dtype=np.float64)
    opt = nbadam.Adam(model.params, lr=schedules.one_cycle(0.01, 8))
    model.fit(x, y, epochs=2, batch_size=16, optimizer=opt, progress=False)
    np.testing.assert_array_equal(cycled.params, model.params)
    assert not np.array_equal(cycled.params, plain.params)


# -- lr = 0 wherever a schedule may return it ---------------------------------------------------

def test_lr_zero_is_accepted_everywhere_and_negative_or_nonfinite_refused():
    x = np.ones(4)
    opt = nbadam.Adam(x, lr=0.0)
    opt.step(np.ones(4))
    np.testing.assert_array_equal(x, np.ones(4))
    opt.lr = 0.0
    opt.groups[0]["lr"] = 0.0
    grouped = nbadam.Adam(x, groups=[{"params": slice(0, 2), "lr": 0.0}])
    assert grouped.groups[0]["lr"] == 0.0
    assert schedules.constant(0.0)(5) == 0.0
    assert nbadam.minimize(lambda v: float(v @ v), np.ones(2), jac=lambda v: 2 * v,
                           options={"lr": 0.0, "maxiter": 3}).x.tolist() == [1.0, 1.0]
    for bad in (-1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="lr"):
            nbadam.Adam(x, lr=bad)
        with pytest.raises(ValueError, match="lr"):
            opt.lr = bad
        with pytest.raises(ValueError, match="lr"):
            nbadam.Adam(x, groups=[{"params": slice(0, 2), "lr": bad}])
        with pytest.raises(ValueError, match="value"):
            schedules.constant(bad)
    assert opt.lr == 0.0
