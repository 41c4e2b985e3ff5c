"""The loop of :func:`nbadam.minimize` with ``options={"device": "cuda"}``.

The iterate, the optimizer state, the gradient and (with ``return_best``) the
best point stay on the GPU: ``x0`` is copied there once, when the rule's
optimizer (:class:`nbadam.Adam`, ...) is built with ``device="cuda"``, and
each step is that optimizer's :meth:`~nbadam.Optimizer.step`.  ``fun`` and
``jac`` receive a device array and must return a real number and a device
gradient.  Per step, the host reads ``f`` and ``max|g|`` (one 8-byte copy: a
small kernel reduces the gradient on the device); the stopping tests are then
made by :func:`._compiled.decide`, the function the CPU loops use, so they
are the same rules with the same status codes.

This module imports ``numba.cuda`` only through :mod:`nbadam._cuda`, on the
first run, so that ``import nbadam`` never needs CUDA.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult

from .. import _launch, optimizers, rules
from . import _compiled, _status
from ._inputs import _scalar, _wrap_callback


def check(jac: Any, bounds: Any, opts: dict[str, Any]) -> None:
    """Refuse, with the reason, what the device loop cannot do (no GPU needed)."""
    if not (jac is True or callable(jac)):
        raise ValueError(
            f"options['device']='cuda' needs jac to be a callable returning a device "
            f"array, or True (fun returns (f, g)); got jac={jac!r}. Finite differences "
            "would evaluate fun 2n times per step on the host: use device='cpu' for them")
    if bounds is not None:
        raise ValueError("bounds are not supported with options['device']='cuda' (the "
                         "projection runs on the CPU only); use device='cpu' for a "
                         "bounded problem")
    if opts["compiled"] is True:
        raise ValueError("options['compiled']=True does not apply with "
                         "options['device']='cuda': the compiled loop is a CPU loop; "
                         "leave compiled unset (or False)")


def run(fun: Callable[..., Any], x0: np.ndarray, args: tuple, jac: Any,
        callback: Callable[..., Any] | None, rule: rules.Rule,
        opts: dict[str, Any]) -> OptimizeResult:
    """Minimize on the GPU; ``x0`` is the normalised host start, ``opts`` parsed options."""
    cuda_launcher = _launch.cuda_launcher()
    cuda_launcher.require()
    opt = optimizers.make_optimizer(
        rule, x0, device="cuda", clip_grad_norm=opts["clip_grad_norm"],
        state_precision=opts["state_precision"],
        **{name: opts[name] for name in rule.defaults if name not in rule.pinned})
    x = cuda_launcher.device_view(opt.params, "params")
    n, dtype = x.shape[0], x.dtype
    new = cuda_launcher.cuda.device_array
    xk = new(n, dtype)   # the copy of the iterate that fun and jac receive
    best_x = new(n, dtype) if opts["return_best"] else None
    best_g = new(n, dtype) if opts["return_best"] else None
    norm = new(1, np.float64)
    call = _wrap_callback(callback)
    scalars, settings = _compiled.pack(opts, n, bounded=False)

    nit, stop = 0, False
    f, g = _evaluate(fun, jac, args, x, xk, n, dtype)
    while True:
        status, improved = _compiled.decide(f, _inf_norm(g, norm), nit, stop, scalars,
                                            settings)
        if improved and opts["return_best"]:
            best_x.copy_to_device(x)
            best_g.copy_to_device(g)
        if status != _status.CONTINUE:
            break
        opt.step(g)
        nit += 1
        f, g = _evaluate(fun, jac, args, x, xk, n, dtype)
        if call is not None:
            stop = call(x.copy_to_host(), f, g.copy_to_host(), nit)

    best_f = float(scalars[_compiled.BEST_F])
    evaluations = nit + 1
    if opt.separate_eval_point:
        # A schedule-free rule reports its averaged point and fun and jac there, as on the CPU.
        x = opt.eval_params()
        f, g = _evaluate(fun, jac, args, x, xk, n, dtype)
        evaluations += 1
    elif opts["return_best"] and status != _status.CONVERGED_GTOL and best_f < math.inf:
        # A run that met gtol returns the point that met it, as on the CPU.
        x, f, g = best_x, best_f, best_g
    res = _status.result(x.copy_to_host(), f, g.copy_to_host(), nit, evaluations, evaluations,
                         status)
    if opts["disp"]:
        _status.print_summary(res)
    return res


def _evaluate(fun: Callable, jac: Any, args: tuple, x: Any, xk: Any, n: int,
              dtype: np.dtype) -> tuple[float, Any]:
    """``(f, g)`` at device vector ``x``; ``fun`` and ``jac`` see the copy ``xk``."""
    xk.copy_to_device(x)
    if jac is True:
        raw = fun(xk, *args)
        if type(raw) is not tuple or len(raw) != 2:
            raise ValueError("with jac=True, fun must return a tuple (f, g); got "
                             f"{type(raw).__name__}")
        value, grad = raw
    else:
        value, grad = fun(xk, *args), jac(xk, *args)
    return _value(value), _gradient(grad, n, dtype)


def _value(value: Any) -> float:
    """``fun``'s value as a float; a one-element device array is copied to the host."""
    if type(value) is float:
        return value
    device = _launch.cuda_launcher().device_view(value, "fun's value")
    if device is not None:
        if device.size != 1:
            raise ValueError("fun must return a scalar (a real number, or an array of one "
                             f"element); it returned a device array of shape "
                             f"{tuple(device.shape)}")
        value = device.copy_to_host()
    return _scalar(value)


def _gradient(value: Any, n: int, dtype: np.dtype) -> Any:
    """``jac``'s value as a contiguous device vector of ``n`` elements of ``dtype``."""
    if isinstance(value, np.ndarray):
        raise ValueError("with device='cuda', jac must return a device array (Numba, CuPy, "
                         "PyTorch CUDA); it returned numpy.ndarray — use device='cpu'")
    device = _launch.cuda_launcher().device_view(value, "jac's value")
    if device is None:
        raise ValueError("with device='cuda', jac must return a device array (Numba, CuPy, "
                         f"PyTorch CUDA); it returned {type(value).__name__}")
    if tuple(device.shape) != (n,):
        raise ValueError(f"jac must return a gradient of shape ({n},) like x0, got shape "
                         f"{tuple(device.shape)}")
    if device.dtype != dtype:
        raise ValueError(f"jac returned a gradient of dtype {device.dtype}, but x is {dtype}; "
                         "return the gradient in the dtype of x0")
    if not device.is_c_contiguous():
        raise ValueError("jac must return a C-contiguous gradient")
    return device


def _inf_norm(g: Any, out: Any) -> float:
    """``max |g_i|`` of device vector ``g`` (infinity if ``g`` holds a NaN); 0 if empty.

    Two launches and one 8-byte copy to the host, which waits for the GPU.
    """
    zero, reduce = _kernels()
    zero[1, 1](out)
    if g.shape[0]:
        blocks, threads = _launch.cuda_launcher().grid(g.shape[0])
        reduce[blocks, threads](g, out)
    return float(out.copy_to_host()[0])


#: ``numba.cuda``, bound on first use by :func:`_kernels` (a module global, which is
#: where the simulator swaps in its fake ``cuda`` module while a kernel runs).
cuda: Any = None


def _zero(out):
    out[0] = 0.0


def _reduce_inf_norm(g, out):
    # Each thread reduces its grid-stride slice, then one atomic per thread.
    local = 0.0
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        a = abs(float(g[i]))
        if a > local:
            local = a
        elif a != a:
            local = math.inf
    cuda.atomic.max(out, 0, local)


@functools.cache
def _kernels():
    """The two kernels of :func:`_inf_norm`, compiled on first use."""
    global cuda
    cuda = _launch.cuda_launcher().cuda
    return cuda.jit(_zero), cuda.jit(_reduce_inf_norm)
