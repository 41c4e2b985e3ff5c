"""Parameter groups, gradient clipping and the parameter average, against torch.

The goldens (``tests/data/goldens_groups/``, made by
``tests/data/make_goldens_groups.py``) hold torch trajectories of one flat vector
split into three ``param_groups`` (own ``lr``/``betas``/``weight_decay``, the
defaults, ``lr=0``) and a part in no group, with ``clip_grad_norm_`` active on some
steps and an EMA of the parameters, for several rules in float32 and float64.
"""

import json
import pathlib

import numpy as np
import pytest
from reference import relative_tolerance
from toy_rule import TOY

import nbadam
from nbadam import _config, rules
from nbadam.optimizers import optimizer_class

GOLDENS = sorted((pathlib.Path(__file__).parent / "data" / "goldens_groups").glob("*.npz"))
CLASSES = {"Adam": nbadam.Adam, "AdamW": nbadam.AdamW, "NAdam": nbadam.NAdam,
           "RAdam": nbadam.RAdam}


def _load(path):
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("config"))), arrays


def _build(config, params, **extra):
    def plain(value):
        return tuple(value) if isinstance(value, list) else value
    kwargs = {k: plain(v) for k, v in config["kwargs"].items()}
    groups = [{"params": slice(*g["params"]),
               **{k: plain(v) for k, v in g.items() if k != "params"}}
              for g in config["groups"]]
    return CLASSES[config["optimizer"]](params, groups=groups, clip_grad_norm=config["max_norm"],
                                        ema=config["ema"], **kwargs, **extra)


def _assert_close(ours, theirs, config, steps, what):
    scale = np.maximum(np.abs(theirs.astype(np.float64)), 1.0)
    allowed = relative_tolerance(config, steps) * scale
    error = np.abs(ours.astype(np.float64) - theirs)
    assert np.all(error <= allowed), (what, float((error / scale).max()))


@pytest.mark.parametrize("path", GOLDENS, ids=[p.stem for p in GOLDENS])
def test_groups_clipping_and_ema_match_torch(path):
    config, data = _load(path)
    params0 = data["params0"]
    x = params0.copy()
    opt = _build(config, x)
    frozen = slice(*config["groups"][2]["params"])
    outside = slice(config["groups"][2]["params"][1], x.size)
    clipped = 0
    for step, grad in enumerate(data["grads"]):
        assert opt.step(grad)
        clipped += data["norms"][step] > config["max_norm"]
        _assert_close(x, data["params"][step], config, step + 1, f"params, step {step + 1}")
        _assert_close(opt.ema_params, data["ema"][step], config, step + 1, f"ema {step + 1}")
        assert opt.last_grad_norm == pytest.approx(data["norms"][step], rel=1e-6)
    # The frozen group and the elements in no group did not change by one bit.
    np.testing.assert_array_equal(x[frozen], params0[frozen])
    np.testing.assert_array_equal(x[outside], params0[outside])
    assert 0 < clipped < len(data["grads"])          # clipping was active on some steps only


@pytest.mark.parametrize("path", GOLDENS[::2], ids=[p.stem for p in GOLDENS[::2]])
def test_resumed_run_continues_bit_for_bit(path, tmp_path):
    config, data = _load(path)
    grads = data["grads"]
    whole = _build(config, data["params0"].copy())
    for grad in grads:
        whole.step(grad)
    first = _build(config, data["params0"].copy())
    for grad in grads[:25]:
        first.step(grad)
    first.save(tmp_path / "opt.npz")
    resumed = _build(config, first.params.copy())
    resumed.load(tmp_path / "opt.npz")
    assert resumed.groups[0].overrides == first.groups[0].overrides
    for grad in grads[25:]:
        resumed.step(grad)
    np.testing.assert_array_equal(resumed.params, whole.params)
    np.testing.assert_array_equal(resumed.ema_params, whole.ema_params)
    for a, b in zip(resumed.state.values(), whole.state.values(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_serial_and_parallel_builds_agree_with_groups(monkeypatch):
    config, data = _load(GOLDENS[0])
    runs = []
    for threshold in (10**9, 0):
        monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", threshold)
        opt = _build(config, data["params0"].copy(), )
        for grad in data["grads"][:10]:
            opt.step(grad)
        runs.append(opt.params.copy())
    np.testing.assert_array_equal(*runs)


def test_groups_read_and_change_like_torch_param_groups():
    x = np.zeros(6)
    opt = nbadam.Adam(x, lr=0.1, groups=[{"params": slice(0, 3), "lr": 0.01},
                                         {"params": (3, 6)}])
    g0, g1 = opt.groups
    assert g0["params"] == slice(0, 3) and g1["params"] == slice(3, 6)
    assert g0["lr"] == 0.01 and g1["lr"] == 0.1 and g1["betas"] == (0.9, 0.999)
    assert set(g0) >= {"params", "lr", "betas", "eps", "weight_decay", "maximize"}
    opt.lr = 0.2                                   # followed by the group that does not set it
    assert g1["lr"] == 0.2 and g0["lr"] == 0.01
    opt.step(np.ones(6))
    np.testing.assert_allclose(x, [-0.01] * 3 + [-0.2] * 3)
    g0["lr"] = 0.5
    g1["lr"] = 0.4
    del g1["lr"]                                   # follows the optimizer's again
    opt.lr = 0.3
    opt.step(np.ones(6))
    np.testing.assert_allclose(x, [-0.51] * 3 + [-0.5] * 3)
    assert opt.last_lr == 0.5                      # the first group's, as current_lr()
    with pytest.raises(ValueError, match="fixed"):
        g0["params"] = slice(0, 6)
    with pytest.raises(ValueError, match="amsgrad"):
        g0["amsgrad"] = True
    with pytest.raises(ValueError, match="betas"):
        g0["betas"] = (1.5, 0.9)


BAD_GROUPS = [
    ([{"params": slice(0, 4)}, {"params": slice(3, 6)}], ValueError, "overlap"),
    ([{"params": slice(0, 9)}], ValueError, r"\[0, 9\)"),
    ([{"params": slice(-3, None)}], ValueError, "negative"),
    ([{"params": slice(0, 6, 2)}], ValueError, "step 1"),
    ([{"params": slice(2, 2)}], ValueError, "non-empty"),
    ([{"params": slice(0, 6), "lrr": 1.0}], ValueError, "unknown group key 'lrr'"),
    ([{"params": slice(0, 6), "amsgrad": True}], ValueError, "amsgrad"),
    ([{"params": slice(0, 6), "lr": -1.0}], ValueError, "lr"),
    ([{"lr": 1.0}], ValueError, "'params'"),
    ({"params": slice(0, 6)}, ValueError, "list of dicts"),
    ([], ValueError, "non-empty list"),
]


@pytest.mark.parametrize("groups, error, match", BAD_GROUPS)
def test_bad_groups_are_refused_and_change_nothing(groups, error, match):
    x = np.arange(6.0)
    with pytest.raises(error, match=match):
        nbadam.Adam(x, groups=groups)
    np.testing.assert_array_equal(x, np.arange(6.0))


@pytest.mark.parametrize("kwargs, match", [({"clip_grad_norm": -1.0}, "clip_grad_norm"),
                                           ({"clip_grad_norm": np.nan}, "clip_grad_norm"),
                                           ({"ema": 1.0}, r"ema .*\[0, 1\)"),
                                           ({"ema": -0.1}, "ema"), ({"ema": "0.9"}, "ema")])
def test_bad_clipping_and_ema_are_refused(kwargs, match):
    x = np.arange(4.0)
    with pytest.raises((TypeError, ValueError), match=match):
        nbadam.Adam(x, **kwargs)
    np.testing.assert_array_equal(x, np.arange(4.0))


def test_checkpoint_of_another_layout_is_refused(tmp_path):
    x = np.ones(6)
    grouped = nbadam.Adam(x, groups=[{"params": slice(0, 3)}, {"params": slice(3, 6)}], ema=0.9)
    grouped.step(np.ones(6))
    grouped.save(tmp_path / "g.npz")
    plain = nbadam.Adam(np.ones(6), ema=0.9)
    before = plain.state_dict()
    with pytest.raises(ValueError, match="groups"):
        plain.load(tmp_path / "g.npz")
    with pytest.raises(ValueError, match="ema"):
        nbadam.Adam(np.ones(6), groups=[{"params": slice(0, 3)}, {"params": slice(3, 6)}]
                    ).load(tmp_path / "g.npz")
    after = plain.state_dict()
    assert after["step_count"] == before["step_count"] == 0
    np.testing.assert_array_equal(plain.ema_params, np.zeros(6))


def test_clipping_a_rule_without_a_gradient_multiplier():
    """A rule whose scalars have no grad_sign clips a scaled copy (same numbers)."""
    rules.register(TOY)
    try:
        x = np.array([3.0, 4.0])
        opt = optimizer_class("toy")(x, lr=0.1, beta=0.0, clip_grad_norm=1.0)
        grad = np.array([3.0, 4.0])
        opt.step(grad)
        np.testing.assert_array_equal(grad, [3.0, 4.0])    # the caller's gradient is kept
        assert opt.last_grad_norm == 5.0
        np.testing.assert_allclose(x, [3.0 - 0.1 * 0.6, 4.0 - 0.1 * 0.8], rtol=1e-6)
    finally:
        rules.unregister("toy")


def test_skipped_steps_do_not_move_the_average():
    x = np.ones(3)
    opt = nbadam.Adam(x, lr=0.1, ema=0.5, nonfinite="skip")
    opt.step(np.ones(3))
    average = opt.ema_params.copy()
    assert not opt.step(np.array([1.0, np.nan, 1.0]))
    np.testing.assert_array_equal(opt.ema_params, average)


@pytest.mark.parametrize("option", [{"groups": [{"params": slice(0, 2)}]},
                                    {"clip_grad_norm": 1.0}, {"ema": 0.9}])
def test_sharded_optimizer_refuses_what_it_would_compute_per_slice(option):
    from nbadam import distributed

    MPI = distributed.require_mpi()
    x = np.ones(4)
    with pytest.raises(ValueError, match=next(iter(option))):
        distributed.ShardedOptimizer(nbadam.Adam, x, MPI.COMM_SELF, **option)
    np.testing.assert_array_equal(x, np.ones(4))


def test_clipping_a_non_finite_gradient_propagates_as_torch():
    """torch multiplies by max_norm / (nan + 1e-6) = nan: every element becomes NaN."""
    x = np.ones(3)
    opt = nbadam.Adam(x, lr=0.1, clip_grad_norm=1.0)
    opt.step(np.array([1.0, np.nan, 1.0]))
    assert np.isnan(opt.last_grad_norm) and np.isnan(x).all()
