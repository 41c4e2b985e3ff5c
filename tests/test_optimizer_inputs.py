"""Bad input to the optimizers: a clear error naming the parameter, and nothing mutated."""

import inspect

import numpy as np
import pytest
from conftest import ALL_RULE_IDS, ALL_RULES, REDUCTION_RULE_IDS

import nbadam

BAD_HYPERPARAMETERS = [
    ("lr", -1e-3, ValueError), ("lr", -1e-300, ValueError), ("lr", float("nan"), ValueError),
    ("lr", float("inf"), ValueError), ("lr", "0.1", TypeError),
    ("betas", (1.0, 0.999), ValueError), ("betas", (0.9, -0.1), ValueError),
    ("betas", (0.9,), ValueError), ("betas", 0.9, TypeError), ("betas", (0.9, float("nan")),
                                                                ValueError),
    ("eps", -1e-8, ValueError), ("weight_decay", -0.1, ValueError),
    ("maximize", "yes", TypeError), ("nonfinite", "ignore", ValueError),
]


#: Every rule with every bad value of a hyperparameter it has (Lion has no eps, ...).
BAD_BY_RULE = [pytest.param(rule, name, value, error, id=f"{rule[0]}-{name}={value!r}")
               for rule in ALL_RULES for name, value, error in BAD_HYPERPARAMETERS
               if name in inspect.signature(rule[1]).parameters]


@pytest.mark.parametrize("rule,name,value,error", BAD_BY_RULE)
def test_bad_hyperparameter_is_refused_by_name(rule, name, value, error):
    _, cls, kwargs = rule
    params = np.arange(4.0)
    with pytest.raises(error, match=name.split("[")[0]):
        cls(params, **kwargs, **{name: value})
    assert np.array_equal(params, np.arange(4.0))


@pytest.mark.parametrize("name,value,error", BAD_HYPERPARAMETERS,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD_HYPERPARAMETERS])
def test_bad_assignment_keeps_the_old_value(name, value, error):
    opt = nbadam.Adam(np.zeros(3))
    old = getattr(opt, name)
    with pytest.raises(error, match=name.split("[")[0]):
        setattr(opt, name, value)
    assert getattr(opt, name) == old


@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_lr_zero_is_accepted_and_takes_no_step(rule):
    """lr = 0, as torch accepts it: at construction, by assignment, as schedules.constant(0).

    The parameters do not move; the state (but a reduction rule's: Prodigy, as
    prodigyopt, then updates nothing) and the step count still advance.
    """
    _, cls, kwargs = rule
    rng = np.random.default_rng(4)
    start = rng.standard_normal(9)
    grad = rng.standard_normal(9)
    for lr in (0.0, nbadam.schedules.constant(0.0)):
        params = start.copy()
        opt = cls(params, lr=lr, **kwargs)
        assert opt.step(grad) and opt.last_lr == 0.0 and opt.step_count == 1
        np.testing.assert_array_equal(params, start)
        if rule[0] in REDUCTION_RULE_IDS:
            # prodigyopt's step at lr = 0 updates no state either (tests/test_prodigy.py)
            continue
        assert any(not np.array_equal(value, cls(start.copy(), **kwargs).state[name])
                   for name, value in opt.state.items())
    opt = cls(start.copy(), lr=0.1, **kwargs)
    opt.lr = 0.0
    assert opt.lr == 0.0 and opt.current_lr() == 0.0
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr"):
            opt.lr = bad
    assert opt.lr == 0.0


def test_lr_zero_in_minimize_keeps_x0():
    res = nbadam.minimize(lambda x: float(x @ x), np.array([1.0, -2.0]),
                          jac=lambda x: 2.0 * x, options={"lr": 0.0, "maxiter": 5})
    np.testing.assert_array_equal(res.x, [1.0, -2.0])
    assert res.nit == 5


def test_momentum_decay_is_checked():
    with pytest.raises(ValueError, match="momentum_decay"):
        nbadam.NAdam(np.zeros(2), momentum_decay=-1.0)


BAD_PARAMS = [
    ([1.0, 2.0], TypeError, "NumPy array"),
    (np.arange(4), TypeError, "float32 or float64"),
    (np.ones(4, dtype=np.float16), TypeError, "float32 or float64"),
    (np.ones(4, dtype=np.complex128), TypeError, "float32 or float64"),
    (np.ones((2, 2)), ValueError, "1-D"),
    (np.ones(8)[::2], ValueError, "contiguous"),
]


@pytest.mark.parametrize("params,error,fragment", BAD_PARAMS,
                         ids=["list", "int", "float16", "complex", "2d", "strided"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_bad_params_are_refused(rule, params, error, fragment):
    _, cls, kwargs = rule
    snapshot = np.array(params, copy=True)
    with pytest.raises(error, match=fragment) as info:
        cls(params, **kwargs)
    assert "params" in str(info.value)
    assert np.array_equal(np.asarray(params), snapshot)


def test_read_only_params_are_refused():
    params = np.ones(3)
    params.flags.writeable = False
    with pytest.raises(ValueError, match="params is read-only"):
        nbadam.Adam(params)


BAD_GRADS = [
    (np.ones(5), ValueError, "shape"),
    (np.ones(4, dtype=np.float32), TypeError, "dtype float32"),
    (np.ones((4, 1)), ValueError, "shape"),
    (np.ones(8)[::2], ValueError, "contiguous"),
    ([1.0, 1.0, 1.0, 1.0], TypeError, "NumPy array"),
]


@pytest.mark.parametrize("grad,error,fragment", BAD_GRADS,
                         ids=["length", "dtype", "2d", "strided", "list"])
@pytest.mark.parametrize("rule", ALL_RULES, ids=ALL_RULE_IDS)
def test_bad_gradient_is_refused_and_nothing_changes(rule, grad, error, fragment):
    _, cls, kwargs = rule
    params = np.linspace(0.0, 1.0, 4)
    opt = cls(params, **kwargs)
    opt.step(np.ones(4))
    before = params.copy(), {k: v.copy() for k, v in opt.state.items()}
    with pytest.raises(error, match=fragment) as info:
        opt.step(grad)
    assert "grad" in str(info.value)
    assert np.array_equal(params, before[0]) and opt.step_count == 1
    for name, value in opt.state.items():
        assert np.array_equal(value, before[1][name])


def test_schedule_returning_garbage_is_an_error_before_the_update():
    params = np.ones(2)
    opt = nbadam.Adam(params, lr=lambda count: float("nan"))
    with pytest.raises(ValueError, match="schedule"):
        opt.step(np.ones(2))
    assert np.array_equal(params, np.ones(2)) and opt.step_count == 0


def test_amsgrad_is_fixed_at_construction():
    opt = nbadam.Adam(np.zeros(2))
    with pytest.raises(AttributeError):
        opt.amsgrad = True


class TestLoadStateDict:
    def test_other_class_is_refused(self):
        state = nbadam.Adam(np.zeros(3)).state_dict()
        with pytest.raises(ValueError, match="Adam optimizer; this one is a RAdam"):
            nbadam.RAdam(np.zeros(3)).load_state_dict(state)

    @pytest.mark.parametrize("params", [np.zeros(4), np.zeros(3, dtype=np.float32)],
                             ids=["size", "dtype"])
    def test_other_size_or_dtype_is_refused(self, params):
        state = nbadam.Adam(np.zeros(3)).state_dict()
        with pytest.raises(ValueError, match="3 x float64"):
            nbadam.Adam(params).load_state_dict(state)

    def test_amsgrad_mismatch_is_refused(self):
        state = nbadam.Adam(np.zeros(3), amsgrad=True).state_dict()
        with pytest.raises(ValueError, match="amsgrad"):
            nbadam.Adam(np.zeros(3)).load_state_dict(state)

    def test_bad_hyperparameter_in_state_leaves_optimizer_unchanged(self):
        source = nbadam.Adam(np.zeros(3))
        source.step(np.ones(3))
        state = source.state_dict()
        state["hyperparameters"]["eps"] = -1.0
        target = nbadam.Adam(np.zeros(3), lr=0.5)
        with pytest.raises(ValueError, match="eps"):
            target.load_state_dict(state)
        assert target.step_count == 0 and target.lr == 0.5
        assert not target.exp_avg.any()

    def test_file_of_another_optimizer_is_refused(self, tmp_path):
        nbadam.NAdam(np.zeros(3)).save(tmp_path / "n.npz")
        with pytest.raises(ValueError, match="n.npz"):
            nbadam.Adam(np.zeros(3)).load(tmp_path / "n.npz")

    def test_state_dict_is_a_copy(self):
        opt = nbadam.Adam(np.zeros(3))
        state = opt.state_dict()
        state["state"]["exp_avg"][:] = 5.0
        assert not opt.exp_avg.any()
