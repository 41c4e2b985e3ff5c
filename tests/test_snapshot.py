"""load_state_dict checks every field before it changes anything (the whole class).

For each field of a snapshot, a bad value (wrong type, NaN, out of range,
implausible state) is refused with a ValueError naming the field, and the
optimizer — hyperparameters, groups, step counts, running scalars, state
arrays and the parameter average — is exactly as it was.
"""

import copy

import numpy as np
import pytest

import nbadam


def _trained():
    x = np.linspace(-1.0, 1.0, 6)
    opt = nbadam.NAdam(x, lr=1e-2, ema=0.9, groups=[{"params": slice(0, 3), "lr": 2e-2},
                                                   {"params": slice(3, 6)}])
    for _ in range(3):
        opt.step(np.cos(x))
    return opt


def _everything(opt):
    return (opt.hyperparameters(), [g.overrides for g in opt.groups], opt.step_count,
            opt.skipped_steps, opt._running.tolist(),
            {k: v.copy() for k, v in opt.state.items()}, opt.ema_params.copy())


def _same(a, b):
    assert a[:5] == b[:5]
    for name in a[5]:
        np.testing.assert_array_equal(a[5][name], b[5][name])
    np.testing.assert_array_equal(a[6], b[6])


def _set(snapshot, path, value):
    target = snapshot
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


BAD = [
    (("hyperparameters", "lr"), -1.0, "lr"),
    (("hyperparameters", "betas"), [0.9, 1.5], "betas"),
    (("hyperparameters", "eps"), float("nan"), "eps"),
    (("hyperparameters", "momentum_decay"), "fast", "momentum_decay"),
    (("hyperparameters", "bogus"), 1.0, "bogus"),
    (("groups", 0, "lr"), float("inf"), "groups"),
    (("groups", 1, "params"), [3, 7], "groups"),
    (("group_scalars", 1, "mu_product"), float("nan"), "mu_product"),
    (("group_scalars", 0, "mu_product"), 1.5, "mu_product"),
    (("group_scalars", 0, "mu_product"), None, "mu_product"),
    (("scalars",), "x", "scalar"),
    (("step_count",), -2, "step_count"),
    (("skipped_steps",), 1.5, "skipped_steps"),
    (("state", "exp_avg_sq"), -np.ones(6), "exp_avg_sq"),
    (("state", "exp_avg"), np.ones(5), "exp_avg"),
    (("state", "ema_params"), np.ones(6, np.float32), "ema_params"),
    (("options", "ema"), 0.5, "ema"),
    (("optimizer",), "Adam", "Adam"),
]


@pytest.mark.parametrize("path, value, match", BAD, ids=["/".join(map(str, b[0])) for b in BAD])
def test_a_refused_snapshot_changes_nothing(path, value, match):
    source = _trained()
    snapshot = copy.deepcopy(source.state_dict())
    # A valid change that must not be applied when another field is refused.
    snapshot["hyperparameters"]["weight_decay"] = 0.5
    _set(snapshot, path, value)
    target = _trained()
    for _ in range(2):
        target.step(np.ones(6))
    before = _everything(target)
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(snapshot)
    _same(_everything(target), before)


def test_the_unchanged_snapshot_loads():
    source = _trained()
    target = _trained()
    target.step(np.ones(6))
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    _same(_everything(target), _everything(source))
