"""nbadam.MLP: layout, kernels against NumPy, gradients, training, files, resume, bad inputs."""

from __future__ import annotations

import math
import os
import tracemalloc

import numpy as np
import pytest

import nbadam
from nbadam.datasets import load_mnist
from nbadam.nn import MLP, _fused, training

DTYPES = [np.float32, np.float64]
ACTIVATIONS = ["relu", "tanh", "sigmoid"]
TINY = (5, 7, 6, 3)
TINY_MNIST = (784, 16, 10)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def tiny_data(n=40, sizes=TINY, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n)
    return x, y


# -- slow, obviously correct references ---------------------------------------
ACT = {
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
}


def reference_loss(model, x, y):
    """Mean softmax cross-entropy by the textbook formula, in float64."""
    forward, _ = ACT[model.activation]
    a = x.reshape(len(x), -1).astype(np.float64)
    for weight, bias in zip(model.weights[:-1], model.biases[:-1], strict=True):
        a = forward(a @ weight.astype(np.float64) + bias)
    logits = a @ model.weights[-1].astype(np.float64) + model.biases[-1]
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(y)), y].mean()


# -- layout and initialisation ------------------------------------------------
def test_all_parameters_are_views_of_one_vector():
    model = MLP(TINY)
    n = sum(i * o + o for i, o in zip(TINY[:-1], TINY[1:], strict=True))
    assert model.params.shape == model.grad.shape == (n,)
    assert model.params.dtype == np.float32
    for array in model.weights + model.biases:
        assert array.base is model.params
    for array in model.weight_grads + model.bias_grads:
        assert array.base is model.grad
    assert [w.shape for w in model.weights] == [(5, 7), (7, 6), (6, 3)]
    model.params[:] = np.arange(n)
    assert model.weights[0][0, 1] == 1 and model.biases[0][0] == 5 * 7


def test_initialisation_is_seeded_and_scaled():
    a, b, c = MLP(seed=3), MLP(seed=3), MLP(seed=4)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert np.std(a.weights[0]) == pytest.approx(math.sqrt(2 / 784), rel=0.02)  # He
    assert np.abs(a.weights[-1]).max() <= math.sqrt(6 / (128 + 10))  # Glorot, output
    assert not any(bias.any() for bias in a.biases)
    wide = MLP(dtype=np.float64, seed=3)
    assert np.array_equal(a.params, wide.params.astype(np.float32))
    tanh = MLP((100, 50, 10), activation="tanh")
    assert np.abs(tanh.weights[0]).max() <= math.sqrt(6 / 150)


def test_seed_none_draws_and_records_a_seed():
    model = MLP(TINY, seed=None)
    assert np.array_equal(MLP(TINY, seed=model.seed).params, model.params)


# -- fused kernels against NumPy -----------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (128, 256), (33, 10)])
def test_fused_kernels_match_numpy(dtype, shape):
    rng = np.random.default_rng(0)
    z = rng.normal(size=shape).astype(dtype)
    bias = rng.normal(size=shape[1]).astype(dtype)
    delta = rng.normal(size=shape).astype(dtype)
    one = dtype(1)
    for name, (forward, derivative) in ACT.items():
        out = z.copy()
        getattr(_fused, f"bias_{name}")(out, bias, one)
        expected = forward(z + bias)
        np.testing.assert_allclose(out, expected, rtol=4 * np.finfo(dtype).eps, atol=1e-30)
        d, bias_grad = delta.copy(), np.empty_like(bias)
        getattr(_fused, f"{name}_backward")(d, out, bias_grad, one)
        np.testing.assert_allclose(d, delta * derivative(out), rtol=4 * np.finfo(dtype).eps)
        np.testing.assert_allclose(bias_grad, (delta * derivative(out)).sum(axis=0),
                                   rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)
        assert d.dtype == bias_grad.dtype == out.dtype == dtype
    added = z.copy()
    _fused.add_bias(added, bias)
    np.testing.assert_array_equal(added, z + bias)


def test_relu_propagates_nan_and_zeroes_negatives():
    z = np.array([[np.nan, -1.0, 2.0, -0.0]], np.float32)
    _fused.bias_relu(z, np.zeros(4, np.float32), np.float32(1))
    assert np.isnan(z[0, 0]) and list(z[0, 1:]) == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 5, 128])
def test_softmax_cross_entropy_matches_numpy(dtype, rows):
    rng = np.random.default_rng(rows)
    logits = (rng.normal(size=(rows, 10)) * 30).astype(dtype)  # large: overflow-prone
    bias = rng.normal(size=10).astype(dtype)
    labels = rng.integers(0, 10, size=rows)
    z = logits.astype(np.float64) + bias
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    losses = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(rows), labels]
    onehot = np.eye(10)[labels]
    scale = dtype(1 / rows)
    work, delta, bias_grad = logits.copy(), np.empty_like(logits), np.empty_like(bias)
    loss, correct = _fused.softmax_cross_entropy(work, bias, labels, delta, bias_grad, scale,
                                                 scale, dtype(0), 0.0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_array_equal(work, logits + bias)
    np.testing.assert_allclose(loss, losses.sum(), rtol=tol)
    np.testing.assert_allclose(delta, (p - onehot) * float(scale), rtol=tol, atol=tol / rows)
    np.testing.assert_allclose(bias_grad, ((p - onehot) * float(scale)).sum(axis=0), atol=tol)
    assert correct == int((np.argmax(logits + bias, axis=1) == labels).sum())
    assert np.isfinite(loss) and np.isfinite(delta).all()
    loss_only = _fused.softmax_cross_entropy_loss(logits + bias, labels)
    np.testing.assert_allclose(loss_only[0], loss, rtol=tol)
    assert loss_only[1] == correct


@pytest.mark.parametrize("source", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_rows_converts_and_scales(source, dtype):
    x = np.arange(60).reshape(6, 10).astype(source)
    rows = np.array([4, 0, 4])
    out = np.empty((3, 10), dtype)
    divisor = dtype(255 if source == np.uint8 else 1)
    _fused.gather_rows(x, rows, divisor, out)
    np.testing.assert_array_equal(out, x[rows].astype(dtype) / divisor)


# -- gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_matches_reference(activation):
    model = MLP(TINY, activation=activation, dtype=np.float64, seed=2)
    model.params += np.random.default_rng(0).normal(scale=0.1, size=model.params.size)
    x, y = tiny_data()
    loss, grad = model.loss_and_grad(x, y)
    assert grad is model.grad
    assert loss == pytest.approx(reference_loss(model, x, y), rel=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_finite_differences(activation):
    model = MLP(TINY, activation=activation, dtype=np.float64, seed=5)
    model.params += np.random.default_rng(1).normal(scale=0.1, size=model.params.size)
    x, y = tiny_data(n=25)
    _, grad = model.loss_and_grad(x, y)
    analytic = grad.copy()
    numeric = np.empty_like(analytic)
    h = 1e-6
    for i in range(model.params.size):
        saved = model.params[i]
        model.params[i] = saved + h
        up = model.loss_and_grad(x, y)[0]
        model.params[i] = saved - h
        down = model.loss_and_grad(x, y)[0]
        model.params[i] = saved
        numeric[i] = (up - down) / (2 * h)
    scale = np.abs(numeric).max()
    assert scale > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7 * scale)


def test_partial_batch_gradient_is_the_mean():
    model = MLP(TINY, dtype=np.float64)
    x, y = tiny_data(n=7)
    grad = model.loss_and_grad(x, y)[1].copy()
    total = np.zeros_like(grad)
    for i in range(7):
        total += model.loss_and_grad(x[i:i + 1], y[i:i + 1])[1]
    np.testing.assert_allclose(grad, total / 7, rtol=1e-12, atol=1e-15)


# -- predictions ---------------------------------------------------------------------
def test_predict_proba_predict_and_evaluate_agree():
    model = MLP(TINY, dtype=np.float64, seed=7)
    x, y = tiny_data(n=2100)  # more than one evaluation block
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(x), proba.argmax(axis=1))
    scores = model.evaluate(x, y)
    assert scores["loss"] == pytest.approx(reference_loss(model, x, y), rel=1e-10)
    assert scores["accuracy"] == np.mean(proba.argmax(axis=1) == y)


def test_uint8_pixels_are_divided_by_255_and_images_flattened(mnist):
    (x, _), _ = mnist
    images = x[:50]
    model = MLP(seed=1)
    scaled = images.reshape(50, 784).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(model.predict_proba(images), model.predict_proba(scaled))


# -- training ----------------------------------------------------------------------
def test_short_training_exceeds_90_percent(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    model = MLP()
    history = model.fit(x_train[:10000], y_train[:10000], epochs=2, progress=False,
                        validation_data=(x_test, y_test))
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    assert accuracy > 0.90
    assert history["loss"][1] < history["loss"][0]
    assert history["val_accuracy"][-1] == pytest.approx(accuracy, abs=1e-3)
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]


def test_same_seed_same_result():
    x, y = tiny_data(n=300)
    runs = []
    for _ in range(2):
        model = MLP(TINY, seed=3)
        history = model.fit(x, y, epochs=3, batch_size=32, progress=False)
        runs.append((model.params.copy(), history))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    other = MLP(TINY, seed=3)
    other.fit(x, y, epochs=3, batch_size=32, progress=False, seed=99)
    assert not np.array_equal(other.params, runs[0][0])


def test_epoch_order_depends_only_on_seed_and_epoch():
    first = training.epoch_order(5, 2, 1000, shuffle=True)
    assert np.array_equal(np.sort(first), np.arange(1000))
    assert np.array_equal(first, np.random.default_rng([5, 2]).permutation(1000))
    assert not np.array_equal(first, training.epoch_order(5, 3, 1000, shuffle=True))
    assert np.array_equal(training.epoch_order(5, 2, 4, shuffle=False), np.arange(4))


@pytest.mark.parametrize("name", nbadam.rules.names())
def test_every_named_optimizer_trains(name):
    x, y = tiny_data(n=200)
    model = MLP(TINY, dtype=np.float64)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=5, batch_size=20, optimizer=name, lr=1e-2, progress=False)
    assert model.evaluate(x, y)["loss"] < before


def test_optimizer_instance_and_options():
    x, y = tiny_data(n=64)
    model = MLP(TINY)
    opt = nbadam.AdamW(model.params, lr=1e-2, weight_decay=0.1)
    model.fit(x, y, epochs=2, batch_size=16, optimizer=opt, progress=False)
    assert opt.step_count == 8
    amsgrad = training.make_optimizer(model, "AMSGrad", 2e-3, {"betas": (0.8, 0.9)})
    assert isinstance(amsgrad, nbadam.Adam) and amsgrad.amsgrad
    assert amsgrad.lr == 2e-3 and amsgrad.betas == (0.8, 0.9)
    assert training.make_optimizer(model, "nadam", None, None).lr == 2e-3


def test_callback_and_reduce_hook(monkeypatch):
    x, y = tiny_data(n=50)
    model = MLP(TINY)
    seen, reduced = [], []
    original = training.Trainer._reduce_gradient

    def spy(self, grad):
        assert grad is model.grad
        reduced.append(self.optimizer.step_count)
        return original(self, grad)

    monkeypatch.setattr(training.Trainer, "_reduce_gradient", spy)
    model.fit(x, y, epochs=2, batch_size=20, progress=False,
              callback=lambda epoch, logs: seen.append((epoch, sorted(logs))))
    assert seen == [(1, ["accuracy", "loss"]), (2, ["accuracy", "loss"])]
    assert reduced == list(range(6))  # once per step, before the optimizer's step


def test_progress_is_quiet_off_a_terminal(capsys):
    x, y = tiny_data(n=50)
    MLP(TINY).fit(x, y, epochs=1, progress=True)
    MLP(TINY).fit(x, y, epochs=1, progress=False)
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_no_allocation_growth_per_step():
    x, y = tiny_data(n=2000, sizes=(50, 64, 32, 10), dtype=np.float32)
    model = MLP((50, 64, 32, 10))
    x, divisor = model._check_x(x, "x")
    labels = model._check_y(y, len(y), "y")
    trainer = training.Trainer(model, nbadam.Adam(model.params), rows=128)
    order = training.epoch_order(0, 0, len(x), shuffle=True)
    batches = [order[i:i + 128] for i in range(0, len(x), 128)]
    for rows in batches[:3]:
        trainer.step(x, divisor, labels, rows)  # warm up: compile, first launches
    tracemalloc.start()
    try:
        trainer.step(x, divisor, labels, batches[3])
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            for rows in batches:
                trainer.step(x, divisor, labels, rows)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 4096
    assert peak - before < 64 * 1024  # no batch-sized temporaries (a batch is 25 kB)


# -- continuing, starting afresh ------------------------------------------------------
def test_a_second_fit_continues_bit_for_bit_with_a_constant_lr():
    x, y = tiny_data(n=300)
    straight = MLP(TINY, seed=2)
    whole = straight.fit(x, y, epochs=3, batch_size=32, schedule="constant", progress=False)
    parts = MLP(TINY, seed=2)
    first = parts.fit(x, y, epochs=1, batch_size=32, schedule="constant", progress=False)
    optimizer = parts.optimizer
    rest = parts.fit(x, y, epochs=2, batch_size=32, schedule="constant", progress=False)
    np.testing.assert_array_equal(parts.params, straight.params)
    assert parts.optimizer is optimizer and optimizer.step_count == 3 * 10
    assert first.epoch == [1] and rest.epoch == [2, 3] and parts.epochs_trained == 3
    assert first["loss"] + rest["loss"] == whole["loss"]


def test_each_call_decays_a_cosine_over_its_own_steps():
    x, y = tiny_data(n=64)
    model = MLP(TINY)
    model.fit(x, y, epochs=2, batch_size=16, lr=1e-2, progress=False)
    assert model.optimizer.last_lr == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    model.fit(x, y, epochs=1, batch_size=16, lr=1e-2, progress=False)
    schedule = model.optimizer.lr
    assert model.optimizer.step_count == 12
    assert [schedule(count) for count in (8, 10)] == [1e-2, pytest.approx(5e-3)]


def test_a_callable_lr_sees_the_step_count_over_calls():
    x, y = tiny_data(n=64)
    seen = []

    def lr(count):
        seen.append(count)
        return 1e-3

    model = MLP(TINY)
    model.fit(x, y, epochs=1, batch_size=16, lr=lr, progress=False)
    model.fit(x, y, epochs=1, batch_size=16, lr=lr, progress=False)
    assert seen == list(range(8))


def test_other_optimizer_settings_build_a_new_optimizer():
    x, y = tiny_data(n=64)
    model = MLP(TINY)
    model.fit(x, y, epochs=1, batch_size=16, progress=False)
    first = model.optimizer
    model.fit(x, y, epochs=1, batch_size=16, lr=1e-4, progress=False)
    assert model.optimizer is not first and model.optimizer.step_count == 4
    assert model.epochs_trained == 2
    opt = nbadam.AdamW(model.params, lr=1e-3)
    history = model.fit(x, y, epochs=1, batch_size=16, optimizer=opt, progress=False)
    assert model.optimizer is opt and history.epoch == [3]


def test_reset_starts_afresh():
    x, y = tiny_data(n=64)
    fresh = MLP(TINY, seed=4)
    expected = fresh.fit(x, y, epochs=2, batch_size=16, progress=False)
    model = MLP(TINY, seed=4)
    model.fit(x, y, epochs=3, batch_size=16, progress=False)
    history = model.reset().fit(x, y, epochs=2, batch_size=16, progress=False)
    np.testing.assert_array_equal(model.params, fresh.params)
    assert history == expected and history.epoch == [1, 2]


# -- early stopping ---------------------------------------------------------------------
def overfitting_data():
    """Few noisy examples and a wide network: the validation loss soon rises."""
    x, y = tiny_data(n=120, sizes=(5, 64, 3), seed=3)
    return x, y




@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_early_stopping_restores_the_best_epoch_exactly(monitor):
    x, y = overfitting_data()
    model = MLP((5, 64, 3), dtype=np.float64, seed=1)
    kept = {}
    history = model.fit(x, y, epochs=200, batch_size=10, lr=1e-2, schedule="constant",
                        validation_split=0.25, early_stopping=3, monitor=monitor,
                        progress=False,
                        callback=lambda epoch, logs: kept.update({epoch: model.params.copy()}))
    values = history[monitor]
    best = int(np.argmin(values) if monitor == "val_loss" else np.argmax(values)) + 1
    assert history.stopped_early and history.best_epoch == best
    assert history.epoch[-1] == best + 3 == len(values)
    np.testing.assert_array_equal(model.params, kept[best])
    assert model.epochs_trained == best + 3   # the optimizer continues from the last epoch


def test_validation_split_holds_out_the_last_examples():
    x, y = tiny_data(n=100)
    split = MLP(TINY, seed=5)
    by_split = split.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, progress=False)
    given = MLP(TINY, seed=5)
    by_data = given.fit(x[:80], y[:80], epochs=2, batch_size=16,
                        validation_data=(x[80:], y[80:]), progress=False)
    np.testing.assert_array_equal(split.params, given.params)
    assert by_split == by_data


def test_early_stopping_without_improvement_to_the_end_keeps_the_best():
    x, y = tiny_data(n=200)
    model = MLP(TINY, dtype=np.float64)
    kept = {}
    history = model.fit(x, y, epochs=4, batch_size=20, validation_split=0.5,
                        early_stopping=10, monitor="loss", progress=False,
                        callback=lambda epoch, logs: kept.update({epoch: model.params.copy()}))
    assert not history.stopped_early
    assert history.best_epoch == int(np.argmin(history["loss"])) + 1
    np.testing.assert_array_equal(model.params, kept[history.best_epoch])


def test_an_interrupted_early_stopped_run_resumes_bit_for_bit(tmp_path):
    x, y = overfitting_data()
    kwargs = {"epochs": 200, "batch_size": 10, "lr": 1e-2, "validation_split": 0.25,
              "early_stopping": 2, "progress": False, "schedule": "constant"}
    reference = MLP((5, 64, 3), dtype=np.float64, seed=1)
    expected = reference.fit(x, y, **kwargs)
    path = tmp_path / "run.npz"
    for stop in (expected.best_epoch + 1, len(expected.epoch)):
        with pytest.raises(KeyboardInterrupt):
            MLP((5, 64, 3), dtype=np.float64, seed=1).fit(
                x, y, checkpoint=path, callback=stop_after(stop), **kwargs)
        resumed = MLP((5, 64, 3), dtype=np.float64, seed=1)
        history = resumed.fit(x, y, checkpoint=path, resume=True, **kwargs)
        np.testing.assert_array_equal(resumed.params, reference.params)
        assert history == expected and history.best_epoch == expected.best_epoch
        path.unlink()


@pytest.mark.parametrize("state", [{"best_epoch": 99, "best": 0.5}, {"best_epoch": 1},
                                   "best", {"best_epoch": True, "best": 0.5}])
def test_resume_refuses_a_malformed_early_stopping_state(tmp_path, state):
    x, y = tiny_data(n=40)
    path = tmp_path / "run.npz"
    kwargs = {"epochs": 3, "batch_size": 10, "validation_split": 0.25, "early_stopping": 5,
              "progress": False, "checkpoint": path}
    with pytest.raises(KeyboardInterrupt):
        MLP(TINY).fit(x, y, callback=stop_after(2), **kwargs)
    meta, arrays = nbadam.checkpoint.load_npz(path, kind="mlp-training",
                                              keys=set(np.load(path).files) - {"__meta__"})
    nbadam.checkpoint.save_npz(path, arrays, {**meta, "early_stopping": state})
    saved = path.read_bytes()
    model = MLP(TINY)
    params = model.params.copy()
    with pytest.raises(ValueError, match="run.npz: (its early-stopping state is malformed|"
                                         "its 'early_stopping' entry is malformed)"):
        model.fit(x, y, resume=True, **kwargs)
    np.testing.assert_array_equal(model.params, params)
    assert path.read_bytes() == saved and model.epochs_trained == 0


# -- loss terms ----------------------------------------------------------------------------
def test_label_smoothing_and_l2_match_the_reference():
    model = MLP(TINY, dtype=np.float64, seed=2)
    model.params += np.random.default_rng(0).normal(scale=0.1, size=model.params.size)
    x, y = tiny_data()
    xs, divisor = model._check_x(x, "x")
    work = nbadam.nn._workspace._Workspace(model.sizes, model.dtype, len(x))
    count = work.load(xs, divisor, np.arange(len(x)), y)
    smoothing, l2 = 0.2, 0.03

    def penalised(params):
        saved = model.params.copy()
        model.params[:] = params
        forward, _ = ACT[model.activation]
        a = x
        for weight, bias in zip(model.weights[:-1], model.biases[:-1], strict=True):
            a = forward(a @ weight + bias)
        logits = a @ model.weights[-1] + model.biases[-1]
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        target = np.full(log_p.shape, smoothing / 3) + (1 - smoothing) * np.eye(3)[y]
        value = -(target * log_p).sum(axis=1).mean()
        value += l2 / 2 * sum((w ** 2).sum() for w in model.weights)
        model.params[:] = saved
        return value

    loss, _ = model._loss_and_grad(work, count, l2, smoothing)
    assert loss / count == pytest.approx(penalised(model.params), rel=1e-12)
    analytic = model.grad.copy()
    numeric = np.empty_like(analytic)
    for i in range(model.params.size):
        step = np.zeros_like(analytic)
        step[i] = 1e-6
        numeric[i] = (penalised(model.params + step) - penalised(model.params - step)) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    plain = model._loss_and_grad(work, count)
    again = model._loss_and_grad(work, count, 0.0, 0.0)
    assert plain == again


# -- checkpoints and resume -------------------------------------------------------------
def subset(mnist, n=1500):
    (x, y), _ = mnist
    return x[:n], y[:n]


def stop_after(epochs):
    """A callback that interrupts training after ``epochs`` epochs, as Ctrl-C would."""
    def callback(epoch, logs):
        if epoch == epochs:
            raise KeyboardInterrupt
    return callback


def test_resume_is_bit_for_bit(mnist, tmp_path):
    x, y = subset(mnist)
    reference = MLP()
    full = reference.fit(x, y, epochs=3, progress=False)

    path = tmp_path / "run.npz"
    first = MLP()
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=3, progress=False, checkpoint=path, callback=stop_after(1))
    del first  # the "crash": only the file survives
    resumed = MLP()
    history = resumed.fit(x, y, epochs=3, progress=False, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.params, reference.params)
    assert history == full and history.epoch == [1, 2, 3]
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_resume_refuses_another_length_of_a_cosine_run(mnist, tmp_path):
    x, y = subset(mnist, 300)
    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        MLP(TINY_MNIST).fit(x, y, epochs=3, progress=False, checkpoint=path,
                            callback=stop_after(1))
    with pytest.raises(ValueError, match="decays the learning rate over 3 epochs"):
        MLP(TINY_MNIST).fit(x, y, epochs=4, progress=False, checkpoint=path, resume=True)
    # A constant learning rate may be extended.
    MLP(TINY_MNIST).fit(x, y, epochs=1, schedule="constant", progress=False,
                        checkpoint=tmp_path / "constant.npz")
    history = MLP(TINY_MNIST).fit(x, y, epochs=2, schedule="constant", progress=False,
                                  checkpoint=tmp_path / "constant.npz", resume=True)
    assert history.epoch == [1, 2]


def test_resume_after_a_kill_mid_epoch(mnist, tmp_path, monkeypatch):
    x, y = subset(mnist)
    reference = MLP(dtype=np.float64)
    reference.fit(x, y, epochs=3, batch_size=100, optimizer="nadam", progress=False)

    path = tmp_path / "run.npz"
    calls = {"n": 0}
    original = MLP._loss_and_grad

    def dies_in_epoch_two(self, work, count, *args):
        calls["n"] += 1
        if calls["n"] == 20:  # 15 steps per epoch
            raise KeyboardInterrupt
        return original(self, work, count, *args)

    monkeypatch.setattr(MLP, "_loss_and_grad", dies_in_epoch_two)
    victim = MLP(dtype=np.float64)
    with pytest.raises(KeyboardInterrupt):
        victim.fit(x, y, epochs=3, batch_size=100, optimizer="nadam", progress=False,
                   checkpoint=path)
    monkeypatch.setattr(MLP, "_loss_and_grad", original)
    resumed = MLP(dtype=np.float64)
    resumed.fit(x, y, epochs=3, batch_size=100, optimizer="nadam", progress=False,
                checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.params, reference.params)


def test_resume_without_a_file_starts_afresh_and_finished_runs_return(tmp_path):
    x, y = tiny_data(n=64)
    path = tmp_path / "run.npz"
    model = MLP(TINY)
    history = model.fit(x, y, epochs=2, batch_size=16, progress=False, checkpoint=path,
                        resume=True)
    assert len(history["loss"]) == 2 and path.exists()
    params = model.params.copy()
    again = model.fit(x, y, epochs=2, batch_size=16, progress=False, checkpoint=path,
                      resume=True)
    assert again == history
    np.testing.assert_array_equal(model.params, params)


def test_checkpoint_every(tmp_path, monkeypatch):
    x, y = tiny_data(n=64)
    written = []
    monkeypatch.setattr(training, "_save_checkpoint",
                        lambda path, model, opt, run, state, *rest:
                        written.append(state.epochs_done))
    MLP(TINY).fit(x, y, epochs=5, batch_size=32, progress=False,
                  checkpoint=tmp_path / "run.npz", checkpoint_every=2)
    assert written == [2, 4, 5]


@pytest.mark.parametrize("change, message", [
    ({"seed": 1}, "seed"),
    ({"batch_size": 8}, "batch_size"),
    ({"shuffle": False}, "shuffle"),
    ({"lr": 1e-2}, "lr"),
    ({"optimizer": "radam"}, "RAdam"),
    ({"data": True}, "training data"),
    ({"validation_data": True}, "validation_data"),
    ({"epochs": 1}, "more than epochs=1"),
    ({"model": (5, 8, 6, 3)}, "model"),
])
def test_resume_refuses_a_different_run(tmp_path, change, message):
    x, y = tiny_data(n=64)
    path = tmp_path / "run.npz"
    MLP(TINY).fit(x, y, epochs=2, batch_size=16, schedule="constant", progress=False,
                  checkpoint=path)
    saved = path.read_bytes()
    model = MLP(change.pop("model", TINY))
    params = model.params.copy()
    kwargs = {"epochs": 3, "batch_size": 16, "schedule": "constant", "progress": False,
              "checkpoint": path, "resume": True}
    if change.pop("data", False):
        x = x.copy()
        x[0, 0] += 1
    if change.pop("validation_data", False):
        kwargs["validation_data"] = (x, y)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, **kwargs)
    np.testing.assert_array_equal(model.params, params)
    assert path.read_bytes() == saved


def test_save_and_load_round_trip(tmp_path):
    x, y = tiny_data(n=64)
    model = MLP(TINY, activation="tanh", dtype=np.float64, seed=9)
    model.fit(x, y, epochs=2, batch_size=16, progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert repr(loaded) == repr(model)
    assert loaded.params.dtype == np.float64
    np.testing.assert_array_equal(loaded.params, model.params)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.weights[0].base is loaded.params


def test_a_pickled_model_keeps_its_views_and_continues_alike():
    import pickle

    x, y = tiny_data(n=64)
    model = MLP(TINY, seed=6)
    model.fit(x, y, epochs=1, batch_size=16, schedule="constant", progress=False)
    copy = pickle.loads(pickle.dumps(model))
    assert all(w.base is copy.params for w in copy.weights + copy.biases)
    assert all(g.base is copy.grad for g in copy.weight_grads + copy.bias_grads)
    assert copy.optimizer.params is copy.params and copy.epochs_trained == 1
    for each in (model, copy):
        each.fit(x, y, epochs=1, batch_size=16, schedule="constant", progress=False)
    np.testing.assert_array_equal(copy.params, model.params)


def test_load_refuses_other_files(tmp_path):
    x, y = tiny_data(n=32)
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "missing.npz")
    opt_file = tmp_path / "opt.npz"
    nbadam.Adam(np.zeros(3)).save(opt_file)
    with pytest.raises(ValueError, match="'optimizer' checkpoint, expected 'mlp'"):
        MLP.load(opt_file)
    run_file = tmp_path / "run.npz"
    MLP(TINY).fit(x, y, epochs=1, progress=False, checkpoint=run_file)
    with pytest.raises(ValueError, match="expected 'mlp'"):
        MLP.load(run_file)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        MLP.load(broken)


# -- bad inputs ----------------------------------------------------------------------------
def nan_pixels(x):
    x = x.astype(np.float32)
    x[3, 2] = np.nan
    return x


BAD_X = [
    (lambda x: x[:, :4], ValueError, r"shape \(n, 5\)"),
    (lambda x: x[0], ValueError, "shape"),
    (lambda x: x[:0], ValueError, "no examples"),
    (nan_pixels, ValueError, r"non-finite value \(x\[3\] has nan"),
    (lambda x: np.where(x > 1, np.inf, x), ValueError, "non-finite"),
    (lambda x: x.astype(np.int64), TypeError, "uint8 pixels"),
    (lambda x: x.astype(np.float16), TypeError, "dtype float16"),
    (lambda x: x > 0, TypeError, "dtype bool"),
    (lambda x: x.astype(str), TypeError, "dtype <U"),
    (lambda x: np.where(x > 1, -1e39, x), ValueError, "beyond the range of float32"),
    (lambda x: x.astype(x.dtype.newbyteorder()), TypeError, "non-native byte order"),
    (lambda x: np.ma.masked_greater(x, 1.0), ValueError, "masked array with"),
]
BAD_Y = [
    (lambda y: y[:-1], ValueError, r"y must have shape \(20,\)"),
    (lambda y: y.reshape(-1, 1), ValueError, r"y must have shape"),
    (lambda y: np.where(y == 0, 3, y), ValueError, r"labels in \[0, 3\)"),
    (lambda y: y - 1, ValueError, r"= -1"),
    (lambda y: y.astype(np.float64), TypeError, "integer class labels"),
    (lambda y: np.ma.masked_equal(y, 1), ValueError, "y is a masked array"),
]


def test_values_at_the_edge_of_the_model_dtype_and_unmasked_arrays_are_accepted():
    x, y = tiny_data(n=20, sizes=(5, 4, 3))
    x[0, 0] = float(np.finfo(np.float32).max)
    with np.errstate(over="ignore", invalid="ignore"):
        assert MLP((5, 4, 3)).predict(x).shape == (20,)     # float32 holds it
    x[0, 0] = 1e39
    assert MLP((5, 4, 3), dtype=np.float64).predict(x).shape == (20,)
    x[0, 0] = 0.5
    model = MLP((5, 4, 3))
    expected = model.predict(x)
    plain = np.ma.masked_array(x, mask=np.zeros_like(x, dtype=bool))
    np.testing.assert_array_equal(model.predict(plain), expected)
    assert model.evaluate(plain, np.ma.masked_array(y)) == model.evaluate(x, y)


def test_a_refused_checkpoint_target_trains_nothing(tmp_path):
    x, y = tiny_data(n=20, sizes=(5, 4, 3))
    for target, error in [(tmp_path / "missing" / "run.npz", FileNotFoundError),
                          (tmp_path, IsADirectoryError)]:
        model = MLP((5, 4, 3))
        params = model.params.copy()
        calls = []
        with pytest.raises(error, match="checkpoint"):
            model.fit(x, y, epochs=2, progress=False, checkpoint=target,
                      callback=lambda *args: calls.append(args))  # noqa: B023
        np.testing.assert_array_equal(model.params, params)
        assert calls == [] and list(tmp_path.iterdir()) == []


def test_load_refuses_a_description_that_does_not_match_its_parameters(tmp_path):
    path = tmp_path / "model.npz"
    MLP((5, 4, 3)).save(path)
    meta, arrays = nbadam.checkpoint.load_npz(path, kind="mlp", keys={"params"})
    for change in ({"sizes": [5, 4, 4]}, {"dtype": "float64"}, {"sizes": [5, 10**9, 3]}):
        nbadam.checkpoint.save_npz(path, arrays, {**meta, "model": {**meta["model"],
                                                                    **change}})
        with pytest.raises(ValueError, match=r"model.npz: array 'params' is \(39,\) float32"):
            MLP.load(path)


def check_refused(model, call, error, message, *arrays):
    copies = [array.copy() for array in arrays]
    params = model.params.copy()
    with pytest.raises(error, match=message):
        call()
    np.testing.assert_array_equal(model.params, params)
    for array, copy in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(array, copy)


@pytest.mark.parametrize("make, error, message", BAD_X)
def test_bad_inputs_are_refused_and_nothing_changes(make, error, message):
    model = MLP((5, 4, 3))
    x, y = tiny_data(n=20, sizes=(5, 4, 3))
    x = make(x)
    y = y[:len(x)] if x.ndim else y
    check_refused(model, lambda: model.fit(x, y, epochs=1, progress=False), error, message,
                  x, y)
    for method in (model.predict, model.predict_proba):
        check_refused(model, lambda: method(x), error, message, x)  # noqa: B023
    check_refused(model, lambda: model.evaluate(x, y), error, message, x, y)


@pytest.mark.parametrize("make, error, message", BAD_Y)
def test_bad_labels_are_refused_and_nothing_changes(make, error, message):
    model = MLP((5, 4, 3))
    x, y = tiny_data(n=20, sizes=(5, 4, 3))
    y = make(y)
    check_refused(model, lambda: model.fit(x, y, epochs=1, progress=False), error, message,
                  x, y)
    check_refused(model, lambda: model.evaluate(x, y), error, message, x, y)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"optimizer": "sgd"}, ValueError, "optimizer must be one of 'adam'"),
    ({"optimizer": 3}, ValueError, "optimizer must be one of"),
    ({"optimizer": "adam", "optimizer_options": {"lr": 1}}, ValueError, "must not set lr"),
    ({"optimizer_options": {"device": "cuda"}}, ValueError, "must not set device"),
    ({"optimizer": "amsgrad", "optimizer_options": {"amsgrad": False}}, ValueError,
     "must not set amsgrad"),
    ({"optimizer": "adam", "optimizer_options": {"momentum": 0.9}}, TypeError, "momentum"),
    ({"optimizer": "adam", "optimizer_options": [1]}, TypeError, "dict"),
    ({"lr": -1.0}, ValueError, "lr must be >=? 0"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"epochs": 2.5}, TypeError, "epochs must be an integer"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"shuffle": "yes"}, TypeError, "shuffle must be True or False"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"validation_data": (np.zeros((2, 5)),)}, ValueError, "validation_data must be a pair"),
    ({"validation_data": (np.zeros((2, 4)), [0, 1])}, ValueError, r"validation_data\[0\]"),
    ({"validation_data": (np.zeros((2, 5)), [0, 7])}, ValueError, r"validation_data\[1\]"),
    ({"comm": object()}, (TypeError, ImportError), "mpi4py"),
    ({"resume": True}, ValueError, "needs checkpoint"),
    ({"checkpoint": 5}, TypeError, "file path"),
    ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be >= 1"),
    ({"callback": "print"}, TypeError, "callback must be callable"),
    ({"schedule": "linear"}, ValueError, "schedule must be one of 'cosine', 'constant'"),
    ({"label_smoothing": 1.0}, ValueError, r"label_smoothing must be in \[0, 1\)"),
    ({"l2": -1e-4}, ValueError, "l2 must be >= 0"),
    ({"validation_split": 1.0}, ValueError, r"validation_split must be in \[0, 1\)"),
    ({"validation_split": 0.99}, ValueError, "leaves 0 to train on and 20"),
    ({"validation_split": 0.2, "validation_data": (np.zeros((2, 5)), [0, 1])}, ValueError,
     "not both"),
    ({"early_stopping": 0}, ValueError, "early_stopping must be >= 1"),
    ({"early_stopping": 2}, ValueError, "needs validation_data or validation_split"),
    ({"early_stopping": 2, "validation_split": 0.5, "monitor": "acc"}, ValueError,
     "monitor must be one of 'val_loss'"),
    ({"min_delta": -1.0}, ValueError, "min_delta must be >= 0"),
])
def test_bad_fit_arguments_are_refused(kwargs, error, message):
    model = MLP((5, 4, 3))
    x, y = tiny_data(n=20, sizes=(5, 4, 3))
    params = model.params.copy()
    with pytest.raises(error, match=message):
        model.fit(x, y, progress=False, **kwargs)
    np.testing.assert_array_equal(model.params, params)


def test_optimizer_instance_must_drive_the_model():
    model = MLP((5, 4, 3))
    x, y = tiny_data(n=20, sizes=(5, 4, 3))
    with pytest.raises(ValueError, match="built on another array"):
        model.fit(x, y, optimizer=nbadam.Adam(model.params.copy()), progress=False)
    with pytest.raises(ValueError, match="set them on the Adam instance"):
        model.fit(x, y, optimizer=nbadam.Adam(model.params), lr=0.1, progress=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sizes": (784,)}, ValueError, "at least an input and an output"),
    ({"sizes": (784, 0, 10)}, ValueError, "positive integers"),
    ({"sizes": (784, 2.5, 10)}, ValueError, "positive integers"),
    ({"sizes": (784, 1)}, ValueError, "at least 2 classes"),
    ({"sizes": "784"}, TypeError, "sequence of layer widths"),
    ({"activation": "gelu"}, ValueError, "activation must be one of 'relu'"),
    ({"dtype": np.float16}, TypeError, "float32 or float64"),
    ({"seed": -3}, ValueError, "seed must be >= 0"),
])
def test_bad_model_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        MLP(**kwargs)


# -- groups, clipping and the parameter average in training -------------------------------
def test_layer_slices_tile_the_parameters():
    model = MLP(TINY)
    slices = model.layer_slices()
    assert len(slices) == len(TINY) - 1
    stops = [s.stop for layer in slices for s in (layer["weights"], layer["bias"])]
    starts = [s.start for layer in slices for s in (layer["weights"], layer["bias"])]
    assert starts[0] == 0 and stops[-1] == model.params.size and starts[1:] == stops[:-1]
    for layer, weights, bias in zip(slices, model.weights, model.biases, strict=True):
        assert np.shares_memory(model.params[layer["weights"]], weights)
        assert model.params[layer["bias"]].size == bias.size


def test_weight_decay_leaves_the_biases_alone():
    x, y = tiny_data()
    model = MLP(TINY, dtype=np.float64)
    model.fit(x, y, epochs=1, optimizer="adamw", optimizer_options={"weight_decay": 0.5},
              progress=False)
    groups = model.optimizer.groups
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0] * (len(TINY) - 1)
    plain = MLP(TINY, dtype=np.float64)
    plain.fit(x, y, epochs=1, optimizer="adam", progress=False)
    assert len(plain.optimizer.groups) == 1          # no decay: one group, one launch


def test_fine_tuning_the_last_layer_keeps_the_others_bit_for_bit():
    x, y = tiny_data(n=60)
    model = MLP(TINY, dtype=np.float64)
    model.fit(x, y, epochs=2, progress=False)
    before = model.params.copy()
    *hidden, last = model.layer_slices()
    groups = [{"params": part, "lr": 0.0} for layer in hidden for part in layer.values()]
    groups += [{"params": part} for part in last.values()]
    opt = nbadam.Adam(model.params, lr=1e-2, groups=groups)
    model.fit(x, 1 - y % 2, epochs=2, optimizer=opt, progress=False)
    frozen = slice(0, last["weights"].start)
    np.testing.assert_array_equal(model.params[frozen], before[frozen])
    assert not np.array_equal(model.params[last["weights"]], before[last["weights"]])


def test_averaged_model_and_clipping_from_fit():
    x, y = tiny_data()
    model = MLP(TINY, dtype=np.float64)
    with pytest.raises(ValueError, match="ema"):
        model.averaged()
    model.fit(x, y, epochs=2, progress=False,
              optimizer_options={"ema": 0.9, "clip_grad_norm": 0.5})
    averaged = model.averaged()
    np.testing.assert_array_equal(averaged.params, model.optimizer.ema_params)
    assert not np.shares_memory(averaged.params, model.params)
    assert model.optimizer.last_grad_norm > 0
