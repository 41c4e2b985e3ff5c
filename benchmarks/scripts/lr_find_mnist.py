"""The range test on MNIST: does the suggested learning rate train as well as the default?

Runs :func:`nbadam.lr_find` on the default MLP (784-256-128-10, Adam, batch
128, the model's seed), then trains two copies of that model with
``MLP.fit`` for the same epochs and seed: one with the default learning rate
(the cosine schedule from ``3 * 1e-3``), one with the suggestion as the peak
of the same cosine (``fit(lr=suggestion)``, ``nbadam mnist --lr``).  Prints
both test accuracies; ``--plot`` saves the range test's curve.

Usage: ``python -m benchmarks.scripts.lr_find_mnist [--epochs 10] [--seed 0]
[--suggest valley] [--plot docs/_static/lr_find_mnist.png]``
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.lr_find_mnist",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suggest", default="valley",
                        choices=("valley", "steep", "minimum", "slide"))
    parser.add_argument("--plot", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    import nbadam

    (x_train, y_train), (x_test, y_test) = nbadam.datasets.load_mnist()
    model = nbadam.MLP(seed=args.seed)
    start = time.perf_counter()
    others = [name for name in ("valley", "steep", "minimum", "slide") if name != args.suggest]
    result = nbadam.lr_find(model, x_train, y_train, seed=args.seed,
                            suggest=(args.suggest, *others))
    found = time.perf_counter() - start
    print(f"lr_find: {len(result.lrs)} steps ({'diverged' if result.diverged else 'all'}), "
          f"{found:.1f} s; suggestions "
          + ", ".join(f"{name} {lr:.3g}" for name, lr in result.suggestions.items()))
    if args.plot:
        result.save_plot(args.plot)
        print(f"curve saved to {args.plot}")
    runs = {"default (cosine from 3e-3)": None,
            f"{args.suggest} (cosine from {result.suggestion:.3g})": result.suggestion}
    for label, lr in runs.items():
        trained = nbadam.MLP(seed=args.seed)
        start = time.perf_counter()
        trained.fit(x_train, y_train, epochs=args.epochs, lr=lr, seed=args.seed,
                    progress=False)
        accuracy = trained.evaluate(x_test, y_test)["accuracy"]
        print(f"{label}: test accuracy {accuracy:.4f} after {args.epochs} epochs "
              f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
