"""Learning-rate schedules: closed forms, edges, validation and serialisation."""

import math

import pytest

from nbadam import schedules


def test_constant():
    assert schedules.constant(0.1)(0) == schedules.constant(0.1)(10**6) == 0.1


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
    (schedules.constant, {"value": 0.0}, "value"),
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
