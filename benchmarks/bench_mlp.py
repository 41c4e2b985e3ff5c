"""asv: ``nbadam.MLP`` trained on a fixed MNIST subset.

The subset is the first 10,000 training and the first 2,000 test images of
the bundled copy (``nbadam.datasets.load_mnist``), so every run sees the
same data.  ``time_epoch`` is one epoch of ``fit`` (each call continues the
model's training: the next epoch); ``track_test_accuracy`` the test accuracy
after one epoch from a fixed seed with ``fit``'s defaults (a cosine decay
from 3e-3 over the epoch); ``peakmem_fit`` the peak memory of a process that
loads the subset and trains one epoch.
Skipped while ``nbadam.MLP`` does not exist.
"""

from __future__ import annotations

TRAIN, TEST = 10_000, 2_000
BATCH = 128
SEED = 0


def _subset():
    from nbadam.datasets import load_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist()
    return x_train[:TRAIN], y_train[:TRAIN], x_test[:TEST], y_test[:TEST]


def _model():
    """The default network (784-256-128-10, ReLU, float32), seeded."""
    try:
        from nbadam.nn import MLP
    except ImportError as exc:
        raise NotImplementedError(f"nbadam.MLP is not available: {exc}") from None
    return MLP(seed=SEED)


def _fit(model, x, y):
    return model.fit(x, y, epochs=1, batch_size=BATCH, progress=False)


class Train:
    """One epoch of ``MLP.fit`` (its defaults: Adam, cosine from 3e-3) on 10,000 MNIST images."""

    repeat = (3, 5, 30.0)
    number = 1
    timeout = 600

    def setup(self):
        self.model = _model()
        self.x_train, self.y_train, self.x_test, self.y_test = _subset()
        # Compiles every kernel of the forward and backward passes.
        _fit(_model(), self.x_train[:BATCH * 2], self.y_train[:BATCH * 2])

    def time_epoch(self):
        _fit(self.model, self.x_train, self.y_train)

    def track_test_accuracy(self):
        model = _model()
        _fit(model, self.x_train, self.y_train)
        return float(model.evaluate(self.x_test, self.y_test)["accuracy"])

    track_test_accuracy.unit = "fraction correct"

    def peakmem_fit(self):
        _fit(_model(), self.x_train, self.y_train)
