"""Neural networks over one flat parameter vector: the MLP and its training loop.

:class:`MLP` keeps all its weights and biases in one vector, ``model.params``,
and its backward pass writes one vector, ``model.grad``, so each training step
ends in a single fused optimizer kernel.  :func:`plot_history` draws the
curves that :meth:`MLP.fit` returns (it needs matplotlib: ``pip install
"nbadam[plot]"``).
"""

from .mlp import MLP
from .plotting import plot_history

__all__ = ["MLP", "plot_history"]
