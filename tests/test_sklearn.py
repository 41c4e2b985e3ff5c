"""nbadam.MLPClassifier: scikit-learn's estimator checks, its tools, the Adam solver's ways."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import nbadam  # noqa: E402
from nbadam import MLPClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Short runs on tiny data rarely converge by scikit-learn's rule; that is not under test here.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def iris():
    """Iris with its species names as labels: 150 examples, 3 string classes."""
    data = load_iris()
    return data.data, data.target_names[data.target]


def quick(**params):
    return MLPClassifier(**{"hidden_layer_sizes": (16,), "learning_rate_init": 1e-2,
                            "max_iter": 60, "random_state": 0, **params})


@parametrize_with_checks([MLPClassifier(hidden_layer_sizes=(8,), random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_string_labels_predict_and_probabilities(iris):
    x, y = iris
    clf = make_pipeline(StandardScaler(), quick()).fit(x, y)
    model = clf[-1]
    assert list(model.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.score(x, y) > 0.9
    assert set(clf.predict(x)) <= set(model.classes_)
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], clf.predict(x))
    assert isinstance(model.model_, nbadam.MLP) and model.model_.sizes == (4, 16, 3)
    assert model.coefs_[0].base is model.model_.params


def test_clone_cross_val_score_and_grid_search(iris):
    x, y = iris
    pipeline = make_pipeline(StandardScaler(), quick())
    copy = clone(pipeline)
    assert copy[-1].get_params() == pipeline[-1].get_params()
    scores = cross_val_score(pipeline, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8
    search = GridSearchCV(pipeline, {"mlpclassifier__alpha": [1e-4, 1e-1],
                                     "mlpclassifier__hidden_layer_sizes": [(4,), (16,)]},
                          cv=3).fit(x, y)
    assert search.best_score_ > 0.85
    assert search.best_estimator_[-1].classes_.dtype.kind == "U"
    assert search.predict(x[:3]).tolist() == ["setosa"] * 3


def test_fit_restarts_unless_warm_start(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    clf = quick(max_iter=5)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\)"):
        clf.fit(x, y)
    first = clf.coefs_[0].copy()
    with pytest.warns(ConvergenceWarning):
        clf.fit(x, y)
    np.testing.assert_array_equal(clf.coefs_[0], first)   # same seed, same run
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5
    clf.set_params(warm_start=True)
    with pytest.warns(ConvergenceWarning):
        clf.fit(x, y)
    assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert clf.model_.epochs_trained == 10
    with pytest.raises(ValueError, match="not in classes"):
        clf.fit(x, np.where(y == "setosa", "rose", y))


def test_partial_fit_runs_one_epoch_and_needs_the_classes(iris):
    x, y = iris
    clf = quick()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:50], y[:50], classes=np.unique(y))
    optimizer = clf._optimizer
    clf.partial_fit(x[50:], y[50:])
    assert clf.n_iter_ == 2 and clf._optimizer is optimizer
    assert optimizer.step_count == 2  # one batch of at most 200 examples per call
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]


def test_stops_when_the_loss_stops_improving(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    clf = quick(max_iter=500, tol=1e-2, n_iter_no_change=3).fit(x, y)
    assert clf.n_iter_ < 500
    curve = np.array(clf.loss_curve_)
    # Each of the last n_iter_no_change + 1 epochs failed to beat the best before it by tol,
    # and the epoch before them did (scikit-learn's rule).
    def stalled(i):
        return curve[i] > curve[:i].min() - 1e-2
    assert all(stalled(i) for i in range(len(curve) - 4, len(curve)))
    assert not stalled(len(curve) - 5)
    assert clf.best_loss_ == curve.min()


def test_early_stopping_keeps_the_best_validation_epoch(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    clf = quick(max_iter=300, early_stopping=True, validation_fraction=0.2,
                n_iter_no_change=5).fit(x, y)
    scores = clf.validation_scores_
    assert clf.best_loss_ is None and clf.best_validation_score_ == max(scores)
    assert len(scores) == clf.n_iter_ < 300
    np.testing.assert_array_equal(clf.model_.params, clf._best_params)


def test_alpha_is_an_l2_penalty_on_the_weights_per_batch(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    plain = quick(alpha=0.0, max_iter=1, shuffle=False, dtype="float64")
    penalised = clone(plain).set_params(alpha=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain.fit(x, y)
        penalised.fit(x, y)
    # One full batch of 150: the penalty adds alpha / (2 * 150) * sum(W**2) to the loss.
    start = nbadam.MLP(plain.model_.sizes, dtype=np.float64, seed=plain.model_.seed)
    squares = sum(float((w ** 2).sum()) for w in start.weights)
    assert penalised.loss_curve_[0] == pytest.approx(
        plain.loss_curve_[0] + 3.0 / (2 * 150) * squares, rel=1e-12)


def test_pickle_round_trip_continues_alike(iris):
    x, y = iris
    clf = quick(max_iter=3, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
        again = pickle.loads(pickle.dumps(clf))
        np.testing.assert_array_equal(again.predict_proba(x), clf.predict_proba(x))
        clf.partial_fit(x, y)
        again.partial_fit(x, y)
    np.testing.assert_array_equal(again.model_.params, clf.model_.params)


@pytest.mark.parametrize("params, message", [
    ({"solver": "sgd"}, "solver must be 'adam'"),
    ({"activation": "identity"}, "activation must be one of 'relu'"),
    ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes must hold integers >= 1"),
    ({"alpha": -1.0}, "alpha must be a number"),
    ({"learning_rate_init": 0.0}, "learning_rate_init must be a number"),
    ({"max_iter": 0}, "max_iter must be an integer >= 1"),
    ({"batch_size": "big"}, "batch_size must be an integer"),
    ({"validation_fraction": 1.0}, "validation_fraction must be a number"),
    ({"beta_2": 1.0}, "beta_2 must be a number"),
    ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
])
def test_bad_parameters_are_refused_by_fit(iris, params, message):
    x, y = iris
    clf = quick(**params)
    with pytest.raises(ValueError, match=message):
        clf.fit(x, y)
    assert not hasattr(clf, "model_")


def test_without_scikit_learn_nbadam_imports_and_the_classifier_explains(tmp_path):
    blocker = tmp_path / "sklearn"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no scikit-learn here')\n")
    code = ("import nbadam\n"
            "try:\n    nbadam.MLPClassifier()\n"
            "except ImportError as exc:\n    print(exc)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'pip install "nbadam[sklearn]"' in result.stdout
