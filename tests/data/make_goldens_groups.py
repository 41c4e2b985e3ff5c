"""Record golden trajectories of parameter groups, gradient clipping and an EMA from torch.

Run from the repository root with torch installed (``pip install torch numpy``)::

    python tests/data/make_goldens_groups.py

It writes ``tests/data/goldens_groups/<case>_<dtype>.npz``; the tests read them with
NumPy alone, so CI never needs torch.

One flat vector of ``N`` parameters is split the way nbadam's ``groups=`` splits it,
into torch parameter tensors of one ``param_group`` each:

* ``[0, 14)``: its own ``lr``, ``betas`` and ``weight_decay``;
* ``[14, 30)``: the optimizer's defaults given to the constructor;
* ``[30, 38)``: ``lr=0.0`` (frozen: its parameters must not change);
* ``[38, 42)``: in no group (torch does not optimize it; nbadam leaves it untouched).

Each step the gradient is that of a quadratic at the current parameters plus noise,
scaled so that ``clip_grad_norm_`` (over all four tensors, as nbadam clips the whole
vector) is active on some steps and not on others; then ``optimizer.step()``, then the
EMA update that ``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=
get_ema_multi_avg_fn(decay))`` applies (the first update copies).  The stored gradients
are the unclipped ones, as nbadam receives them.

Each file holds ``config`` (JSON: case, dtype, torch version, steps, the optimizer's
class and keyword arguments, the groups with their keyword arguments, ``max_norm``,
``ema``), ``params0`` (N,), ``grads``, ``params`` and ``ema`` (T, N), and ``norms``
(T,), the gradient norms ``clip_grad_norm_`` returned.
"""

import json
import pathlib
import zlib

import numpy as np
import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

N = 42
STEPS = 60
BOUNDS = [(0, 14), (14, 30), (30, 38)]
UNGROUPED = (38, 42)
MAX_NORM = 1.0
EMA = 0.9
OUT_DIR = pathlib.Path(__file__).resolve().parent / "goldens_groups"

# case -> (torch class, constructor keyword arguments, per-group keyword arguments)
CASES = {
    "adam": ("Adam", {"lr": 1e-2},
             [{"lr": 3e-2, "betas": (0.8, 0.99), "weight_decay": 0.1}, {}, {"lr": 0.0}]),
    "adamw_amsgrad": ("AdamW", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.05},
                      [{"lr": 2e-2, "weight_decay": 0.0}, {"eps": 1e-6}, {"lr": 0.0}]),
    "nadam": ("NAdam", {"lr": 1e-2},
              [{"momentum_decay": 1e-2, "betas": (0.85, 0.995)}, {}, {"lr": 0.0}]),
    "radam": ("RAdam", {"lr": 1e-2, "weight_decay": 0.01},
              [{"lr": 5e-2}, {"weight_decay": 0.0}, {"lr": 0.0}]),
}


def record(case, cls_name, kwargs, group_kwargs, dtype):
    torch.set_default_dtype(torch.float64 if dtype == "float64" else torch.float32)
    seed = zlib.crc32(f"{case}-{dtype}".encode())
    rng = np.random.default_rng(seed)
    params0 = rng.standard_normal(N).astype(dtype)
    target = rng.standard_normal(N).astype(dtype)
    curvature = rng.uniform(0.5, 3.0, N).astype(dtype)
    tensors = [torch.tensor(params0[lo:hi].copy(), requires_grad=True)
               for lo, hi in (*BOUNDS, UNGROUPED)]
    groups = [{"params": [t], **extra} for t, extra in zip(tensors, group_kwargs, strict=False)]
    opt = getattr(torch.optim, cls_name)(groups, foreach=False, **kwargs)
    ema = [t.detach().clone() for t in tensors]
    average = get_ema_multi_avg_fn(EMA)
    grads, params, emas, norms = [], [], [], []
    for step in range(STEPS):
        x = np.concatenate([t.detach().numpy() for t in tensors])
        scale = 4.0 if step % 3 == 0 else 0.05       # clipping on some steps only
        g = (scale * (curvature * (x - target) + 0.3 * rng.standard_normal(N))).astype(dtype)
        for t, (lo, hi) in zip(tensors, (*BOUNDS, UNGROUPED), strict=True):
            t.grad = torch.tensor(g[lo:hi].copy())
        norms.append(float(torch.nn.utils.clip_grad_norm_(tensors, MAX_NORM, foreach=False)))
        opt.step()
        with torch.no_grad():
            if step == 0:
                for e, t in zip(ema, tensors, strict=True):
                    e.copy_(t)
            else:
                average(ema, [t.detach() for t in tensors], torch.tensor(step))
        grads.append(g)
        params.append(np.concatenate([t.detach().numpy() for t in tensors]))
        emas.append(np.concatenate([e.numpy() for e in ema]))
    config = {"case": case, "dtype": dtype, "torch_version": torch.__version__,
              "steps": STEPS, "optimizer": cls_name,
              "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
              "groups": [{"params": list(bounds),
                          **{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}}
                         for bounds, g in zip(BOUNDS, group_kwargs, strict=True)],
              "max_norm": MAX_NORM, "ema": EMA}
    OUT_DIR.mkdir(exist_ok=True)
    np.savez_compressed(OUT_DIR / f"{case}_{dtype}.npz", config=np.array(json.dumps(config)),
                        params0=params0, grads=np.array(grads), params=np.array(params),
                        ema=np.array(emas), norms=np.array(norms))


def main():
    for case, (cls_name, kwargs, group_kwargs) in CASES.items():
        for dtype in ("float32", "float64"):
            record(case, cls_name, kwargs, group_kwargs, dtype)
            print("wrote", case, dtype)


if __name__ == "__main__":
    main()
