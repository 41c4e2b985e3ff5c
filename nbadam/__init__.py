"""nbadam: the Adam family of optimizers as fused Numba kernels over flat vectors.

Public names:

* optimizers over one flat vector: :class:`Adam`, :class:`AdamW`, :class:`NAdam`,
  :class:`Adamax`, :class:`RAdam` (CPU, or ``device="cuda"``), one per rule of
  :mod:`nbadam.rules`, the registry every entry point reads;
* :mod:`nbadam.schedules`, learning-rate schedules;
* :func:`minimize`, a drop-in for ``scipy.optimize.minimize``, and
  :func:`scipy_method`, the same solver as a callable ``method=`` for SciPy;
* :class:`MLP`, a NumPy multilayer perceptron, and :mod:`nbadam.datasets`
  with the bundled MNIST;
* :mod:`nbadam.checkpoint`, atomic pickle-free ``.npz`` files.
"""

from . import checkpoint, datasets, rules, schedules
from .minimize import minimize, scipy_method, show_options
from .nn import MLP
from .optimizers import Adam, Adamax, AdamW, NAdam, Optimizer, RAdam

__all__ = [
    "Adam", "AdamW", "NAdam", "Adamax", "RAdam", "Optimizer",
    "minimize", "scipy_method", "show_options",
    "MLP",
    "rules", "schedules", "datasets", "checkpoint",
]
__version__ = "0.1.0"
