"""A multilayer perceptron whose weights and biases live in one flat vector.

Every weight matrix and bias of :class:`MLP` is a view into ``model.params``
and every gradient a view into ``model.grad``, so one optimizer ``step`` on
the flat gradient updates the whole network with a single fused kernel.  The
matrix products are NumPy's (BLAS); the elementwise work around them is done
by the Numba kernels of :mod:`nbadam.nn._fused`.

Data flow of one training step (:meth:`MLP._loss_and_grad`)::

    batch rows --gather_rows--> inputs --(@ W1, bias_act)--> ... --(@ WL)--> logits
    logits --softmax_cross_entropy--> loss, delta_L, grad of bL
    delta_l --(a_{l-1}.T @ delta_l)--> grad of Wl
    delta_l --(@ Wl.T, act_backward)--> delta_{l-1}, grad of b_{l-1}
    model.grad --optimizer.step--> model.params
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _launch, _validate, checkpoint
from . import _fused, training
from ._workspace import _Workspace

__all__ = ["MLP"]

ACTIVATIONS = ("relu", "tanh", "sigmoid")
#: Rows per block when predicting or evaluating outside of ``fit``.
EVAL_BATCH = 1024
_MODEL_FORMAT = "mlp"


class MLP:
    r"""A fully connected network trained with softmax cross-entropy.

    Layer :math:`l` computes :math:`a_l = f(a_{l-1} W_l + b_l)` with the
    activation :math:`f` on hidden layers and none on the output layer,
    whose logits feed a softmax.  The loss of a batch is the mean
    cross-entropy

    .. math::

        L = \frac{1}{B} \sum_{i=1}^{B} \Bigl(\log \sum_k e^{z_{ik}} - z_{i y_i}\Bigr),

    computed after subtracting each row's maximum, so it never overflows.

    Parameters
    ----------
    sizes : sequence of int, default (784, 256, 128, 10)
        Layer widths: inputs, hidden layers, classes (at least two classes).
    activation : {"relu", "tanh", "sigmoid"}, default "relu"
        Activation of the hidden layers.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Dtype of the parameters, gradients and all arithmetic.
    seed : int or None, default 0
        Seeds the initial weights and, unless ``fit`` is given another seed,
        the order of the training data.  ``None`` draws fresh entropy (kept in
        :attr:`seed`, so the run can be repeated).

    Attributes
    ----------
    params : numpy.ndarray
        All parameters, flat: ``W1, b1, W2, b2, ...``.  ``weights[l]`` (shape
        ``(sizes[l], sizes[l+1])``, so a layer computes ``a @ W``) and
        ``biases[l]`` are views into it.
    grad : numpy.ndarray
        The gradient of the last batch's loss, laid out like ``params``;
        ``weight_grads`` and ``bias_grads`` are views into it.

    Notes
    -----
    Initialisation: weights of layers followed by a ReLU are drawn from
    :math:`\mathcal N(0, 2/n_\text{in})` (He et al.); those of layers followed
    by tanh or sigmoid, and of the output layer, from
    :math:`\mathcal U(\pm\sqrt{6/(n_\text{in}+n_\text{out})})` (Glorot &
    Bengio).  Biases start at zero.  Values are drawn in float64 with
    ``np.random.default_rng(seed)`` and rounded to ``dtype``.

    Inputs ``x`` have shape ``(n, sizes[0])`` or ``(n, d1, d2, ...)`` with
    ``d1 * d2 * ... == sizes[0]`` (MNIST's ``(n, 28, 28)``).  ``uint8``
    inputs are pixels and are divided by 255; float32 and float64 inputs are
    used as they are (standardise them yourself if you wish).  Inputs are
    converted batch by batch, never copied whole.  Labels are integers in
    ``[0, sizes[-1])``.

    Examples
    --------
    >>> import numpy as np
    >>> import nbadam
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4))
    >>> y = (x[:, 0] + x[:, 1] > 0).astype(int)
    >>> model = nbadam.MLP((4, 16, 2), dtype=np.float64)
    >>> model.params.size
    114
    >>> history = model.fit(x, y, epochs=20, batch_size=20, lr=1e-2, progress=False)
    >>> model.evaluate(x, y)["accuracy"] > 0.95
    True
    >>> model.predict([[3.0, 3.0, 0.0, 0.0], [-3.0, -3.0, 0.0, 0.0]])
    array([1, 0])
    """

    def __init__(self, sizes: Sequence[int] = (784, 256, 128, 10), activation: str = "relu",
                 dtype: Any = np.float32, seed: int | None = 0):
        self.sizes = _check_sizes(sizes)
        self.activation = _validate.choice("activation", activation, ACTIVATIONS)
        self.dtype = _validate.float_dtype("dtype", dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        self.seed = _validate.integer("seed", seed, 0, maximum=None)
        self._layout()
        self._initialise()
        self._activate = getattr(_fused, f"bias_{self.activation}")
        self._activation_backward = getattr(_fused, f"{self.activation}_backward")
        self._one = self.dtype.type(1)
        #: What ``fit`` continues from: the optimizer, the epochs trained, the history.
        self._training: training._State | None = None

    # -- layout and initialisation ------------------------------------------
    def _layout(self) -> None:
        shapes = _layer_shapes(self.sizes)
        total = sum(math.prod(shape) for shape in shapes)
        try:
            self.params = np.zeros(total, self.dtype)
            self.grad = np.zeros(total, self.dtype)
        except (MemoryError, ValueError) as exc:  # ValueError: beyond NumPy's largest array
            raise MemoryError(
                f"sizes={self.sizes} gives {total:,} {self.dtype.name} parameters; with their "
                f"gradient that is {_in_bytes(2 * total * self.dtype.itemsize)}, more than "
                f"can be allocated ({exc}); use narrower or fewer layers") from None
        self._views()

    def _views(self) -> None:
        """``weights``, ``biases`` and their gradients as views into ``params`` and ``grad``."""
        params_views, grad_views = [], []
        start = 0
        for shape in _layer_shapes(self.sizes):
            stop = start + math.prod(shape)
            params_views.append(self.params[start:stop].reshape(shape))
            grad_views.append(self.grad[start:stop].reshape(shape))
            start = stop
        self.weights, self.biases = params_views[0::2], params_views[1::2]
        self.weight_grads, self.bias_grads = grad_views[0::2], grad_views[1::2]

    def _initialise(self) -> None:
        rng = np.random.default_rng(self.seed)
        last = len(self.weights) - 1
        for layer, weight in enumerate(self.weights):
            fan_in, fan_out = weight.shape
            if layer < last and self.activation == "relu":
                values = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=weight.shape)
            else:
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                values = rng.uniform(-limit, limit, size=weight.shape)
            weight[...] = values
        for bias in self.biases:
            bias[...] = 0

    def __getstate__(self) -> dict[str, Any]:
        # The views and compiled kernels are rebuilt on unpickling: pickle would copy the
        # views into arrays of their own, which training would then no longer update.
        skip = {"weights", "biases", "weight_grads", "bias_grads", "_activate",
                "_activation_backward"}
        return {key: value for key, value in self.__dict__.items() if key not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._views()
        self._activate = getattr(_fused, f"bias_{self.activation}")
        self._activation_backward = getattr(_fused, f"{self.activation}_backward")

    # -- public properties ----------------------------------------------------
    @property
    def n_features(self) -> int:
        """Width of the input layer."""
        return self.sizes[0]

    @property
    def n_classes(self) -> int:
        """Number of classes (width of the output layer)."""
        return self.sizes[-1]

    def layer_slices(self) -> list[dict[str, slice]]:
        """Where each layer's weights and bias lie in :attr:`params`, for ``groups=``.

        One dict per layer, ``{"weights": slice, "bias": slice}``, in order.

        Examples
        --------
        >>> import nbadam
        >>> model = nbadam.MLP((4, 3, 2))
        >>> model.layer_slices()[1]
        {'weights': slice(15, 21, None), 'bias': slice(21, 23, None)}
        >>> *hidden, last = model.layer_slices()     # fine-tune the last layer only:
        >>> groups = [{"params": part, "lr": 0.0} for layer in hidden for part in layer.values()]
        >>> groups += [{"params": part} for part in last.values()]
        >>> opt = nbadam.Adam(model.params, lr=1e-3, groups=groups)
        """
        slices, start = [], 0
        shapes = _layer_shapes(self.sizes)
        for weights, bias in zip(shapes[::2], shapes[1::2], strict=True):
            middle = start + math.prod(weights)
            stop = middle + bias[0]
            slices.append({"weights": slice(start, middle), "bias": slice(middle, stop)})
            start = stop
        return slices

    def averaged(self) -> MLP:
        """A copy of the model with the parameter average of its optimizer (``ema=``).

        ``fit(..., optimizer_options={"ema": 0.999})`` keeps an exponential
        moving average of the weights; evaluate or save this copy to use it.
        With a schedule-free optimizer the copy holds its averaged point ``x``
        (``eval_params()``), where ``fit`` also measures the validation scores.
        The model itself keeps training from its own weights.

        Raises
        ------
        ValueError
            If the model has no optimizer with ``ema`` (train it with one first).
        """
        opt = self.optimizer
        if getattr(opt, "separate_eval_point", False):
            average = opt.eval_params()   # a schedule-free rule's average x (not ema's)
        else:
            average = getattr(opt, "ema_params", None)
        if average is None:
            raise ValueError("the model's optimizer keeps no parameter average: train with "
                             "fit(..., optimizer_options={'ema': 0.999}) or a schedule-free "
                             "optimizer first")
        copy = MLP(**self.config())
        copy.params[...] = average
        return copy

    @property
    def optimizer(self) -> Any:
        """The optimizer the next :meth:`fit` continues with (``None`` before the first)."""
        return None if self._training is None else self._training.optimizer

    @property
    def epochs_trained(self) -> int:
        """Epochs :meth:`fit` has run on this model, over all its calls."""
        return 0 if self._training is None else self._training.epochs_done

    def reset(self) -> MLP:
        """Start afresh: the seed's initial weights, no optimizer, no epochs trained.

        Returns the model, so that ``model.reset().fit(...)`` trains it as
        a new ``MLP(**model.config())`` would be trained.

        Examples
        --------
        >>> import numpy as np
        >>> import nbadam
        >>> model = nbadam.MLP((4, 3, 2), dtype=np.float64)
        >>> initial = model.params.copy()
        >>> x, y = np.eye(4), np.array([0, 1, 1, 0])
        >>> _ = model.fit(x, y, epochs=3, progress=False)
        >>> model.epochs_trained, bool(np.array_equal(model.params, initial))
        (3, False)
        >>> model.reset().epochs_trained, bool(np.array_equal(model.params, initial))
        (0, True)
        """
        self._initialise()
        self._training = None
        return self

    def __repr__(self) -> str:
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
                f"dtype=np.{self.dtype.name}, seed={self.seed})")

    # -- maths on one batch ---------------------------------------------------
    def _forward(self, work: _Workspace, count: int) -> np.ndarray:
        """Hidden activations and logits (before the output bias) of the loaded batch."""
        a = work.inputs[:count]
        for weight, bias, out in zip(self.weights[:-1], self.biases[:-1], work.hidden,
                                     strict=True):
            z = out[:count]
            np.matmul(a, weight, out=z)
            self._activate(z, bias, self._one)
            a = z
        logits = work.logits[:count]
        np.matmul(a, self.weights[-1], out=logits)
        return logits

    def _loss_and_grad(self, work: _Workspace, count: int, l2: float = 0.0,
                       smoothing: float = 0.0) -> tuple[float, int]:
        """Forward and backward pass on the loaded batch; fills :attr:`grad`.

        Returns the batch's summed loss (float64) and number of correct
        predictions; the gradient is that of the *mean* loss.  ``smoothing``
        replaces the one-hot targets with ``(1 - smoothing) * onehot +
        smoothing / n_classes``; ``l2`` adds ``l2 / 2 * sum(W**2)`` over the
        weight matrices (not the biases) to the mean loss.
        """
        logits = self._forward(work, count)
        scale = self.dtype.type(1.0 / count)
        on = self.dtype.type((1.0 - smoothing) / count)
        off = self.dtype.type(smoothing / (self.n_classes * count))
        loss, correct = _fused.softmax_cross_entropy(
            logits, self.biases[-1], work.labels[:count], work.deltas[-1][:count],
            self.bias_grads[-1], scale, on, off, smoothing)
        layer_inputs = [work.inputs] + work.hidden
        for layer in range(len(self.weights) - 1, -1, -1):
            delta = work.deltas[layer][:count]
            inputs = layer_inputs[layer][:count]
            np.matmul(inputs.T, delta, out=self.weight_grads[layer])
            if l2:
                squares = _fused.add_l2(self.weight_grads[layer], self.weights[layer],
                                        self.dtype.type(l2))
                loss += 0.5 * l2 * squares * count
            if layer > 0:
                below = work.deltas[layer - 1][:count]
                np.matmul(delta, self.weights[layer].T, out=below)
                self._activation_backward(below, inputs, self.bias_grads[layer - 1], self._one)
        return loss, correct

    def _blocks(self, n: int, work: _Workspace):
        """``(start, stop)`` pairs covering ``range(n)`` in blocks of ``work.rows``."""
        for start in range(0, n, work.rows):
            yield start, min(start + work.rows, n)

    # -- public API -------------------------------------------------------------
    def loss_and_grad(self, x: Any, y: Any) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of ``(x, y)`` and its gradient, in one batch.

        Parameters
        ----------
        x : array_like
            Inputs, see the class notes.
        y : array_like of int
            Labels in ``[0, n_classes)``.

        Returns
        -------
        loss : float
            The mean loss.
        grad : numpy.ndarray
            :attr:`grad` itself (not a copy), filled with the gradient; pass it
            to an optimizer built on :attr:`params`.

        Examples
        --------
        >>> import numpy as np
        >>> import nbadam
        >>> model = nbadam.MLP((3, 5, 2), dtype=np.float64)
        >>> opt = nbadam.Adam(model.params, lr=1e-2)
        >>> x, y = np.eye(3), np.array([0, 1, 1])
        >>> first, grad = model.loss_and_grad(x, y)
        >>> for _ in range(50):
        ...     _ = opt.step(model.loss_and_grad(x, y)[1])
        >>> bool(model.loss_and_grad(x, y)[0] < first)
        True
        """
        x, divisor = self._check_x(x, "x")
        labels = self._check_y(y, x.shape[0], "y")
        work = _Workspace(self.sizes, self.dtype, x.shape[0])
        count = work.load(x, divisor, np.arange(x.shape[0]), labels)
        loss, _ = self._loss_and_grad(work, count)
        return loss / count, self.grad

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``, in the model's dtype.

        Examples
        --------
        >>> import numpy as np
        >>> import nbadam
        >>> p = nbadam.MLP((4, 3, 2)).predict_proba(np.ones((2, 4)))
        >>> p.shape, p.dtype, bool(np.allclose(p.sum(axis=1), 1))
        ((2, 2), dtype('float32'), True)
        """
        x, divisor = self._check_x(x, "x")
        proba = np.empty((x.shape[0], self.n_classes), self.dtype)
        for start, stop, logits in self._logit_blocks(x, divisor):
            z = logits - logits.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            proba[start:stop] = z
        return proba

    def predict(self, x: Any) -> np.ndarray:
        """Predicted class of each example (the most probable one), as ``intp``.

        Examples
        --------
        >>> import numpy as np
        >>> import nbadam
        >>> nbadam.MLP((4, 3, 2)).predict(np.zeros((3, 4)))
        array([0, 0, 0])
        """
        x, divisor = self._check_x(x, "x")
        labels = np.empty(x.shape[0], np.intp)
        for start, stop, logits in self._logit_blocks(x, divisor):
            np.argmax(logits, axis=1, out=labels[start:stop])
        return labels

    def _logit_blocks(self, x: np.ndarray, divisor: np.generic):
        """``(start, stop, logits)`` for checked ``x``, in blocks of at most EVAL_BATCH rows.

        ``logits`` is a view into one reused workspace, valid until the next block.
        """
        n = x.shape[0]
        work = _Workspace(self.sizes, self.dtype, min(n, EVAL_BATCH))
        order = np.arange(n)
        for start, stop in self._blocks(n, work):
            count = work.load(x, divisor, order[start:stop])
            logits = self._forward(work, count)
            _fused.add_bias(logits, self.biases[-1])
            yield start, stop, logits

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean cross-entropy loss and accuracy on ``(x, y)``.

        Returns
        -------
        dict
            ``{"loss": float, "accuracy": float}``, accuracy in [0, 1].

        Examples
        --------
        >>> import numpy as np
        >>> import nbadam
        >>> scores = nbadam.MLP((4, 3, 2)).evaluate(np.zeros((2, 4)), [0, 1])
        >>> sorted(scores), scores["accuracy"]
        (['accuracy', 'loss'], 0.5)
        """
        x, divisor = self._check_x(x, "x")
        labels = self._check_y(y, x.shape[0], "y")
        work = _Workspace(self.sizes, self.dtype, min(x.shape[0], EVAL_BATCH))
        return self._evaluate(work, x, divisor, labels)

    def _evaluate(self, work: _Workspace, x: np.ndarray, divisor: np.generic,
                  labels: np.ndarray) -> dict[str, float]:
        """:meth:`evaluate` on validated data, reusing the buffers of ``work``."""
        n = x.shape[0]
        order = np.arange(n)
        loss, correct = 0.0, 0
        for start, stop in self._blocks(n, work):
            count = work.load(x, divisor, order[start:stop], labels)
            logits = self._forward(work, count)
            _fused.add_bias(logits, self.biases[-1])
            block_loss, block_correct = _fused.softmax_cross_entropy_loss(
                logits, work.labels[:count])
            loss += block_loss
            correct += block_correct
        return {"loss": loss / n, "accuracy": correct / n}

    fit = training.fit

    # -- files ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable: ``MLP(**model.config())``."""
        return {"sizes": list(self.sizes), "activation": self.activation,
                "dtype": self.dtype.name, "seed": self.seed}

    def save(self, path: str | os.PathLike) -> None:
        """Write the architecture and parameters to an ``.npz`` file, atomically.

        The file holds plain arrays and JSON (no pickle); the name is used as
        given.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import nbadam
        >>> model = nbadam.MLP((4, 3, 2), seed=1)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
        >>> model.save(path)
        >>> again = nbadam.MLP.load(path)
        >>> again, bool(np.array_equal(again.params, model.params))
        (MLP(sizes=(4, 3, 2), activation='relu', dtype=np.float32, seed=1), True)
        """
        checkpoint.save_npz(path, {"params": self.params},
                            {"format": _MODEL_FORMAT, "model": self.config()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> MLP:
        """Read a model written by :meth:`save`.

        The model description is checked, and the parameter count it implies
        compared with the array the file declares, before any array data is
        read or any memory is allocated for the model.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not an intact nbadam MLP file (a ``.npy`` file, a
            damaged or crafted archive, a malformed description, parameters
            of the wrong shape or dtype); the message names the file.
        MemoryError
            If the model the file describes is too large to allocate; the
            message names the file and the sizes.
        """
        source = os.fspath(path)

        def expect(meta: dict[str, Any]) -> dict[str, checkpoint.ArraySpec]:
            sizes, dtype = _check_config(meta.get("model"))
            total = sum(math.prod(shape) for shape in _layer_shapes(sizes))
            return {"params": ((total,), dtype)}

        meta, arrays = checkpoint.load_npz(source, kind=_MODEL_FORMAT, expected=expect)
        try:
            model = cls._from_config(meta["model"], source)
        except MemoryError as exc:
            raise MemoryError(f"{source}: {exc}") from None
        model._set_params(arrays["params"], source)
        return model

    @classmethod
    def _from_config(cls, config: Any, source: str) -> MLP:
        try:
            _check_config(config)
            return cls(**config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid model description ({exc})") from None

    def _set_params(self, values: np.ndarray, source: str) -> None:
        if values.shape != self.params.shape or values.dtype != self.dtype:
            raise ValueError(f"{source}: parameters are {values.shape} {values.dtype}, "
                             f"expected {self.params.shape} {self.dtype} for {self!r}")
        self.params[...] = values

    # -- input checks -------------------------------------------------------------
    def _check_x(self, x: Any, name: str) -> tuple[np.ndarray, np.generic]:
        """``x`` as a C-contiguous ``(n, n_features)`` array and the divisor for its dtype.

        Float values must be finite and representable in the model's dtype
        (a float64 1e39 would become inf in a float32 model).
        """
        x = np.asarray(_validate.not_masked(name, x))
        if x.dtype == np.uint8:
            divisor = self.dtype.type(255)
        elif x.dtype in _validate.FLOAT_DTYPES:
            divisor = self.dtype.type(1)
        else:
            raise TypeError(
                f"{name} has dtype {_validate.describe_dtype(x.dtype)}; expected uint8 pixels "
                f"(0..255, divided by 255) or float32/float64 values in native byte order; "
                f"convert with {name}.astype(np.uint8) or {name}.astype(np.float32)")
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.n_features:
            raise ValueError(
                f"{name} must have shape (n, {self.n_features}) or (n, ...) with "
                f"{self.n_features} values per example for this model, got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} holds no examples (shape {x.shape})")
        x = np.ascontiguousarray(x.reshape(x.shape[0], self.n_features))
        if divisor != 1:
            return x, divisor
        if not _launch.all_finite(x.reshape(-1)):
            row, col = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(f"{name} holds a non-finite value ({name}[{row}] has "
                             f"{x[row, col]} at feature {col}); remove or impute it")
        if x.dtype.itemsize > self.dtype.itemsize:
            # min and max read x in place; np.abs would copy all of it.
            largest = float(np.finfo(self.dtype).max)
            if x.max() > largest or x.min() < -largest:
                row, col = np.argwhere(np.abs(x) > largest)[0]
                raise ValueError(
                    f"{name} holds a value beyond the range of {self.dtype.name}, this model's "
                    f"dtype ({name}[{row}] has {x[row, col]} at feature {col}; the largest is "
                    f"{largest:.4g}): it would become inf; rescale the inputs or build the "
                    "model with dtype=np.float64")
        return x, divisor

    def _check_y(self, y: Any, n: int, name: str) -> np.ndarray:
        """``y`` as an ``intp`` copy, checked against ``n`` examples and the classes."""
        y = np.asarray(_validate.not_masked(name, y))
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}; "
                            f"convert with {name}.astype(int)")
        if y.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), one label per example, "
                             f"got shape {y.shape}")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= self.n_classes:
            bad = int(np.flatnonzero((y < 0) | (y >= self.n_classes))[0])
            raise ValueError(f"{name} must hold labels in [0, {self.n_classes}) for this "
                             f"model, got {name}[{bad}] = {y[bad]}")
        return y.astype(np.intp)


def _in_bytes(count: int) -> str:
    """``count`` bytes in the largest binary unit that keeps the number >= 1."""
    value, unit = float(count), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:,.1f} {unit}"


def _layer_shapes(sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shapes of ``W1, b1, W2, b2, ...`` in :attr:`MLP.params` order."""
    shapes: list[tuple[int, ...]] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


_CONFIG_KEYS = {"sizes", "activation", "dtype", "seed"}


def _check_config(config: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Check a :meth:`MLP.config` read from a file without building the model.

    Returns the layer sizes and the dtype; raises ``ValueError`` for anything
    malformed, so a crafted description fails here, not deep in ``__init__``.
    """
    if not isinstance(config, dict) or set(config) != _CONFIG_KEYS:
        keys = sorted(config, key=str) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"the model description is missing or malformed: expected the keys "
                         f"{sorted(_CONFIG_KEYS)}, got {keys}")
    try:
        sizes = _check_sizes(config["sizes"])
        _validate.choice("activation", config["activation"], ACTIVATIONS)
        if not isinstance(config["dtype"], str):
            raise TypeError(f"dtype must be a dtype name, got {config['dtype']!r}")
        dtype = _validate.float_dtype("dtype", config["dtype"])
        _validate.integer("seed", config["seed"], 0, maximum=None)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return sizes, dtype


def _check_sizes(sizes: Any) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
        raise TypeError(f"sizes must be a sequence of layer widths such as (784, 256, 10), "
                        f"got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {sizes!r}")
    for width in sizes:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ValueError(f"sizes must hold positive integers, got {sizes!r}")
    if sizes[-1] < 2:
        raise ValueError(f"the output layer needs at least 2 classes, got sizes={sizes!r}")
    return tuple(int(width) for width in sizes)
