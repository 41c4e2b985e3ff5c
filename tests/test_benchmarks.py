"""The benchmarks run: every asv class once at its smallest size, and the scripts' quick paths.

``benchmarks/bench_*.py`` are the asv suites; ``benchmarks/scripts/`` holds the
standalone scripts (``python -m benchmarks.scripts.<name>``), in which asv must
find no benchmark.  No timing is checked, only that setup, each
``time_``/``track_``/``peakmem_`` method and the scripts run and produce what
they promise.  Classes whose ``setup`` raises ``NotImplementedError`` (no GPU,
an API not there yet) are skipped, as asv skips them.
"""

import importlib
import importlib.util
import inspect
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nbadam import rules
from nbadam.optimizers import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
#: The asv suites and the scripts, as the files lie.
MODULES = sorted(path.stem for path in (ROOT / "benchmarks").glob("bench_*.py"))
SCRIPTS = sorted(path.stem for path in (ROOT / "benchmarks" / "scripts").glob("[!_]*.py"))
#: Module constants shrunk so that one call of each benchmark stays short.
SMALL = {"TRAIN": 512, "TEST": 256, "ITERATIONS": 50}
PREFIXES = ("time_", "track_", "peakmem_", "mem_")


def _classes():
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for attr, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__ \
                    and not attr.startswith("_"):
                yield pytest.param(module, value, id=f"{name}.{attr}")


def _smallest(cls):
    """Parameter combinations: the smallest value of each parameter.

    Classes timing ``step`` run every rule (at the smallest size, the serial
    kernels, which compile fast); the others run the first rule only.
    """
    params = getattr(cls, "params", None)
    if params is None:
        return [()]
    if not isinstance(params[0], list | tuple):
        params = (params,)
    names = getattr(cls, "param_names", [""] * len(params))
    every_rule = hasattr(cls, "time_step")
    choices = [list(values) if name == "rule" and every_rule else
               [values[0]] if name == "rule" else [min(values, key=_order)]
               for name, values in zip(names, params, strict=True)]
    return list(itertools.product(*choices))


def _order(value):
    return (0, value) if isinstance(value, int | float) else (1, str(value))


@pytest.mark.parametrize(("module", "cls"), list(_classes()))
def test_asv_class_runs(module, cls, monkeypatch):
    for key, value in SMALL.items():
        if hasattr(module, key):
            monkeypatch.setattr(module, key, value)
    methods = [name for name in dir(cls) if name.startswith(PREFIXES)]
    assert methods, f"{cls.__name__} has no benchmark"
    for args in _smallest(cls):
        bench = cls()
        try:
            try:
                if hasattr(bench, "setup"):
                    bench.setup(*args)
            except NotImplementedError as exc:
                pytest.skip(f"{cls.__name__}: {exc}")
            for name in methods:
                value = getattr(bench, name)(*args)
                if name.startswith("track_"):
                    assert np.isfinite(value) and value > 0, (name, args, value)
        finally:
            # asv calls teardown after a skipped setup too.
            if hasattr(bench, "teardown"):
                bench.teardown(*args)


# -- layout: asv collects the suites and nothing else -----------------------------------
def test_suites_and_scripts_lie_apart():
    top = {path.name for path in (ROOT / "benchmarks").glob("*.py")}
    assert top == {"__init__.py"} | {f"{name}.py" for name in MODULES}, \
        "benchmarks/ holds the asv suites (bench_*.py); scripts go in benchmarks/scripts/"
    assert (ROOT / "benchmarks" / "scripts" / "__init__.py").is_file()
    assert {"compare", "gpu_step", "minimize_speed", "mlp_vs_torch", "mpi_scaling",
            "nonfinite_cost", "stability", "threads", "threshold"} <= set(SCRIPTS)


def test_asv_collects_only_the_suites():
    discovery = pytest.importorskip("asv_runner.discovery")
    names = [benchmark.name for benchmark in
             discovery.disc_benchmarks(str(ROOT / "benchmarks"))]
    # Names are relative to benchmark_dir: "bench_cpu.Step.time_step".
    assert {name.split(".")[0] for name in names} == set(MODULES), names
    assert not [name for name in names if name.startswith("scripts.")]


def test_suites_take_their_rules_from_the_registry():
    from benchmarks import bench_cpu, bench_gpu

    for cls in (bench_cpu.Step, bench_cpu.Bandwidth, bench_gpu.Step):
        values = cls.params[cls.param_names.index("rule")]
        assert list(values) == list(rules.names())[:len(values)], cls
    assert list(bench_cpu.Step.params[0]) == list(rules.names())


# -- the peers and the traffic model -----------------------------------------------------
def test_step_bytes():
    from benchmarks.scripts import _peers

    assert _peers.step_bytes("adam", np.float32) == 28
    assert _peers.step_bytes("amsgrad", np.float32) == 36
    assert _peers.step_bytes("adamax", np.float64, 10) == 560
    assert _peers.update_bytes(_peers.ROOFLINE, np.float32) == 28
    for name in rules.names():
        update = rules.get(name).update({})
        if update.reduce is None:   # one pass: the gradient read, the rest read and written
            assert _peers.step_bytes(name, np.float32) == (1 + 2 * (1 + len(update.state))) * 4
    # Prodigy's reduction pass reads everything and writes its three moments, then the
    # update pass reads the parameters, the gradient and the moments and writes the params.
    assert _peers.step_bytes("prodigy", np.float32) == 52
    with pytest.raises(ValueError, match="unknown rule"):
        _peers.step_bytes("sgd", np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", [name for name in rules.names()
                                  if rules.get(name).update({}).reduce is None])
def test_kernel_peer_launches_what_step_launches(rule, dtype):
    # (A rule with a reduction runs two kernels per step: the Kernel peer times one.)
    from benchmarks.scripts import _peers

    peer = _peers.Kernel(257, dtype, rule)
    param, grad, state, scalars = peer.args
    assert all(np.asarray(c).dtype == dtype for c in scalars)
    params = param.copy()
    opt = make_optimizer(rule, params)
    peer.step()
    opt.step(grad)
    np.testing.assert_array_equal(param, params)
    for ours, theirs in zip(state, opt._state_arrays, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_roofline_peer_moves_the_vectors():
    from benchmarks.scripts import _peers

    peer = _peers.Roofline(100, np.float32)
    grad = peer.grad.copy()
    peer.step()
    np.testing.assert_array_equal(peer.params, grad)


def test_numpy_peer_matches_nbadam():
    import nbadam
    from benchmarks.scripts import _peers

    peer = _peers.NumpyAdam(257, np.float64)
    params = peer.params.copy()
    opt = nbadam.Adam(params)
    for _ in range(5):
        peer.step()
        opt.step(peer.grad)
    np.testing.assert_allclose(peer.params, params, rtol=1e-12, atol=1e-15)


def test_compare_writes_table_and_plot(tmp_path, monkeypatch, capsys):
    from benchmarks.scripts import compare

    # Keep the process's OpenMP set-up as it is (compare restores an unset policy).
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    results = compare.main(["--sizes", "1000", "2e3", "--repeat", "2", "--min-time", "0.001",
                            "--out", str(tmp_path), "--no-torch", "--no-gpu",
                            "--groups-sizes", "1000", "--compact-sizes", "1000"])
    text = (tmp_path / "compare_cpu.md").read_text(encoding="utf-8")
    assert "## Compact optimizer state" in text and "| 1,000 |" in text
    assert "| 8bit state (us) |" in text and "| 8bit / its roofline |" in text
    assert "8bit / float32" in text and "bnb Adam8bit (us)" not in text
    assert "## Groups, gradient clipping" in text
    assert "| 1,000 | 8 groups + clip + ema |" in text and "| 1,000 | plain |" in text
    assert "| 1,000 |" in text and "| 2,000 |" in text
    assert "nbadam / roofline" in text and "numpy / nbadam" in text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "compare_cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(results["cpu"][1000]) == {"nbadam", "numpy", "roofline"}
    assert "| n |" in capsys.readouterr().out


# -- compact state: the step table and the quality of the trajectory --------------------
#: An interpreter with torch and bitsandbytes for the bitsandbytes peer (benchmark-only
#: packages, usually in another environment): NBADAM_BENCH_BNB_PYTHON, else this one if
#: it has them; the tests of that peer are skipped without one.
BNB_PYTHON = os.environ.get("NBADAM_BENCH_BNB_PYTHON") or None


def _bnb_python():
    from benchmarks.scripts import _bnb_worker

    python = _bnb_worker.default_python(BNB_PYTHON)
    if python is None:
        pytest.skip("no interpreter with torch and bitsandbytes (NBADAM_BENCH_BNB_PYTHON)")
    return python


def test_compact_state_table(capsys):
    from benchmarks.scripts import compact_state

    assert compact_state.BYTES == {"float32": 28, "bfloat16": 20, "8bit": 16 + 16 / 256}
    lines = compact_state.main(["--sizes", "1000", "--repeat", "2", "--min-time", "0.001",
                                "--no-bnb"])
    header = lines[0]
    for column in ("float32 state (us)", "bfloat16 state (us)", "8bit state (us)",
                   "bfloat16 / float32", "8bit / float32", "8bit / its roofline"):
        assert f"| {column} |" in header, column
    assert "bnb" not in header
    row = next(line for line in lines if line.startswith("| 1,000 |"))
    assert row.count("|") == header.count("|")
    assert "Bytes per element and step: float32 28, bfloat16 20, 8bit 16.0625." in lines
    assert re.search(r"^- n = 1,000: bfloat16 / float32 [\d.]+ \(target <= 0\.85: (met|NOT met)\); "
                     r"8bit / float32 [\d.]+ \(target <= 0\.75: (met|NOT met)\)$",
                     "\n".join(lines), re.M), lines
    assert "| 8bit state (us) |" in capsys.readouterr().out


def test_bnb_worker_says_why_not():
    from benchmarks.scripts import _bnb_worker

    assert not _bnb_worker.Worker(None)
    assert "--bnb-python" in _bnb_worker.Worker(None).reason
    if importlib.util.find_spec("bitsandbytes") is None:
        # This interpreter lacks bitsandbytes: the worker starts, fails to import it, says so.
        worker = _bnb_worker.Worker(sys.executable)
        assert not worker and "does not import" in worker.reason, worker.reason
    missing = _bnb_worker.Worker(str(ROOT / "no-such-python"))
    assert not missing and "did not start" in missing.reason


def test_interleaved_times_a_remote_peer_where_it_runs():
    from benchmarks.scripts import _peers

    class Remote(_peers.Peer):
        name = "remote"

        def __init__(self):
            self.numbers = []

        def step(self):
            raise AssertionError("a remote peer is timed through seconds_per_call")

        def seconds_per_call(self, number):
            self.numbers.append(number)
            return 0.5

    remote, local = Remote(), _peers.Roofline(100, np.float32)
    samples = _peers.interleaved([remote, local], repeat=3, min_time=0.01)
    assert list(samples["remote"]) == [0.5] * 3 and remote.numbers == [1, 1, 1, 1]
    assert len(samples["roofline"]) == 3 and (samples["roofline"] > 0).all()


def test_compact_state_with_bitsandbytes():
    python = _bnb_python()
    from benchmarks.scripts import compact_state

    lines = compact_state.main(["--sizes", "1000", "--repeat", "2", "--min-time", "0.001",
                                "--bnb-python", python])
    assert "| bnb Adam8bit (us) |" in lines[0] and "| bnb Adam8bit / 8bit |" in lines[0]
    row = next(line for line in lines if line.startswith("| 1,000 |"))
    assert row.count("|") == lines[0].count("|")
    assert any("in a worker process, timed there in the same rounds" in line for line in lines)


def test_compact_quality_rows(capsys):
    from benchmarks.scripts import compact_quality

    results = compact_quality.main(["--n", "512", "--steps", "30", "--no-bnb"])
    assert set(results) == {"bfloat16 (stochastic rounding)", "bfloat16, nearest even (NumPy)",
                            "8bit (nbadam, blockwise)"}
    distance, loss = results["8bit (nbadam, blockwise)"]
    assert 0 < distance < 1 and np.isfinite(loss)
    out = capsys.readouterr().out
    assert "| bitsandbytes Adam8bit | (left out: --no-bnb) | |" in out


def test_compact_quality_against_bitsandbytes(capsys):
    python = _bnb_python()
    from benchmarks.scripts import compact_quality

    results = compact_quality.main(["--n", "512", "--steps", "30", "--bnb-python", python])
    distance, loss = results["bitsandbytes Adam8bit"]
    assert 0 < distance < 1 and np.isfinite(loss)
    assert re.search(r"nbadam 8bit distance / bitsandbytes Adam8bit distance: [\d.e+-]+ "
                     r"\(target <= 1\.5: (met|NOT met)\)", capsys.readouterr().out)


def _run(args, tmp_path, check=True, **env):
    env = {**os.environ, "MPLBACKEND": "Agg", **env, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout
    return done


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_runs_as_a_module(name, tmp_path):
    assert "usage:" in _run(["-m", f"benchmarks.scripts.{name}", "--help"], tmp_path)


def test_gpu_step_runs_or_says_why_not(tmp_path):
    done = _run(["-m", "benchmarks.scripts.gpu_step", "--sizes", "1e3", "--rounds", "1"],
                tmp_path, check=False)
    if done.returncode == 0:                # a GPU is here: the table came out
        assert "| n | steps/loop |" in done.stdout and "nbadam_launch" in done.stdout
    else:
        assert done.returncode == 1, done.stderr[-3000:]
        assert re.search(r"gpu_step: (numba.cuda sees no CUDA GPU|NUMBA_ENABLE_CUDASIM=1 is set)",
                         done.stderr), done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_compare_with_torch(tmp_path):
    # A process of its own: importing torch here would load its OpenMP runtime
    # into the test process and change how later tests pick Numba's threads.
    _run(["-m", "benchmarks.scripts.compare", "--sizes", "1000", "--repeat", "2",
          "--min-time", "0.001", "--out", str(tmp_path), "--no-gpu", "--groups-sizes",
          "--compact-sizes"], tmp_path)
    text = (tmp_path / "compare_cpu.md").read_text(encoding="utf-8")
    assert "torch_fused" in text and "nbadam / torch fused" in text


GPU_SCRIPT = """
from benchmarks import bench_gpu
from benchmarks.scripts import _peers

def one_call(step, repeat=5, min_time=0.0, sync=lambda: None):
    # A simulated step takes a good fraction of a second: time one.
    return _peers.seconds_per_call(step, sync, 1)

_peers.median_time = one_call
for cls, args in [(bench_gpu.Step, ("adam", "float32", 1000)),
                  (bench_gpu.DeviceCopy, ("float32", 1000))]:
    bench = cls()
    bench.setup(*args)
    for name in dir(cls):
        if name.startswith(("time_", "track_")):
            getattr(bench, name)(*args)
    bench.teardown(*args)
print("gpu benchmarks ran")
from benchmarks.scripts import compare
compare.main(["--sizes", "64", "--repeat", "1", "--min-time", "0", "--out", OUT,
              "--no-torch", "--groups-sizes", "--compact-sizes"])

# gpu_step refuses to time the simulator; its launches are run here once each.
import numpy as np
from numba import cuda
from nbadam import _config
from benchmarks.scripts import gpu_step
_config.CUDA_THREADS_PER_BLOCK = 32     # fewer simulated threads per launch
gpu_step.LAUNCH_SIZE = 64
for step in gpu_step.make_peers(cuda, None, 64, np.dtype("float32")).values():
    step()
overhead = gpu_step.launch_overhead(cuda, None, np.dtype("float32"), steps=1, rounds=1)
print("gpu_step calls:", " ".join(sorted(overhead)))
"""


@pytest.mark.cudasim
@pytest.mark.slow
def test_gpu_benchmarks_under_simulator(tmp_path):
    # The simulator must be chosen before numba.cuda is first imported: a new process.
    script = f"OUT = {str(tmp_path)!r}\n" + GPU_SCRIPT
    out = _run(["-c", script], tmp_path, NUMBA_ENABLE_CUDASIM="1")
    assert "gpu benchmarks ran" in out
    assert "gpu_step calls: nbadam_launch nbadam_step numba_dispatcher_launch" in out
    text = (tmp_path / "compare_gpu.md").read_text(encoding="utf-8")
    assert "nbadam_cuda" in text and "nbadam / copy" in text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "compare_gpu.png").exists()
