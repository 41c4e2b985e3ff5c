"""Record golden trajectories of Prodigy from ``prodigyopt``.

Install the reference packages (CPU torch is enough; CI never runs this script)::

    python -m pip install torch "prodigyopt==1.1.2" numpy

and run from the repository root::

    python tests/data/make_goldens_prodigy.py

It writes one ``tests/data/goldens_prodigy/<case>_<dtype>.npz`` per configuration and dtype.
The tests read these files with NumPy alone.

How prodigyopt is run
    ``prodigyopt.Prodigy`` on one tensor per nbadam group (one tensor for the cases without
    groups), its ``step()`` after setting each tensor's ``.grad`` to a fresh copy of the
    recorded gradient (prodigyopt adds coupled weight decay to ``.grad`` in place).
    ``slice_p`` keeps its default, 1.  On a CPU with AVX2 or AVX-512, torch's kernels for
    ``add_(x, alpha=a)`` and ``addcmul_`` round ``y + a * x`` once (a fused multiply-add);
    nbadam rounds the product and the sum, as the other rules do.  The per-tensor sums
    are ``torch.dot`` and ``Tensor.sum`` in the tensor's dtype (float32 sums for float32),
    where nbadam accumulates in float64.

The gradients depend on the parameters
    As in ``make_goldens_optax.py``: a separable quadratic plus a Rosenbrock coupling of
    neighbouring pairs at prodigyopt's current parameters (float64, then cast), plus noise
    drawn up front; about 5% exact zeros and element ``ALWAYS_ZERO`` never gets a gradient.

Each file holds

``config``
    0-d unicode array with JSON: ``optimizer`` ("Prodigy"), ``dtype``, ``kwargs``
    (nbadam's keyword arguments, ``betas`` as a list; ``groups`` as
    ``[[start, stop, {overrides}], ...]`` when the case has groups), ``prodigyopt_version``,
    ``torch_version``, ``torch_cpu_capability`` and ``steps``.
``params0`` (n,), ``grads`` (T, n), ``params`` (T, n)
    initial parameters, the gradient of every step and the parameters after every step.
the final state
    ``exp_avg`` (absent when ``betas[0]`` is 0: prodigyopt keeps none), ``exp_avg_sq``,
    ``s``, ``p0`` (the case's dtype), and 0-d float64 ``d``, ``d_max``, ``d_numerator``
    and ``k`` (the first group's).
"""

import json
import pathlib
import zlib
from importlib.metadata import version

import numpy as np
import prodigyopt
import torch
from golden_problem import N_PARAMS, N_STEPS, Problem

OUT_DIR = pathlib.Path(__file__).resolve().parent / "goldens_prodigy"
PINNED = {"prodigyopt": "1.1.2"}

# name -> (nbadam keyword arguments, groups as [(start, stop, overrides)] or None)
CASES = {
    "prodigy_default": ({}, None),
    "prodigy_lr_betas_beta3_decoupled": (
        {"lr": 0.5, "betas": (0.95, 0.99), "beta3": 0.9, "weight_decay": 0.1}, None),
    "prodigy_coupled_decay_bias_correction": (
        {"weight_decay": 0.05, "decouple": False, "use_bias_correction": True}, None),
    "prodigy_safeguard_growth_d_coef": (
        {"safeguard_warmup": True, "growth_rate": 1.02, "d_coef": 0.5, "d0": 1e-4,
         "eps": 1e-6}, None),
    "prodigy_beta1_zero": ({"betas": (0.0, 0.99)}, None),
    "prodigy_groups": ({"weight_decay": 0.01},
                       [(0, 6, {"weight_decay": 0.2}), (6, 16, {"eps": 1e-6})]),
}




def _torch_kwargs(kwargs):
    return {k: tuple(v) if k == "betas" else v for k, v in kwargs.items()}


def run_case(kwargs, groups, dtype, problem):
    """prodigyopt on one case: the gradients, the trajectory and the final state."""
    bounds = [(0, N_PARAMS, {})] if groups is None else groups
    tensors = [torch.tensor(problem.params0.astype(dtype)[lo:hi]) for lo, hi, _ in bounds]
    param_groups = [{"params": [tensor], **overrides}
                    for tensor, (_, _, overrides) in zip(tensors, bounds, strict=True)]
    optimizer = prodigyopt.Prodigy(param_groups, **_torch_kwargs(kwargs))
    grads = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    trajectory = np.empty((N_STEPS, N_PARAMS), dtype=dtype)
    for t in range(N_STEPS):
        current = np.concatenate([tensor.numpy() for tensor in tensors])
        grads[t] = problem.grad(current, t).astype(dtype)
        for tensor, (lo, hi, _) in zip(tensors, bounds, strict=True):
            tensor.grad = torch.tensor(grads[t][lo:hi].copy())
        optimizer.step()
        trajectory[t] = np.concatenate([tensor.numpy() for tensor in tensors])
    states = [optimizer.state[tensor] for tensor in tensors]
    names = ["exp_avg_sq", "s", "p0"] + (["exp_avg"] if kwargs.get("betas", (0.9,))[0] > 0
                                         else [])
    arrays = {name: np.concatenate([state[name].numpy().reshape(-1) for state in states])
              for name in names}
    first = optimizer.param_groups[0]
    for name in ("d", "d_max", "d_numerator", "k"):
        arrays[name] = np.array(float(first[name]), dtype=np.float64)
    assert trajectory.dtype == dtype and all(a.dtype == dtype for k, a in arrays.items()
                                             if k in names)
    return grads, trajectory, arrays


def main():
    found = version("prodigyopt")
    if found != PINNED["prodigyopt"]:
        raise SystemExit(f"goldens are pinned to prodigyopt {PINNED['prodigyopt']}, "
                         f"found {found}")
    torch.set_num_threads(1)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for case, (kwargs, groups) in CASES.items():
        problem = Problem(zlib.crc32(case.encode()))
        for dtype in ("float32", "float64"):
            grads, trajectory, state = run_case(kwargs, groups, np.dtype(dtype), problem)
            stored = {k: list(v) if k == "betas" else v for k, v in kwargs.items()}
            if groups is not None:
                stored["groups"] = [[lo, hi, overrides] for lo, hi, overrides in groups]
            config = {
                "optimizer": "Prodigy",
                "dtype": dtype,
                "kwargs": stored,
                "prodigyopt_version": found,
                "torch_version": torch.__version__,
                "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "steps": N_STEPS,
            }
            path = OUT_DIR / f"{case}_{dtype}.npz"
            np.savez_compressed(path, config=np.array(json.dumps(config, sort_keys=True)),
                                params0=problem.params0.astype(dtype), grads=grads,
                                params=trajectory, **state)
            print(f"wrote {path.relative_to(OUT_DIR.parent.parent.parent)} "
                  f"(d = {float(state['d']):.3e}, k = {float(state['k']):.0f})")


if __name__ == "__main__":
    main()
