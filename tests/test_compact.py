"""``state_precision="bfloat16"``: the codec, the fused kernels, checkpoints, groups, minimize.

The codec is checked against an independent NumPy rounding (the two bfloat16
neighbours of each float32 value, the nearer one, ties to even), bit for bit,
on random, hypothesis-drawn and extreme values.  A step with compact state
must be bit for bit the float32 step followed by rounding the compact arrays
to bfloat16 (the float32 step itself is tested against torch and optax
elsewhere): that is checked for every rule that supports it, over many
steps, serial and parallel.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nbadam
from nbadam import _config
from nbadam._kernels import compact
from nbadam.optimizers import _compact, make_optimizer

COMPACT_RULES = [name for name in nbadam.rules.names()
                 if nbadam.rules.get(name).update({**nbadam.rules.get(name).defaults,
                                                   **nbadam.rules.get(name).pinned}).compact]


def reference_bf16(values):
    """The bfloat16 code of each float32 value: the nearer of its two bfloat16 neighbours
    (ties to the even code), NaN to a quiet NaN of the same sign, computed from the values."""
    values = np.asarray(values, dtype=np.float32)
    bits = values.view(np.uint32)
    low = (bits >> 16).astype(np.uint32)              # truncation: towards zero
    high = low + 1                                    # the next code away from zero

    def as_float(codes):
        return (codes.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        below = np.abs(values.astype(np.float64) - as_float(low))
        above = np.abs(as_float(high & 0xFFFF) - values.astype(np.float64))
        # The code past the largest finite one is infinity: its distance is 2**128 - max.
        top = (low & 0x7FFF) == 0x7F7F
        above = np.where(top, np.abs(np.abs(values.astype(np.float64)) - 2.0 ** 128), above)
    pick_high = (above < below) | ((above == below) & (low % 2 == 1))
    codes = np.where(pick_high, high, low).astype(np.uint16)
    exact = (bits & 0xFFFF) == 0
    codes = np.where(exact, low.astype(np.uint16), codes)
    nan = np.isnan(values)
    return np.where(nan, (low | 0x40).astype(np.uint16), codes)


EXTREMES = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan,
                     np.finfo(np.float32).max, -np.finfo(np.float32).max,
                     np.finfo(np.float32).tiny, np.finfo(np.float32).smallest_subnormal,
                     -np.finfo(np.float32).smallest_subnormal, 1e-40, 3e38, 1.00390625,
                     1.01171875, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], dtype=np.float32)


def test_codec_extremes_and_ties():
    bits = np.concatenate([EXTREMES.view(np.uint32),
                           np.array([0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x3F808000, 0x3F818000,
                                     0x3F80FFFF, 0x7F7FFFFF, 0x7F7F8000, 0x00008000],
                                    dtype=np.uint32)])
    values = bits.view(np.float32)
    codes = compact.bf16_encode(values)
    np.testing.assert_array_equal(codes, reference_bf16(values))
    decoded = compact.bf16_decode(codes)
    assert np.isnan(decoded[np.isnan(values)]).all()                   # NaN stays NaN
    assert (np.signbit(decoded) == np.signbit(values)).all()           # signs kept
    np.testing.assert_array_equal(compact.bf16_decode(compact.bf16_encode(decoded)), decoded)
    assert compact.bf16_decode(compact.bf16_encode(np.float32([3.4e38])))[0] == np.inf


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint32, st.integers(1, 64), elements=st.integers(0, 2 ** 32 - 1)))
def test_codec_matches_the_reference_on_any_bit_pattern(bits):
    values = bits.view(np.float32)
    np.testing.assert_array_equal(compact.bf16_encode(values), reference_bf16(values))


def test_codec_random_values_round_to_nearest():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(100_000) * 10.0 ** rng.uniform(-40, 38, 100_000)).astype(
        np.float32)
    codes = compact.bf16_encode(values)
    np.testing.assert_array_equal(codes, reference_bf16(values))
    finite = np.isfinite(compact.bf16_decode(codes))
    relative = np.abs(compact.bf16_decode(codes)[finite] - values[finite]) / np.maximum(
        np.abs(values[finite]), np.finfo(np.float32).tiny)
    assert relative.max() <= 2.0 ** -8 * (1 + 1e-6)


def rounded_float32_run(name, x0, grads, **options):
    """The float32 optimizer whose compact arrays are rounded to bfloat16 as the kernels do:
    to nearest at the start, then stochastically after every step (element ``j`` of a group
    with noise ``bf16_noise(j, t, k)``): the trajectory the bfloat16 kernels must give."""
    x = x0.copy()
    opt = make_optimizer(name, x, **options)
    flags = _compact.flags(opt._update, "bfloat16")

    def round_state(t):
        for k, (key, flag) in enumerate(zip(opt._update.state, flags, strict=True)):
            if not flag:
                continue
            for group in opt.groups:
                lo, hi = group.start, group.stop
                values = opt.state[key][lo:hi]
                noise = None if t == 0 else compact.bf16_noise(np.arange(hi - lo), t, k)
                values[:] = compact.bf16_decode(compact.bf16_encode(values, noise))
    round_state(0)
    for g in grads:
        if opt.step(g):
            round_state(opt.step_count)
    return x, opt


def gradients(x0, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(x0.size) + 0.1 * np.arange(x0.size) % 3).astype(np.float32)
            for _ in range(steps)]


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("name", COMPACT_RULES)
def test_a_step_is_the_float32_step_then_rounding(name, parallel, monkeypatch):
    monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", 1 if parallel else 10 ** 9)
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(3 * 1024 + 17).astype(np.float32)
    grads = gradients(x0, 40)
    expected, reference = rounded_float32_run(name, x0, grads)
    x = x0.copy()
    opt = make_optimizer(name, x, state_precision="bfloat16")
    for g in grads:
        opt.step(g)
    np.testing.assert_array_equal(x, expected)
    for key, values in opt.state_values().items():
        np.testing.assert_array_equal(values, reference.state[key], err_msg=key)


def test_serial_and_parallel_builds_agree_bit_for_bit():
    rng = np.random.default_rng(4)
    n = 5 * 1024 + 3
    update = nbadam.rules.get("adam").update({"amsgrad": True})
    pair = compact.kernels(update, "bfloat16", (True, True, True))
    p1, p2 = rng.standard_normal(n).astype(np.float32), None
    p2 = p1.copy()
    g = rng.standard_normal(n).astype(np.float32)
    s1 = tuple(compact.bf16_encode(np.abs(rng.standard_normal(n))) for _ in range(3))
    s2 = tuple(a.copy() for a in s1)
    scalars = tuple(np.float32(v) for v in (1.0, 0.0, 0.1, 0.9, 0.999, 0.001, 0.1, 1e-3, 0.01,
                                            1.0, 1e-8, -1e-3, 0.0)[:len(update.scalar_names)])
    for t in range(1, 4):
        pair.serial(p1, g, s1, scalars, np.uint32(t))
        pair.parallel(p2, g, s2, scalars, np.uint32(t))
    np.testing.assert_array_equal(p1, p2)
    for a, b in zip(s1, s2, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, expected", [("adam", 4.0), ("amsgrad", 6.0), ("lion", 2.0),
                                            ("adan", 10.0), ("adamwschedulefree", 6.0)])
def test_bytes_of_state_per_element_counted_from_state(name, expected):
    n = 1000
    opt = make_optimizer(name, np.zeros(n, np.float32), state_precision="bfloat16")
    assert sum(a.nbytes for a in opt.state.values()) / n == expected
    assert opt.state_precision == "bfloat16"
    float32 = make_optimizer(name, np.zeros(n, np.float32))
    assert sum(a.nbytes for a in float32.state.values()) / n >= expected


def test_adam_state_is_at_most_4_bytes_per_element():
    opt = nbadam.Adam(np.zeros(4096, np.float32), state_precision="bfloat16")
    assert {k: v.dtype for k, v in opt.state.items()} == {"exp_avg": np.uint16,
                                                          "exp_avg_sq": np.uint16}
    assert sum(a.nbytes for a in opt.state.values()) / 4096 <= 4.0


def test_exact_arrays_stay_float32():
    adan = nbadam.Adan(np.zeros(8, np.float32), state_precision="bfloat16")
    assert adan.state["prev_grad"].dtype == np.float32 and adan.state["exp_avg"].dtype == np.uint16
    sf = nbadam.AdamWScheduleFree(np.ones(8, np.float32), state_precision="bfloat16")
    assert sf.state["z"].dtype == np.float32
    np.testing.assert_array_equal(sf.state["z"], 1.0)


def test_yogi_starts_at_the_encoded_accumulator():
    opt = nbadam.Yogi(np.zeros(8, np.float32), initial_accumulator=1e-6,
                      state_precision="bfloat16")
    np.testing.assert_array_equal(opt.state["exp_avg_sq"],
                                  compact.bf16_encode(np.full(8, 1e-6, np.float32)))


@pytest.mark.parametrize("kwargs, message", [
    ({"state_precision": "bf16"}, "state_precision must be one of"),
    ({"state_precision": "int8"}, "state_precision must be one of"),
])
def test_bad_precision_is_refused(kwargs, message):
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=message):
        nbadam.Adam(x, **kwargs)


def test_float64_parameters_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="needs float32 parameters; these are float64"):
        nbadam.Adam(np.zeros(4), state_precision="bfloat16")


# -- checkpoints ----------------------------------------------------------------------------
def _trained(precision, steps=12, n=2 * 1024 + 5):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(n).astype(np.float32)
    opt = nbadam.AdamW(x, lr=1e-2, weight_decay=0.1, state_precision=precision)
    for g in gradients(x, steps, seed=8):
        opt.step(g)
    return x, opt


def test_a_bfloat16_checkpoint_resumes_bit_for_bit(tmp_path):
    x, opt = _trained("bfloat16")
    opt.save(tmp_path / "opt.npz")
    other = nbadam.AdamW(x.copy(), lr=1e-2, weight_decay=0.1, state_precision="bfloat16")
    other.load(tmp_path / "opt.npz")
    for g in gradients(x, 10, seed=9):
        opt.step(g)
        other.step(g)
    np.testing.assert_array_equal(opt.params, other.params)
    for key in opt.state:
        np.testing.assert_array_equal(opt.state[key], other.state[key])


def test_float32_checkpoint_loads_into_bfloat16_and_back(tmp_path):
    x, f32 = _trained("float32")
    f32.save(tmp_path / "f32.npz")
    compact_opt = nbadam.AdamW(x.copy(), lr=1e-2, weight_decay=0.1, state_precision="bfloat16")
    compact_opt.load(tmp_path / "f32.npz")
    for key in f32.state:
        np.testing.assert_array_equal(compact_opt.state[key], compact.bf16_encode(f32.state[key]))
    compact_opt.save(tmp_path / "bf16.npz")
    back = nbadam.AdamW(x.copy(), lr=1e-2, weight_decay=0.1)
    back.load(tmp_path / "bf16.npz")
    for key in f32.state:   # decoding is exact
        np.testing.assert_array_equal(back.state[key], compact.bf16_decode(compact_opt.state[key]))
    assert back.step_count == f32.step_count


def test_a_bad_compact_snapshot_changes_nothing():
    x, opt = _trained("bfloat16")
    snapshot = opt.state_dict()
    before = {k: v.copy() for k, v in opt.state.items()}
    bad = {**snapshot, "state": {**snapshot["state"],
                                 "exp_avg_sq": compact.bf16_encode(np.full(x.size, -1.0))}}
    with pytest.raises(ValueError, match="must be >= 0"):
        opt.load_state_dict(bad)
    wrong = {**snapshot, "state": {**snapshot["state"],
                                   "exp_avg": snapshot["state"]["exp_avg"].astype(np.float32)}}
    with pytest.raises(ValueError, match="expected .* uint16"):
        opt.load_state_dict(wrong)
    with pytest.raises(ValueError, match="state_precision is 'fp4'"):
        opt.load_state_dict({**snapshot, "state_precision": "fp4"})
    for key, value in before.items():
        np.testing.assert_array_equal(opt.state[key], value)


# -- policies, groups, schedules, averaging ------------------------------------------------
def test_skip_and_raise_leave_the_codes_untouched():
    x = np.ones(64, np.float32)
    opt = nbadam.Adam(x, lr=0.1, state_precision="bfloat16", nonfinite="skip")
    opt.step(np.full(64, 0.5, np.float32))
    before = {k: v.copy() for k, v in opt.state.items()}
    bad = np.full(64, 0.5, np.float32)
    bad[3] = np.nan
    assert opt.step(bad) is False
    for key, value in before.items():
        np.testing.assert_array_equal(opt.state[key], value)
    opt.nonfinite = "raise"
    with pytest.raises(FloatingPointError):
        opt.step(bad)


def test_groups_schedule_clipping_and_average_with_bfloat16():
    rng = np.random.default_rng(11)
    n = 3 * 1024
    x0 = rng.standard_normal(n).astype(np.float32)
    groups = [{"params": slice(0, 1000), "lr": 0.0},
              {"params": slice(1000, 2000), "betas": (0.8, 0.99)},
              {"params": slice(2200, n), "lr": nbadam.schedules.warmup_cosine_decay(0.01, 5, 30)}]
    options = {"groups": groups, "clip_grad_norm": 5.0, "ema": 0.9, "lr": 1e-2}
    grads = gradients(x0, 30, seed=12)
    expected, reference = rounded_float32_run("adam", x0, grads, **options)
    x = x0.copy()
    opt = nbadam.Adam(x, state_precision="bfloat16", **options)
    for g in grads:
        opt.step(g)
    np.testing.assert_array_equal(x[:1000], x0[:1000])        # frozen, bit for bit
    np.testing.assert_array_equal(x[2000:2200], x0[2000:2200])  # in no group
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(opt.ema_params, reference.ema_params)


# -- minimize, the MLP, the command line ----------------------------------------------------
def test_minimize_takes_the_optimizers_steps():
    c = np.linspace(-1, 1, 40).astype(np.float32)

    def fun(x):
        return float(np.sum((x - c) ** 2))

    def jac(x):
        return (2 * (x - c)).astype(np.float32)

    x = np.zeros(40, np.float32)
    opt = nbadam.Adam(x, lr=0.05, state_precision="bfloat16")
    for _ in range(80):
        opt.step(jac(x))
    res = nbadam.minimize(fun, np.zeros(40, np.float32), jac=jac,
                          options={"lr": 0.05, "maxiter": 80, "gtol": 0, "ftol": 0,
                                   "return_best": False, "state_precision": "bfloat16"})
    np.testing.assert_array_equal(res.x, x)
    res = nbadam.minimize(fun, np.zeros(40, np.float32), jac=jac,
                          options={"lr": 0.05, "maxiter": 3000, "gtol": 1e-3,
                                   "state_precision": "bfloat16"})
    assert res.success and np.max(np.abs(res.x - c)) < 1e-3


def test_minimize_refuses_bad_precisions_before_evaluating():
    calls = []

    def fun(x):
        calls.append(1)
        return float(np.sum(x ** 2))

    with pytest.raises(ValueError, match="needs float32 parameters"):
        nbadam.minimize(fun, np.zeros(3), jac=lambda x: 2 * x,
                        options={"state_precision": "bfloat16"})
    with pytest.raises(ValueError, match="state_precision'\\] is not supported by minimize_b"):
        nbadam.minimize_batch(lambda X: np.sum(X ** 2, axis=1), np.zeros((2, 3), np.float32),
                              jac=lambda X: 2 * X, options={"state_precision": "bfloat16"})
    assert not calls


def test_mlp_trains_with_bfloat16_state():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    losses = {}
    for precision in ("float32", "bfloat16"):
        model = nbadam.MLP([8, 16, 2], seed=0)
        history = model.fit(x, y, epochs=8, batch_size=32, optimizer="adam", seed=0,
                            optimizer_options={"state_precision": precision}, progress=False)
        assert model.optimizer.state_precision == precision
        losses[precision] = history["loss"]
    assert losses["bfloat16"][-1] < 0.75 * losses["bfloat16"][0]
    assert abs(losses["bfloat16"][-1] - losses["float32"][-1]) < 0.05 * losses["float32"][-1]


def test_the_cuda_kernel_compiles_to_float32_ptx(monkeypatch):
    """The compact kernel for a real GPU (not the simulator's Python): PTX with 16-bit loads
    and stores of the codes, no float64 arithmetic and no calls (the codec is inlined)."""
    import test_cuda
    compile_ptx = test_cuda._ptx_compiler()
    test_cuda._device_functions_without_a_gpu(monkeypatch)
    from nbadam._kernels import cuda as cuda_kernels
    update = nbadam.rules.get("adam").update({"amsgrad": True})
    compact_ = ("bfloat16", (True, True, True))
    ptx, _ = compile_ptx(cuda_kernels.compact_python_kernel(update, "float32", False, compact_),
                         cuda_kernels.compact_signature(update, np.float32, False, compact_),
                         cc=(8, 0))
    instructions = test_cuda._instructions(ptx)
    assert not [line for line in instructions if ".f64" in line]
    assert not [line for line in instructions if line.startswith("call")]
    assert sum(".u16" in line and line.startswith("st.global") for line in instructions) >= 3


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("name", ["adam", "amsgrad", "adan"])
def test_the_cpu_kernels_vectorise_in_float32(name, parallel):
    """The rewritten element inlines into the loop: float32 vector arithmetic, 16-bit vector
    loads of the codes, no float64 and no reference counting in the loop."""
    import numba
    update = nbadam.rules.get(name).update({**nbadam.rules.get(name).defaults,
                                            **nbadam.rules.get(name).pinned})
    flags = _compact.flags(update, "bfloat16")
    pair = compact.kernels(update, "bfloat16", flags)
    source = (pair.parallel if parallel else pair.serial).py_func
    fresh = numba.njit(parallel=parallel, error_model="numpy", nogil=True)(source)
    n = 64
    state = tuple(np.zeros(n, np.uint16) if flag else np.zeros(n, np.float32) for flag in flags)
    scalars = tuple(np.float32(0.5) for _ in update.scalar_names)
    fresh(np.ones(n, np.float32), np.ones(n, np.float32), state, scalars, np.uint32(1))
    (signature,) = fresh.signatures
    ir = fresh.inspect_llvm(signature)
    assert "<8 x float>" in ir or "<16 x float>" in ir or "<4 x float>" in ir
    assert "<8 x i16>" in ir or "<16 x i16>" in ir or "<4 x i16>" in ir
    for token in ("fadd double", "fmul double", "fdiv double", "llvm.sqrt.f64"):
        assert token not in ir, token


def test_mlp_checkpoint_resumes_with_bfloat16_state(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    kwargs = {"epochs": 3, "batch_size": 20, "seed": 0, "progress": False,
              "optimizer_options": {"state_precision": "bfloat16"}}
    whole = nbadam.MLP([6, 8, 2], seed=0)
    whole.fit(x, y, **kwargs)

    def crash_after_epoch_2(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        nbadam.MLP([6, 8, 2], seed=0).fit(x, y, checkpoint=path,
                                          callback=crash_after_epoch_2, **kwargs)
    resumed = nbadam.MLP([6, 8, 2], seed=0)
    resumed.fit(x, y, checkpoint=path, resume=True, **kwargs)
    np.testing.assert_array_equal(resumed.params, whole.params)
    assert resumed.optimizer.state_precision == "bfloat16"
    for key, codes in whole.optimizer.state.items():
        np.testing.assert_array_equal(resumed.optimizer.state[key], codes)


def test_command_line_takes_the_state_precision(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "nbadam", "mnist", "--subset", "500",
                           "--epochs", "1", "--hidden", "16", "--batch-size", "50",
                           "--state-precision", "bfloat16", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "nbadam", "mnist", "--state-precision", "fp8"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--state-precision" in bad.stderr


def test_sharded_optimizer_refuses_compact_state():
    pytest.importorskip("mpi4py")
    from nbadam import distributed
    MPI = distributed.require_mpi()
    with pytest.raises(ValueError, match="does not support state_precision"):
        distributed.ShardedOptimizer(nbadam.Adam, np.zeros(8, np.float32), MPI.COMM_SELF,
                                     state_precision="bfloat16")


@pytest.mark.parametrize("name", ["rosen", "quadratic"])
def test_minimize_converges_on_standard_problems(name):
    """bfloat16 moments: the same problems converge, to the tolerance float32 state reaches
    there (rounding the moments changes the path, not where Adam settles)."""
    from scipy.optimize import rosen, rosen_der
    if name == "rosen":
        fun, jac, x0 = rosen, rosen_der, np.array([-1.2, 1.0], np.float32)
        solution, options = np.ones(2), {"lr": 0.01, "maxiter": 20_000, "gtol": 1e-3}
    else:
        c = np.linspace(-2, 2, 100)
        fun = lambda x: float(np.sum((x - c) ** 2))  # noqa: E731
        jac = lambda x: (2 * (x - c)).astype(np.float32)  # noqa: E731
        x0, solution = np.zeros(100, np.float32), c
        options = {"lr": 0.05, "maxiter": 5000, "gtol": 1e-3}
    for precision in ("float32", "bfloat16"):
        res = nbadam.minimize(fun, x0, jac=jac,
                              options={**options, "state_precision": precision})
        assert res.success, (precision, res.message)
        assert np.max(np.abs(res.x - solution)) < 2e-2, precision


def test_a_rule_without_compact_arrays_refuses_clearly():
    with pytest.raises(ValueError, match="Prodigy supports state_precision='float32' only"):
        nbadam.Prodigy(np.zeros(4, np.float32), state_precision="bfloat16")


@pytest.mark.parametrize("k", [0, 1, 2])
def test_stochastic_rounding_is_unbiased(k):
    """A value a quarter of the way between two codes rounds up a quarter of the time,
    across elements at one step and across steps for one element."""
    low = compact.bf16_decode(np.full(1, 0x3F80, np.uint16))[0]          # 1.0
    value = np.float32(low + np.float32(2 ** -7) * np.float32(0.25))     # + a quarter step
    up = np.uint16(0x3F81)
    many = np.full(100_000, value, np.float32)
    across = compact.bf16_encode(many, compact.bf16_noise(np.arange(many.size), 7, k))
    assert abs(np.mean(across == up) - 0.25) < 0.01
    steps = np.array([compact.bf16_encode(np.array([value]), compact.bf16_noise(
        np.array([12345]), t, k))[0] for t in range(1, 4001)])
    assert abs(np.mean(steps == up) - 0.25) < 0.03
    # the two arrays of one hash are not the same noise
    other = compact.bf16_noise(np.arange(1000), 7, k ^ 1)
    assert not np.array_equal(other, compact.bf16_noise(np.arange(1000), 7, k))
