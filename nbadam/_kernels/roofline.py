"""The memory roofline: a kernel with Adam's memory traffic and no arithmetic.

Benchmarks time it next to the Adam step (28 bytes per float32 element:
read ``param``, ``grad``, ``exp_avg``, ``exp_avg_sq``, write three of them),
so the honest yardstick is measured in the same run.  It is an update in the
kernels' sense, not a rule: ``state`` is ``(exp_avg, exp_avg_sq)`` and it
takes no scalars.
"""

from __future__ import annotations

import dataclasses

from ._build import piece


@piece
def same_traffic_element(i, param, grad, state, scalars):
    # exp_avg is read as Adam reads it; it only picks p for every non-NaN value,
    # so the load cannot be dropped.
    exp_avg, exp_avg_sq = state
    p = param[i]
    g = grad[i]
    m = exp_avg[i]
    v = exp_avg_sq[i]
    param[i] = g
    exp_avg[i] = v
    exp_avg_sq[i] = p if m == m else m


#: The roofline as the kernel builders take it.
@dataclasses.dataclass(frozen=True, eq=False)
class _Roofline:
    name: str = "same_traffic"
    state: tuple[str, ...] = ("exp_avg", "exp_avg_sq")
    scalar_names: tuple[str, ...] = ()
    element_scalar_names: tuple[str, ...] = ()
    element: object = same_traffic_element


SAME_TRAFFIC = _Roofline()


#: Vector passes per element and step of the updates whose traffic is not the usual
#: count (the gradient read, the parameters and each state array read and written once),
#: by update name.  Prodigy's two passes: the reduction reads the parameters, the
#: gradient, ``exp_avg``, ``exp_avg_sq``, ``s`` and ``p0`` and writes the first three
#: state arrays (9); the update reads the parameters, ``exp_avg`` and ``exp_avg_sq`` and
#: writes the parameters (4): 52 bytes per float32 element, against Adam's 28.
PASSES = {"prodigy": 13}
