"""nbadam: the Adam family of optimizers as fused Numba kernels over flat vectors.

Public names:

* optimizers over one flat vector (CPU, or ``device="cuda"``), one class per
  rule of :mod:`nbadam.rules`, the registry every entry point reads
  (:class:`Adam` and the others, all subclasses of :class:`Optimizer`);
* :mod:`nbadam.schedules`, learning-rate schedules;
* :func:`minimize`, a drop-in for ``scipy.optimize.minimize``, and
  :func:`scipy_method`, the same solver as a callable ``method=`` for SciPy;
* :class:`MLP`, a NumPy multilayer perceptron, and :mod:`nbadam.datasets`
  with the bundled MNIST;
* :mod:`nbadam.checkpoint`, atomic pickle-free ``.npz`` files;
* :func:`lr_find`, the learning-rate range test (:mod:`nbadam.lr_finder`).
"""

# Each subpackage's __all__ is its public surface: a class, rule or function added
# there is exported here without editing this file.
from . import checkpoint, datasets, lr_finder, rules, schedules
from .lr_finder import LRFindResult, lr_find
from .minimize import *  # noqa: F403
from .minimize import __all__ as _minimize_names
from .nn import *  # noqa: F403
from .nn import __all__ as _nn_names
from .optimizers import *  # noqa: F403
from .optimizers import __all__ as _optimizer_names

__all__ = [*_optimizer_names, *_minimize_names, *_nn_names,
           "rules", "schedules", "datasets", "checkpoint", "lr_find", "LRFindResult",
           "lr_finder"]
__version__ = "0.1.0"
