"""Adam, AdamW, NAdam, Adamax and RAdam over one flat parameter vector.

Each class validates its hyperparameters once, holds the optimizer state
(torch's names: ``exp_avg``, ``exp_avg_sq``, ...), computes the per-step
scalars on the host in float64 and hands one fused kernel launch to
:mod:`nbadam._launch`.  The update rules are those of ``torch.optim``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _launch, _validate, checkpoint, schedules

__all__ = ["Optimizer", "Adam", "AdamW", "NAdam", "Adamax", "RAdam"]

LearningRate = float | Callable[[int], float]
NONFINITE_POLICIES = ("propagate", "skip", "raise")


class _Hyper:
    """A hyperparameter attribute validated on every assignment."""

    def __init__(self, check: Callable[[str, Any], Any]):
        self.check = check

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    def __get__(self, obj, objtype=None):
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj, value):
        setattr(obj, self.slot, self.check(self.name, value))


class Optimizer:
    """Base class: state, hyperparameters, ``step`` and checkpoints.

    Subclasses set ``_state_names`` (the per-element state arrays) and
    implement ``_launch_step(grad, lr, t)``.  Use a concrete class such as
    :class:`Adam`; every one of them has the methods and attributes below.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.zeros(3)
    >>> opt = nbadam.RAdam(x, lr=1e-2)
    >>> isinstance(opt, nbadam.Optimizer), opt.device, opt.step_count
    (True, 'cpu', 0)
    >>> opt.step(np.ones(3)), opt.step_count, opt.last_lr
    (True, 1, 0.01)
    >>> snapshot = opt.state_dict()            # copies: hyperparameters, step count, state
    >>> sorted(snapshot["state"])
    ['exp_avg', 'exp_avg_sq']
    """

    _state_names: tuple[str, ...] = ()
    _scalar_state: tuple[str, ...] = ()
    _hyper_names: tuple[str, ...] = ()

    lr = _Hyper(lambda name, value: _validate.learning_rate(value))
    betas = _Hyper(lambda name, value: _validate.betas(value))
    eps = _Hyper(_validate.nonnegative)
    weight_decay = _Hyper(_validate.nonnegative)
    maximize = _Hyper(_validate.flag)
    nonfinite = _Hyper(lambda name, value: _validate.choice(name, value, NONFINITE_POLICIES))

    def __init__(self, params: np.ndarray, device: str = "cpu", **hyperparameters: Any):
        self._device = _validate.device(device)
        if self._device == "cuda":
            public, params = _launch.cuda_launcher().params_vector(params)
        else:
            params = public = _validate.params_vector(params)
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        self._params = params
        self._public_params = public
        self._dtype = params.dtype
        self._size = params.size
        self._scalar_buffer = (None if params.dtype == np.float64
                               else np.empty(16, dtype=params.dtype))
        self.step_count = 0
        self.skipped_steps = 0
        self.last_lr: float | None = None
        self._state = {name: _launch.zeros(self._size, self._dtype, self._device)
                       for name in self._active_state()}

    def _active_state(self) -> tuple[str, ...]:
        return self._state_names

    # -- public surface -------------------------------------------------------
    @property
    def params(self) -> np.ndarray:
        """The parameter vector, updated in place by :meth:`step`.

        On ``device="cuda"`` this is the array passed in when it already lived
        on the GPU (a Numba device array, CuPy array, PyTorch CUDA tensor), and
        otherwise the Numba device array the NumPy parameters were copied to;
        :meth:`params_host` copies it back.
        """
        return self._public_params

    @property
    def device(self) -> str:
        """Where the update runs: ``"cpu"`` or ``"cuda"`` (fixed at construction)."""
        return self._device

    def params_host(self) -> np.ndarray:
        """A NumPy copy of the parameters (waits for the GPU on ``device="cuda"``)."""
        return _launch.to_host(self._params, self._device)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The per-element state arrays by torch's names (live views, not copies)."""
        return dict(self._state)

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_state", {})
        if name in state:
            return state[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def hyperparameters(self) -> dict[str, Any]:
        """The current hyperparameters, by keyword name."""
        return {name: getattr(self, name) for name in self._hyper_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return (f"{type(self).__name__}(<{self._size} x {self._dtype}>, {args}, "
                f"step_count={self.step_count})")

    def current_lr(self) -> float:
        """The learning rate the next :meth:`step` will use."""
        if callable(self._lr):
            return _validate.scheduled_lr(self._lr, self.step_count)
        return self._lr

    def step(self, grad: np.ndarray) -> bool:
        """Apply one update to :attr:`params` in place.

        Parameters
        ----------
        grad : numpy.ndarray
            The gradient, 1-D, C-contiguous, same size and dtype as the parameters.
            On ``device="cuda"``, a device array (Numba, CuPy, PyTorch CUDA
            tensor), read in place, or a NumPy array, copied to the GPU each step.

        Returns
        -------
        bool
            True when the update was applied; False when ``nonfinite="skip"``
            skipped it because ``grad`` held NaN or infinity.

        Raises
        ------
        FloatingPointError
            With ``nonfinite="raise"``, if ``grad`` holds NaN or infinity; the
            parameters and state are left untouched.
        """
        if self._device == "cuda":
            grad = _launch.cuda_launcher().gradient(grad, self._size, self._dtype)
        else:
            grad = _validate.gradient(grad, self._size, self._dtype)
        if self._nonfinite != "propagate" and not _launch.all_finite(grad, self._device):
            if self._nonfinite == "raise":
                host = _launch.to_host(grad, self._device)
                index = int(np.flatnonzero(~np.isfinite(host))[0])
                raise FloatingPointError(
                    f"grad holds a non-finite value (grad[{index}] = {host[index]}) at step "
                    f"{self.step_count + 1}; parameters and state are unchanged")
            self.skipped_steps += 1
            return False
        lr = self.current_lr()
        t = self.step_count + 1
        self._launch_step(grad, lr, t)
        self.step_count = t
        self.last_lr = lr
        return True

    def _prologue(self, lr: float, decoupled: bool) -> tuple[float, float, float]:
        """Scalars of the common prologue: (grad_sign, l2, decay)."""
        sign = -1.0 if self._maximize else 1.0
        if decoupled:
            return sign, 0.0, 1.0 - lr * self._weight_decay
        return sign, self._weight_decay, 1.0

    def _launch_step(self, grad: np.ndarray, lr: float, t: int) -> None:
        raise NotImplementedError

    def _scalars(self, *values: float) -> tuple:
        """Host scalars (Python floats, computed in float64) in the kernel's dtype.

        float64 kernels take Python floats as they are.  For float32 the values
        go through one preallocated float32 buffer: unpacking it yields
        ``np.float32`` scalars about three times faster than ``np.float32(x)``
        one by one, which matters for small vectors.
        """
        if self._scalar_buffer is None:
            return values
        buffer = self._scalar_buffer[:len(values)]
        buffer[:] = values
        return tuple(buffer)

    def _run(self, rule: str, *args: Any) -> None:
        """Launch kernel ``rule`` on the parameter, gradient and state arrays."""
        _launch.step(rule, self._size, *args, device=self._device)

    # -- checkpoints ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies) of hyperparameters, step count and state.

        ``lr`` is stored as a number, an :mod:`nbadam.schedules` schedule's
        ``to_dict()``, or ``None`` for another callable (loading then keeps
        the learning rate of the receiving optimizer).
        """
        hyper = self.hyperparameters()
        lr = hyper["lr"]
        if isinstance(lr, schedules.Schedule):
            hyper["lr"] = lr.to_dict()
        elif callable(lr):
            hyper["lr"] = None
        hyper["betas"] = list(hyper["betas"])
        return {
            "optimizer": type(self).__name__,
            "size": self._size,
            "dtype": self._dtype.name,
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "hyperparameters": hyper,
            "scalars": {name: getattr(self, name) for name in self._scalar_state},
            "state": {name: _launch.to_host(array, self._device)
                      for name, array in self._state.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot; refuse one of another kind.

        Raises
        ------
        ValueError
            If the snapshot comes from another optimizer class, or its size,
            dtype or state arrays do not match this optimizer.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict from state_dict(), got "
                            f"{type(state_dict).__name__}")
        found = state_dict.get("optimizer")
        if found != name:
            raise ValueError(f"state_dict is for a {found} optimizer; this one is a {name}")
        if state_dict.get("size") != self._size or state_dict.get("dtype") != self._dtype.name:
            raise ValueError(
                f"state_dict holds {state_dict.get('size')} x {state_dict.get('dtype')} state; "
                f"this {name} has {self._size} x {self._dtype.name} parameters")
        arrays = state_dict.get("state", {})
        if set(arrays) != set(self._state):
            raise ValueError(f"state_dict has state arrays {sorted(arrays)}, expected "
                             f"{sorted(self._state)} (was amsgrad set differently?)")
        for key, array in arrays.items():
            array = np.asarray(array)
            if array.shape != (self._size,) or array.dtype != self._dtype:
                raise ValueError(f"state_dict array {key!r} is {array.shape} {array.dtype}; "
                                 f"expected ({self._size},) {self._dtype}")
        hyper = dict(state_dict.get("hyperparameters", {}))
        if hyper.get("lr") is None:
            hyper.pop("lr", None)
        elif isinstance(hyper["lr"], dict):
            hyper["lr"] = schedules.from_dict(hyper["lr"])
        fixed = {key: hyper.pop(key) for key in self._fixed_hyper if key in hyper}
        for key, value in fixed.items():
            if value != getattr(self, key):
                raise ValueError(f"state_dict has {key}={value!r}; this {name} has "
                                 f"{key}={getattr(self, key)!r}")
        step_count = _validate.integer("step_count", state_dict.get("step_count"), 0)
        skipped = _validate.integer("skipped_steps", state_dict.get("skipped_steps", 0), 0)
        scalars = dict(state_dict.get("scalars", {}))
        if set(scalars) != set(self._scalar_state):
            raise ValueError(f"state_dict has scalar state {sorted(scalars)}, expected "
                             f"{sorted(self._scalar_state)}")
        # Validate everything before changing anything.
        probe = type(self).__new__(type(self))
        for key, value in hyper.items():
            if key not in self._hyper_names:
                raise ValueError(f"state_dict has unknown hyperparameter {key!r}")
            setattr(probe, key, value)
        for key, value in hyper.items():
            setattr(self, key, value)
        for key, value in scalars.items():
            setattr(self, key, _validate.real(key, value))
        for key, array in arrays.items():
            _launch.copy_into(self._state[key], array, self._device)
        self.step_count, self.skipped_steps = step_count, skipped

    _fixed_hyper: tuple[str, ...] = ("amsgrad",)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file atomically (no pickle)."""
        checkpoint.save_optimizer(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Restore the state written by :meth:`save` into this optimizer."""
        state_dict = checkpoint.load_optimizer(path, self._state)
        try:
            self.load_state_dict(state_dict)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), with torch's arguments, defaults and update.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
                    \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Parameters
    ----------
    params : numpy.ndarray
        Flat, C-contiguous, writable float32 or float64 vector, updated in place.
    lr : float or callable, default 1e-3
        Learning rate (> 0), or a schedule ``count -> lr`` (:mod:`nbadam.schedules`).
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moments, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator (>= 0).
    weight_decay : float, default 0
        L2 penalty added to the gradient, or decoupled decay with
        ``decoupled_weight_decay=True`` (>= 0).
    amsgrad : bool, default False
        Normalise by the running maximum of the second moment.
    maximize : bool, default False
        Maximise the objective (the gradient is negated).
    decoupled_weight_decay : bool, default False
        Shrink the parameters by ``1 - lr * weight_decay`` instead of adding
        an L2 term (this is AdamW).
    nonfinite : {"propagate", "skip", "raise"}, default "propagate"
        What a gradient holding NaN or infinity does: flow into the state
        (no extra cost, as torch), skip the whole step, or raise
        ``FloatingPointError``; skip and raise leave the state untouched.
    device : {"cpu", "cuda"}, default "cpu"
        Where the update runs.  With ``"cuda"`` the state lives on the current
        GPU and ``params`` is a device array (Numba, CuPy, PyTorch CUDA tensor),
        updated in place, or a NumPy array, copied to the GPU once (read the
        result from :attr:`params` or :meth:`params_host`).  Without a usable
        GPU, ``"cuda"`` raises ``RuntimeError``.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([1.0, -2.0])
    >>> opt = nbadam.Adam(x, lr=0.1)
    >>> for _ in range(200):
    ...     _ = opt.step(2.0 * x)          # gradient of |x|^2
    >>> bool(np.abs(x).max() < 1e-2), opt.step_count
    (True, 200)
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _hyper_names = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
                    "decoupled_weight_decay", "nonfinite")
    decoupled_weight_decay = _Hyper(_validate.flag)

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, nonfinite: str = "propagate",
                 device: str = "cpu"):
        self._amsgrad = _validate.flag("amsgrad", amsgrad)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
                         nonfinite=nonfinite, device=device)

    @property
    def amsgrad(self) -> bool:
        """Whether AMSGrad's running maximum is used (fixed at construction)."""
        return self._amsgrad

    def _active_state(self) -> tuple[str, ...]:
        return self._state_names + (("max_exp_avg_sq",) if self._amsgrad else ())

    def _launch_step(self, grad, lr, t):
        beta1, beta2 = self._betas
        sign, l2, decay = self._prologue(lr, self._decoupled_weight_decay)
        scalars = self._scalars(sign, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2,
                                -(lr / (1.0 - beta1 ** t)), (1.0 - beta2 ** t) ** 0.5, self._eps)
        s = self._state
        if self._amsgrad:
            self._run("adam_amsgrad", self._params, grad, s["exp_avg"], s["exp_avg_sq"],
                      s["max_exp_avg_sq"], *scalars)
        else:
            self._run("adam", self._params, grad, s["exp_avg"], s["exp_avg_sq"], *scalars)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch's ``AdamW``; ``weight_decay=1e-2``).

    Same parameters as :class:`Adam`, without ``decoupled_weight_decay``
    (always on).

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.ones(3, dtype=np.float32)
    >>> opt = nbadam.AdamW(x, lr=1e-2)
    >>> _ = opt.step(np.zeros(3, dtype=np.float32))   # decay alone shrinks x
    >>> x
    array([0.9999, 0.9999, 0.9999], dtype=float32)
    """

    _hyper_names = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "nonfinite")

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu"):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, nonfinite=nonfinite, device=device)


class NAdam(Optimizer):
    r"""NAdam (Dozat) with torch's momentum-decay schedule :math:`\mu_t`.

    .. math::

        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}), \qquad
        \Pi_t = \Pi_{t-1}\,\mu_t \\
        \theta_t &= \theta_{t-1}
          - \gamma\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
          - \gamma\,\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m_t}{d_t},
          \qquad d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon

    Parameters are those of :class:`Adam` (no ``amsgrad``) plus
    ``momentum_decay`` (:math:`\psi`, default 4e-3); ``lr`` defaults to 2e-3.
    The running product :math:`\Pi_t` is kept in float64 as ``mu_product``
    and saved in checkpoints.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([3.0])
    >>> opt = nbadam.NAdam(x, lr=0.1)
    >>> for _ in range(300):
    ...     _ = opt.step(2.0 * (x - 1.0))
    >>> bool(abs(x[0] - 1.0) < 1e-2)
    True
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _scalar_state = ("mu_product",)
    _hyper_names = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "maximize",
                    "decoupled_weight_decay", "nonfinite")
    _fixed_hyper = ()
    decoupled_weight_decay = _Hyper(_validate.flag)
    momentum_decay = _Hyper(_validate.nonnegative)

    def __init__(self, params: np.ndarray, lr: LearningRate = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay, maximize=maximize,
                         decoupled_weight_decay=decoupled_weight_decay, nonfinite=nonfinite,
                         device=device)
        self.mu_product = 1.0

    def _launch_step(self, grad, lr, t):
        beta1, beta2 = self._betas
        psi = self._momentum_decay
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product = self.mu_product * mu
        sign, l2, decay = self._prologue(lr, self._decoupled_weight_decay)
        s = self._state
        self._run("nadam", self._params, grad, s["exp_avg"], s["exp_avg_sq"],
                  *self._scalars(sign, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2,
                                 1.0 - beta2 ** t, self._eps,
                                 -lr * (1.0 - mu) / (1.0 - mu_product),
                                 (-lr * mu_next) / (1.0 - mu_product * mu_next)))
        self.mu_product = mu_product


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba): Adam with the infinity norm.

    .. math::

        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

    Parameters are those of :class:`Adam` without ``amsgrad`` and
    ``decoupled_weight_decay`` (weight decay is L2); ``lr`` defaults to 2e-3.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([1.0, -1.0])
    >>> opt = nbadam.Adamax(x, lr=0.5)
    >>> _ = opt.step(np.array([1.0, -1.0]))
    >>> x
    array([ 0.5, -0.5])
    """

    _state_names = ("exp_avg", "exp_inf")
    _hyper_names = ("lr", "betas", "eps", "weight_decay", "maximize", "nonfinite")
    _fixed_hyper = ()

    def __init__(self, params: np.ndarray, lr: LearningRate = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 nonfinite: str = "propagate", device: str = "cpu"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         maximize=maximize, nonfinite=nonfinite, device=device)

    def _launch_step(self, grad, lr, t):
        beta1, beta2 = self._betas
        sign, l2, _ = self._prologue(lr, False)
        s = self._state
        self._run("adamax", self._params, grad, s["exp_avg"], s["exp_inf"],
                  *self._scalars(sign, l2, 1.0 - beta1, beta2, self._eps,
                                 -(lr / (1.0 - beta1 ** t))))


class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al.): plain momentum until the variance is tractable.

    .. math::

        \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}

    When :math:`\rho_t > 5` the step is Adam's with :math:`\epsilon` added to
    :math:`\sqrt{v_t}` and scaled by the rectification
    :math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty /
    ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`;
    before that it is :math:`\theta_t = \theta_{t-1} - \gamma\, m_t/(1-\beta_1^t)`.

    Parameters are those of :class:`Adam` without ``amsgrad``.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> x = np.array([2.0])
    >>> opt = nbadam.RAdam(x, lr=0.1)
    >>> for _ in range(500):
    ...     _ = opt.step(2.0 * x)
    >>> bool(abs(x[0]) < 1e-2)
    True
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _hyper_names = ("lr", "betas", "eps", "weight_decay", "maximize",
                    "decoupled_weight_decay", "nonfinite")
    _fixed_hyper = ()
    decoupled_weight_decay = _Hyper(_validate.flag)

    def __init__(self, params: np.ndarray, lr: LearningRate = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, nonfinite: str = "propagate",
                 device: str = "cpu"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
                         nonfinite=nonfinite, device=device)

    def _launch_step(self, grad, lr, t):
        beta1, beta2 = self._betas
        bc2 = 1.0 - beta2 ** t
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2 * t * (beta2 ** t) / bc2
        rectified = rho_t > 5.0
        rect = 1.0
        if rectified:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        sign, l2, decay = self._prologue(lr, self._decoupled_weight_decay)
        s = self._state
        self._run("radam", self._params, grad, s["exp_avg"], s["exp_avg_sq"],
                  *self._scalars(sign, l2, decay, 1.0 - beta1, beta2, 1.0 - beta2,
                                 1.0 - beta1 ** t, lr, bc2 ** 0.5, self._eps, rect), rectified)


