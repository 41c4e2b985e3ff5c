"""The objective whose gradients drive the golden trajectories of the rules beyond torch.

Shared by ``make_goldens_optax.py``, ``make_goldens_schedulefree.py`` and
``make_goldens_prodigy.py`` (run from the repository root, so that this folder
is on ``sys.path``).  NumPy only.
"""

import numpy as np

N_PARAMS = 16
N_STEPS = 200
ALWAYS_ZERO = 5  # index of the element whose gradient is exactly 0 on every step


class Problem:
    """The objective whose gradient drives a case, with the noise drawn up front.

    ``grad(theta)`` is ``a * (theta - c)`` (a separable quadratic with curvatures ``a``
    between 1e-3 and 1e1), plus ``rho`` times the gradient of the Rosenbrock coupling
    ``(1 - x)**2 + (y - x**2)**2`` of each pair ``(x, y) = (theta[2k], theta[2k + 1])``, plus
    noise of a per-element scale between 1e-4 and 1e0; then the entries of ``zero[t]`` and
    the element ``ALWAYS_ZERO`` are set to exactly 0.
    """

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.params0 = rng.normal(size=N_PARAMS) * 10.0 ** rng.uniform(-2.0, 0.5, N_PARAMS)
        self.curvature = 10.0 ** rng.uniform(-3.0, 1.0, N_PARAMS)
        self.centre = rng.normal(size=N_PARAMS)
        self.rho = 0.5
        noise_scale = 10.0 ** rng.uniform(-4.0, 0.0, N_PARAMS)
        self.noise = noise_scale * rng.normal(size=(N_STEPS, N_PARAMS))
        self.zero = rng.random((N_STEPS, N_PARAMS)) < 0.05
        self.zero[:, ALWAYS_ZERO] = True

    def grad(self, theta, t):
        """The gradient of step ``t`` (0-based) at ``theta``, in float64."""
        theta = np.asarray(theta, dtype=np.float64)
        g = self.curvature * (theta - self.centre)
        x, y = theta[0::2], theta[1::2]
        g[0::2] += self.rho * (-2.0 * (1.0 - x) - 4.0 * x * (y - x * x))
        g[1::2] += self.rho * (2.0 * (y - x * x))
        g = g + self.noise[t]
        g[self.zero[t]] = 0.0
        return g
