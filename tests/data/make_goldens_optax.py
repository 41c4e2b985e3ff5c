"""Record golden trajectories of Lion, AdaBelief, Adan and Yogi from optax.

Install the reference packages (CPU JAX is enough; CI never runs this script)::

    python -m pip install "jax[cpu]==0.10.2" "optax==0.2.8" numpy

and run from the repository root::

    python tests/data/make_goldens_optax.py

It writes one ``tests/data/goldens_optax/<case>_<dtype>.npz`` per configuration and dtype.
The tests read these files with NumPy alone.

How optax is run
    JAX's 64-bit mode is on (``jax.config.update("jax_enable_x64", True)``), for both dtypes:
    float64 needs it, and with it the step's scalars (``1 - beta**t``, the learning rate) are
    float64 numbers cast to the parameters' dtype where they meet an array, as in nbadam;
    float32 arrays stay float32 (JAX's weak typing).  Without it, JAX computes ``beta**t`` in
    float32, where ``1 - beta**t`` loses about 1e-5 relative for ``beta = 0.999`` at small
    ``t``.  The update runs op by op (no ``jax.jit`` around it), so each operation is the one
    optax writes; under ``jax.jit`` XLA fuses the update into one loop and contracts
    multiply-adds into FMAs, which moves the result by a few ulps.  That jitted difference
    is recorded too (``jit_difference`` in ``config``, the largest
    ``|jitted - eager| / (max|theta| + max|dtheta|)`` over the trajectory and the
    elements, with the same gradients).

The gradients depend on the parameters
    Each step's gradient is that of a separable quadratic plus a Rosenbrock coupling of
    neighbouring pairs, evaluated at optax's current parameters (in float64, then cast), plus
    noise drawn up front; about 5% of the entries are exact zeros and element
    ``ALWAYS_ZERO`` never gets a gradient.  The gradients are stored, so replaying them is a
    pure function of ``params0``, ``grads`` and the configuration.

Each file holds

``config``
    0-d unicode array with JSON: ``optimizer`` (the nbadam class), ``dtype``, ``kwargs``
    (nbadam's keyword arguments, ``betas`` as a list), ``optax`` (the optax call, as text),
    ``optax_version``, ``jax_version``, ``jax_enable_x64``, ``jit`` (false),
    ``jit_difference`` and ``steps``.
``params0`` (n,), ``grads`` (T, n), ``params`` (T, n)
    initial parameters, the gradient of every step and the parameters after every step.
``step``, and the final state under nbadam's names
    ``exp_avg`` (optax's ``mu`` or ``m``), ``exp_avg_var`` (AdaBelief's ``nu``),
    ``exp_avg_sq`` (Yogi's ``nu``, Adan's ``n``), ``exp_avg_diff`` (Adan's ``v``),
    ``prev_grad`` (Adan's ``g``).  ``step`` is 0-d float64, the rest has the case's dtype.
"""

import json
import pathlib
import zlib

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from golden_problem import N_PARAMS, N_STEPS, Problem  # noqa: E402

OUT_DIR = pathlib.Path(__file__).resolve().parent / "goldens_optax"
PINNED = {"optax": "0.2.8", "jax": "0.10.2"}


def _call(function, **kwargs):
    """``function(**kwargs)`` and the call as text, for ``config``."""
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return function(**kwargs), f"optax.{function.__name__}({text})"


def _optax_lion(lr, betas=(0.9, 0.99), weight_decay=0.0):
    return _call(optax.lion, learning_rate=lr, b1=betas[0], b2=betas[1],
                 weight_decay=weight_decay)


def _optax_adabelief(lr, betas=(0.9, 0.999), eps=1e-16, eps_root=1e-16):
    return _call(optax.adabelief, learning_rate=lr, b1=betas[0], b2=betas[1], eps=eps,
                 eps_root=eps_root)


def _optax_adan(lr, betas=(0.98, 0.92, 0.99), eps=1e-8, eps_root=1e-8, weight_decay=0.0):
    return _call(optax.adan, learning_rate=lr, b1=betas[0], b2=betas[1], b3=betas[2], eps=eps,
                 eps_root=eps_root, weight_decay=weight_decay)


def _optax_yogi(lr, betas=(0.9, 0.999), eps=1e-3, initial_accumulator=None):
    if initial_accumulator is None:
        return _call(optax.yogi, learning_rate=lr, b1=betas[0], b2=betas[1], eps=eps)
    # optax.yogi does not expose the starting value; this is its chain with it set.
    scale, scale_text = _call(optax.scale_by_yogi, b1=betas[0], b2=betas[1], eps=eps,
                              initial_accumulator_value=initial_accumulator)
    rate, rate_text = _call(optax.scale_by_learning_rate, learning_rate=lr)
    return optax.chain(scale, rate), f"optax.chain({scale_text}, {rate_text})"


#: nbadam class -> (optax factory, nbadam default lr, optax state field -> nbadam name)
OPTIMIZERS = {
    "Lion": (_optax_lion, 1e-4, {"mu": "exp_avg"}),
    "AdaBelief": (_optax_adabelief, 1e-3, {"mu": "exp_avg", "nu": "exp_avg_var"}),
    "Adan": (_optax_adan, 1e-3, {"m": "exp_avg", "v": "exp_avg_diff", "n": "exp_avg_sq",
                                 "g": "prev_grad"}),
    "Yogi": (_optax_yogi, 1e-2, {"mu": "exp_avg", "nu": "exp_avg_sq"}),
}

# name -> (nbadam class name, nbadam keyword arguments)
CASES = {
    "lion_default": ("Lion", {}),
    "lion_lr_betas_decay": ("Lion", {"lr": 3e-3, "betas": (0.95, 0.98), "weight_decay": 0.1}),
    "adabelief_default": ("AdaBelief", {}),
    "adabelief_lr_betas_eps": ("AdaBelief", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-8,
                                             "eps_root": 0.0}),
    "adan_default": ("Adan", {}),
    "adan_lr_betas_decay": ("Adan", {"lr": 1e-2, "betas": (0.9, 0.85, 0.95), "eps": 1e-6,
                                     "eps_root": 0.0, "weight_decay": 0.05}),
    "yogi_default": ("Yogi", {}),
    "yogi_lr_betas_eps_start": ("Yogi", {"lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-4,
                                         "initial_accumulator": 0.1}),
}




def _optax_kwargs(name, kwargs):
    return {"lr": kwargs.get("lr", OPTIMIZERS[name][1]),
            **{k: v for k, v in kwargs.items() if k != "lr"}}


def _state_arrays(opt_state, fields, dtype):
    """The named state of the first transformation of the chain, under nbadam's names."""
    inner = opt_state[0]
    arrays = {nbadam_name: np.asarray(getattr(inner, optax_name)).astype(dtype)
              for optax_name, nbadam_name in fields.items()}
    count = inner.count if "count" in inner._fields else inner.t   # Adan names it t
    arrays["step"] = np.array(float(count), dtype=np.float64)
    return arrays


def run_case(name, kwargs, dtype, problem):
    """optax op by op on one case; the trajectory, the gradients and the final state."""
    factory, _, fields = OPTIMIZERS[name]
    optimizer, _ = factory(**_optax_kwargs(name, kwargs))
    params = jnp.asarray(problem.params0.astype(dtype))
    opt_state = optimizer.init(params)
    grads = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    trajectory = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    for t in range(N_STEPS):
        grads[t] = problem.grad(np.asarray(params), t).astype(dtype)
        updates, opt_state = optimizer.update(jnp.asarray(grads[t]), opt_state, params)
        params = optax.apply_updates(params, updates)
        trajectory[t] = np.asarray(params)
    assert trajectory.dtype == dtype and np.asarray(params).dtype == dtype
    return grads, trajectory, _state_arrays(opt_state, fields, dtype)


def jit_difference(name, kwargs, dtype, params0, grads, trajectory):
    """``max |jitted - eager| / (max|theta| + max|dtheta|)`` with the recorded gradients."""
    optimizer, _ = OPTIMIZERS[name][0](**_optax_kwargs(name, kwargs))

    @jax.jit
    def step(grad, opt_state, params):
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params = jnp.asarray(params0)
    opt_state = optimizer.init(params)
    jitted = np.empty_like(trajectory)
    for t, grad in enumerate(grads):
        params, opt_state = step(jnp.asarray(grad), opt_state, params)
        jitted[t] = np.asarray(params)
    full = np.vstack([params0[None, :], trajectory]).astype(np.float64)
    scale = np.abs(full).max(axis=0) + np.abs(np.diff(full, axis=0)).max(axis=0)
    return float((np.abs(jitted.astype(np.float64) - trajectory) / scale).max())


def main():
    for package, version in PINNED.items():
        found = {"optax": optax.__version__, "jax": jax.__version__}[package]
        if found != version:
            raise SystemExit(f"goldens are pinned to {package} {version}, found {found}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for case, (name, kwargs) in CASES.items():
        # Same problem for both dtypes of a case, different problems across cases.
        problem = Problem(zlib.crc32(case.encode()))
        for dtype in ("float32", "float64"):
            grads, trajectory, state = run_case(name, kwargs, np.dtype(dtype), problem)
            params0 = problem.params0.astype(dtype)
            stored = {k: list(v) if k == "betas" else v for k, v in kwargs.items()}
            config = {
                "optimizer": name,
                "dtype": dtype,
                "kwargs": stored,
                "optax": OPTIMIZERS[name][0](**_optax_kwargs(name, kwargs))[1],
                "optax_version": optax.__version__,
                "jax_version": jax.__version__,
                "jax_enable_x64": True,
                "jit": False,
                "jit_difference": jit_difference(name, kwargs, dtype, params0, grads,
                                                 trajectory),
                "steps": N_STEPS,
            }
            path = OUT_DIR / f"{case}_{dtype}.npz"
            np.savez_compressed(path, config=np.array(json.dumps(config, sort_keys=True)),
                                params0=params0, grads=grads, params=trajectory, **state)
            print(f"wrote {path.relative_to(OUT_DIR.parent.parent.parent)} "
                  f"(jitted optax differs by {config['jit_difference']:.1e} of the scale)")


if __name__ == "__main__":
    main()
