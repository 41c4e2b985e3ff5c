"""``MLPClassifier``: :class:`nbadam.MLP` as a scikit-learn estimator.

This module imports scikit-learn (``pip install "nbadam[sklearn]"``);
:mod:`nbadam.nn` imports it only when scikit-learn is installed.  The
estimator follows scikit-learn's conventions (parameters stored untouched by
``__init__``, validated by ``fit``; fitted attributes end in ``_``) so that
``clone``, ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` work, and
it passes :func:`sklearn.utils.estimator_checks.check_estimator`.

The training loop is scikit-learn's for its ``adam`` solver, one epoch per
call of :meth:`nbadam.MLP.fit` (which continues the model's training):

* ``fit`` starts afresh unless ``warm_start`` (then it keeps the weights and
  builds a new Adam, as scikit-learn does); ``partial_fit`` runs one epoch
  and keeps the optimizer;
* after each epoch, with ``early_stopping`` the accuracy on the held-out
  ``validation_fraction`` (a stratified split) is compared with the best so
  far, else the training loss; ``n_iter_no_change + 1`` epochs in a row that
  do not improve it by ``tol`` stop training, and with ``early_stopping``
  the best epoch's weights are put back;
* reaching ``max_iter`` epochs first warns with a ``ConvergenceWarning``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, metadata_routing
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import optimizers
from .mlp import MLP

__all__ = ["MLPClassifier"]

#: scikit-learn's activation names and the MLP's.
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid"}
_DTYPES = ("float32", "float64")


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron classifier with scikit-learn's interface, trained by nbadam.

    The parameters are those of :class:`sklearn.neural_network.MLPClassifier`
    for its (default) ``solver="adam"``, with the same defaults and meaning;
    the network is an :class:`nbadam.MLP` (softmax output, also for two
    classes), trained with nbadam's fused Adam kernel.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Widths of the hidden layers.
    activation : {"relu", "tanh", "logistic"}, default "relu"
        Activation of the hidden layers (scikit-learn's ``"identity"`` is
        not available).
    solver : {"adam"}, default "adam"
        Accepted for compatibility; Adam is the only solver.
    alpha : float, default 1e-4
        L2 penalty on the weights (not the biases): ``alpha / (2 *
        batch_size) * sum(W**2)`` is added to each batch's mean loss, as in
        scikit-learn (which divides by the size of the batch, also of a
        smaller last one).
    batch_size : int or "auto", default "auto"
        Examples per step; ``"auto"`` is ``min(200, n_samples)``.
    learning_rate_init : float, default 1e-3
        Adam's (constant) learning rate.
    max_iter : int, default 200
        The most epochs one ``fit`` runs.
    shuffle : bool, default True
        Visit the examples in a new order every epoch.
    random_state : int, numpy.random.RandomState or None, default None
        Seeds the initial weights, the data order and the validation split.
    tol : float, default 1e-4
        The improvement of the loss (or the validation accuracy) that resets
        the count of epochs without improvement.
    verbose : bool, default False
        Print the loss after every epoch.
    warm_start : bool, default False
        ``fit`` continues from the weights of the previous ``fit``.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data and stop when
        its accuracy stops improving; keep the best epoch's weights.
    validation_fraction : float, default 0.1
        Share of the training data held out with ``early_stopping``.
    beta_1, beta_2 : float, default 0.9, 0.999
        Adam's decay rates of the moments.
    epsilon : float, default 1e-8
        Adam's ``eps``.
    n_iter_no_change : int, default 10
        Epochs without improvement by ``tol`` before stopping.
    dtype : {"float32", "float64"}, default "float32"
        Dtype of the weights and all arithmetic (scikit-learn uses float64
        for float64 data); ``X`` is converted to it once per ``fit``.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The class labels, sorted (any labels ``numpy.unique`` can sort).
    model_ : nbadam.MLP
        The network, sizes ``(n_features_in_, *hidden_layer_sizes, n_classes)``.
    coefs_, intercepts_ : list of numpy.ndarray
        Weights and biases per layer, views into ``model_.params``.
    loss_, loss_curve_ : float, list of float
        Training loss of the last epoch and of every epoch (penalty included).
    best_loss_ : float or None
        The lowest training loss (``None`` with ``early_stopping``).
    validation_scores_, best_validation_score_ : list of float, float
        With ``early_stopping``, the validation accuracy per epoch and its
        best (``None`` without).
    n_iter_ : int
        Epochs run (over ``warm_start`` fits and ``partial_fit`` calls).
    t_ : int
        Training examples seen.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : numpy.ndarray
        Column names of ``X``, when it has string column names.
    n_layers_, n_outputs_, out_activation_ : int, int, str
        Number of layers (input and output included), of classes, and
        ``"softmax"``.

    See Also
    --------
    nbadam.MLP : the network itself, for MNIST-style ``uint8`` images and
        more options (other rules, schedules, checkpoints, MPI).

    Examples
    --------
    >>> import numpy as np
    >>> from nbadam import MLPClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = np.where(X[:, 0] * X[:, 1] > 0, "same sign", "other")
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=1e-2,
    ...                     random_state=0).fit(X, y)
    >>> clf.classes_
    array(['other', 'same sign'], dtype='<U9')
    >>> clf.score(X, y) > 0.9, clf.predict([[1.0, 1.0]])
    (True, array(['same sign'], dtype='<U9'))
    """

    # partial_fit's classes is an argument, not metadata for a meta-estimator to route, and
    # score takes no sample weights here.
    __metadata_request__partial_fit = {"classes": metadata_routing.UNUSED}
    __metadata_request__score = {"sample_weight": metadata_routing.UNUSED}

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 1e-4,
                 batch_size: int | str = "auto", learning_rate_init: float = 1e-3,
                 max_iter: int = 200, shuffle: bool = True, random_state: Any = None,
                 tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10, dtype: str = "float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``(X, y)`` for up to ``max_iter`` epochs.

        Starts from new weights unless ``warm_start`` and the estimator is
        fitted (then ``y`` must hold only known classes).

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``, continuing the weights and the optimizer.

        Parameters
        ----------
        X, y : array_like
            Training data and labels.
        classes : array_like, optional
            Every class the estimator will see; required on the first call.

        Returns
        -------
        self
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> MLPClassifier:
        settings = self._checked_settings()
        fresh = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X, y = validate_data(self, X, y, reset=fresh, dtype=settings["dtype"],
                             order="C", multi_output=False)
        check_classification_targets(y)
        if fresh:
            known = unique_labels(y if classes is None else classes)
            if known.size < 2:
                raise ValueError(f"MLPClassifier needs at least 2 classes to learn, got 1 "
                                 f"class ({known[0]!r})")
        else:
            known = self.classes_
            if classes is not None and not np.array_equal(unique_labels(classes), known):
                raise ValueError(f"classes={classes!r} differs from the classes of the "
                                 f"earlier fit, {known!r}")
        unknown = np.setdiff1d(np.unique(y), known)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()[:10]} that are not in "
                             f"classes {known.tolist()[:10]}; warm_start and partial_fit "
                             "need the classes of the first fit")
        codes = np.searchsorted(known, y)
        rng = check_random_state(self.random_state)
        if fresh:
            self._start(known, X.shape[1], settings, rng)
        batch_size = self._batch_size(X.shape[0])
        if incremental:
            if not hasattr(self, "_optimizer"):
                self._optimizer = self._adam(settings)
            self._epoch(X, codes, batch_size, self._optimizer)
            self._record_loss()
            return self
        if not fresh:  # warm_start: new stopping records, as if early_stopping had been set
            self._no_improvement_count = 0
            if self.early_stopping and self.validation_scores_ is None:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
            if not self.early_stopping and self.best_loss_ is None:
                self.best_loss_ = np.inf
        optimizer = self._adam(settings)
        train_x, train_y, validation = X, codes, None
        if self.early_stopping:
            train_x, val_x, train_y, val_y = train_test_split(
                X, codes, random_state=rng, test_size=settings["validation_fraction"],
                stratify=codes)
            validation = (val_x, val_y)
        for _ in range(settings["max_iter"]):
            self._epoch(train_x, train_y, batch_size, optimizer)
            if self._stops(validation):
                break
        else:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({settings['max_iter']}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=3)
        if validation is not None:
            self.model_.params[...] = self._best_params
        self._optimizer = optimizer
        return self

    def _checked_settings(self) -> dict[str, Any]:
        """The parameters, validated (scikit-learn estimators check them in ``fit``)."""
        def number(name: str, low: float, high: float = np.inf, closed: bool = True) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                    (low <= value if closed else low < value) and value < high):
                bound = f"[{low}, {high})" if closed else f"({low}, {high})"
                raise ValueError(f"{name} must be a number in {bound}, got {value!r}")
            return float(value)

        def count(name: str) -> int:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            return int(value)

        if self.solver != "adam":
            raise ValueError(f"solver must be 'adam' (nbadam trains with Adam), got "
                             f"{self.solver!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(map(repr, _ACTIVATIONS))}, "
                             f"got {self.activation!r}")
        if self.dtype not in _DTYPES and self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1
               for w in sizes):
            raise ValueError(f"hidden_layer_sizes must hold integers >= 1, got "
                             f"{self.hidden_layer_sizes!r}")
        if self.batch_size != "auto":
            count("batch_size")
        return {"hidden": [int(w) for w in sizes], "dtype": np.dtype(self.dtype),
                "alpha": number("alpha", 0.0), "lr": number("learning_rate_init", 0.0,
                                                            closed=False),
                "max_iter": count("max_iter"), "tol": number("tol", 0.0),
                "validation_fraction": number("validation_fraction", 0.0, 1.0, closed=False),
                "beta_1": number("beta_1", 0.0, 1.0), "beta_2": number("beta_2", 0.0, 1.0),
                "epsilon": number("epsilon", 0.0, closed=False),
                "n_iter_no_change": count("n_iter_no_change")}

    def _start(self, classes: np.ndarray, n_features: int, settings: dict[str, Any],
               rng: np.random.RandomState) -> None:
        """A new network and empty training records."""
        self.classes_ = classes
        sizes = (n_features, *settings["hidden"], classes.size)
        self.model_ = MLP(sizes, activation=_ACTIVATIONS[self.activation],
                          dtype=settings["dtype"], seed=int(rng.randint(np.iinfo(np.int32).max)))
        self.n_layers_, self.n_outputs_, self.out_activation_ = len(sizes), classes.size, "softmax"
        self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self.__dict__.pop("_optimizer", None)

    def _adam(self, settings: dict[str, Any]) -> optimizers.Optimizer:
        return optimizers.Adam(self.model_.params, lr=settings["lr"],
                               betas=(settings["beta_1"], settings["beta_2"]),
                               eps=settings["epsilon"])

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"Got `batch_size` larger than the number of samples ({n}); it is "
                          "clipped", UserWarning, stacklevel=4)
        return min(self.batch_size, n)

    def _epoch(self, x: np.ndarray, codes: np.ndarray, batch_size: int,
               optimizer: optimizers.Optimizer) -> None:
        """One pass of :meth:`nbadam.MLP.fit` (it continues the model's epochs)."""
        history = self.model_.fit(x, codes, epochs=1, batch_size=batch_size,
                                  optimizer=optimizer, l2=self.alpha / batch_size,
                                  shuffle=bool(self.shuffle), progress=False)
        self.loss_ = history["loss"][0]
        self.n_iter_ += 1
        self.t_ += x.shape[0]
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

    def _record_loss(self) -> None:
        self.loss_curve_.append(self.loss_)
        if self.best_loss_ is not None:
            self.best_loss_ = min(self.best_loss_, self.loss_)

    def _stops(self, validation: tuple[np.ndarray, np.ndarray] | None) -> bool:
        """scikit-learn's rule: True after ``n_iter_no_change + 1`` epochs without gain."""
        self.loss_curve_.append(self.loss_)
        if validation is not None:
            score = self.model_.evaluate(*validation)["accuracy"]
            self.validation_scores_.append(score)
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self.model_.params.copy()
            what = "Validation score"
        else:
            improved = self.loss_ <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_)
            what = "Training loss"
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self._no_improvement_count > self.n_iter_no_change:
            if self.verbose:
                print(f"{what} did not improve more than tol={self.tol:f} for "
                      f"{self.n_iter_no_change} consecutive epochs. Stopping.")
            return True
        return False

    # -- predicting --------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, n_classes)``, columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype, order="C")
        return self.model_.predict_proba(X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each example, from ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` on ``(X, y)`` (weighted by ``sample_weight``)."""
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    def get_metadata_routing(self) -> Any:
        """scikit-learn's metadata routing for this estimator: it requests no metadata."""
        return super().get_metadata_routing()

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape ``(width_i, width_{i+1})``."""
        return self.model_.weights

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, one per layer after the input."""
        return self.model_.biases
