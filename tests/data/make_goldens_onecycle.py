"""Record torch's ``OneCycleLR`` learning-rate and beta1 trajectories, and Adam under it.

Install the reference packages (CPU torch is enough; CI never runs this script)::

    python -m pip install torch numpy

and run from the repository root::

    python tests/data/make_goldens_onecycle.py

It writes ``tests/data/goldens_onecycle/<case>.npz``; the tests read them with NumPy alone.

Schedule cases (``schedule_*``)
    A one-parameter ``torch.optim.Adam`` under ``OneCycleLR(optimizer, **kwargs)``: before
    each of the ``total_steps`` optimizer steps, ``param_groups[0]["lr"]`` and
    ``param_groups[0]["betas"][0]`` are read (the values that step uses), then
    ``optimizer.step()`` and ``scheduler.step()`` run, in torch's order.

Trajectory cases (``adam_*``, ``adamw_*``)
    ``torch.optim.Adam``/``AdamW`` in float64 (``foreach=False``: the loop nbadam mirrors)
    under ``OneCycleLR``, on a vector of ``N_PARAMS`` elements, with one or two parameter
    groups (contiguous slices, each with its own ``max_lr``).  Each step's gradient is
    ``curvature * (theta - centre)`` at torch's current parameters plus noise drawn up
    front, and is stored, so replaying it is a pure function of ``params0`` and ``grads``.

Each file holds ``config`` (0-d unicode array with JSON: ``torch`` version, the case's
``kwargs`` for ``OneCycleLR`` (``max_lr`` a list with one value per group), the optimizer's
``options`` and the group ``slices``), ``lr`` and ``beta1`` (T, groups): what each step used,
and for trajectories ``params0`` (n,), ``grads`` (T, n) and ``params`` (T, n).
"""

import json
import pathlib

import numpy as np
import torch

OUT_DIR = pathlib.Path(__file__).resolve().parent / "goldens_onecycle"
N_PARAMS = 10
N_STEPS = 60

SCHEDULES = {
    "schedule_default": {"max_lr": [0.1], "total_steps": 100},
    "schedule_short_custom": {"max_lr": [0.3], "total_steps": 40, "pct_start": 0.25,
                              "div_factor": 10.0, "final_div_factor": 100.0,
                              "base_momentum": 0.8, "max_momentum": 0.9},
    "schedule_tiny": {"max_lr": [1.0], "total_steps": 7, "pct_start": 0.3},
    "schedule_no_momentum": {"max_lr": [0.05], "total_steps": 30, "cycle_momentum": False},
}

TRAJECTORIES = {
    "adam_one_group": ("Adam", {"betas": (0.9, 0.999)}, [(0, N_PARAMS)],
                       {"max_lr": [0.05], "total_steps": N_STEPS}),
    "adam_two_groups": ("Adam", {"betas": (0.9, 0.99), "eps": 1e-6},
                        [(0, 6), (6, N_PARAMS)],
                        {"max_lr": [0.05, 0.2], "total_steps": N_STEPS, "pct_start": 0.2,
                         "base_momentum": 0.8, "max_momentum": 0.97}),
    "adamw_one_group": ("AdamW", {"betas": (0.9, 0.999), "weight_decay": 0.05},
                        [(0, N_PARAMS)], {"max_lr": [0.02], "total_steps": N_STEPS}),
}


def _torch_kwargs(kwargs):
    out = dict(kwargs)
    out["max_lr"] = out["max_lr"] if len(out["max_lr"]) > 1 else out["max_lr"][0]
    return out


def record(optimizer, scheduler, steps, before_step=None):
    """The lr and beta1 of every group at each step, stepping optimizer and scheduler."""
    groups = len(optimizer.param_groups)
    lrs, beta1s = np.empty((steps, groups)), np.empty((steps, groups))
    for t in range(steps):
        for k, group in enumerate(optimizer.param_groups):
            lrs[t, k], beta1s[t, k] = group["lr"], group["betas"][0]
        if before_step is not None:
            before_step(t)
        optimizer.step()
        scheduler.step()
    return lrs, beta1s


def schedule_case(kwargs):
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([param], lr=1.0, foreach=False)
    param.grad = torch.zeros_like(param)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, **_torch_kwargs(kwargs))
    lrs, beta1s = record(optimizer, scheduler, kwargs["total_steps"])
    return {"lr": lrs, "beta1": beta1s}


def trajectory_case(name, options, slices, kwargs, seed):
    rng = np.random.default_rng(seed)
    params0 = rng.normal(size=N_PARAMS)
    curvature = 10.0 ** rng.uniform(-2.0, 1.0, N_PARAMS)
    centre = rng.normal(size=N_PARAMS)
    noise = 10.0 ** rng.uniform(-3.0, -1.0, N_PARAMS) * rng.normal(size=(N_STEPS, N_PARAMS))
    theta = torch.tensor(params0, dtype=torch.float64)
    pieces = [theta[lo:hi].clone().requires_grad_(True) for lo, hi in slices]
    cls = getattr(torch.optim, name)
    optimizer = cls([{"params": [p]} for p in pieces], lr=1.0, foreach=False, **options)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, **_torch_kwargs(kwargs))
    grads = np.empty((N_STEPS, N_PARAMS))
    params = np.empty((N_STEPS, N_PARAMS))

    def set_grad(t):
        current = np.concatenate([p.detach().numpy() for p in pieces])
        grads[t] = curvature * (current - centre) + noise[t]
        for p, (lo, hi) in zip(pieces, slices, strict=True):
            p.grad = torch.tensor(grads[t, lo:hi], dtype=torch.float64)

    lrs = np.empty((N_STEPS, len(slices)))
    beta1s = np.empty_like(lrs)
    for t in range(N_STEPS):
        for k, group in enumerate(optimizer.param_groups):
            lrs[t, k], beta1s[t, k] = group["lr"], group["betas"][0]
        set_grad(t)
        optimizer.step()
        scheduler.step()
        params[t] = np.concatenate([p.detach().numpy() for p in pieces])
    return {"lr": lrs, "beta1": beta1s, "params0": params0, "grads": grads,
            "params": params}


def main():
    OUT_DIR.mkdir(exist_ok=True)
    for case, kwargs in SCHEDULES.items():
        arrays = schedule_case(kwargs)
        config = {"torch": torch.__version__, "kwargs": kwargs}
        np.savez(OUT_DIR / f"{case}.npz", config=np.array(json.dumps(config)), **arrays)
    for seed, (case, (name, options, slices, kwargs)) in enumerate(TRAJECTORIES.items()):
        arrays = trajectory_case(name, options, slices, kwargs, seed)
        config = {"torch": torch.__version__, "optimizer": name, "kwargs": kwargs,
                  "options": {k: list(v) if isinstance(v, tuple) else v
                              for k, v in options.items()},
                  "slices": [list(s) for s in slices]}
        np.savez(OUT_DIR / f"{case}.npz", config=np.array(json.dumps(config)), **arrays)
    print(f"wrote {len(SCHEDULES) + len(TRAJECTORIES)} files to {OUT_DIR}")


if __name__ == "__main__":
    main()
