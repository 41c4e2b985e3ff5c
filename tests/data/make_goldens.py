"""Record golden optimizer trajectories from ``torch.optim``.

Run from the repository root with the pinned torch installed::

    python tests/data/make_goldens.py

It writes one ``tests/data/goldens/<case>.npz`` per configuration and dtype. The tests read
these files with NumPy alone, so CI never needs torch.

Every case runs torch's single-tensor (for-loop) implementation on the CPU (``foreach=False``
is passed explicitly; it is not stored in ``config`` because it does not change the rule).
float64 cases set ``torch.set_default_dtype(torch.float64)`` before the optimizer is built,
because torch keeps its scalar state (the step count, NAdam's mu product) in the default
dtype; see ``docs/reference.rst``.

The gradients are drawn up front and do not depend on the parameters, so a trajectory is a
pure function of ``params0``, ``grads`` and the configuration.

Each file holds

``config``
    0-d unicode array with JSON: ``optimizer``, ``dtype``, ``kwargs`` (torch keyword
    arguments as given, ``betas`` as a list), ``torch_version`` and ``steps``.
``params0`` (n,), ``grads`` (T, n), ``params`` (T, n)
    initial parameters, the gradient of every step and the parameters after every step.
``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``mu_product``, ``exp_inf``
    the final optimizer state under torch's names, where the optimizer has it. ``step`` and
    ``mu_product`` are 0-d float64; everything else has the case's dtype.
"""

import json
import pathlib
import zlib

import numpy as np
import torch

N_PARAMS = 16
N_STEPS = 200
ALWAYS_ZERO = 5  # index of the element whose gradient is exactly 0 on every step
OUT_DIR = pathlib.Path(__file__).resolve().parent / "goldens"

# name -> (torch optimizer class name, keyword arguments)
CASES = {
    "adam_default": ("Adam", {}),
    "adam_lr_betas_eps": ("Adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}),
    "adam_amsgrad": ("Adam", {"amsgrad": True}),
    "adam_maximize": ("Adam", {"maximize": True}),
    "adam_l2": ("Adam", {"weight_decay": 0.1}),
    "adam_decoupled": ("Adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    "adamw_default": ("AdamW", {}),
    "adamw_amsgrad": ("AdamW", {"amsgrad": True, "weight_decay": 0.05}),
    "nadam_default": ("NAdam", {}),
    "nadam_l2": ("NAdam", {"weight_decay": 0.1}),
    "nadam_decoupled": ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    "nadam_momentum_decay": ("NAdam", {"momentum_decay": 1e-2, "lr": 1e-2}),
    "adamax_default": ("Adamax", {}),
    "adamax_l2": ("Adamax", {"weight_decay": 0.1}),
    "adamax_maximize": ("Adamax", {"maximize": True}),
    "adamax_lr_betas": ("Adamax", {"lr": 1e-2, "betas": (0.8, 0.99)}),
    "radam_default": ("RAdam", {}),
    "radam_l2": ("RAdam", {"weight_decay": 0.1}),
    "radam_decoupled": ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    "radam_lr_betas": ("RAdam", {"lr": 1e-2, "betas": (0.9, 0.99)}),
}

STATE_NAMES = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf")
SCALAR_STATE_NAMES = ("step", "mu_product")


def make_problem(seed):
    """Return ``params0`` (n,) and ``grads`` (T, n) in float64 for one case.

    Parameters span about 1e-2..1e1 in magnitude. Each element has a gradient scale between
    1e-4 and 1e2 and a bias, so that the moments neither vanish nor only cancel; about 5% of
    the entries are exact zeros and element ``ALWAYS_ZERO`` never gets a gradient.
    """
    rng = np.random.default_rng(seed)
    params0 = rng.normal(size=N_PARAMS) * 10.0 ** rng.uniform(-2.0, 1.0, N_PARAMS)
    scale = 10.0 ** rng.uniform(-4.0, 2.0, N_PARAMS)
    bias = rng.normal(size=N_PARAMS)
    grads = scale * (bias + rng.normal(size=(N_STEPS, N_PARAMS)))
    grads[rng.random((N_STEPS, N_PARAMS)) < 0.05] = 0.0
    grads[:, ALWAYS_ZERO] = 0.0
    return params0, grads


def run_case(optimizer_name, kwargs, dtype, params0, grads):
    """Run torch on one case; return the trajectory and the final state as NumPy arrays."""
    torch_dtype = getattr(torch, dtype)
    previous_default = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        param = torch.nn.Parameter(torch.tensor(params0, dtype=torch_dtype))
        optimizer_class = getattr(torch.optim, optimizer_name)
        optimizer = optimizer_class([param], foreach=False, **kwargs)
        trajectory = np.empty(grads.shape, dtype=dtype)
        for t, grad in enumerate(grads):
            param.grad = torch.tensor(grad, dtype=torch_dtype)
            optimizer.step()
            trajectory[t] = param.detach().numpy()
        state = optimizer.state[param]
        arrays = {"params": trajectory}
        for name in STATE_NAMES:
            if name in state:
                arrays[name] = state[name].detach().numpy().astype(dtype)
        for name in SCALAR_STATE_NAMES:
            if name in state:
                arrays[name] = np.array(float(state[name]), dtype=np.float64)
        return arrays
    finally:
        torch.set_default_dtype(previous_default)


def main():
    if not torch.__version__.startswith("2.13"):
        raise SystemExit(f"goldens are pinned to torch 2.13, found {torch.__version__}")
    torch.set_num_threads(1)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for case, (optimizer_name, kwargs) in CASES.items():
        # Same problem for both dtypes of a case, different problems across cases.
        params0, grads = make_problem(zlib.crc32(case.encode()))
        for dtype in ("float32", "float64"):
            p0 = params0.astype(dtype)
            g = grads.astype(dtype)
            arrays = run_case(optimizer_name, kwargs, dtype, p0, g)
            stored_kwargs = {
                key: list(value) if key == "betas" else value
                for key, value in kwargs.items()
            }
            config = {
                "optimizer": optimizer_name,
                "dtype": dtype,
                "kwargs": stored_kwargs,
                "torch_version": torch.__version__,
                "steps": N_STEPS,
            }
            path = OUT_DIR / f"{case}_{dtype}.npz"
            np.savez_compressed(
                path,
                config=np.array(json.dumps(config, sort_keys=True)),
                params0=p0,
                grads=g,
                **arrays,
            )
            print(f"wrote {path.relative_to(OUT_DIR.parent.parent.parent)}")


if __name__ == "__main__":
    main()
