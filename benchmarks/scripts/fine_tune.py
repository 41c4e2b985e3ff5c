"""Fine-tuning with a frozen group: train on digits 0-4, then only the last layer on 5-9.

The MLP (784-256-128-10, the defaults) first trains on the MNIST training
images of digits 0-4; then every layer but the last is frozen with ``lr=0``
groups (:meth:`nbadam.MLP.layer_slices`) and the model is fine-tuned on the
images of digits 5-9.  Prints the test accuracy on each half before and after,
and checks that the frozen layers did not change by one bit.

Usage: ``python -m benchmarks.scripts.fine_tune [--epochs 3] [--seed 0]``
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.fine_tune",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import nbadam

    (x_train, y_train), (x_test, y_test) = nbadam.datasets.load_mnist()
    low, high = y_train < 5, y_train >= 5
    test_low, test_high = y_test < 5, y_test >= 5
    model = nbadam.MLP(seed=args.seed)
    model.fit(x_train[low], y_train[low], epochs=args.epochs, progress=False)

    def scores(label):
        lo = model.evaluate(x_test[test_low], y_test[test_low])["accuracy"]
        hi = model.evaluate(x_test[test_high], y_test[test_high])["accuracy"]
        print(f"{label}: test accuracy on digits 0-4 {lo:.4f}, on digits 5-9 {hi:.4f}")

    scores("trained on 0-4")
    *hidden, last = model.layer_slices()
    groups = [{"params": part, "lr": 0.0} for layer in hidden for part in layer.values()]
    groups += [{"params": part} for part in last.values()]
    frozen = slice(0, last["weights"].start)
    before = model.params[frozen].copy()
    opt = nbadam.Adam(model.params, lr=1e-3, groups=groups)
    model.fit(x_train[high], y_train[high], epochs=args.epochs, optimizer=opt, progress=False)
    scores("last layer fine-tuned on 5-9")
    unchanged = np.array_equal(model.params[frozen], before)
    print(f"frozen layers unchanged bit for bit: {unchanged}")


if __name__ == "__main__":
    main()
