"""nbadam's MLP, scikit-learn's MLPClassifier and PyTorch on MNIST: speed and time to 98%.

The same 784-256-128-10 ReLU network, Adam, batch 128, float32, the full
60,000 training images per epoch, 10 epochs, the test accuracy after every
epoch.  Each framework trains in its own fresh process with the same number
of threads (``--threads``, default: all cores; OpenBLAS, OpenMP and Numba
pools, ``torch.set_num_threads``), and the table reports:

* seconds per epoch, evaluation excluded: the median over all epochs and
  rounds, and the fastest epoch (on a shared machine, the least disturbed);
* the test accuracy after the last epoch;
* the time to 98.0% test accuracy: the training seconds up to the end of the
  first epoch whose test accuracy reaches 98.0% (``-`` if none does).

The recipes:

* **nbadam**: ``MLP.fit`` with its defaults (Adam, cosine decay from 3e-3 to 0
  over the 10 epochs), from nbadam's seeded initial weights;
* **PyTorch**: ``torch.optim.Adam`` (its default for-loop implementation, and
  ``fused=True`` in a second row) with the same schedule,
  ``CosineAnnealingLR`` stepped per batch, from the same initial weights
  copied into ``torch.nn.Linear`` layers; the images are converted to a
  float32 tensor once (not timed) and batches gathered by index, PyTorch's
  fast idiom;
* **scikit-learn**: ``MLPClassifier(solver="adam", batch_size=128)`` with its
  defaults otherwise (constant ``learning_rate_init=1e-3``, ``alpha=1e-4``:
  its Adam has no schedule) and its own initial weights, one ``partial_fit``
  epoch at a time on the float32 images scaled to [0, 1].

``--recipe constant`` trains all three with a constant learning rate of 1e-3
and no penalty instead, the same recipe everywhere.  With ``--rounds N`` the
processes alternate N times and the medians over the rounds are reported.

Usage (in an environment with torch and scikit-learn installed)::

    python -m benchmarks.scripts.mlp_compare [--threads N] [--rounds 1] [--recipe default]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = (784, 256, 128, 10)
BATCH = 128
EPOCHS = 10
SEED = 0
TARGET = 0.98
PEAK_LR = 3e-3
CONSTANT_LR = 1e-3
WARMUP_STEPS = 60


def _mnist():
    from nbadam.datasets import load_mnist

    return load_mnist()


class _Clock:
    """Training seconds per epoch, with the evaluation between epochs left out."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.accuracies: list[float] = []
        self.resumed = time.perf_counter()

    def epoch_done(self, evaluate) -> None:
        self.times.append(time.perf_counter() - self.resumed)
        self.accuracies.append(float(evaluate()))
        self.resumed = time.perf_counter()

    def result(self, **details) -> dict:
        return {"times": self.times, "accuracies": self.accuracies, **details}


# -- workers: one framework, one fresh process ---------------------------------
def _nbadam(recipe: str) -> dict:
    import numba

    from nbadam.nn import MLP

    (x, y), (x_test, y_test) = _mnist()
    options = ({} if recipe == "default" else
               {"schedule": "constant", "lr": CONSTANT_LR})
    # Compile every kernel outside the timing.
    MLP(SIZES, seed=SEED).fit(x[:WARMUP_STEPS * BATCH], y[:WARMUP_STEPS * BATCH], epochs=1,
                              batch_size=BATCH, progress=False)
    model = MLP(SIZES, seed=SEED)
    clock = _Clock()
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, progress=False,
              callback=lambda epoch, logs: clock.epoch_done(
                  lambda: model.evaluate(x_test, y_test)["accuracy"]), **options)
    return clock.result(numba_threads=numba.get_num_threads(),
                        layer=numba.threading_layer())


def _torch(recipe: str, threads: int, fused: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from nbadam.nn import MLP

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    (x, y), (x_test, y_test) = _mnist()
    images = torch.from_numpy(x.reshape(len(x), -1)).float().div_(255)
    labels = torch.from_numpy(y.astype("int64"))
    test_images = torch.from_numpy(x_test.reshape(len(x_test), -1)).float().div_(255)
    test_labels = torch.from_numpy(y_test.astype("int64"))
    reference = MLP(SIZES, seed=SEED)
    layers = []
    for weight, bias in zip(reference.weights, reference.biases, strict=True):
        linear = torch.nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias.copy()))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    steps = -(-len(images) // BATCH)

    def optimizer():
        lr = PEAK_LR if recipe == "default" else CONSTANT_LR
        opt = torch.optim.Adam(model.parameters(), lr=lr, fused=fused or None)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS * steps)
                    if recipe == "default" else None)
        return opt, schedule

    def epoch(opt, schedule, generator, limit=None) -> None:
        order = torch.randperm(len(images), generator=generator)
        for number, start in enumerate(range(0, len(images), BATCH)):
            if limit is not None and number == limit:
                break
            rows = order[start:start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images[rows]), labels[rows])
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(test_images).argmax(dim=1) == test_labels).float().mean())

    initial = {key: value.clone() for key, value in model.state_dict().items()}
    epoch(*optimizer(), torch.Generator().manual_seed(SEED), limit=WARMUP_STEPS)
    model.load_state_dict(initial)  # the warm-up only ran the code paths once
    opt, schedule = optimizer()
    generator = torch.Generator().manual_seed(SEED)
    clock = _Clock()
    for _ in range(EPOCHS):
        epoch(opt, schedule, generator)
        clock.epoch_done(accuracy)
    return clock.result(torch_threads=torch.get_num_threads(), torch=torch.__version__)


def _sklearn(recipe: str) -> dict:
    import numpy as np
    import sklearn
    from sklearn.neural_network import MLPClassifier

    (x, y), (x_test, y_test) = _mnist()
    images = x.reshape(len(x), -1).astype(np.float32) / np.float32(255)
    test_images = x_test.reshape(len(x_test), -1).astype(np.float32) / np.float32(255)
    options = {} if recipe == "default" else {"alpha": 0.0, "learning_rate_init": CONSTANT_LR}
    clf = MLPClassifier(SIZES[1:-1], solver="adam", batch_size=BATCH, random_state=SEED,
                        **options)
    classes = np.arange(SIZES[-1])
    clock = _Clock()
    for _ in range(EPOCHS):
        clf.partial_fit(images, y, classes=classes)
        clock.epoch_done(lambda: clf.score(test_images, y_test))
    return clock.result(sklearn=sklearn.__version__)


# -- driver ----------------------------------------------------------------------
def _spawn(args: list[str], threads: int) -> dict:
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        env[name] = str(threads)
    result = subprocess.run([sys.executable, "-m", "benchmarks.scripts.mlp_compare", *args],
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def seconds_to_target(times: list[float], accuracies: list[float]) -> tuple[int, float] | None:
    """``(epochs, seconds)`` of training until the test accuracy first reaches TARGET.

    (Not named ``time_...``: asv would collect it as a benchmark.)

    >>> seconds_to_target([1.0, 1.0, 1.0], [0.97, 0.981, 0.979])
    (2, 2.0)
    >>> seconds_to_target([1.0], [0.5]) is None
    True
    """
    for number, accuracy in enumerate(accuracies, 1):
        if accuracy >= TARGET:
            return number, sum(times[:number])
    return None


def _compare(args: argparse.Namespace) -> None:
    workers = {"nbadam": ["--worker", "nbadam"]}
    if _available("torch"):
        workers["PyTorch"] = ["--worker", "torch"]
        workers["PyTorch, fused Adam"] = ["--worker", "torch-fused"]
    else:
        print("PyTorch is not installed: leaving it out.")
    if _available("sklearn"):
        workers["scikit-learn"] = ["--worker", "sklearn"]
    else:
        print("scikit-learn is not installed: leaving it out.")
    common = ["--threads", str(args.threads), "--recipe", args.recipe]
    runs: dict[str, list[dict]] = {name: [] for name in workers}
    for round_number in range(args.rounds):
        order = list(workers) if round_number % 2 == 0 else list(workers)[::-1]
        for name in order:
            result = _spawn(workers[name] + common, args.threads)
            runs[name].append(result)
            print(f"round {round_number + 1}/{args.rounds}, {name}: "
                  f"{statistics.median(result['times']):.2f} s/epoch, test accuracy "
                  + " ".join(f"{a:.4f}" for a in result["accuracies"]), flush=True)
    rows = {}
    for name, results in runs.items():
        reached = [seconds_to_target(r["times"], r["accuracies"]) for r in results]
        seconds = [hit[1] for hit in reached if hit is not None]
        rows[name] = {
            "epoch": statistics.median(t for r in results for t in r["times"]),
            "fastest": min(t for r in results for t in r["times"]),
            "accuracy": statistics.median(r["accuracies"][-1] for r in results),
            "epochs_to_target": [None if hit is None else hit[0] for hit in reached],
            "seconds_to_target": statistics.median(seconds) if len(seconds) == len(results)
            else None,
            "details": {k: v for k, v in results[-1].items()
                        if k not in ("times", "accuracies")}}
    recipe = ("each library's Adam recipe: nbadam's and PyTorch's cosine decay from 3e-3, "
              "scikit-learn's constant 1e-3 with alpha=1e-4" if args.recipe == "default" else
              "constant lr 1e-3, no penalty, for all")
    print(f"\n784-256-128-10 ReLU MLP, Adam, batch {BATCH}, float32, 60,000 images, "
          f"{EPOCHS} epochs; {recipe}; {args.threads} threads; medians of {args.rounds} "
          "round(s)\n")
    base, fastest = rows["nbadam"]["epoch"], rows["nbadam"]["fastest"]
    print("| framework | s/epoch, median | nbadam's / this | s/epoch, fastest | "
          "nbadam's / this | test accuracy after 10 epochs | epochs to 98.0% | "
          "seconds to 98.0% |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        seconds = row["seconds_to_target"]
        epochs = ", ".join("-" if e is None else str(e) for e in row["epochs_to_target"])
        print(f"| {name} | {row['epoch']:.3f} | {base / row['epoch']:.2f}x | "
              f"{row['fastest']:.3f} | {fastest / row['fastest']:.2f}x | "
              f"{100 * row['accuracy']:.2f}% | {epochs} | "
              f"{'-' if seconds is None else f'{seconds:.1f}'} |")
    for name, row in rows.items():
        print(f"{name}: {row['details']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--recipe", choices=("default", "constant"), default="default")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = {
            "nbadam": lambda: _nbadam(args.recipe),
            "torch": lambda: _torch(args.recipe, args.threads, fused=False),
            "torch-fused": lambda: _torch(args.recipe, args.threads, fused=True),
            "sklearn": lambda: _sklearn(args.recipe),
        }[args.worker]()
        print(json.dumps(result))
    else:
        _compare(args)


if __name__ == "__main__":
    main()
