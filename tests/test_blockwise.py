"""``state_precision="8bit"``: the formats, the fused block kernels, checkpoints, groups, minimize.

The NumPy reference of the formats (:func:`nbadam._kernels.blockwise.quantize`)
is checked against a brute-force nearest code among the decoded grid of every
code, and the kernels against the reference, bit for bit: a step with 8-bit
state must be the float32 step on the decoded moments followed by quantising
the new ones (the float32 step itself is tested against torch and optax
elsewhere), for every rule that supports it, serial and parallel, and on
hypothesis-drawn extreme values (zeros, subnormals, huge and non-finite).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nbadam
from nbadam import _config
from nbadam._kernels import blockwise, cpu
from nbadam.optimizers import _compact, make_optimizer

COMPACT_RULES = [name for name in nbadam.rules.names()
                 if nbadam.rules.get(name).update({**nbadam.rules.get(name).defaults,
                                                   **nbadam.rules.get(name).pinned}).compact]
BLOCK = blockwise.BLOCK


# -- the formats -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", blockwise.KINDS)
def test_every_code_decodes_to_a_value_that_encodes_back(kind):
    codes = np.arange(256, dtype=np.uint8)
    top = blockwise._TOP[kind]
    values = blockwise.decode_codes(codes, np.full(256, 1 / top, np.float32), "signed"
                                    if kind == "signed" else "root")
    roots = np.sqrt(values) if kind == "root" else values
    again = blockwise.encode_codes(roots, np.full(256, top, np.float32), kind)
    if kind == "signed":
        np.testing.assert_array_equal(again, codes)
        magnitudes = values[:128]
        assert np.all(np.diff(magnitudes) > 0) and magnitudes[0] == 0
        np.testing.assert_array_equal(values[128:], -magnitudes)
        assert magnitudes[-1] == pytest.approx(1.0, rel=1e-5)      # absmax maps to the top
    else:
        np.testing.assert_array_equal(again[1:], codes[1:])
        assert again[0] == 1                                       # zero is never a code
        assert np.all(np.diff(values) > 0)
        assert values[-1] == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("kind", blockwise.KINDS)
def test_quantize_picks_the_nearest_code(kind):
    """Against the grid itself: each value's code is the nearest of the 256 (of its root for
    a root array), up to a last-bit tie."""
    rng = np.random.default_rng(0)
    n = 40 * BLOCK
    magnitude = 10.0 ** rng.uniform(-6, 0, n)
    values = (magnitude * (rng.choice([-1, 1], n) if kind == "signed" else 1)).astype(np.float32)
    values[::BLOCK] = 1.0 if kind == "signed" else 1.0   # each block's absmax
    codes, absmax = blockwise.quantize(values, kind)
    np.testing.assert_array_equal(absmax, 1.0)
    grid = blockwise.decode_codes(np.arange(256, dtype=np.uint8),
                                  np.full(256, 1 / blockwise._TOP[kind], np.float32), kind)
    target = np.sqrt(values) if kind == "root" else values
    grid = np.sqrt(grid) if kind == "root" else grid
    chosen = np.abs(grid[codes].astype(np.float64) - target)
    best = np.min(np.abs(grid[None, :].astype(np.float64) - target[:, None]), axis=1)
    assert np.all(chosen <= best * (1 + 1e-6) + 1e-12)
    decoded = blockwise.dequantize(codes, absmax, kind)
    normal = np.abs(target) > 2.0 ** -6
    spacing = 2.0 ** -3 if kind == "signed" else 2.0 ** -4
    error = np.abs(np.sqrt(decoded) - target) if kind == "root" else np.abs(decoded - target)
    assert np.all(error[normal] <= spacing / 2 * np.abs(target[normal]) * 1.01)


def test_root_codes_keep_small_second_moments_off_zero():
    v = np.array([1.0, 1e-30, 0.0, 1e-12], np.float32)
    codes, absmax = blockwise.quantize(v, "root")
    decoded = blockwise.dequantize(codes, absmax, "root")
    assert np.all(decoded > 0)
    zero_codes, zero_absmax = blockwise.quantize(np.zeros(5, np.float32), "root")
    np.testing.assert_array_equal(blockwise.dequantize(zero_codes, zero_absmax, "root"), 0.0)


def test_a_non_finite_value_poisons_its_block_only():
    values = np.linspace(-1, 1, 3 * BLOCK).astype(np.float32)
    values[BLOCK + 5] = np.nan
    values[2 * BLOCK + 7] = np.inf
    codes, absmax = blockwise.quantize(values, "signed")
    decoded = blockwise.dequantize(codes, absmax, "signed")
    assert np.all(np.isfinite(decoded[:BLOCK]))
    assert not np.any(np.isfinite(decoded[BLOCK:]))
    assert np.sum(np.isinf(decoded[BLOCK:])) <= 1                 # the infinity itself


def _correctly_rounded_fma(a, b, c):
    """float32 ``a * b + c`` rounded once, to nearest, ties to even (exact fractions)."""
    from fractions import Fraction
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    guess = np.float32(float(exact))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]
    distance = [abs(Fraction(float(x)) - exact) for x in candidates]
    best = min(distance)
    ties = [x for x, d in zip(candidates, distance, strict=True) if d == best]
    return min(ties, key=lambda x: int(np.array(x).view(np.uint32)) & 1)


def test_fma32_rounds_once():
    """The NumPy twin of the kernels' fused multiply-add, against exact arithmetic, on a
    case that rounding the float64 sum would get wrong (a tie broken by bits past float64's
    53) and on random operands of every magnitude."""
    one_ulp = np.float32(1 + 2 ** -23)
    assert blockwise.fma32(one_ulp, one_ulp, np.float32(2 ** 24)) == np.float32(2 ** 24 + 2)
    rng = np.random.default_rng(7)
    a = (rng.standard_normal(3000) * 10.0 ** rng.uniform(-15, 15, 3000)).astype(np.float32)
    b = (rng.standard_normal(3000) * 10.0 ** rng.uniform(-15, 15, 3000)).astype(np.float32)
    c = np.where(rng.random(3000) < 0.5, np.float32(2.0),
                 (rng.standard_normal(3000) * 10.0 ** rng.uniform(-15, 15, 3000)))
    c = c.astype(np.float32)
    got = blockwise.fma32(a, b, c)
    wanted = np.array([_correctly_rounded_fma(x, y, z) for x, y, z in zip(a, b, c, strict=True)],
                      dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), wanted.view(np.uint32))


# -- the kernels against the reference ------------------------------------------------------
def quantized_float32_run(name, x0, grads, **options):
    """The float32 optimizer whose compact arrays are replaced after every applied step by
    their quantised values (group by group), as the 8-bit kernels keep them: the trajectory
    the 8-bit optimizer must give, bit for bit."""
    x = x0.copy()
    opt = make_optimizer(name, x, **options)
    spans = opt._spans

    def quantize_state():
        values = {key: opt.state[key] for key in opt._update.state}
        decoded = _compact.to_values(opt._update, "8bit", _compact.to_stored(
            opt._update, "8bit", values, spans, np.float32), spans)
        for key, flag in zip(opt._update.state, _compact.flags(opt._update, "8bit"),
                             strict=True):
            if flag:
                for lo, hi in spans:
                    opt.state[key][lo:hi] = decoded[key][lo:hi]
    quantize_state()
    for g in grads:
        if opt.step(g):
            quantize_state()
    return x, opt


def gradients(x0, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal(x0.size) + 0.1 * np.arange(x0.size) % 3)
             * 10.0 ** rng.uniform(-3, 1, x0.size)).astype(np.float32) for _ in range(steps)]


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("name", COMPACT_RULES)
def test_a_step_is_the_float32_step_then_quantisation(name, parallel, monkeypatch):
    monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", 1 if parallel else 10 ** 9)
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(5 * BLOCK + 17).astype(np.float32)
    grads = gradients(x0, 30)
    expected, reference = quantized_float32_run(name, x0, grads)
    x = x0.copy()
    opt = make_optimizer(name, x, state_precision="8bit")
    for g in grads:
        opt.step(g)
    np.testing.assert_array_equal(x, expected)
    for key, values in opt.state_values().items():
        np.testing.assert_array_equal(values, reference.state[key], err_msg=key)


def test_serial_and_parallel_builds_agree_bit_for_bit():
    from nbadam.rules.adam import ADAM_UPDATE
    rng = np.random.default_rng(5)
    n = 300 * BLOCK + 3
    pair = blockwise.kernels(ADAM_UPDATE, (True, True))
    runs = []
    for kernel in (pair.serial, pair.parallel):
        p = np.linspace(-1, 1, n).astype(np.float32)
        state = (np.zeros(n, np.uint8), np.zeros(n, np.uint8))
        absmax = tuple(np.zeros(blockwise.blocks(n), np.float32) for _ in range(2))
        scalars = tuple(np.float32(v) for v in (1, 0, 1, 0.1, 0.999, 0.001, -1e-3, 0.03, 1e-8))
        for step in range(3):
            g = np.random.default_rng(step).standard_normal(n).astype(np.float32)
            kernel(p, g, state, scalars, absmax)
        runs.append((p, *state, *absmax))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert rng is not None


def reference_kernel_step(update, flags, param, grad, state, absmax, scalars):
    """Decode, the float32 kernel, encode: what one 8-bit launch must do (NumPy codec)."""
    found = blockwise.kinds(update, flags)
    order = {j: k for k, j in enumerate(found)}
    values = tuple(blockwise.dequantize(a, absmax[order[j]], found[j]) if j in found
                   else a.copy() for j, a in enumerate(state))
    param = param.copy()
    with np.errstate(all="ignore"):
        cpu.kernels(update).serial(param, grad, values, scalars)
        coded = {j: blockwise.quantize(values[j], found[j]) for j in found}
    return (param, tuple(coded[j][0] if j in found else v for j, v in enumerate(values)),
            tuple(coded[j][1] for j in found))


FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-40, 1.2e-38, 1e30, -1e30, 3e38, -3e38,
                     1.0, -1.0]),
    st.floats(-1e6, 1e6, width=32, allow_nan=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False))


def _assert_same(kernel_out, reference_out, found):
    (p, state, absmax), (rp, rstate, rabsmax) = kernel_out, reference_out
    np.testing.assert_array_equal(p, rp)
    for k, j in enumerate(found):
        np.testing.assert_array_equal(absmax[k], rabsmax[k])
        finite = np.repeat(np.isfinite(absmax[k]), BLOCK)[:p.size]
        np.testing.assert_array_equal(state[j][finite], rstate[j][finite])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_extreme_values_match_the_reference(data):
    """Zeros, subnormals, huge values and a block of NaN gradients: the kernel and the
    reference agree bit for bit (the codes of a block whose absmax is not finite are free:
    every value of it decodes as NaN)."""
    from nbadam.rules.adam import ADAM_UPDATE, AMSGRAD_UPDATE
    update = data.draw(st.sampled_from([ADAM_UPDATE, AMSGRAD_UPDATE]))
    flags = (True,) * len(update.state)
    found = blockwise.kinds(update, flags)
    n = data.draw(st.integers(1, 3 * BLOCK))
    grad = data.draw(hnp.arrays(np.float32, n, elements=FLOATS))
    if data.draw(st.booleans()):
        grad[:min(n, BLOCK)] = np.nan                      # a block of NaN
    param = data.draw(hnp.arrays(np.float32, n, elements=FLOATS))
    state = tuple(data.draw(hnp.arrays(np.uint8, n)) for _ in flags)
    nblocks = blockwise.blocks(n)
    absmax = tuple(np.abs(data.draw(hnp.arrays(np.float32, nblocks, elements=FLOATS)))
                   for _ in flags)
    scalars = tuple(np.float32(v) for v in (1, 0, 1, 0.1, 0.999, 0.001, -1e-3, 0.03, 1e-8))
    reference = reference_kernel_step(update, flags, param, grad, state, absmax, scalars)
    with np.errstate(all="ignore"):
        blockwise.kernels(update, flags).serial(param, grad, state, scalars, absmax)
    _assert_same((param, state, absmax), reference, found)


def test_kernel_with_zero_state_and_zero_gradient_keeps_zeros():
    from nbadam.rules.adam import ADAM_UPDATE
    n = 2 * BLOCK
    p = np.ones(n, np.float32)
    state = (np.zeros(n, np.uint8), np.zeros(n, np.uint8))
    absmax = (np.zeros(2, np.float32), np.zeros(2, np.float32))
    scalars = tuple(np.float32(v) for v in (1, 0, 1, 0.1, 0.999, 0.001, -1e-3, 0.03, 1e-8))
    blockwise.kernels(ADAM_UPDATE, (True, True)).serial(p, np.zeros(n, np.float32), state,
                                                        scalars, absmax)
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(absmax[0], 0.0)
    np.testing.assert_array_equal(absmax[1], 0.0)


# -- the optimizers ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, limit", [("adam", 2.1), ("adamw", 2.1), ("lion", 1.1),
                                         ("amsgrad", 3.1), ("adan", 7.1)])
def test_bytes_of_state_per_element_counted_from_state(name, limit):
    n = 1_000_000
    opt = make_optimizer(name, np.zeros(n, np.float32), state_precision="8bit")
    counted = sum(array.nbytes for array in opt.state.values()) / n
    assert counted <= limit
    scales = [key for key in opt.state if key.endswith("_absmax")]
    assert scales and all(opt.state[key].size == blockwise.blocks(n) for key in scales)


def test_groups_have_their_own_blocks_and_match_the_reference():
    rng = np.random.default_rng(11)
    n = 3 * 1024
    x0 = rng.standard_normal(n).astype(np.float32)
    groups = [{"params": slice(0, 1000), "lr": 0.0},
              {"params": slice(1000, 2000), "betas": (0.8, 0.99)},
              {"params": slice(2200, n), "lr": nbadam.schedules.warmup_cosine_decay(0.01, 5, 30)}]
    options = {"groups": groups, "clip_grad_norm": 5.0, "ema": 0.9, "lr": 1e-2}
    grads = gradients(x0, 30, seed=12)
    expected, reference = quantized_float32_run("adam", x0, grads, **options)
    x = x0.copy()
    opt = nbadam.Adam(x, state_precision="8bit", **options)
    assert opt.state["exp_avg_absmax"].size == sum(blockwise.blocks(s) for s in (1000, 1000, 872))
    for g in grads:
        opt.step(g)
    np.testing.assert_array_equal(x[:1000], x0[:1000])        # frozen, bit for bit
    np.testing.assert_array_equal(x[2000:2200], x0[2000:2200])  # in no group
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(opt.ema_params, reference.ema_params)


def test_yogi_starts_at_the_quantised_accumulator():
    opt = nbadam.Yogi(np.zeros(700, np.float32), state_precision="8bit")
    values = opt.state_values()
    np.testing.assert_allclose(values["exp_avg_sq"], 1e-6, rtol=0.07)
    np.testing.assert_allclose(values["exp_avg"], 1e-6, rtol=0.07)


def test_nonfinite_policies_with_8bit_state():
    g = np.ones(3 * BLOCK, np.float32)
    bad = g.copy()
    bad[BLOCK + 1] = np.nan
    for policy in ("skip", "raise"):
        opt = nbadam.Adam(np.zeros(3 * BLOCK, np.float32), nonfinite=policy,
                          state_precision="8bit")
        opt.step(g)
        before = {k: v.copy() for k, v in opt.state.items()}
        if policy == "raise":
            with pytest.raises(FloatingPointError):
                opt.step(bad)
        else:
            assert opt.step(bad) is False
        for key, array in opt.state.items():
            np.testing.assert_array_equal(array, before[key])
    opt = nbadam.Adam(np.zeros(3 * BLOCK, np.float32), state_precision="8bit")
    with np.errstate(all="ignore"):
        opt.step(bad)                                            # "propagate"
    assert np.all(np.isfinite(opt.params[:BLOCK])) and np.all(np.isfinite(opt.params[2 * BLOCK:]))
    assert np.isnan(opt.params[BLOCK + 1])


def _trained(precision, steps=12, n=2 * 1024 + 5, **options):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(n).astype(np.float32)
    opt = nbadam.AdamW(x, lr=1e-2, state_precision=precision, **options)
    for g in gradients(x, steps, seed=4):
        opt.step(g)
    return opt


def test_an_8bit_checkpoint_resumes_bit_for_bit(tmp_path):
    opt = _trained("8bit")
    path = tmp_path / "opt.npz"
    opt.save(path)
    twin = nbadam.AdamW(opt.params.copy(), lr=1e-2, state_precision="8bit")
    twin.load(path)
    for key, array in opt.state.items():
        np.testing.assert_array_equal(twin.state[key], array)
    g = gradients(opt.params, 1, seed=9)[0]
    opt.step(g)
    twin.step(g)
    np.testing.assert_array_equal(twin.params, opt.params)


@pytest.mark.parametrize("source, target", [("float32", "8bit"), ("8bit", "float32"),
                                            ("bfloat16", "8bit"), ("8bit", "bfloat16")])
def test_checkpoints_convert_between_precisions(tmp_path, source, target):
    opt = _trained(source, groups=[{"params": [0, 1500]}, {"params": [1500, 2053]}])
    path = tmp_path / "opt.npz"
    opt.save(path)
    other = nbadam.AdamW(opt.params.copy(), lr=1e-2, state_precision=target,
                         groups=[{"params": [0, 1500]}, {"params": [1500, 2053]}])
    other.load(path)
    theirs, ours = opt.state_values(), other.state_values()
    for key in theirs:
        tolerance = 0.07 if "8bit" in (source, target) else 0.005
        scale = np.max(np.abs(theirs[key]))
        assert np.max(np.abs(ours[key] - theirs[key])) <= tolerance * scale, key
    if target == "float32":   # decoding is exact
        for key in theirs:
            np.testing.assert_array_equal(ours[key], theirs[key])


def test_a_bad_8bit_snapshot_changes_nothing():
    opt = _trained("8bit")
    before = {k: v.copy() for k, v in opt.state.items()}
    snapshot = opt.state_dict()
    snapshot["state"]["exp_avg_absmax"] = snapshot["state"]["exp_avg_absmax"][:-1]
    with pytest.raises(ValueError, match="exp_avg_absmax"):
        opt.load_state_dict(snapshot)
    snapshot = opt.state_dict()
    del snapshot["state"]["exp_avg_sq_absmax"]
    with pytest.raises(ValueError, match="expected"):
        opt.load_state_dict(snapshot)
    for name in ("exp_avg_absmax", "exp_avg_sq_absmax"):  # a negative scale flips or
        snapshot = opt.state_dict()                       # hides a block's values
        snapshot["state"][name][1] = -1.0
        with pytest.raises(ValueError, match=rf"{name}\[1\] = -1.0"):
            opt.load_state_dict(snapshot)
    for key, array in opt.state.items():
        np.testing.assert_array_equal(array, before[key])


def test_a_file_of_other_groups_is_refused_for_its_groups(tmp_path):
    # The scales' shapes follow the groups: the groups are what the message names.
    saved = nbadam.Adam(np.zeros(600, np.float32), state_precision="8bit",
                        groups=[{"params": slice(0, 300)}, {"params": slice(300, 600)}])
    saved.step(np.ones(600, np.float32))
    saved.save(tmp_path / "opt.npz")
    other = nbadam.Adam(np.zeros(600, np.float32), state_precision="8bit",
                        groups=[{"params": slice(0, 100)}, {"params": slice(100, 600)}])
    with pytest.raises(ValueError, match=r"has groups \[\[0, 300\], \[300, 600\]\]"):
        other.load(tmp_path / "opt.npz")


def test_roots_must_be_compact_arrays():
    from nbadam.rules import Update
    from nbadam.rules.adam import ADAM_UPDATE
    with pytest.raises(ValueError, match="roots must be compact arrays"):
        Update("x", ADAM_UPDATE.state, ADAM_UPDATE.scalar_names, ADAM_UPDATE.scalars,
               ADAM_UPDATE.element, compact=("exp_avg",), roots=("exp_avg_sq",))


def test_a_rule_without_compact_arrays_refuses_8bit_clearly():
    with pytest.raises(ValueError, match="Prodigy supports state_precision='float32' only"):
        nbadam.Prodigy(np.zeros(4, np.float32), state_precision="8bit")
    with pytest.raises(ValueError, match="needs float32 parameters"):
        nbadam.Adam(np.zeros(4), state_precision="8bit")


# -- minimize, the MLP, the command line ----------------------------------------------------
def test_minimize_takes_the_optimizers_steps_python_and_compiled():
    import numba
    c = np.linspace(-1, 1, 600).astype(np.float32)

    def fun(x):
        return float(np.sum((x - c) ** 2))

    def jac(x):
        return (2 * (x - c)).astype(np.float32)

    @numba.njit
    def fun_and_jac(x):
        d = x - c
        return np.float32(np.sum(d * d)), (np.float32(2) * d).astype(np.float32)

    x = np.zeros(600, np.float32)
    opt = nbadam.Adam(x, lr=0.05, state_precision="8bit")
    for _ in range(80):
        opt.step(jac(x))
    options = {"lr": 0.05, "maxiter": 80, "gtol": 0, "ftol": 0, "return_best": False,
               "state_precision": "8bit"}
    res = nbadam.minimize(fun, np.zeros(600, np.float32), jac=jac, options=options)
    np.testing.assert_array_equal(res.x, x)
    compiled = nbadam.minimize(fun_and_jac, np.zeros(600, np.float32), jac=True,
                               options=options)
    np.testing.assert_array_equal(compiled.x, x)


@pytest.mark.parametrize("name", ["rosen", "quadratic"])
def test_minimize_converges_on_standard_problems(name):
    """8-bit moments: the same problems converge, to the tolerance float32 state reaches
    there (gtol = 1e-3, the point within 2e-2 of the solution)."""
    from scipy.optimize import rosen, rosen_der
    if name == "rosen":
        fun, jac, x0 = rosen, rosen_der, np.array([-1.2, 1.0], np.float32)
        solution, options = np.ones(2), {"lr": 0.01, "maxiter": 20_000, "gtol": 1e-3}
    else:
        c = np.linspace(-2, 2, 1000)
        fun = lambda x: float(np.sum((x - c) ** 2))  # noqa: E731
        jac = lambda x: (2 * (x - c)).astype(np.float32)  # noqa: E731
        x0, solution = np.zeros(1000, np.float32), c
        options = {"lr": 0.05, "maxiter": 5000, "gtol": 1e-3}
    for precision in ("float32", "8bit"):
        res = nbadam.minimize(fun, x0, jac=jac,
                              options={**options, "state_precision": precision})
        assert res.success, (precision, res.message)
        assert np.max(np.abs(res.x - solution)) < 2e-2, precision


def test_mlp_trains_and_resumes_with_8bit_state(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    kwargs = {"epochs": 3, "batch_size": 20, "seed": 0, "progress": False,
              "optimizer_options": {"state_precision": "8bit"}}
    whole = nbadam.MLP([6, 8, 2], seed=0)
    history = whole.fit(x, y, **kwargs)
    assert whole.optimizer.state_precision == "8bit"
    assert history["loss"][-1] < history["loss"][0]

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
    for key, codes in whole.optimizer.state.items():
        np.testing.assert_array_equal(resumed.optimizer.state[key], codes)


def test_command_line_takes_8bit_state(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "nbadam", "mnist", "--subset", "500",
                           "--epochs", "1", "--hidden", "16", "--batch-size", "50",
                           "--state-precision", "8bit", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout


_CACHED_STEP = """
import os
import subprocess
import sys

import numpy as np
import nbadam
from nbadam._kernels import blockwise
opt = nbadam.Adam(np.zeros(1000, np.float32), lr=1e-3, state_precision="8bit")
opt.step(np.ones(1000, np.float32))
stats = blockwise.kernels(opt._update, opt._compact[1]).serial.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""


def test_kernels_are_cached_on_disk_between_processes(tmp_path):
    # Generated from source, they compile as if defined in blockwise.py, whose stamp and
    # the digest in their names key the cache.
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", _CACHED_STEP], env=env, check=True,
                           capture_output=True, text=True).stdout.split()[-2:]
            for _ in range(2)]
    assert runs == [["0", "1"], ["1", "0"]]  # (hits, misses): compiled, then loaded
