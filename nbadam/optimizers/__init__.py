"""Optimizers over one flat parameter vector, one class per rule of :mod:`nbadam.rules`.

:class:`Optimizer` (:mod:`._base`) validates the hyperparameters its rule
declares, holds the state arrays and running scalars, and on each
:meth:`~Optimizer.step` computes the rule's per-step scalars on the host and
hands one fused kernel launch to :mod:`nbadam._launch`.  The classes of
:mod:`._torch` (the rules of ``torch.optim``) and of the other modules here
give each built-in rule its documented signature; :func:`optimizer_class`
makes a class for any registered rule.
"""

from __future__ import annotations

from . import _base, _beyond, _prodigy, _torch
from ._base import *  # noqa: F403
from ._beyond import *  # noqa: F403
from ._groups import ParamGroup
from ._prodigy import *  # noqa: F403
from ._torch import *  # noqa: F403

__all__ = [*_base.__all__, "ParamGroup", *_torch.__all__, *_beyond.__all__, *_prodigy.__all__]
