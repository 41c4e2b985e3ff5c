"""Crash safety, extreme values and concurrent use of the optimizers."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from conftest import DTYPES, RULE_IDS, RULES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_optimizers import reference_for

import nbadam
from nbadam import _config

# -- crash safety -------------------------------------------------------------------------------

CRASH_SIZE = 20_000
KILLS = 50


def crash_grad(step):
    return np.random.default_rng(step).standard_normal(CRASH_SIZE)


def writer(path):
    """Child process: step and checkpoint forever, starting from the saved state.

    The parameters start at zero and are a function of the state, so the state alone
    identifies the step a checkpoint was written at.
    """
    opt = nbadam.NAdam(np.zeros(CRASH_SIZE), lr=1e-2)
    opt.load(path)
    while True:
        opt.step(crash_grad(opt.step_count + 1))
        opt.save(path)


class Trajectory:
    """The optimizer states of the uninterrupted run, computed on demand."""

    def __init__(self):
        self.params = np.zeros(CRASH_SIZE)
        self.opt = nbadam.NAdam(self.params, lr=1e-2)
        self.states = [self.opt.state_dict()]

    def at(self, step):
        while len(self.states) <= step:
            self.opt.step(crash_grad(self.opt.step_count + 1))
            self.states.append(self.opt.state_dict())
        return self.states[step]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_checkpoint_survives_sigkill_at_random_moments(tmp_path, monkeypatch):
    """Kill a process that is writing checkpoints, 50 times; the file is always whole."""
    monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", 10**9)   # no thread pool in the child
    path = str(tmp_path / "opt.npz")
    nbadam.NAdam(np.zeros(CRASH_SIZE), lr=1e-2).save(path)
    truth = Trajectory()
    truth.at(1)            # compiles the kernel here, so forked writers start at once
    rng = np.random.default_rng(2024)
    seen_steps = []
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:   # pragma: no cover - the child is killed
            try:
                writer(path)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        restored = nbadam.NAdam(np.zeros(CRASH_SIZE), lr=1e-2)
        restored.load(path)                      # never torn, never empty
        expected = truth.at(restored.step_count)
        for name, array in restored.state.items():
            assert np.array_equal(array, expected["state"][name]), name
        assert restored.mu_product == expected["scalars"]["mu_product"]
        seen_steps.append(restored.step_count)
    assert max(seen_steps) > 0
    assert sorted(seen_steps) == seen_steps      # each run continued the last
    # A kill during a save leaves its temporary file; the next save of the file removes it.
    nbadam.NAdam(np.zeros(CRASH_SIZE), lr=1e-2).save(path)
    assert os.listdir(tmp_path) == ["opt.npz"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_model_file_survives_sigkill_at_random_moments(tmp_path):
    """Same for MLP.save: the writer sets every parameter to k, then saves; each kill
    must leave a file that loads and holds one whole state (all parameters equal to
    one k, never a mixture)."""
    path = str(tmp_path / "model.npz")
    model = nbadam.MLP(sizes=(784, 64, 10), seed=0)
    model.params[:] = 0.0
    model.save(path)
    rng = np.random.default_rng(7)
    seen = []
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:   # pragma: no cover - the child is killed
            try:
                k = float(nbadam.MLP.load(path).params[0])
                while True:
                    k += 1.0
                    model.params[:] = k
                    model.save(path)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        restored = nbadam.MLP.load(path)
        values = np.unique(restored.params)
        assert values.size == 1, values[:5]
        seen.append(float(values[0]))
    assert max(seen) > 0 and sorted(seen) == seen


# -- extreme values -----------------------------------------------------------------------------

def extreme_values(dtype):
    info = np.finfo(dtype)
    return st.sampled_from([0.0, -0.0, float(info.smallest_subnormal), float(info.tiny),
                            1.0, -1.0, 1e-30, float(info.max) / 4, -float(info.max) / 4,
                            float(info.max), -float(info.max), 3.0, -7.5])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rule=st.sampled_from(RULES), dtype=st.sampled_from(DTYPES),
       lr=st.sampled_from([1e-3, 1.0, 1e10, 1e30]), beta1=st.sampled_from([0.0, 0.9]),
       beta2=st.sampled_from([0.0, 0.999]), eps=st.sampled_from([0.0, 1e-8]))
def test_extreme_values_match_reference_or_are_nonfinite_together(data, rule, dtype, lr, beta1,
                                                                   beta2, eps):
    """Zeros, subnormals, values near overflow, huge lr, beta = 0, eps = 0.

    Where the reference is finite, the kernels agree with it to a few ulps; where it
    overflows or divides 0 by 0, the kernels give a non-finite value too (propagated, as
    documented).  The kernels form ``(-lr * m) / denom`` as torch does and the reference
    ``lr * (m / denom)``, so at an element where an intermediate leaves the normal range
    (a moment becomes infinite, or ``lr * |m|`` exceeds the largest float or falls below
    the smallest normal one) one order may overflow or underflow and the other not; only
    there may the two differ.
    """
    _, cls, kwargs = rule
    size = 6
    values = extreme_values(dtype)
    params = np.array(data.draw(st.lists(values, min_size=size, max_size=size)), dtype=dtype)
    params0 = params.copy()
    grads = [np.array(data.draw(st.lists(values, min_size=size, max_size=size)), dtype=dtype)
             for _ in range(2)]
    hyper = {"lr": lr, "betas": (beta1, beta2), "eps": eps}
    biggest = float(np.finfo(dtype).max)
    overflowed = np.zeros(size, dtype=bool)
    with np.errstate(all="ignore"):
        ref = reference_for(cls, kwargs, params, **hyper)
        ours = cls(params, **kwargs, **hyper)
        for grad in grads:
            ref.step(grad)
            ours.step(grad)
            for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf"):
                state = getattr(ref, name, None)
                if state is not None:
                    overflowed |= ~np.isfinite(state)
            moment = np.abs(ref.exp_avg.astype(np.float64))
            overflowed |= 10.0 * lr * moment >= biggest
            overflowed |= (moment > 0) & (lr * moment < float(np.finfo(dtype).tiny))
    expected = ref.params.astype(np.float64)
    got = params.astype(np.float64)
    mismatch = np.isfinite(got) != np.isfinite(expected)
    assert not np.any(mismatch & ~overflowed), (got, expected)
    both = np.isfinite(expected) & np.isfinite(got) & ~overflowed
    with np.errstate(all="ignore"):
        allowed = 64 * np.finfo(dtype).eps * (np.abs(expected) + np.abs(params0) + lr)
        error = np.abs(got - expected)
    assert np.all(error[both] <= allowed[both]), (got, expected)


# -- threads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
def test_two_threads_equal_one_after_the_other(rule, dtype):
    _, cls, kwargs = rule
    sizes = (_config.PARALLEL_MIN_SIZE + 3, 1_001)   # one parallel, one serial
    rng = np.random.default_rng(11)
    starts = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads = [rng.standard_normal((30, n)).astype(dtype) for n in sizes]

    def run(index, out):
        params = starts[index].copy()
        opt = cls(params, lr=1e-2, **kwargs)
        for grad in grads[index]:
            opt.step(grad)
        out[index] = params

    sequential, concurrent = {}, {}
    for index in range(2):
        run(index, sequential)
    threads = [threading.Thread(target=run, args=(index, concurrent)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(2):
        assert np.array_equal(concurrent[index], sequential[index])


# -- loading costs what the expected arrays need, whatever the file declares ---------------------

BOMB_MIB = 512

LOAD_AND_MEASURE = r"""
import json, resource, sys
import numpy as np
import nbadam
from nbadam import checkpoint

folder, cases = sys.argv[1], json.loads(sys.argv[2])
good = nbadam.Adam(np.zeros(10))
good.load(folder + "/good-optimizer.npz")        # imports and first-call costs, measured out
nbadam.MLP.load(folder + "/good-model.npz")
loaders = {
    "optimizer": lambda path: nbadam.Adam(np.zeros(10)).load(path),
    "optimizer, size given": lambda path: checkpoint.load_optimizer(
        path, ["exp_avg", "exp_avg_sq"], size=10, dtype=np.float64),
    "model": lambda path: nbadam.MLP.load(path),
    "resume": lambda path: nbadam.MLP((784, 8, 10)).fit(
        np.zeros((4, 784)), np.zeros(4, int), epochs=1, progress=False, checkpoint=path,
        resume=True),
}
result = {}
for name, loader in cases:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        loader_result = loaders[loader](folder + "/" + name)
        outcome = "loaded"
    except ValueError as exc:
        outcome = "ValueError" if name in str(exc) else "ValueError not naming the file"
    except BaseException as exc:
        outcome = type(exc).__name__
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    result[name] = [outcome, grown * (1 if sys.platform == "darwin" else 1024)]
print(json.dumps(result))
"""


def add_member(path, name, header, body_mib=0, body=b""):
    """Append ``name``: an .npy ``header`` and ``body_mib`` MiB of zeros, deflated."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=True) as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            block = bytes(2**20)
            for _ in range(body_mib):
                handle.write(block)
            handle.write(body)


def without(path, name):
    """Rewrite ``path`` without member ``name``."""
    with zipfile.ZipFile(path) as archive:
        kept = [(info, archive.read(info)) for info in archive.infolist()
                if info.filename != name]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in kept:
            archive.writestr(info.filename, data, compress_type=info.compress_type)


def replace_meta(path, change):
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(str(np.load(io.BytesIO(archive.read("__meta__.npy")))))
    without(path, "__meta__.npy")
    buffer = io.BytesIO()
    np.save(buffer, np.array(json.dumps(change(meta))))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("__meta__.npy", buffer.getvalue())


def zeros_header(shape, descr="<f8"):
    return {"descr": descr, "fortran_order": False, "shape": shape}


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    nbadam.Adam(np.zeros(10)).save(folder / "good-optimizer.npz")
    nbadam.MLP((784, 8, 10)).save(folder / "good-model.npz")
    cases = []

    def optimizer(name):
        nbadam.Adam(np.zeros(10)).save(folder / name)
        return folder / name

    # An extra member of 512 MiB of zeros: a 0.5 MiB file.
    for loader, make in [("optimizer", optimizer),
                         ("model", lambda name: nbadam.MLP((784, 8, 10)).save(folder / name)
                          or folder / name)]:
        name = f"bomb-{loader}.npz"
        add_member(make(name), "junk.npy", zeros_header((BOMB_MIB * 2**20,), "|u1"), BOMB_MIB)
        cases.append((name, loader, BOMB_MIB * 2**20))
    path = folder / "bomb-resume.npz"
    nbadam.MLP((784, 8, 10)).fit(np.zeros((4, 784)), np.zeros(4, int), epochs=1,
                                  progress=False, checkpoint=path)
    add_member(path, "junk.npy", zeros_header((BOMB_MIB * 2**20,), "|u1"), BOMB_MIB)
    cases.append((path.name, "resume", BOMB_MIB * 2**20))
    # Expected members whose headers declare 8 TB, with metadata agreeing.
    path = optimizer("declared-optimizer.npz")
    replace_meta(path, lambda meta: {**meta, "size": 10**12})
    for name in ("state.exp_avg.npy", "state.exp_avg_sq.npy"):
        without(path, name)
        add_member(path, name, zeros_header((10**12,)), body=bytes(4096))
    cases.append((path.name, "optimizer", 2 * 8 * 10**12))
    path = folder / "declared-model.npz"
    nbadam.MLP((784, 8, 10)).save(path)
    replace_meta(path, lambda meta: {**meta, "model": {**meta["model"],
                                                       "sizes": [784, 10**6, 10**6, 10]}})
    without(path, "params.npy")
    count = 784 * 10**6 + 10**6 + 10**12 + 10**6 + 10**7 + 10
    add_member(path, "params.npy", zeros_header((count,), "<f4"), body=bytes(4096))
    cases.append((path.name, "model", 4 * count))
    # Metadata declaring 1 GiB of text.
    path = optimizer("meta-bomb.npz")
    without(path, "__meta__.npy")
    add_member(path, "__meta__.npy", zeros_header((), "<U268435456"), 1024)
    cases.append((path.name, "optimizer", 2**30))
    # Every member honest, each 256 MiB: only a caller that knows the size can refuse it.
    path = optimizer("honest-but-huge.npz")
    replace_meta(path, lambda meta: {**meta, "size": 2**25})
    for name in ("state.exp_avg.npy", "state.exp_avg_sq.npy"):
        without(path, name)
    for name in ("state.exp_avg.npy", "state.exp_avg_sq.npy"):
        add_member(path, name, zeros_header((2**25,)), 256)
    cases.append((path.name, "optimizer, size given", 2 * 2**28))
    return folder, cases


def test_hostile_files_are_refused_without_the_memory_they_declare(hostile_files):
    """Each file (at most 2 MiB) declares 512 MiB to 16 TB; loading any of them may use
    32 MiB at most, and is a ValueError naming the file.

    Measured in a fresh process (resident-memory high-water mark before and after each
    load), so nothing this test process has allocated hides a peak.
    """
    folder, cases = hostile_files
    for name, _, claimed in cases:
        assert claimed >= 512 * 2**20 and os.path.getsize(folder / name) < 2 * 2**20, name
    done = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(folder),
                           json.dumps([case[:2] for case in cases])],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (outcome, grown) in result.items():
        assert outcome == "ValueError", (name, outcome)
        assert grown < 32 * 2**20, (name, grown / 2**20)
