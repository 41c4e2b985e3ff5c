"""Learning-rate schedules: closed forms, edges, validation and serialisation."""

import math

import numpy as np
import pytest

import nbadam
from nbadam import schedules


def test_constant():
    assert schedules.constant(0.1)(0) == schedules.constant(0.1)(10**6) == 0.1


def test_constant_zero_is_allowed_negative_and_nonfinite_are_not():
    """lr = 0 is a valid rate (torch accepts it); a schedule may hold or return it."""
    zero = schedules.constant(0.0)
    assert zero(0) == zero(10**6) == 0.0
    assert schedules.from_dict(zero.to_dict()) == zero
    for bad in (-1e-3, -1e-300, math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="value"):
            schedules.constant(bad)


def test_an_optimizer_follows_a_schedule_through_zero():
    """A schedule that returns 0 (a warm-up from 0) takes no step there, but counts it."""
    x = np.ones(3)
    opt = nbadam.Adam(x, lr=schedules.warmup_cosine_decay(0.1, warmup_steps=2, decay_steps=4))
    assert opt.step(np.ones(3)) and opt.last_lr == 0.0
    np.testing.assert_array_equal(x, np.ones(3))
    assert opt.step_count == 1 and opt.exp_avg.any()
    opt.step(np.ones(3))
    assert opt.last_lr == 0.05 and np.all(x < 1.0)
    for _ in range(3):
        opt.step(np.ones(3))          # counts 2 (the peak) and 3, then 4: the end value, 0
    assert opt.last_lr == 0.0


def test_exponential_decay_smooth_staircase_and_floor():
    smooth = schedules.exponential_decay(1.0, 0.5, transition_steps=10)
    assert smooth(0) == 1.0 and smooth(10) == 0.5 and smooth(5) == pytest.approx(0.5 ** 0.5)
    stair = schedules.exponential_decay(1.0, 0.5, transition_steps=10, staircase=True)
    assert stair(9) == 1.0 and stair(10) == 0.5
    assert schedules.exponential_decay(1.0, 0.5, end_value=0.3)(5) == 0.3
    assert schedules.exponential_decay(1.0, 2.0, end_value=3.0)(5) == 3.0


def test_step_decay_matches_torch_steplr_rule():
    sched = schedules.step_decay(0.1, step_size=3, gamma=0.5)
    assert [sched(k) for k in range(7)] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]


def test_warmup_cosine_decay():
    sched = schedules.warmup_cosine_decay(1.0, warmup_steps=10, decay_steps=110, end_value=0.1)
    assert sched(0) == 0.0 and sched(5) == 0.5 and sched(10) == 1.0
    assert sched(60) == pytest.approx(0.55) and sched(110) == sched(10**6) == 0.1
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.warmup_cosine_decay(1.0, warmup_steps=20, decay_steps=10)


def test_one_cycle_matches_torch_onecycle_endpoints():
    sched = schedules.one_cycle(max_lr=1.0, total_steps=100)
    assert sched(0) == pytest.approx(1.0 / 25.0)
    assert sched(29) == pytest.approx(1.0)               # pct_start * total - 1
    assert sched(99) == pytest.approx(1.0 / 25.0 / 1e4)
    assert sched(10**6) == sched(99)
    values = [sched(k) for k in range(100)]
    assert values.index(max(values)) == 29
    assert all(a <= b for a, b in zip(values[:30], values[1:30], strict=False))
    assert all(a >= b for a, b in zip(values[29:], values[30:], strict=False))


@pytest.mark.parametrize("sched", [
    schedules.constant(0.2), schedules.exponential_decay(1.0, 0.9, 3, True, 0.1),
    schedules.step_decay(0.5, 7), schedules.warmup_cosine_decay(1.0, 5, 50, 0.1, 0.01),
    schedules.one_cycle(0.3, 40, pct_start=0.25),
], ids=lambda s: type(s).__name__)
def test_round_trip_through_dict(sched):
    again = schedules.from_dict(sched.to_dict())
    assert again == sched and [again(k) for k in range(60)] == [sched(k) for k in range(60)]


@pytest.mark.parametrize("factory,kwargs,name", [
    (schedules.constant, {"value": -0.5}, "value"),
    (schedules.exponential_decay, {"init_value": 1.0, "decay_rate": -0.5}, "decay_rate"),
    (schedules.exponential_decay, {"init_value": 1.0, "decay_rate": 0.5,
                                   "transition_steps": 0}, "transition_steps"),
    (schedules.step_decay, {"init_value": 1.0, "step_size": 1.5}, "step_size"),
    (schedules.warmup_cosine_decay, {"peak_value": math.inf, "warmup_steps": 1,
                                     "decay_steps": 2}, "peak_value"),
    (schedules.one_cycle, {"max_lr": 1.0, "total_steps": 10, "pct_start": 1.0}, "pct_start"),
    (schedules.one_cycle, {"max_lr": 1.0, "total_steps": 1}, "total_steps"),
])
def test_bad_arguments_name_the_parameter(factory, kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        factory(**kwargs)


def test_negative_count_is_refused():
    with pytest.raises(ValueError, match="count"):
        schedules.constant(0.1)(-1)


def test_from_dict_refuses_unknown_kind():
    with pytest.raises(ValueError, match="known kinds"):
        schedules.from_dict({"schedule": "Linear"})


# -- saturation: no OverflowError at any count --------------------------------------------------

COUNTS = [0, 1, 1_000, 70_000, 10**6, 10**12, 2**63 - 1]


@pytest.mark.parametrize("sched, limit", [
    (schedules.exponential_decay(1e-3, 1.01, end_value=0.1), 0.1),
    (schedules.exponential_decay(1e-3, 1.01, transition_steps=7, staircase=True,
                                 end_value=0.1), 0.1),
    (schedules.exponential_decay(1e-3, 1.01), math.inf),
    (schedules.step_decay(1e-3, step_size=1, gamma=2.0), math.inf),
    (schedules.exponential_decay(1e-3, 0.99), 0.0),
    (schedules.exponential_decay(1e-3, 0.99, end_value=1e-5), 1e-5),
    (schedules.step_decay(1e-3, step_size=1, gamma=0.5), 0.0),
], ids=["growth capped", "staircase capped", "growth", "step growth", "decay",
        "decay floored", "step decay"])
def test_growing_and_decaying_schedules_saturate(sched, limit):
    values = [sched(count) for count in COUNTS]
    assert values[-1] == limit
    rising = limit > values[0]
    assert all((b >= a) if rising else (b <= a) for a, b in zip(values, values[1:],
                                                                strict=False))


def test_a_capped_growing_lr_drives_an_optimizer_past_the_overflow_point():
    params = np.zeros(3)
    opt = nbadam.Adam(params, lr=schedules.exponential_decay(1e-3, 1.01, end_value=1e-2))
    state = opt.state_dict()
    opt.load_state_dict({**state, "step_count": 80_000})
    opt.step(np.ones(3))
    assert opt.current_lr() == 1e-2 and np.all(np.isfinite(params))


def test_an_uncapped_growing_lr_is_refused_by_the_optimizer_naming_the_step():
    opt = nbadam.Adam(np.zeros(3), lr=schedules.step_decay(1.0, step_size=1, gamma=2.0))
    opt.load_state_dict({**opt.state_dict(), "step_count": 5_000})
    with pytest.raises(ValueError, match="returned inf at step 5000"):
        opt.step(np.ones(3))


# -- serialisation: built-ins round-trip, user subclasses are refused at save -------------------

class Linear(schedules.Schedule):
    def __call__(self, count):
        return 1e-3 * count


class Constant(schedules.Schedule):      # named like a built-in, but another schedule
    def __call__(self, count):
        return 0.5


class Halved(schedules.Constant):         # a built-in's subclass changes its behaviour
    def __call__(self, count):
        return self.value / 2


@pytest.mark.parametrize("sched", [Linear(), Constant(), Halved(0.1)],
                         ids=["user", "named like a built-in", "built-in subclass"])
def test_user_schedules_are_refused_by_to_dict_and_save(sched, tmp_path):
    with pytest.raises(TypeError, match=f"{type(sched).__qualname__} is not one of nbadam"):
        sched.to_dict()
    path = tmp_path / "opt.npz"
    opt = nbadam.Adam(np.zeros(3), lr=0.1)
    opt.save(path)
    saved = path.read_bytes()
    opt.lr = sched
    with pytest.raises(TypeError, match="plain function"):
        opt.save(path)
    assert path.read_bytes() == saved and sorted(p.name for p in tmp_path.iterdir()) == [
        "opt.npz"]
    opt.lr = lambda count: sched(count)       # the documented way to save the rest
    opt.save(path)
    fresh = nbadam.Adam(np.zeros(3), lr=sched)
    fresh.load(path)
    assert fresh.lr is sched


@pytest.mark.parametrize("data, fragment", [
    ({"schedule": ["Constant"]}, "known kinds"),
    ({"schedule": "Constant"}, "lacks ['value']"),
    ({"schedule": "Constant", "value": 0.1, "extra": 1}, "unknown fields ['extra']"),
    ({"schedule": "Constant", "value": "0.1"}, "value"),
    ([("schedule", "Constant")], "known kinds"),
])
def test_from_dict_refuses_malformed_data_with_a_value_error(data, fragment):
    with pytest.raises(ValueError) as info:
        schedules.from_dict(data)
    assert fragment in str(info.value)
