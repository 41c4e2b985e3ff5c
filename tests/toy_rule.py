"""A rule that exists only in the tests: heavy-ball momentum, defined through the registry.

``velocity <- velocity + (1 - beta) * (g - velocity)``, ``param <- param - lr * velocity``,
with a running scalar that counts the steps, so that every part of a rule's
description (a hyperparameter with its own check, a state array, a running
scalar) is exercised by a rule the package does not know about.
"""

import numpy as np

from nbadam import _validate, rules


@rules.piece
def toy_scalars(h, running, lr, t):
    running[0] = running[0] + 1.0
    return 1.0 - h.beta, -lr


@rules.piece
def toy_element(i, param, grad, state, c):
    (velocity,) = state
    one_minus_beta, neg_lr = c
    v = velocity[i] + one_minus_beta * (grad[i] - velocity[i])
    velocity[i] = v
    param[i] = param[i] + neg_lr * v


TOY_UPDATE = rules.Update("toy_momentum", ("velocity",), ("one_minus_beta", "neg_lr"),
                          toy_scalars, toy_element)
TOY = rules.Rule("toy", "Toy: heavy-ball momentum", "ToyMomentum",
                 defaults={"lr": 0.1, "beta": 0.9}, updates=(TOY_UPDATE,),
                 running={"steps": 0.0}, checks={"beta": _validate.unit_interval})


def reference_steps(x0, grads, lr, beta, dtype):
    """The toy rule in NumPy, step by step, in ``dtype`` (scalars rounded once, as the kernels)."""
    x = np.array(x0, dtype=dtype)
    v = np.zeros_like(x)
    one_minus_beta, neg_lr = dtype(1.0 - beta), dtype(-lr)
    out = []
    for g in grads:
        v = v + one_minus_beta * (g.astype(dtype) - v)
        x = x + neg_lr * v
        out.append(x.copy())
    return out


def toy_initial(h):
    return (h.start,)


#: The toy rule with a velocity that starts at a hyperparameter's value.
TOY_STARTED = rules.Rule(
    "toy_started", "Toy with a started velocity", "ToyStarted",
    defaults={"lr": 0.1, "beta": 0.9, "start": 0.5},
    updates=(rules.Update("toy_started", ("velocity",), ("one_minus_beta", "neg_lr"),
                          toy_scalars, toy_element, initial=toy_initial),),
    running={"steps": 0.0}, checks={"beta": _validate.unit_interval, "start": _validate.real})
