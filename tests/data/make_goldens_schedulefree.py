"""Record golden trajectories of AdamWScheduleFree from the ``schedulefree`` package.

Install the reference packages (CPU torch is enough; CI never runs this script)::

    python -m pip install "schedulefree==1.4.1" torch numpy

and run from the repository root::

    python tests/data/make_goldens_schedulefree.py

It writes one ``tests/data/goldens_schedulefree/<case>_<dtype>.npz`` per configuration and
dtype.  The tests read these files with NumPy alone.

How the package is run
    ``schedulefree.AdamWScheduleFree`` with its defaults (its ``foreach`` path, the default
    where torch has ``_foreach_mul_``) on one CPU tensor of the case's dtype, in train mode
    (``opt.train()`` before the first step).  Its scalars (the warmup, ``lr_max``,
    ``weight_sum``, ``ckp1``, ``1 - beta2**t``) are Python floats, cast by torch to the
    tensor's dtype where they meet it, as in nbadam.  The eval point after each step is
    computed as ``eval()`` computes it, ``p.clone().lerp_(z, 1 - 1/beta1)``, so that
    recording it does not disturb training (the package's ``eval()`` then ``train()``
    round trip moves ``y`` by a rounding); at the end ``opt.eval()`` is called and checked
    to give the recorded point bit for bit.

The gradients depend on the parameters
    As in ``make_goldens_optax.py``: the gradient of a separable quadratic plus a Rosenbrock
    coupling of neighbouring pairs, evaluated at the package's current ``y`` (in float64,
    then cast), plus noise drawn up front; about 5% of the entries are exact zeros and
    element ``ALWAYS_ZERO`` never gets a gradient.  The gradients are stored, so replaying
    them is a pure function of ``params0``, ``grads`` and the configuration.

Each file holds

``config``
    0-d unicode array with JSON: ``optimizer`` (the nbadam class), ``dtype``, ``kwargs``
    (nbadam's keyword arguments, which are the package's, ``betas`` as a list),
    ``schedulefree_version``, ``torch_version``, ``cpu_capability`` and ``steps``.
``params0`` (n,), ``grads`` (T, n), ``params`` (T, n), ``eval_params`` (T, n)
    initial parameters, the gradient of every step, ``y`` after every step and the eval
    point ``x`` after every step.
``step``, ``lr_max``, ``weight_sum`` (0-d float64) and ``z``, ``exp_avg_sq``
    the final state: the group's ``k``, ``lr_max`` and ``weight_sum``, and the
    per-element state.
"""

import importlib.metadata
import json
import pathlib
import zlib

import numpy as np
import schedulefree
import torch
from golden_problem import N_PARAMS, N_STEPS, Problem

OUT_DIR = pathlib.Path(__file__).resolve().parent / "goldens_schedulefree"
PINNED = {"schedulefree": "1.4.1"}

# name -> nbadam keyword arguments (the package's names)
CASES = {
    "adamwschedulefree_default": {},
    "adamwschedulefree_lr_betas_eps_decay": {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6,
                                             "weight_decay": 0.1},
    "adamwschedulefree_warmup_r_power": {"lr": 2e-2, "warmup_steps": 25, "r": 0.5,
                                         "weight_lr_power": 1.0, "weight_decay": 0.01},
    "adamwschedulefree_warmup_no_weighting": {"lr": 5e-3, "betas": (0.95, 0.999),
                                              "warmup_steps": 60, "weight_lr_power": 0.0},
}




def run_case(kwargs, dtype, problem):
    """The package on one case: gradients, ``y`` and ``x`` after every step, final state."""
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype.name]
    param = torch.nn.Parameter(torch.tensor(problem.params0.astype(dtype), dtype=torch_dtype))
    opt = schedulefree.AdamWScheduleFree([param], **kwargs)
    beta1 = opt.param_groups[0]["betas"][0]
    opt.train()
    grads = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    trajectory = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    averaged = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    for t in range(N_STEPS):
        grads[t] = problem.grad(param.detach().numpy(), t).astype(dtype)
        param.grad = torch.tensor(grads[t])
        opt.step()
        trajectory[t] = param.detach().numpy()
        with torch.no_grad():
            x = param.detach().clone().lerp_(opt.state[param]["z"], 1 - 1 / beta1)
        averaged[t] = x.numpy()
    group, state = opt.param_groups[0], opt.state[param]
    final = {"z": state["z"].numpy().copy(), "exp_avg_sq": state["exp_avg_sq"].numpy().copy(),
             "step": np.array(float(group["k"])), "lr_max": np.array(group["lr_max"]),
             "weight_sum": np.array(group["weight_sum"])}
    opt.eval()
    assert np.array_equal(param.detach().numpy(), averaged[-1]), "eval() differs"
    assert trajectory.dtype == dtype and final["z"].dtype == dtype
    return grads, trajectory, averaged, final


def main():
    found = importlib.metadata.version("schedulefree")
    if found != PINNED["schedulefree"]:
        raise SystemExit(f"goldens are pinned to schedulefree {PINNED['schedulefree']}, "
                         f"found {found}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for case, kwargs in CASES.items():
        # Same problem for both dtypes of a case, different problems across cases.
        problem = Problem(zlib.crc32(case.encode()))
        for dtype in ("float32", "float64"):
            grads, trajectory, averaged, final = run_case(kwargs, np.dtype(dtype), problem)
            config = {
                "optimizer": "AdamWScheduleFree",
                "dtype": dtype,
                "kwargs": {k: list(v) if k == "betas" else v for k, v in kwargs.items()},
                "schedulefree_version": found,
                "torch_version": torch.__version__,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "steps": N_STEPS,
            }
            path = OUT_DIR / f"{case}_{dtype}.npz"
            np.savez_compressed(path, config=np.array(json.dumps(config, sort_keys=True)),
                                params0=problem.params0.astype(dtype), grads=grads,
                                params=trajectory, eval_params=averaged, **final)
            print(f"wrote {path.relative_to(OUT_DIR.parent.parent.parent)}")


if __name__ == "__main__":
    main()
