"""The range test on MNIST: does the suggested learning rate train as well as the default?

Runs :func:`nbadam.lr_find` on the default MLP (784-256-128-10, Adam, batch
128, the model's seed), then trains two copies of that model with
``MLP.fit`` for the same epochs and seed: one with the default learning rate
(the cosine schedule from ``3 * 1e-3``), one with the suggestion as the peak
of the same cosine (``fit(lr=suggestion)``, ``nbadam mnist --lr``).  Prints
both test accuracies; ``--plot`` saves the range test's curve.

With several ``--seeds`` the whole comparison runs once per seed (the model,
the batches and the range test all follow the seed) and a last line gives
each rate's mean accuracy; several ``--suggest`` methods each train their
own copy.

Usage: ``python -m benchmarks.scripts.lr_find_mnist [--epochs 10] [--seeds 0]
[--suggest valley [steep ...]] [--plot docs/_static/lr_find_mnist.png]``
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.lr_find_mnist",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--suggest", nargs="+", default=["valley"],
                        choices=("valley", "steep", "minimum", "slide"))
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="save the first seed's range test curve")
    args = parser.parse_args(argv)
    import numpy as np

    import nbadam

    (x_train, y_train), (x_test, y_test) = nbadam.datasets.load_mnist()
    accuracies: dict[str, list[float]] = {}
    for seed in args.seeds:
        model = nbadam.MLP(seed=seed)
        start = time.perf_counter()
        others = [name for name in ("valley", "steep", "minimum", "slide")
                  if name not in args.suggest]
        result = nbadam.lr_find(model, x_train, y_train, seed=seed,
                                suggest=(*args.suggest, *others))
        found = time.perf_counter() - start
        print(f"seed {seed}: lr_find {len(result.lrs)} steps "
              f"({'diverged' if result.diverged else 'all'}), {found:.1f} s; suggestions "
              + ", ".join(f"{name} {lr:.3g}" for name, lr in result.suggestions.items()))
        if args.plot and seed == args.seeds[0]:
            result.save_plot(args.plot)
            print(f"curve saved to {args.plot}")
        runs = {"default": None, **{name: result.suggestions[name] for name in args.suggest}}
        for label, lr in runs.items():
            trained = nbadam.MLP(seed=seed)
            start = time.perf_counter()
            trained.fit(x_train, y_train, epochs=args.epochs, lr=lr, seed=seed,
                        progress=False)
            accuracy = trained.evaluate(x_test, y_test)["accuracy"]
            accuracies.setdefault(label, []).append(accuracy)
            peak = "3e-3" if lr is None else f"{lr:.3g}"
            print(f"seed {seed}, {label} (cosine from {peak}): test accuracy {accuracy:.4f} "
                  f"after {args.epochs} epochs ({time.perf_counter() - start:.1f} s)")
    print("mean over seeds " + ", ".join(map(str, args.seeds)) + ": "
          + ", ".join(f"{label} {np.mean(values):.4f}" for label, values in accuracies.items()))


if __name__ == "__main__":
    main()
