"""nbadam's MLP against PyTorch on CPU: seconds per MNIST epoch, memory, fused ops.

The same 784-256-128-10 ReLU network (nbadam's seeded initial weights,
copied into ``torch.nn.Linear`` layers), Adam with lr 1e-3, batch 128, float32,
the full 60,000 training images per epoch.  Each framework runs in its own
fresh process with the same number of threads (``--threads``, default: all
cores): OpenBLAS and Numba for nbadam, ``torch.set_num_threads`` for PyTorch.
The processes alternate for ``--rounds`` rounds so that both see the same
background load; each times ``--epochs`` epochs after a warm-up (compilation,
first BLAS calls) and the table reports the median and the minimum (on a
shared machine the minimum is the least disturbed epoch).

PyTorch's loop is its fast idiom, not a ``DataLoader``: the images are
converted to a float32 tensor once (not timed) and batches are gathered by
index; ``torch.optim.Adam`` runs with its default (for-loop) implementation
and, in a second column, with ``fused=True``.  nbadam's loop is the public
``MLP.fit`` on the ``uint8`` images.

Usage::

    python -m benchmarks.scripts.mlp_vs_torch [--threads N] [--rounds 3] [--epochs 2]
    python -m benchmarks.scripts.mlp_vs_torch --memory   # peak memory of a 10-epoch fit
    python -m benchmarks.scripts.mlp_vs_torch --ops      # fused kernels vs NumPy, per call
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
LR = 1e-3
SEED = 0
WARMUP_STEPS = 60


def _mnist():
    from nbadam.datasets import load_mnist

    return load_mnist()


# -- workers: one framework, one fresh process ---------------------------------
def _nbadam_epochs(epochs: int) -> dict:
    import numba
    import numpy as np

    import nbadam
    from nbadam.nn import MLP

    (x, y), _ = _mnist()
    model = MLP(SIZES, seed=SEED)
    opt = nbadam.Adam(model.params, lr=LR)
    model.fit(x[:WARMUP_STEPS * BATCH], y[:WARMUP_STEPS * BATCH], epochs=1, batch_size=BATCH,
              optimizer=opt, progress=False)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        # Each call continues the model's training with opt: the next epoch's data order.
        model.fit(x, y, epochs=1, batch_size=BATCH, optimizer=opt, progress=False)
        times.append(time.perf_counter() - start)
    assert np.isfinite(model.params).all()
    return {"times": times, "layer": numba.threading_layer(),
            "numba_threads": numba.get_num_threads()}


def _torch_epochs(epochs: int, threads: int, fused: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from nbadam.nn import MLP

    torch.set_num_threads(threads)
    (x, y), _ = _mnist()
    images = torch.from_numpy(x.reshape(len(x), -1)).float().div_(255)
    labels = torch.from_numpy(y.astype("int64"))
    reference = MLP(SIZES, seed=SEED)
    layers = []
    for weight, bias in zip(reference.weights, reference.biases, strict=True):
        linear = torch.nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias.copy()))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=fused or None)
    generator = torch.Generator().manual_seed(SEED)

    def epoch(steps: int | None = None) -> None:
        order = torch.randperm(len(images), generator=generator)
        for number, start in enumerate(range(0, len(images), BATCH)):
            if steps is not None and number == steps:
                break
            rows = order[start:start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images[rows]), labels[rows])
            loss.backward()
            opt.step()

    epoch(WARMUP_STEPS)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return {"times": times, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _memory(epochs: int) -> dict:
    """Peak memory of a full ``fit`` in this (fresh) process."""
    import resource
    import tracemalloc

    from nbadam.nn import MLP

    (x, y), (x_test, y_test) = _mnist()
    small = MLP(SIZES, seed=SEED)  # compile the kernels outside the measurement
    small.fit(x[:256], y[:256], epochs=1, progress=False, validation_data=(x[:10], y[:10]))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = MLP(SIZES, seed=SEED)
    after_model = tracemalloc.get_traced_memory()[0] - base
    per_epoch = []

    def record(epoch, logs):
        current, peak = tracemalloc.get_traced_memory()
        per_epoch.append({"epoch": epoch, "current": current - base, "peak": peak - base,
                          "val_accuracy": logs["val_accuracy"]})
        tracemalloc.reset_peak()

    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, progress=False, validation_data=(x_test, y_test),
              callback=record)
    seconds = time.perf_counter() - start
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model_bytes": after_model, "params": int(model.params.size),
            "per_epoch": per_epoch, "end_current": current - base,
            "maxrss_before_kib": rss_before, "maxrss_after_kib": rss_after,
            "seconds": seconds}


def _ops(repeat: int = 2000) -> dict:
    """Microseconds per call of each fused kernel and its NumPy equivalent."""
    import numpy as np

    from nbadam.nn import _fused

    rng = np.random.default_rng(0)
    f32 = np.float32
    x = rng.integers(0, 256, size=(60000, 784), dtype=np.uint8)
    rows = rng.permutation(60000)[:BATCH]
    inputs = np.empty((BATCH, 784), f32)
    u8 = np.empty((BATCH, 784), np.uint8)
    z0 = rng.standard_normal((BATCH, 256)).astype(f32)
    bias = rng.standard_normal(256).astype(f32)
    z = z0.copy()
    delta = rng.standard_normal((BATCH, 256)).astype(f32)
    bias_grad = np.empty(256, f32)
    logits0 = rng.standard_normal((BATCH, 10)).astype(f32)
    logits = logits0.copy()
    out_bias = rng.standard_normal(10).astype(f32)
    labels = rng.integers(0, 10, BATCH)
    out_delta = np.empty((BATCH, 10), f32)
    out_grad = np.empty(10, f32)
    scale, one, divisor = f32(1 / BATCH), f32(1), f32(255)
    index = np.arange(BATCH)

    def numpy_softmax():
        np.add(logits, out_bias, out=logits)
        top = logits.max(axis=1, keepdims=True)
        shifted = logits - top
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        loss = float((np.log(total[:, 0]) - shifted[index, labels]).sum())
        np.multiply(e, scale / total, out=out_delta)
        out_delta[index, labels] -= scale
        out_delta.sum(axis=0, out=out_grad)
        return loss, int((logits.argmax(axis=1) == labels).sum())

    cases = {
        "gather + convert batch (128x784 uint8)": (
            lambda: _fused.gather_rows(x, rows, divisor, inputs),
            lambda: (np.take(x, rows, axis=0, out=u8, mode="clip"),
                     np.divide(u8, divisor, out=inputs))),
        "bias + ReLU (128x256)": (
            lambda: _fused.bias_relu(z, bias, one),
            lambda: (np.add(z, bias, out=z), np.maximum(z, 0, out=z))),
        "ReLU backward + bias grad (128x256)": (
            lambda: _fused.relu_backward(delta, z0, bias_grad, one),
            lambda: (np.multiply(delta, z0 > 0, out=delta), delta.sum(axis=0, out=bias_grad))),
        "softmax cross-entropy + grad (128x10)": (
            lambda: _fused.softmax_cross_entropy(logits, out_bias, labels, out_delta,
                                                 out_grad, scale, scale, f32(0), 0.0),
            numpy_softmax),
    }
    result = {}
    for name, pair in cases.items():
        timings = []
        for func in pair:
            for _ in range(50):
                func()
            samples = []
            for _ in range(7):
                start = time.perf_counter()
                for _ in range(repeat):
                    func()
                samples.append((time.perf_counter() - start) / repeat * 1e6)
                z[...] = z0
                logits[...] = logits0
            timings.append(statistics.median(samples))
        result[name] = timings
    return result


def _step_variants(steps: int = 200, rounds: int = 7) -> dict:
    """Milliseconds per training step with fused or NumPy elementwise parts.

    The variants take turns within each round (min and median over rounds),
    so background load hits them alike.  The last two rows time the optimizer
    step alone with the parallel and the serial kernel.
    """
    import numpy as np

    import nbadam
    from nbadam import _config
    from nbadam.nn import MLP, _fused, training

    (x, y), _ = _mnist()
    model = MLP(SIZES, seed=SEED)
    xs, divisor = model._check_x(x, "x")
    labels = model._check_y(y, len(y), "y")
    opt = nbadam.Adam(model.params, lr=LR)
    trainer = training.Trainer(model, opt, BATCH)
    order = training.epoch_order(SEED, 0, len(x), True)
    batches = [order[i:i + BATCH] for i in range(0, steps * BATCH, BATCH)]

    def numpy_bias_relu(z, bias, one):
        np.add(z, bias, out=z)
        np.maximum(z, 0, out=z)

    def numpy_relu_backward(delta, activation, bias_grad, one):
        np.multiply(delta, activation > 0, out=delta)
        delta.sum(axis=0, out=bias_grad)

    def numpy_softmax(logits, bias, labels, delta, bias_grad, scale, on, off, smoothing):
        np.add(logits, bias, out=logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        index = np.arange(len(labels))
        loss = float((np.log(total[:, 0]) - shifted[index, labels]).sum())
        np.multiply(e, scale / total, out=delta)
        delta[index, labels] -= scale
        delta.sum(axis=0, out=bias_grad)
        return loss, int((logits.argmax(axis=1) == labels).sum())

    def numpy_gather(x, rows, divisor, out):
        np.divide(np.take(x, rows, axis=0), divisor, out=out)

    fused = (model._activate, model._activation_backward, _fused.softmax_cross_entropy,
             _fused.gather_rows)
    numpy = (numpy_bias_relu, numpy_relu_backward, numpy_softmax, numpy_gather)
    parallel_min = _config.PARALLEL_MIN_SIZE

    def use(parts, threshold):
        (model._activate, model._activation_backward, _fused.softmax_cross_entropy,
         _fused.gather_rows) = parts
        _config.PARALLEL_MIN_SIZE = threshold

    variants = {
        "fused elementwise (nbadam)": (fused, parallel_min),
        "NumPy elementwise": (numpy, parallel_min),
        "fused elementwise, serial optimizer kernel": (fused, 1 << 62),
    }
    samples = {name: [] for name in variants}
    samples["optimizer step alone, parallel kernel"] = []
    samples["optimizer step alone, serial kernel"] = []
    for rows in batches[:20]:
        trainer.step(xs, divisor, labels, rows)
    try:
        for _ in range(rounds):
            for name, (parts, threshold) in variants.items():
                use(parts, threshold)
                start = time.perf_counter()
                for rows in batches:
                    trainer.step(xs, divisor, labels, rows)
                samples[name].append((time.perf_counter() - start) / len(batches) * 1e3)
            for name, threshold in (("parallel", parallel_min), ("serial", 1 << 62)):
                use(fused, threshold)
                start = time.perf_counter()
                for _ in range(200):
                    opt.step(model.grad)
                samples[f"optimizer step alone, {name} kernel"].append(
                    (time.perf_counter() - start) / 200 * 1e3)
    finally:
        use(fused, parallel_min)
    return {name: [min(values), statistics.median(values)] for name, values in samples.items()}


# -- driver ----------------------------------------------------------------------
def _spawn(args: list[str], threads: int) -> dict:
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        env[name] = str(threads)
    result = subprocess.run([sys.executable, "-m", "benchmarks.scripts.mlp_vs_torch",
                             *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _compare(args: argparse.Namespace) -> None:
    workers = {"nbadam": ["--worker", "nbadam"]}
    if _have_torch():
        workers["PyTorch"] = ["--worker", "torch"]
        workers["PyTorch, fused Adam"] = ["--worker", "torch-fused"]
    else:
        print("PyTorch is not installed: timing nbadam only.")
    common = ["--epochs", str(args.epochs), "--threads", str(args.threads)]
    times: dict[str, list[float]] = {name: [] for name in workers}
    ratios: list[float] = []
    info = {}
    for round_number in range(args.rounds):
        order = list(workers) if round_number % 2 == 0 else list(workers)[::-1]
        medians = {}
        for name in order:
            result = _spawn(workers[name] + common, args.threads)
            times[name] += result["times"]
            medians[name] = statistics.median(result["times"])
            info[name] = {k: v for k, v in result.items() if k != "times"}
        if "PyTorch" in medians:
            ratios.append(medians["nbadam"] / medians["PyTorch"])
        print(f"round {round_number + 1}/{args.rounds}: " + ", ".join(
            f"{name} {value:.2f} s/epoch" for name, value in medians.items()), flush=True)
    base = statistics.median(times["PyTorch"]) if "PyTorch" in times else None
    print(f"\n784-256-128-10 ReLU MLP, Adam lr={LR}, batch {BATCH}, float32, 60,000 images; "
          f"{args.threads} threads; median of {args.rounds} x {args.epochs} epochs")
    best = min(times["PyTorch"]) if "PyTorch" in times else None
    print("\n| framework | s/epoch, median | min | max | median / PyTorch's | "
          "min / PyTorch's |")
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        ratio = f"{statistics.median(values) / base:.2f}x" if base else "-"
        ratio_min = f"{min(values) / best:.2f}x" if best else "-"
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | "
              f"{max(values):.3f} | {ratio} | {ratio_min} |")
    if ratios:
        print(f"\nnbadam / PyTorch per round (paired): "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
    for name, details in info.items():
        print(f"{name}: {details}")


def _print_memory(args: argparse.Namespace) -> None:
    result = _spawn(["--worker", "memory", "--epochs", str(args.epochs)], args.threads)
    mib = 1 / 2**20
    print(f"MLP 784-256-128-10 float32, {result['params']:,} parameters; fit for "
          f"{args.epochs} epochs with Adam and test-set validation in {result['seconds']:.1f} s")
    print(f"model (params + grad): {result['model_bytes'] * mib:.2f} MiB")
    print("\n| epoch | traced now (MiB) | traced peak during epoch (MiB) | test accuracy |")
    print("|---|---|---|---|")
    for row in result["per_epoch"]:
        print(f"| {row['epoch']} | {row['current'] * mib:.2f} | {row['peak'] * mib:.2f} | "
              f"{row['val_accuracy']:.4f} |")
    print(f"\ntraced after fit returned: {result['end_current'] * mib:.2f} MiB")
    print(f"process max RSS: {result['maxrss_before_kib'] / 1024:.1f} MiB before fit "
          f"(interpreter, libraries, MNIST), {result['maxrss_after_kib'] / 1024:.1f} MiB after")


def _print_ops(args: argparse.Namespace) -> None:
    ops = _spawn(["--worker", "ops"], args.threads)
    print("| elementwise part | fused Numba (us) | NumPy (us) | speed-up |\n|---|---|---|---|")
    for name, (fused, numpy) in ops.items():
        print(f"| {name} | {fused:.1f} | {numpy:.1f} | {numpy / fused:.1f}x |")
    steps = _spawn(["--worker", "steps"], args.threads)
    print("\n| training step (batch 128) | ms, min | ms, median |\n|---|---|---|")
    for name, (low, middle) in steps.items():
        print(f"| {name} | {low:.3f} | {middle:.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per process (default: 2; 10 with --memory)")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--ops", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 10 if args.memory else 2
    if args.worker:
        result = {
            "nbadam": lambda: _nbadam_epochs(args.epochs),
            "torch": lambda: _torch_epochs(args.epochs, args.threads, fused=False),
            "torch-fused": lambda: _torch_epochs(args.epochs, args.threads, fused=True),
            "memory": lambda: _memory(args.epochs),
            "ops": _ops,
            "steps": _step_variants,
        }[args.worker]()
        print(json.dumps(result))
    elif args.memory:
        _print_memory(args)
    elif args.ops:
        _print_ops(args)
    else:
        _compare(args)


if __name__ == "__main__":
    main()
