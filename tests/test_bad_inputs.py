"""One catalogue of bad input across every public entry point.

Each case names the entry point, builds the caller's arrays, calls it wrongly, and
checks three things: the exception type, that the message names the offending
parameter, and that no array the caller owns was modified.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize

import nbadam
from nbadam import checkpoint, datasets, schedules


def arrays():
    """Fresh caller-owned arrays for one case."""
    rng = np.random.default_rng(0)
    return {
        "x": np.linspace(-1.0, 1.0, 6),
        "x32": np.linspace(-1.0, 1.0, 6).astype(np.float32),
        "images": rng.integers(0, 256, size=(20, 784), dtype=np.uint8),
        "labels": rng.integers(0, 10, size=20).astype(np.int64),
    }


def sphere(x):
    return float(x @ x)


def sphere_grad(x):
    return 2.0 * x


def tiny_mlp():
    return nbadam.MLP(sizes=(784, 8, 10), seed=0)


def nan_images(a):
    bad = a["images"].astype(np.float32) / 255
    bad[3, 5] = np.nan
    return bad


# (id, callable taking the arrays dict, exception type, fragment the message must contain)
CASES = [
    # optimizers
    ("Adam lr=0", lambda a: nbadam.Adam(a["x"], lr=0.0), ValueError, "lr"),
    ("Adam lr=nan", lambda a: nbadam.Adam(a["x"], lr=float("nan")), ValueError, "lr"),
    ("AdamW beta1=1", lambda a: nbadam.AdamW(a["x"], betas=(1.0, 0.9)), ValueError, "betas"),
    ("NAdam beta2<0", lambda a: nbadam.NAdam(a["x"], betas=(0.9, -1e-3)), ValueError, "betas"),
    ("Adamax eps<0", lambda a: nbadam.Adamax(a["x"], eps=-1.0), ValueError, "eps"),
    ("RAdam weight_decay<0", lambda a: nbadam.RAdam(a["x"], weight_decay=-1.0), ValueError,
     "weight_decay"),
    ("NAdam momentum_decay<0", lambda a: nbadam.NAdam(a["x"], momentum_decay=-1.0), ValueError,
     "momentum_decay"),
    ("Adam nonfinite=?", lambda a: nbadam.Adam(a["x"], nonfinite="ignore"), ValueError,
     "nonfinite"),
    ("Adam device=?", lambda a: nbadam.Adam(a["x"], device="tpu"), ValueError, "device"),
    ("Adam 2-D params", lambda a: nbadam.Adam(a["x"].reshape(2, 3)), ValueError, "params"),
    ("Adam int params", lambda a: nbadam.Adam(np.arange(6)), TypeError, "params"),
    ("Adam float16 params", lambda a: nbadam.Adam(a["x"].astype(np.float16)), TypeError,
     "params"),
    ("Adam strided params", lambda a: nbadam.Adam(a["x"][::2]), ValueError, "params"),
    ("Adam list params", lambda a: nbadam.Adam([1.0, 2.0]), TypeError, "params"),
    ("step grad length", lambda a: nbadam.Adam(a["x"]).step(np.ones(5)), ValueError, "grad"),
    ("step grad dtype", lambda a: nbadam.Adam(a["x"]).step(a["x32"]), TypeError, "grad"),
    ("step nonfinite raise",
     lambda a: nbadam.Adam(a["x"], nonfinite="raise").step(np.full(6, np.inf)),
     FloatingPointError, "grad"),
    ("set lr<0", lambda a: setattr(nbadam.Adam(a["x"]), "lr", -1.0), ValueError, "lr"),
    # schedules
    ("constant 0", lambda a: schedules.constant(0.0), ValueError, "value"),
    ("cosine warmup>decay", lambda a: schedules.warmup_cosine_decay(1.0, 10, 5), ValueError,
     "warmup_steps"),
    ("one_cycle pct_start", lambda a: schedules.one_cycle(1.0, 10, pct_start=0.0), ValueError,
     "pct_start"),
    ("step_decay step_size", lambda a: schedules.step_decay(1.0, 0), ValueError, "step_size"),
    ("schedule negative count", lambda a: schedules.constant(1.0)(-1), ValueError, "count"),
    # minimize
    ("minimize method", lambda a: nbadam.minimize(sphere, a["x"], method="sgd"), ValueError,
     "method"),
    ("minimize NaN x0", lambda a: nbadam.minimize(sphere, np.array([np.nan, 1.0])), ValueError,
     "x0"),
    ("minimize maxiter<0", lambda a: nbadam.minimize(sphere, a["x"], jac=sphere_grad,
                                                     options={"maxiter": -1}),
     ValueError, "maxiter"),
    ("minimize lr<=0", lambda a: nbadam.minimize(sphere, a["x"], jac=sphere_grad,
                                                 options={"lr": 0.0}), ValueError, "lr"),
    ("minimize non-scalar fun", lambda a: nbadam.minimize(lambda x: x, a["x"], jac=sphere_grad),
     ValueError, "fun"),
    ("minimize jac length", lambda a: nbadam.minimize(sphere, a["x"], jac=lambda x: x[:2]),
     ValueError, "jac"),
    ("minimize bounds low>high",
     lambda a: nbadam.minimize(sphere, a["x"][:2], jac=sphere_grad, bounds=[(1, 0), (0, 1)]),
     ValueError, "bound"),
    # the SciPy custom-method callable
    ("scipy_method constraints",
     lambda a: scipy.optimize.minimize(sphere, a["x"], jac=sphere_grad, method=nbadam.scipy_method,
                                       constraints=[{"type": "eq", "fun": sphere}]),
     ValueError, "constraints"),
    ("scipy_method rule", lambda a: scipy.optimize.minimize(sphere, a["x"], jac=sphere_grad,
                                                            method=nbadam.scipy_method,
                                                            options={"rule": "sgd"}),
     ValueError, "rule"),
    # MLP
    ("MLP sizes", lambda a: nbadam.MLP(sizes=(784,)), ValueError, "sizes"),
    ("MLP activation", lambda a: nbadam.MLP(activation="swish"), ValueError, "activation"),
    ("MLP dtype", lambda a: nbadam.MLP(dtype=np.int32), TypeError, "dtype"),
    ("fit x shape", lambda a: tiny_mlp().fit(a["images"][:, :700], a["labels"], epochs=1,
                                            progress=False), ValueError, "x"),
    ("fit labels out of range",
     lambda a: tiny_mlp().fit(a["images"], a["labels"] + 10, epochs=1, progress=False),
     ValueError, "y"),
    ("fit NaN pixels", lambda a: tiny_mlp().fit(nan_images(a), a["labels"], epochs=1,
                                               progress=False), ValueError, "x"),
    ("fit y length", lambda a: tiny_mlp().fit(a["images"], a["labels"][:5], epochs=1,
                                             progress=False), ValueError, "y"),
    ("fit optimizer", lambda a: tiny_mlp().fit(a["images"], a["labels"], optimizer="sgd",
                                              epochs=1, progress=False), ValueError, "optimizer"),
    ("fit batch_size", lambda a: tiny_mlp().fit(a["images"], a["labels"], batch_size=0,
                                               epochs=1, progress=False), ValueError,
     "batch_size"),
    ("fit foreign optimizer",
     lambda a: tiny_mlp().fit(a["images"], a["labels"], optimizer=nbadam.Adam(a["x"]), epochs=1,
                              progress=False), ValueError, "optimizer"),
    ("predict wrong width", lambda a: tiny_mlp().predict(a["images"][:, :10]), ValueError, "x"),
    ("evaluate float labels", lambda a: tiny_mlp().evaluate(a["images"], a["labels"] + 0.5),
     (TypeError, ValueError), "y"),
    # datasets
    ("load_mnist missing folder", lambda a: datasets.load_mnist("/nonexistent/folder"),
     FileNotFoundError, "/nonexistent/folder"),
    ("read_idx missing file", lambda a: datasets.read_idx("/nonexistent/file-idx1-ubyte"),
     FileNotFoundError, "/nonexistent/file-idx1-ubyte"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly(case):
    _, call, error, fragment = case
    caller = arrays()
    before = {key: value.copy() for key, value in caller.items()}
    with pytest.raises(error) as info:
        call(caller)
    assert fragment in str(info.value), str(info.value)
    for key, value in caller.items():
        assert np.array_equal(value, before[key]), f"{key} was modified"


def test_the_catalogue_is_large_enough():
    assert len(CASES) + len(FILE_CASES) + len(CLI_CASES) >= 40


# -- files: checkpoints and saved models -------------------------------------------------------

def write_object_array(path):
    np.savez(path, __meta__=np.array('{"format": "optimizer", "version": 1}'),
             a=np.array([{}], dtype=object))


def write_truncated(path):
    nbadam.Adam(np.zeros(6)).save(path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def write_wrong_shape(path):
    nbadam.Adam(np.zeros(7)).save(path)


def write_model_file(path):
    tiny_mlp().save(path)


FILE_CASES = [
    ("optimizer object array", write_object_array, lambda p: nbadam.Adam(np.zeros(6)).load(p)),
    ("optimizer truncated", write_truncated, lambda p: nbadam.Adam(np.zeros(6)).load(p)),
    ("optimizer wrong size", write_wrong_shape, lambda p: nbadam.Adam(np.zeros(6)).load(p)),
    ("optimizer from model file", write_model_file, lambda p: nbadam.Adam(np.zeros(6)).load(p)),
    ("model from optimizer file", write_wrong_shape, lambda p: nbadam.MLP.load(p)),
    ("model truncated", lambda p: (write_model_file(p), write_truncated(p)),
     lambda p: nbadam.MLP.load(p)),
    ("checkpoint missing keys", write_wrong_shape,
     lambda p: checkpoint.load_npz(p, kind="optimizer", keys={"nothing"})),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[case[0] for case in FILE_CASES])
def test_bad_file_is_refused_naming_it(case, tmp_path):
    _, write, load = case
    path = str(tmp_path / "bad.npz")
    write(path)
    with pytest.raises(ValueError) as info:
        load(path)
    assert "bad.npz" in str(info.value)


# -- the command line ----------------------------------------------------------------------------

CLI_CASES = [
    (["mnist", "--epochs", "0"], "--epochs"),
    (["mnist", "--batch-size", "-3"], "--batch-size"),
    (["mnist", "--lr", "nan"], "--lr"),
    (["mnist", "--optimizer", "sgd"], "--optimizer"),
    (["mnist", "--resume"], "--checkpoint"),
    (["mnist", "--subset", "5", "--epochs", "1", "--no-progress", "--checkpoint",
      "/nonexistent/dir/run.npz"], "/nonexistent/dir"),
    (["train"], "train"),
]


@pytest.mark.parametrize("argv,fragment", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_arguments_exit_nonzero_with_one_line(argv, fragment, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "nbadam", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert any(fragment in line for line in lines), done.stderr
    assert len(lines) <= 3, done.stderr          # usage line(s) + one message
