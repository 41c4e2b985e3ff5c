"""Neural networks over one flat parameter vector: the MLP, its training loop, MLPClassifier.

:class:`MLP` keeps all its weights and biases in one vector, ``model.params``,
and its backward pass writes one vector, ``model.grad``, so each training step
ends in a single fused optimizer kernel.  :func:`plot_history` draws the
curves that :meth:`MLP.fit` returns (it needs matplotlib: ``pip install
"nbadam[plot]"``).  :class:`MLPClassifier` is the MLP as a scikit-learn
estimator (it needs scikit-learn: ``pip install "nbadam[sklearn]"``).

scikit-learn is imported here when it is installed, so that
``nbadam.MLPClassifier`` is its estimator class (``clone``, ``Pipeline`` and
the rest see a real ``BaseEstimator``); this adds the time of importing
scikit-learn (about 0.4 s) to ``import nbadam``.  Without scikit-learn the
name still exists and raises ``ImportError``, saying what to install, when
it is called.
"""

from .mlp import MLP
from .plotting import plot_history

try:
    from .sklearn import MLPClassifier
except ImportError as _missing:  # scikit-learn is an optional extra
    _reason = str(_missing)

    class MLPClassifier:  # type: ignore[no-redef]
        """Stands in for the scikit-learn estimator when scikit-learn is not installed."""

        def __init__(self, *args, **kwargs):
            raise ImportError(f'MLPClassifier needs scikit-learn; install it with: pip install '
                              f'"nbadam[sklearn]" ({_reason})')

__all__ = ["MLP", "MLPClassifier", "plot_history"]
