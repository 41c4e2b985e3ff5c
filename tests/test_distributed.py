"""Data-parallel training over MPI: nbadam.distributed, fit(comm=...), mnist --distributed.

Two kinds of tests:

* in this process, on mpi4py's single-rank ``MPI.COMM_SELF``: shard bounds,
  gradient weighting, a ShardedOptimizer against the plain optimizer, its
  checkpoints, and ``fit(comm=COMM_SELF)`` against ``fit()``;
* under ``mpiexec -n 2`` (marked ``mpi``), the scripts in ``tests/mpi/``,
  each run in a subprocess with a time limit so that a hang fails the test.

Both are skipped without mpi4py (``pip install 'nbadam[mpi]'``), and the
second also without ``mpiexec``.

Tolerance against single-process training.  With the same global batches and
seed, two ranks differ from one process only in rounding: (a) the batch sum
over examples inside the weight gradients (``inputs.T @ delta``) is split into
two partial sums that MPI adds, instead of one BLAS reduction; (b) for an
uneven split, ``(1 / local) * (local / global)`` may differ from ``1 / global``
by an ulp.  Each gradient element therefore differs by a few units in the last
place (times the condition number of its sum).  An Adam-family step is a
smooth, bounded function of the gradient (each step moves a parameter by about
``lr`` at most), so after ``T`` steps the parameters differ by about
``T * lr * (a few ulps)`` plus what later gradients propagate: on these runs
(18 to 96 steps, ``lr = 1e-2``) at most 2 ulps of the largest parameter, 4.4e-16
in float64 and 1.2e-7 in float32.  The tests allow ``ATOL_FLOAT64 = 1e-12`` and
``ATOL_FLOAT32 = 1e-5`` -- far above that, and far below what a real error
gives (a gradient weighted wrongly moves parameters by ~``lr`` per step).

The two ranks are compared bit for bit (they apply the same update to the same
vector), and so are sharded and unsharded training: the optimizer update is
elementwise, and with two ranks the reduce-scatter and the all-reduce add the
same two numbers, so every element sees the same arithmetic.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import RULE_IDS, RULES

import nbadam
from nbadam import distributed
from nbadam.checkpoint import load_npz

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "mpi"
ATOL_FLOAT64 = 1e-12
ATOL_FLOAT32 = 1e-5
#: Wall-clock limit of one mpiexec run (the mpiexec's own limit is a little shorter).
TIME_LIMIT = 120

MPI = pytest.importorskip("mpi4py.MPI", reason="needs mpi4py: pip install 'nbadam[mpi]'")
COMM = MPI.COMM_SELF


def _load_train_script():
    spec = importlib.util.spec_from_file_location("mpi_train", SCRIPTS / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_script = _load_train_script()


def _mpiexec() -> str | None:
    """The mpiexec installed beside this Python (a venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install "
                                   "'nbadam[mpi]' installs MPICH's)")


def mpiexec(args: list[str], cwd: Path, ranks: int = 2, mpiexec_timeout: int = TIME_LIMIT - 10,
            ) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``mpiexec -n ranks python ARGS``; returns the result and its wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    # One BLAS and Numba thread per rank: the ranks already use the cores.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", MPIEXEC_TIMEOUT=str(mpiexec_timeout), MPLBACKEND="Agg")
    start = time.perf_counter()
    result = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, *args], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=TIME_LIMIT)
    return result, time.perf_counter() - start


# -- shards and weights -------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_shard_bounds_tile_the_range_in_balanced_contiguous_pieces(size):
    for n in range(0, 23):
        bounds = [distributed.shard_bounds(n, size, rank) for rank in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(hi == lo for (_, hi), (lo, _) in zip(bounds[:-1], bounds[1:], strict=True))
        lengths = [hi - lo for lo, hi in bounds]
        assert max(lengths) - min(lengths) <= 1
        assert lengths == sorted(lengths, reverse=True)
        counts, displs = distributed.shard_counts(n, size)
        assert counts.tolist() == lengths and displs.tolist() == [lo for lo, _ in bounds]


@pytest.mark.parametrize("args, error, message", [
    ((5, 2, 2), ValueError, r"rank must be in \[0, 2\)"),
    ((5, 0, 0), ValueError, "size must be >= 1"),
    ((-1, 2, 0), ValueError, "n must be >= 0"),
    ((5.0, 2, 0), TypeError, "n must be an integer"),
])
def test_shard_bounds_refuses_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        distributed.shard_bounds(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_allreduce_mean_weights_in_place(dtype):
    grad = np.array([3.0, -6.0, 0.5], dtype=dtype)
    out = distributed.allreduce_mean(grad, COMM, weight=0.25)
    assert out is grad and grad.dtype == dtype
    np.testing.assert_array_equal(grad, np.array([0.75, -1.5, 0.125], dtype=dtype))
    same = grad.copy()
    distributed.allreduce_mean(grad, COMM)  # weight 1 on one rank: untouched
    np.testing.assert_array_equal(grad, same)


def test_uneven_split_weights_give_the_global_mean():
    """Three ranks' local means weighted by count/total sum to the global mean."""
    rng = np.random.default_rng(0)
    per_example = rng.normal(size=(10, 4))
    total = np.zeros(4)
    for rank in range(3):
        lo, hi = distributed.shard_bounds(10, 3, rank)
        local = per_example[lo:hi].mean(axis=0)
        total += distributed.allreduce_mean(local, COMM, weight=(hi - lo) / 10)
    np.testing.assert_allclose(total, per_example.mean(axis=0), rtol=1e-14)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"comm": "world"}, TypeError, "intracommunicator"),
    ({"weight": 1.5}, ValueError, r"in \[0, 1\]"),
    ({"weight": float("nan")}, ValueError, "finite"),
    ({"grad": np.zeros((2, 2))}, ValueError, "1-D"),
    ({"grad": np.zeros(4)[::2]}, ValueError, "C-contiguous"),
    ({"grad": np.zeros(3, dtype=np.int64)}, TypeError, "float32 or float64"),
])
def test_allreduce_mean_refuses_bad_arguments(kwargs, error, message):
    args = {"grad": np.zeros(3), "comm": COMM, "weight": 1.0} | kwargs
    with pytest.raises(error, match=message):
        distributed.allreduce_mean(args["grad"], args["comm"], args["weight"])


def test_small_helpers_on_one_rank():
    assert distributed.sum_over_ranks([1.5, 2, 3], COMM).tolist() == [1.5, 2.0, 3.0]
    distributed.check_same(COMM, {"batch_size": 3})
    distributed.check_in_sync(np.arange(5.0), COMM)
    assert distributed.allreduce_bytes(235_146, 4, 1) == 0.0
    assert distributed.allreduce_bytes(235_146, 4, 2) == 235_146 * 4
    with pytest.raises(ValueError, match="boom"), distributed.abort_on_error(COMM):
        raise ValueError("boom")  # one rank: re-raised, nothing aborted


def test_require_mpi_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'nbadam\[mpi\]'"):
        distributed.require_mpi()


# -- the sharded optimizer on one rank -------------------------------------------------
@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sharded_optimizer_matches_the_plain_one(rule, dtype):
    _, cls, kwargs = rule
    rng = np.random.default_rng(1)
    start = rng.normal(size=37).astype(dtype)
    plain_x, sharded_x = start.copy(), start.copy()
    plain = cls(plain_x, lr=1e-2, **kwargs)
    sharded = distributed.ShardedOptimizer(cls, sharded_x, COMM, lr=1e-2, **kwargs)
    for _ in range(5):
        grad = rng.normal(size=37).astype(dtype)
        assert plain.step(grad) and sharded.step(grad.copy())
        np.testing.assert_array_equal(sharded_x, plain_x)
    assert sharded.params is sharded_x and sharded.step_count == 5 and sharded.bounds == (0, 37)
    assert sharded.state_memory_bytes() == distributed.state_memory_bytes(plain)
    snapshot, reference = sharded.state_dict(), plain.state_dict()
    assert snapshot.keys() == reference.keys() and snapshot["size"] == 37
    for name, value in reference["state"].items():
        np.testing.assert_array_equal(snapshot["state"][name], value)


def test_sharded_checkpoints_are_plain_optimizer_checkpoints(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=20)
    sharded = distributed.ShardedOptimizer(nbadam.NAdam, x, COMM, lr=1e-2)
    for _ in range(3):
        sharded.step(rng.normal(size=20))
    sharded.save(tmp_path / "opt.npz")
    plain = nbadam.NAdam(x.copy(), lr=1e-2)
    plain.load(tmp_path / "opt.npz")  # a single process reads what the ranks wrote
    assert plain.step_count == 3 and plain.mu_product == sharded.mu_product
    again = distributed.ShardedOptimizer(nbadam.NAdam, x.copy(), COMM, lr=1e-2)
    again.load_state_dict(plain.state_dict())
    grad = rng.normal(size=20)
    plain.step(grad)
    again.step(grad)
    np.testing.assert_array_equal(again.params, plain.params)
    wrong = distributed.ShardedOptimizer(nbadam.NAdam, np.zeros(21), COMM)
    with pytest.raises(ValueError, match=r"opt.npz: .*\(20,\).*expected \(21,\)"):
        wrong.load(tmp_path / "opt.npz")


def test_sharded_optimizer_hyperparameters_read_and_write_through():
    opt = distributed.ShardedOptimizer(nbadam.Adam, np.zeros(4), COMM, lr=0.1, amsgrad=True)
    assert opt.lr == 0.1 and opt.amsgrad and opt.hyperparameters()["lr"] == 0.1
    opt.lr = 0.5
    assert opt.local.lr == 0.5 and opt.current_lr() == 0.5
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.lr = -1.0
    with pytest.raises(AttributeError, match="cannot set 'params'"):
        opt.params = np.zeros(4)
    assert "slice [0, 4) of 4, rank 0 of 1" in repr(opt)


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_sharded_optimizer_nonfinite_policies(policy):
    x = np.ones(6)
    opt = distributed.ShardedOptimizer(nbadam.Adam, x, COMM, nonfinite=policy)
    grad = np.ones(6)
    grad[4] = np.nan
    if policy == "raise":
        with pytest.raises(FloatingPointError, match="unchanged on every rank"):
            opt.step(grad)
    else:
        assert opt.step(grad) is False and opt.skipped_steps == 1
    np.testing.assert_array_equal(x, np.ones(6))
    assert opt.step_count == 0


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((np.zeros(3),), {}, TypeError, "optimizer class"),
    ((nbadam.Adam, np.zeros(3), "world"), {}, TypeError, "intracommunicator"),
    ((nbadam.Adam, np.zeros(3), COMM), {"device": "cuda"}, ValueError, "runs on the CPU"),
    ((nbadam.Adam, np.zeros(3), COMM), {"lr": -1.0}, ValueError, "lr must be >= 0"),
    ((nbadam.Adam, [0.0, 1.0], COMM), {}, TypeError, "NumPy array"),
    ((nbadam.AdamWScheduleFree, np.zeros(3), COMM), {}, ValueError,
     "reports an averaged point"),
    ((nbadam.Prodigy, np.zeros(3), COMM), {}, ValueError, "sums over the whole vector"),
    ((nbadam.Adam, np.zeros(3, np.float32), COMM), {"state_precision": "bfloat16"}, ValueError,
     "does not support state_precision"),
])
def test_sharded_optimizer_refuses_bad_arguments(args, kwargs, error, message):
    if len(args) == 1:
        args = (args[0], np.zeros(3), COMM)
    with pytest.raises(error, match=message):
        distributed.ShardedOptimizer(*args, **kwargs)


def test_sharded_step_refuses_a_gradient_of_the_wrong_size():
    opt = distributed.ShardedOptimizer(nbadam.Adam, np.zeros(5), COMM)
    with pytest.raises(ValueError, match="full 5 elements"):
        opt.step(np.zeros(4))
    with pytest.raises(TypeError, match="float64"):
        opt.step(np.zeros(5, dtype=np.float32))


# -- fit on one rank --------------------------------------------------------------------
@pytest.mark.parametrize("shard", [False, True])
def test_fit_on_one_rank_is_single_process_training(shard, tmp_path):
    config = train_script.CONFIGS["uneven"]
    reference, history = train_script.train(config, None)
    model, one_rank = train_script.train(config, COMM, shard_optimizer=shard,
                                         checkpoint=tmp_path / "run.npz")
    np.testing.assert_array_equal(model.params, reference.params)
    assert one_rank == history
    meta, arrays = load_npz(tmp_path / "run.npz", kind="mlp-training")
    assert arrays["optimizer.exp_avg"].shape == model.params.shape


def test_fit_refuses_bad_distributed_arguments():
    config = dict(train_script.CONFIGS["f64"])
    with pytest.raises(TypeError, match="intracommunicator"):
        train_script.train(config, "world")
    with pytest.raises(ValueError, match="pass comm="):
        model = nbadam.MLP(train_script.SIZES)
        x, y, _, _ = train_script.make_data()
        model.fit(x, y, shard_optimizer=True, progress=False)
    model = nbadam.MLP(train_script.SIZES)
    with pytest.raises(ValueError, match="builds the optimizer itself"):
        model.fit(x, y, comm=COMM, shard_optimizer=True, progress=False,
                  optimizer=nbadam.Adam(model.params))
    sharded = distributed.ShardedOptimizer(nbadam.Adam, model.params, COMM)
    with pytest.raises(ValueError, match="pass comm= as well"):
        model.fit(x, y, optimizer=sharded, progress=False)


# -- two ranks under mpiexec --------------------------------------------------------------
@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """Run tests/mpi/train.py on two ranks once; returns its output folder."""
    if MPIEXEC is None:
        pytest.skip("no mpiexec")
    out = tmp_path_factory.mktemp("mpi_train")
    result, _ = mpiexec([str(SCRIPTS / "train.py"), str(out)], out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("trained") == 1  # rank 0 alone prints
    return out


def _rank_result(out: Path, name: str, rank: int) -> tuple[np.ndarray, dict]:
    with np.load(out / f"{name}.rank{rank}.npz") as data:
        return data["params"], json.loads(str(data["history"]))


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("name", list(train_script.CONFIGS))
def test_two_ranks_hold_identical_parameters(two_rank_runs, name):
    params0, history0 = _rank_result(two_rank_runs, name, 0)
    params1, history1 = _rank_result(two_rank_runs, name, 1)
    np.testing.assert_array_equal(params0, params1)
    assert history0 == history1


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("name", list(train_script.CONFIGS))
def test_two_ranks_match_single_process_training(two_rank_runs, name):
    config = train_script.CONFIGS[name]
    reference, history = train_script.train(config, None)
    params, two_ranks = _rank_result(two_rank_runs, name, 0)
    atol = ATOL_FLOAT32 if config["dtype"] == "float32" else ATOL_FLOAT64
    assert params.dtype == reference.params.dtype
    np.testing.assert_allclose(params, reference.params, rtol=0, atol=atol)
    assert not np.array_equal(reference.params, nbadam.MLP(train_script.SIZES, dtype=np.dtype(
        config["dtype"]), seed=3).params)  # it did train
    assert two_ranks.keys() == history.keys()
    for key, values in history.items():
        np.testing.assert_allclose(two_ranks[key], values, rtol=1e-6 if atol > 1e-9 else 1e-12)
    if name == "batch_of_one":
        # One rank holds no example in each step; the other's gradient is used unchanged.
        np.testing.assert_array_equal(params, reference.params)


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("plain, sharded", [("f64", "f64_sharded"), ("f32", "f32_sharded"),
                                            ("uneven", "uneven_sharded")])
def test_sharded_state_gives_the_same_parameters_bit_for_bit(two_rank_runs, plain, sharded):
    params, history = _rank_result(two_rank_runs, plain, 0)
    params_sharded, history_sharded = _rank_result(two_rank_runs, sharded, 0)
    np.testing.assert_array_equal(params_sharded, params)
    assert history_sharded == history


@pytest.mark.mpi
@needs_mpiexec
def test_checkpoints_resume_on_another_number_of_ranks(two_rank_runs, tmp_path):
    reference, history = train_script.train(train_script.CONFIGS["f64"], None)
    # Written by one process after 2 epochs, finished on two ranks with sharded state.
    params0, resumed = _rank_result(two_rank_runs, "resume_from_single", 0)
    params1, _ = _rank_result(two_rank_runs, "resume_from_single", 1)
    np.testing.assert_array_equal(params0, params1)
    np.testing.assert_allclose(params0, reference.params, rtol=0, atol=ATOL_FLOAT64)
    np.testing.assert_allclose(resumed["loss"], history["loss"], rtol=1e-12)
    # Written by rank 0 of a sharded two-rank run: the full state, finished here alone.
    meta, arrays = load_npz(two_rank_runs / "ranks.npz", kind="mlp-training")
    assert meta["epochs_done"] == 2 and meta["optimizer"]["size"] == reference.params.size
    for name in ("exp_avg", "exp_avg_sq"):
        assert arrays[f"optimizer.{name}"].shape == reference.params.shape
        assert np.count_nonzero(arrays[f"optimizer.{name}"]) > reference.params.size // 2
    shutil.copy(two_rank_runs / "ranks.npz", tmp_path / "ranks.npz")
    model, _ = train_script.train(train_script.CONFIGS["f64"], None,
                                  checkpoint=tmp_path / "ranks.npz", resume=True)
    np.testing.assert_allclose(model.params, reference.params, rtol=0, atol=ATOL_FLOAT64)


@pytest.mark.mpi
@needs_mpiexec
def test_a_rank_that_raises_ends_the_job_with_one_line(tmp_path):
    result, seconds = mpiexec([str(SCRIPTS / "crash.py"), "raise"], tmp_path)
    assert result.returncode != 0
    assert "must not" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("nbadam:")]
    assert lines == ["nbadam: rank 1 of 2 failed: RuntimeError: injected failure after "
                     "epoch 1; aborting all ranks"], result.stderr
    assert seconds < TIME_LIMIT - 10  # ended by MPI_Abort, not by the time limit


@pytest.mark.mpi
@needs_mpiexec
def test_ranks_started_with_different_arguments_are_refused(tmp_path):
    result, _ = mpiexec([str(SCRIPTS / "crash.py"), "disagree"], tmp_path)
    assert result.returncode != 0
    assert "the ranks disagree on batch_size (rank 0: 16, rank 1: 8)" in result.stderr


@pytest.mark.mpi
@needs_mpiexec
def test_a_killed_rank_ends_the_job(tmp_path):
    result, seconds = mpiexec([str(SCRIPTS / "crash.py"), "kill"], tmp_path)
    assert result.returncode != 0
    assert "must not" not in result.stdout
    assert seconds < TIME_LIMIT - 10  # mpiexec noticed the lost rank


@pytest.mark.mpi
@needs_mpiexec
def test_a_hung_rank_is_ended_by_the_mpiexec_time_limit(tmp_path):
    # The documented backstop: MPIEXEC_TIMEOUT, here 10 s (startup and one epoch take about
    # 2 s once the tests above have compiled and cached the kernels).
    result, seconds = mpiexec([str(SCRIPTS / "crash.py"), "hang"], tmp_path,
                              mpiexec_timeout=10)
    assert result.returncode != 0
    assert "rank 1 waits for a message that never comes" in result.stdout
    assert "TIMED OUT" in result.stdout + result.stderr
    assert seconds < TIME_LIMIT - 10


@pytest.mark.mpi
@needs_mpiexec
def test_command_line_trains_on_two_ranks(tmp_path):
    args = ["--subset", "600", "--epochs", "2", "--hidden", "16", "--batch-size", "50",
            "--no-progress"]
    result, _ = mpiexec(["-m", "nbadam", "mnist", "--distributed", "--shard-optimizer",
                         "--checkpoint", "run.npz", "--save", "two.npz", *args], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("test accuracy: ") == 1  # rank 0 alone prints
    assert "2 MPI ranks, sharded optimizer state" in result.stdout
    assert result.stdout.count("epoch 2/2: loss") == 1
    single = subprocess.run([sys.executable, "-m", "nbadam", "mnist", "--save", "one.npz",
                             *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=TIME_LIMIT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert single.returncode == 0, single.stderr
    one, two = nbadam.MLP.load(tmp_path / "one.npz"), nbadam.MLP.load(tmp_path / "two.npz")
    np.testing.assert_allclose(two.params, one.params, rtol=0, atol=ATOL_FLOAT32)
    meta, arrays = load_npz(tmp_path / "run.npz", kind="mlp-training")
    assert meta["epochs_done"] == 2 and arrays["optimizer.exp_avg"].shape == one.params.shape
