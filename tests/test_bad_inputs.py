"""One catalogue of bad input across every public entry point.

Each case names the entry point, builds the caller's arrays, calls it wrongly, and
checks three things: the exception type, that the message names the offending
parameter (and, where the case says so, the fix), and that nothing the caller owns
was modified: arrays, a model's parameters, an optimizer's state, files on disk.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
import scipy.optimize

import nbadam
from nbadam import checkpoint, datasets, schedules


def arrays():
    """Fresh caller-owned arrays (and a model, whose parameters are one of them) for one case."""
    rng = np.random.default_rng(0)
    model = nbadam.MLP(sizes=(784, 8, 10), seed=0)
    return {
        "x": np.linspace(-1.0, 1.0, 6),
        "x32": np.linspace(-1.0, 1.0, 6).astype(np.float32),
        "images": rng.integers(0, 256, size=(20, 784), dtype=np.uint8),
        "labels": rng.integers(0, 10, size=20).astype(np.int64),
        "model": model,
        "model params": model.params,
    }


class Grow(schedules.Schedule):
    """A user schedule: code, which no checkpoint stores."""

    def __call__(self, count):
        return 1e-3 * (1 + count)


def beyond_float32(a):
    x = a["images"].astype(np.float64) / 255
    x[2, 7] = 1e39
    return x


def masked(values, where):
    mask = np.zeros(values.shape, dtype=bool)
    mask[where] = True
    return np.ma.masked_array(values, mask=mask)


def swapped(values):
    return values.astype(values.dtype.newbyteorder())


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
    ("Adam lr<0", lambda a: nbadam.Adam(a["x"], lr=-1e-3), ValueError, "lr"),
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
    ("Adam lr=10**400", lambda a: nbadam.Adam(a["x"], lr=10**400), ValueError,
     ("lr", "range")),
    ("Adam big-endian params", lambda a: nbadam.Adam(swapped(a["x"])), TypeError,
     ("params", "byte order")),
    ("step big-endian grad", lambda a: nbadam.Adam(a["x"]).step(swapped(a["x"])), TypeError,
     ("grad", "byte order")),
    # schedules
    ("constant<0", lambda a: schedules.constant(-1e-3), ValueError, "value"),
    ("cosine warmup>decay", lambda a: schedules.warmup_cosine_decay(1.0, 10, 5), ValueError,
     "warmup_steps"),
    ("one_cycle pct_start", lambda a: schedules.one_cycle(1.0, 10, pct_start=0.0), ValueError,
     "pct_start"),
    ("step_decay step_size", lambda a: schedules.step_decay(1.0, 0), ValueError, "step_size"),
    ("schedule negative count", lambda a: schedules.constant(1.0)(-1), ValueError, "count"),
    ("schedule count=2**63", lambda a: schedules.constant(1.0)(2**63), ValueError, "count"),
    ("user schedule to_dict", lambda a: Grow().to_dict(), TypeError, ("Grow", "plain function")),
    ("from_dict unknown field",
     lambda a: schedules.from_dict({"schedule": "Constant", "value": 0.1, "code": "x"}),
     ValueError, "code"),
    ("from_dict kind not a string", lambda a: schedules.from_dict({"schedule": ["Constant"]}),
     ValueError, "schedule"),
    # minimize
    ("minimize method", lambda a: nbadam.minimize(sphere, a["x"], method="sgd"), ValueError,
     "method"),
    ("minimize NaN x0", lambda a: nbadam.minimize(sphere, np.array([np.nan, 1.0])), ValueError,
     "x0"),
    ("minimize maxiter<0", lambda a: nbadam.minimize(sphere, a["x"], jac=sphere_grad,
                                                     options={"maxiter": -1}),
     ValueError, "maxiter"),
    ("minimize lr<0", lambda a: nbadam.minimize(sphere, a["x"], jac=sphere_grad,
                                                options={"lr": -0.1}), ValueError, "lr"),
    ("minimize non-scalar fun", lambda a: nbadam.minimize(lambda x: x, a["x"], jac=sphere_grad),
     ValueError, "fun"),
    ("minimize jac length", lambda a: nbadam.minimize(sphere, a["x"], jac=lambda x: x[:2]),
     ValueError, "jac"),
    ("minimize maxiter=2**63", lambda a: nbadam.minimize(sphere, a["x"], jac=sphere_grad,
                                                        options={"maxiter": 2**63}),
     ValueError, "maxiter"),
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
    ("MLP huge sizes", lambda a: nbadam.MLP(sizes=(784, 10**8, 10**8, 10)), MemoryError,
     ("sizes", "narrower")),
    ("fit float64 beyond float32",
     lambda a: a["model"].fit(beyond_float32(a), a["labels"], epochs=1, progress=False),
     ValueError, ("x", "float32")),
    ("predict float64 beyond float32", lambda a: a["model"].predict(beyond_float32(a)),
     ValueError, ("x", "dtype=np.float64")),
    ("fit masked x", lambda a: a["model"].fit(masked(a["images"], (4, 9)), a["labels"],
                                              epochs=1, progress=False),
     ValueError, ("x", "masked", "x[4, 9]")),
    ("fit masked y", lambda a: a["model"].fit(a["images"], masked(a["labels"], 3), epochs=1,
                                              progress=False),
     ValueError, ("y", "masked")),
    ("predict big-endian x", lambda a: a["model"].predict(swapped(a["images"] / 255.0)),
     TypeError, ("x", "byte order")),
    ("fit checkpoint folder missing",
     lambda a: a["model"].fit(a["images"], a["labels"], epochs=1, progress=False,
                              checkpoint="/nonexistent/folder/run.npz"),
     FileNotFoundError, ("checkpoint", "/nonexistent/folder")),
    ("fit checkpoint is a folder",
     lambda a: a["model"].fit(a["images"], a["labels"], epochs=1, progress=False,
                              checkpoint=os.path.dirname(os.path.abspath(__file__))),
     IsADirectoryError, ("checkpoint", "folder")),
    ("fit checkpoint empty name",
     lambda a: a["model"].fit(a["images"], a["labels"], epochs=1, progress=False,
                              checkpoint=""), ValueError, "checkpoint"),
    ("fit checkpoint with a user schedule",
     lambda a: a["model"].fit(a["images"], a["labels"], epochs=1, progress=False, lr=Grow(),
                              checkpoint=os.path.join(tempfile.gettempdir(), "x.npz")),
     TypeError, ("checkpoint", "Grow")),
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
    ("fit early stopping without validation",
     lambda a: tiny_mlp().fit(a["images"], a["labels"], early_stopping=2, epochs=1,
                              progress=False), ValueError, ("val_loss", "validation_split")),
    ("fit validation split and data",
     lambda a: a["model"].fit(a["images"], a["labels"], validation_split=0.5, epochs=1,
                              validation_data=(a["images"], a["labels"]), progress=False),
     ValueError, "not both"),
    ("fit validation split 1", lambda a: a["model"].fit(a["images"], a["labels"], epochs=1,
                                                         validation_split=1, progress=False),
     ValueError, "validation_split"),
    ("fit label smoothing", lambda a: a["model"].fit(a["images"], a["labels"], epochs=1,
                                                      label_smoothing=-0.1, progress=False),
     ValueError, "label_smoothing"),
    ("fit l2 NaN", lambda a: a["model"].fit(a["images"], a["labels"], epochs=1,
                                             l2=float("nan"), progress=False),
     ValueError, "l2"),
    ("fit schedule", lambda a: a["model"].fit(a["images"], a["labels"], epochs=1,
                                               schedule="step", progress=False),
     ValueError, ("schedule", "'cosine', 'constant'")),
    ("predict wrong width", lambda a: tiny_mlp().predict(a["images"][:, :10]), ValueError, "x"),
    ("evaluate float labels", lambda a: tiny_mlp().evaluate(a["images"], a["labels"] + 0.5),
     (TypeError, ValueError), "y"),
    # datasets
    ("load_mnist missing folder", lambda a: datasets.load_mnist("/nonexistent/folder"),
     FileNotFoundError, "/nonexistent/folder"),
    ("read_idx missing file", lambda a: datasets.read_idx("/nonexistent/file-idx1-ubyte"),
     FileNotFoundError, "/nonexistent/file-idx1-ubyte"),
]


def fragments(fragment):
    return (fragment,) if isinstance(fragment, str) else fragment


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly(case):
    _, call, error, fragment = case
    caller = arrays()
    owned = {key: value for key, value in caller.items() if isinstance(value, np.ndarray)}
    before = {key: np.ma.getdata(value).copy() for key, value in owned.items()}
    with pytest.raises(error) as info:
        call(caller)
    for part in fragments(fragment):
        assert part in str(info.value), str(info.value)
    for key, value in owned.items():
        assert np.array_equal(np.ma.getdata(value), before[key]), f"{key} was modified"


def test_the_catalogue_is_large_enough():
    assert len(CASES) + len(FILE_CASES) + len(CLI_CASES) >= 100


# -- files: checkpoints, saved models and training runs -------------------------------------
#
# Each writer makes one bad file; each case loads it into an optimizer with a history, a
# model, or a training run to resume, and checks that the error is a ValueError naming the
# file, that the optimizer, the model and the file are unchanged, and that no MemoryError,
# AttributeError or RecursionError escapes (test_reliability.py measures the memory).

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


def write_npy(path):
    with open(path, "wb") as handle:   # np.save would add ".npy" to the name
        np.save(handle, np.zeros(6))


def good_file(kind, path):
    """A valid file of each kind, for the writers that then damage it."""
    if kind == "optimizer":
        nbadam.Adam(np.zeros(6)).save(path)
    elif kind == "mlp":
        tiny_mlp().save(path)
    else:
        run_model().fit(*run_data(), epochs=1, batch_size=10, progress=False, checkpoint=path)


def members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rewrite(path, contents, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def npy_bytes(array=None, header=None, body=b""):
    """An .npy member: ``array`` saved, or a raw ``header`` dict with ``body`` bytes."""
    buffer = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + body


def meta_of(path):
    data = members(path)["__meta__.npy"]
    return json.loads(str(np.lib.format.read_array(io.BytesIO(data))))


def with_meta(kind, change):
    """A valid file of ``kind`` whose metadata text goes through ``change(meta) -> text``."""
    def write(path):
        good_file(kind, path)
        contents = members(path)
        contents["__meta__.npy"] = npy_bytes(np.array(change(meta_of(path))))
        rewrite(path, contents)
    return write


def deeper(meta, depth):
    """The metadata as JSON text with an entry nested ``depth`` lists deep."""
    return json.dumps(meta)[:-1] + ', "deep": ' + "[" * depth + "0" + "]" * depth + "}"


def with_member(kind, name, data, compression=zipfile.ZIP_STORED):
    """A valid file of ``kind`` with member ``name`` set to ``data`` (added or replaced)."""
    def write(path):
        good_file(kind, path)
        contents = members(path)
        contents[name] = data
        rewrite(path, contents, compression)
    return write


def first_array(kind):
    return {"optimizer": "state.exp_avg.npy", "mlp": "params.npy",
            "mlp-training": "params.npy"}[kind]


def huge_declared_shape(kind):
    header = {"descr": "<f4" if kind != "optimizer" else "<f8", "fortran_order": False,
              "shape": (10**12,)}
    return with_member(kind, first_array(kind), npy_bytes(header=header, body=bytes(64)))


def zip_bomb(kind):
    """An extra member of 64 MiB of zeros, deflated to about 64 KiB."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (64 * 2**20,)}
    return with_member(kind, "junk.npy", npy_bytes(header=header, body=bytes(64 * 2**20)),
                       zipfile.ZIP_DEFLATED)


def malformed_header(kind):
    return with_member(kind, first_array(kind), b"\x93NUMPY\x01\x00\x10\x00{'descr': (((" +
                       b" " * 3 + b"\n")


def huge_layers(path):
    """A tiny model file whose description declares 10**16 parameters."""
    write_model_file(path)
    contents = members(path)
    meta = meta_of(path)
    meta["model"]["sizes"] = [784, 10**8, 10**8, 10]
    contents["__meta__.npy"] = npy_bytes(np.array(json.dumps(meta)))
    rewrite(path, contents)


KINDS = ("optimizer", "mlp", "mlp-training")
FILE_WRITERS = [
    ("object array", write_object_array, ("optimizer",)),
    ("truncated", write_truncated, KINDS),
    ("wrong size", write_wrong_shape, ("optimizer", "mlp")),
    ("model file", write_model_file, ("optimizer", "mlp-training")),
    (".npy file", write_npy, KINDS),
    ("not a zip", lambda p: open(p, "wb").write(b"hello"), KINDS),
    ("zip bomb member", None, KINDS),
    ("huge declared shape", None, KINDS),
    ("malformed .npy header", None, KINDS),
    ("metadata nested 100000 deep", None, KINDS),
    ("metadata nested 40 deep", None, KINDS),
    ("metadata not an object", None, KINDS),
    ("metadata declares 1 GiB", None, KINDS),
    ("member not .npy", None, KINDS),
    ("bzip2 member", None, ("optimizer",)),
    ("object-typed fields", None, KINDS),
    ("huge layer sizes", huge_layers, ("mlp",)),
]


def writer_for(label, kind):
    if label == "zip bomb member":
        return zip_bomb(kind)
    if label == "huge declared shape":
        return huge_declared_shape(kind)
    if label == "malformed .npy header":
        return malformed_header(kind)
    if label == "metadata nested 100000 deep":
        return with_meta(kind, lambda meta: deeper(meta, 100_000))
    if label == "metadata nested 40 deep":
        return with_meta(kind, lambda meta: deeper(meta, 40))
    if label == "metadata not an object":
        return with_member(kind, "__meta__.npy", npy_bytes(np.array("[1, 2]")))
    if label == "metadata declares 1 GiB":
        header = {"descr": "<U268435456", "fortran_order": False, "shape": ()}
        return with_member(kind, "__meta__.npy", npy_bytes(header=header, body=b""))
    if label == "member not .npy":
        return with_member(kind, "readme.txt", b"hello")
    if label == "bzip2 member":
        def write(path):
            good_file(kind, path)
            rewrite(path, members(path), zipfile.ZIP_BZIP2)
        return write
    if label == "object-typed fields":
        fields = {"optimizer": {"hyperparameters": [1, 2], "scalars": "x"},
                  "mlp": {"model": [784, 8, 10]},
                  "mlp-training": {"model": [1], "run": "x", "optimizer": []}}[kind]
        return with_meta(kind, lambda meta: json.dumps({**meta, **fields}))
    for name, write, _ in FILE_WRITERS:
        if name == label:
            return write
    raise KeyError(label)


def run_model():
    return nbadam.MLP(sizes=(6, 4, 3), seed=0)


def run_data():
    rng = np.random.default_rng(5)
    return rng.normal(size=(20, 6)), rng.integers(0, 3, size=20)


def load_into_optimizer(path):
    params = np.linspace(-1.0, 1.0, 6)
    opt = nbadam.Adam(params, lr=1e-2)
    for _ in range(3):
        opt.step(params - 0.25)
    before = opt.state_dict()
    with pytest.raises(ValueError) as info:
        opt.load(path)
    after = opt.state_dict()
    assert after["step_count"] == before["step_count"] == 3
    assert after["hyperparameters"] == before["hyperparameters"]
    for name, array in before["state"].items():
        assert np.array_equal(after["state"][name], array), name
    assert np.array_equal(params, opt.params)
    return info


def load_model(path):
    with pytest.raises(ValueError) as info:
        nbadam.MLP.load(path)
    return info


def resume_from(path):
    model = run_model()
    params = model.params.copy()
    with pytest.raises(ValueError) as info:
        model.fit(*run_data(), epochs=2, batch_size=10, progress=False, checkpoint=path,
                  resume=True)
    assert np.array_equal(model.params, params)
    return info


LOADERS = {"optimizer": load_into_optimizer, "mlp": load_model, "mlp-training": resume_from}
FILE_CASES = [(f"{kind}: {label}", label, kind) for label, _, kinds in FILE_WRITERS
              for kind in kinds]
FILE_CASES.append(("checkpoint missing keys", "wrong size", "load_npz"))


@pytest.mark.parametrize("case", FILE_CASES, ids=[case[0] for case in FILE_CASES])
def test_bad_file_is_refused_naming_it(case, tmp_path):
    _, label, kind = case
    path = str(tmp_path / "bad.npz")
    writer_for(label, "optimizer" if kind == "load_npz" else kind)(path)
    saved = open(path, "rb").read()
    if kind == "load_npz":
        with pytest.raises(ValueError) as info:
            checkpoint.load_npz(path, kind="optimizer", keys={"nothing"})
    else:
        info = LOADERS[kind](path)
    assert "bad.npz" in str(info.value), str(info.value)
    assert open(path, "rb").read() == saved      # a refused file is left as it was
    assert os.listdir(tmp_path) == ["bad.npz"]


# -- the command line ----------------------------------------------------------------------------

CLI_CASES = [
    (["mnist", "--save", ""], "--save"),
    (["mnist", "--checkpoint", ""], "--checkpoint"),
    (["mnist", "--plot", "curves.xyz"], ".xyz"),
    (["mnist", "--plot", "curves"], "--plot"),
    (["mnist", "--hidden", "100000000,100000000"], "sizes"),
    (["mnist", "--overwrite"], "--checkpoint"),
    (["mnist", "--checkpoint", "run.npz", "--resume", "--overwrite"], "--overwrite"),
    (["mnist", "--lr", "1e400"], "--lr"),
    (["mnist", "--save", "/nonexistent/dir/m.npz"], "/nonexistent/dir"),
    (["mnist", "--epochs", "0"], "--epochs"),
    (["mnist", "--batch-size", "-3"], "--batch-size"),
    (["mnist", "--lr", "nan"], "--lr"),
    (["mnist", "--optimizer", "sgd"], "--optimizer"),
    (["mnist", "--resume"], "--checkpoint"),
    (["mnist", "--subset", "5", "--epochs", "1", "--no-progress", "--checkpoint",
      "/nonexistent/dir/run.npz"], "/nonexistent/dir"),
    (["mnist", "--validation-split", "1"], "--validation-split"),
    (["mnist", "--early-stopping", "-1"], "--early-stopping"),
    (["mnist", "--label-smoothing", "nan"], "--label-smoothing"),
    (["mnist", "--monitor", "auc"], "--monitor"),
    (["mnist", "--min-delta", "inf"], "--min-delta"),
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
