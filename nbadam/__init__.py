"""nbadam: the Adam family of optimizers as fused Numba kernels over flat vectors."""

from . import schedules
from .optimizers import Adam, Adamax, AdamW, NAdam, Optimizer, RAdam

__all__ = ["Adam", "AdamW", "NAdam", "Adamax", "RAdam", "Optimizer", "schedules"]
__version__ = "0.1.0"
