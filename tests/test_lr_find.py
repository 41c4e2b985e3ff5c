"""The learning-rate range test, nbadam.lr_find, against fastai's definitions.

fastai's suggestion functions (``fastai/callback/schedule.py``) are written out
below loop for loop as the reference; nbadam's are vectorised.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import nbadam
from nbadam import cli, rules
from nbadam.lr_finder import minimum, slide, smooth, steep, valley


def _quadratic(x):
    return 0.5 * float(np.sum(np.arange(1.0, x.size + 1.0) * x * x))


def _quadratic_grad(x):
    return np.arange(1.0, x.size + 1.0) * x


def _data(n=96, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


# -- fastai's functions, as fastai writes them -------------------------------------------------

def fastai_valley(lrs, losses):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def fastai_slide(lrs, losses, lr_diff=15, thresh=.005, adjust_value=1.):
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


def fastai_steep(lrs, losses):
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[grads.argmin()])


# -- the schedule, the smoothing, divergence --------------------------------------------------

def test_lrs_grow_exponentially_from_start_towards_end():
    res = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, start_lr=1e-5,
                         end_lr=1e-2, num_it=40, stop_div=False)
    assert len(res.lrs) == 40 and not res.diverged
    expected = [1e-5 * (1e-2 / 1e-5) ** (i / 40) for i in range(40)]
    assert res.lrs.tolist() == expected                    # fastai's SchedExp(i / num_it)
    assert res.lrs[0] == 1e-5 and res.lrs[-1] < 1e-2
    steps = np.diff(np.log(res.lrs))
    np.testing.assert_allclose(steps, math.log(1e3) / 40, rtol=1e-9)


def test_smoothing_matches_the_closed_form():
    """s_k = sum_j (1 - beta) beta**(k - j) l_j / (1 - beta**k): an independent reference."""
    rng = np.random.default_rng(1)
    losses = rng.uniform(0.5, 3.0, size=60)
    for beta in (0.0, 0.5, 0.98):
        k = np.arange(1, losses.size + 1)
        weights = np.tril((1 - beta) * beta ** np.maximum(k[:, None] - k[None, :], 0))
        reference = weights @ losses / (1 - beta ** k)
        np.testing.assert_allclose(smooth(losses, beta), reference, rtol=1e-12)
    res = nbadam.lr_find(_quadratic, np.ones(4), jac=_quadratic_grad, num_it=50,
                         beta=0.9, stop_div=False)
    np.testing.assert_allclose(res.smoothed, smooth(res.losses, 0.9), rtol=0, atol=0)
    k = np.arange(1, res.losses.size + 1)
    weights = np.tril(0.1 * 0.9 ** np.maximum(k[:, None] - k[None, :], 0))
    np.testing.assert_allclose(res.smoothed, weights @ res.losses / (1 - 0.9 ** k), rtol=1e-12)


def test_divergence_stops_early_at_four_times_the_minimum():
    res = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, start_lr=1e-4,
                         end_lr=100.0, num_it=100)
    assert res.diverged and len(res.lrs) < 100
    best = np.minimum.accumulate(res.smoothed)
    assert res.smoothed[-1] > 4 * best[-1]
    assert np.all(res.smoothed[:-1] <= 4 * best[:-1])      # the first point past it stops
    full = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, start_lr=1e-4,
                          end_lr=100.0, num_it=100, stop_div=False)
    assert len(full.lrs) == 100 and not full.diverged
    np.testing.assert_array_equal(full.losses[:len(res.losses)], res.losses)


def test_a_nonfinite_loss_stops_the_test():
    def blows_up(x):
        return math.inf if abs(x[0]) > 2.0 else float(x @ x)

    res = nbadam.lr_find(blows_up, np.ones(1), jac=lambda x: 2 * x, start_lr=1e-3,
                         end_lr=1e3, num_it=200)
    assert res.diverged and math.isinf(res.losses[-1]) and np.isfinite(res.losses[:-1]).all()


# -- suggestions --------------------------------------------------------------------------------

def test_suggestions_on_a_curve_whose_answers_are_known():
    lrs = np.logspace(-6, 0, 30)
    losses = np.r_[np.full(5, 3.0), np.linspace(2.9, 0.5, 12),      # indices 5..16 fall
                   np.linspace(0.6, 2.5, 13)]                       # then rise
    losses[9] -= 0.8                       # the steepest drop: from index 8 to 9
    losses[9] = max(losses[9], losses[10] + 1e-3)
    # minimum: a tenth of the rate at the lowest point (index 16)
    assert minimum(lrs, losses)[0] == lrs[16] / 10
    # steep: the start of the steepest fall per decade (all decades are equal here)
    assert steep(lrs, losses)[0] == lrs[int(np.argmin(np.diff(losses)))]
    # valley: fastai's longest fall runs from index 4 (its start recorded one before, at 3)
    # to 16, so idx = 3 + int(13 / 3) + int(13 / 6) = 9
    assert valley(lrs, losses)[0] == lrs[9]
    assert valley(lrs, losses) == (lrs[9], (lrs[9], losses[9]))


@pytest.mark.parametrize("seed", range(20))
def test_suggestions_match_fastai_loop_for_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 120))
    lrs = np.logspace(-7, 1, n)
    losses = np.cumsum(rng.normal(size=n)) + rng.normal(size=n) * (seed % 3)
    assert valley(lrs, losses)[0] == fastai_valley(lrs, losses)
    assert steep(lrs, losses)[0] == fastai_steep(lrs, losses)
    if n > 15:
        assert slide(lrs, losses)[0] == fastai_slide(lrs, losses)
    else:
        assert math.isnan(slide(lrs, losses)[0])


def test_suggestions_use_fastais_part_of_the_curve():
    res = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, num_it=100,
                         suggest=["valley", "steep", "minimum", "slide"])
    part = slice(100 // 10, len(res.lrs) - 5)
    lrs, losses = res.lrs[part], res.smoothed[part]
    assert res.suggestions == {"valley": fastai_valley(lrs, losses),
                               "steep": fastai_steep(lrs, losses),
                               "minimum": float(lrs[np.argmin(losses)]) / 10,
                               "slide": fastai_slide(lrs, losses)}
    assert res.suggestion == res.suggestions["valley"]


def test_too_short_a_curve_warns_and_suggests_nan():
    with pytest.warns(RuntimeWarning, match="too few"):
        res = nbadam.lr_find(_quadratic, np.ones(2), jac=_quadratic_grad, num_it=6)
    assert math.isnan(res.suggestion)


# -- fun/jac: the suggested rate is a good one ----------------------------------------------------

def test_objective_suggestions_lie_in_the_known_good_range_and_work():
    """Adam moves each coordinate by about lr per step: from x0 = 1, in 300 steps, rates of
    1e-2 to 1 reach the minimum (to 1e-6 of f(x0)) and 1e-6 barely moves.  A noiseless
    quadratic's loss falls from the first step, so the valley spans the range from start_lr
    on; the range starts at 1e-4, within four decades of the scale of x0."""
    x0 = np.ones(5)
    res = nbadam.lr_find(_quadratic, x0, jac=_quadratic_grad, num_it=100, start_lr=1e-4,
                         suggest=["valley", "steep", "minimum", "slide"])
    opts = {"maxiter": 300, "gtol": 0, "ftol": 0}
    for name, lr in res.suggestions.items():
        assert 1e-2 <= lr <= 1.0, name
        good = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad, options={**opts, "lr": lr})
        assert good.fun < 1e-6 * _quadratic(x0), name
    tiny = nbadam.minimize(_quadratic, x0, jac=_quadratic_grad, options={**opts, "lr": 1e-6})
    assert tiny.fun > 0.9 * _quadratic(x0)
    np.testing.assert_array_equal(x0, np.ones(5))            # x0 is never modified


@pytest.mark.parametrize("name", rules.names())
def test_every_rule_runs_the_objective_test(name):
    res = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, optimizer=name,
                         num_it=40, end_lr=1.0)
    assert len(res.lrs) >= 30 and np.isfinite(res.suggestion)


def test_hyperparameters_reach_the_rule():
    a = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, num_it=30,
                       optimizer_options={"betas": (0.5, 0.9)}, stop_div=False)
    b = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, num_it=30, stop_div=False)
    assert not np.array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.losses[:2], b.losses[:2])


def test_the_callers_random_streams_are_put_back():
    generator = np.random.default_rng(5)

    def noisy(x, rng):
        np.random.normal()                                  # noqa: NPY002 - the global stream
        return float(x @ x) + 0.01 * rng.normal()

    np.random.seed(11)                                      # noqa: NPY002
    expected_global = np.random.random()                    # noqa: NPY002
    expected_generator = np.random.default_rng(5).random()
    np.random.seed(11)                                      # noqa: NPY002
    nbadam.lr_find(noisy, np.ones(2), args=(generator,), jac=lambda x, rng: 2 * x, num_it=20,
                   stop_div=False, suggest="minimum")
    assert np.random.random() == expected_global           # noqa: NPY002
    assert generator.random() == expected_generator


# -- the MLP: state restored bit for bit ---------------------------------------------------------

def test_mlp_test_leaves_the_model_and_its_training_untouched():
    x, y = _data()
    model = nbadam.MLP((5, 8, 2), dtype=np.float64)
    twin = nbadam.MLP((5, 8, 2), dtype=np.float64)
    model.fit(x, y, epochs=1, batch_size=16, lr=1e-2, schedule="constant", progress=False)
    twin.fit(x, y, epochs=1, batch_size=16, lr=1e-2, schedule="constant", progress=False)
    params = model.params.copy()
    opt = model.optimizer
    before = opt.state_dict()
    res = nbadam.lr_find(model, x, y, optimizer=opt, batch_size=16, num_it=50)
    assert len(res.lrs) > 10
    after = opt.state_dict()
    np.testing.assert_array_equal(model.params, params)
    assert after["step_count"] == before["step_count"] and opt.lr == 1e-2
    for name, array in before["state"].items():
        np.testing.assert_array_equal(after["state"][name], array)
    res_named = nbadam.lr_find(model, x, y, batch_size=16, num_it=50)
    np.testing.assert_array_equal(model.params, params)
    assert model.optimizer is opt and model.epochs_trained == 1
    assert not np.array_equal(res_named.losses, res.losses)   # fresh moments vs trained ones
    # Training continues exactly as if no test had run.
    model.fit(x, y, epochs=1, batch_size=16, lr=1e-2, schedule="constant", progress=False)
    twin.fit(x, y, epochs=1, batch_size=16, lr=1e-2, schedule="constant", progress=False)
    np.testing.assert_array_equal(model.params, twin.params)


def test_mlp_batches_are_those_of_fit():
    """The first step's loss is fit's first batch's loss, at the initial weights."""
    x, y = _data()
    model = nbadam.MLP((5, 8, 2), dtype=np.float64, seed=2)
    res = nbadam.lr_find(model, x, y, batch_size=32, seed=7, num_it=12, stop_div=False,
                         suggest="minimum")
    from nbadam.nn.training import epoch_order
    rows = epoch_order(7, 0, x.shape[0], True)[:32]
    loss, _ = model.loss_and_grad(x[rows], y[rows])
    assert res.losses[0] == pytest.approx(loss, rel=1e-12)
    # batch 4 is the first of epoch 1 (three batches of 32 per epoch)
    rows = epoch_order(7, 1, x.shape[0], True)[:32]
    assert not np.array_equal(rows, epoch_order(7, 0, x.shape[0], True)[:32])


def test_mlp_with_a_weight_decay_rule_and_options():
    x, y = _data()
    model = nbadam.MLP((5, 8, 2), dtype=np.float32)
    res = nbadam.lr_find(model, x, y, optimizer="adamw", batch_size=16, num_it=40,
                         optimizer_options={"weight_decay": 0.1, "betas": (0.9, 0.99)},
                         label_smoothing=0.1, l2=1e-4)
    assert res.lrs.dtype == np.float64 and np.isfinite(res.losses[:5]).all()


# -- the result and its plot ---------------------------------------------------------------------

def test_result_is_frozen_and_plots():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    res = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, num_it=60,
                         suggest=("valley", "minimum"))
    with pytest.raises(ValueError):
        res.lrs[0] = 1.0
    with pytest.raises(AttributeError):
        res.num_it = 3
    ax = res.plot()
    assert ax.get_xscale() == "log"
    smoothed = ax.get_lines()[1]
    np.testing.assert_array_equal(smoothed.get_xdata(), res.lrs[:len(res.lrs) - 5])
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith("valley") for label in labels)
    from matplotlib.figure import Figure
    own = Figure().add_subplot()
    assert res.plot(ax=own, skip_end=0) is own
    assert len(own.get_lines()[0].get_xdata()) == len(res.lrs)


def test_plot_without_matplotlib_says_what_to_install(monkeypatch):
    res = nbadam.lr_find(_quadratic, np.ones(3), jac=_quadratic_grad, num_it=30)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"nbadam\[plot\]"):
        res.plot()


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"start_lr": 1.0, "end_lr": 1.0}, "start_lr must be below end_lr"),
    ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be below end_lr"),
    ({"start_lr": 0.0}, "start_lr"), ({"end_lr": math.nan}, "end_lr"),
    ({"num_it": 1}, "num_it"), ({"num_it": 2.5}, "num_it"),
    ({"beta": 1.0}, "beta"), ({"suggest": "best"}, "suggest"), ({"suggest": []}, "suggest"),
    ({"stop_div": "yes"}, "stop_div"), ({"batch_size": 8}, "batch_size"),
    ({"optimizer": "sgd"}, "sgd"), ({"optimizer_options": {"lr": 1.0}}, "lr"),
    ({"optimizer_options": {"betas": (1.5, 0.9)}}, "betas"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    x0 = np.ones(3)
    with pytest.raises((TypeError, ValueError), match=match):
        nbadam.lr_find(_quadratic, x0, jac=_quadratic_grad, **kwargs)
    np.testing.assert_array_equal(x0, np.ones(3))


def test_mlp_bad_input_is_a_clear_error():
    x, y = _data()
    model = nbadam.MLP((5, 8, 2))
    params = model.params.copy()
    with pytest.raises(ValueError, match="labels"):
        nbadam.lr_find(model, x)
    with pytest.raises(ValueError, match="jac"):
        nbadam.lr_find(model, x, y, jac=True)
    with pytest.raises(ValueError, match="batch_size"):
        nbadam.lr_find(model, x, y, batch_size=0)
    other = nbadam.Adam(np.zeros_like(model.params))
    with pytest.raises(ValueError, match="another array"):
        nbadam.lr_find(model, x, y, optimizer=other)
    with pytest.raises(TypeError, match="MLP or a callable"):
        nbadam.lr_find("model", x, y)
    np.testing.assert_array_equal(model.params, params)


# -- the command line ----------------------------------------------------------------------------

def test_cli_prints_the_suggestion_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "lr.png"
    status = cli.main(["lr-find", "--subset", "1024", "--hidden", "32", "--num-it", "60",
                       "--suggest", "valley", "minimum", "--plot", str(path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "suggested learning rate: " in out and "minimum: " in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    value = float(out.split("suggested learning rate: ")[1].split()[0])
    assert 1e-7 <= value < 10


def test_cli_bad_range_is_one_line(capsys):
    assert cli.main(["lr-find", "--start-lr", "1", "--end-lr", "0.5", "--subset", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "start_lr must be below end_lr" in err[0]
