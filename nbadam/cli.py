"""The ``nbadam`` command line: ``nbadam mnist`` trains an MLP on MNIST.

``nbadam lr-find`` runs the learning-rate range test (:func:`nbadam.lr_find`)
on the same MLP and data and prints the suggested rate.

``python -m nbadam`` is the same program.  Every error -- a bad argument, a
missing file, a refused checkpoint, a model too large for memory -- ends the
program with a one-line message on stderr and a non-zero exit status, never
a traceback.  Output files (``--save``, ``--plot``, ``--checkpoint``) are
checked before training starts: each must be a file name in a folder where a
file can be created, and ``--plot`` must name an image format matplotlib
writes.  An existing ``--checkpoint`` file is never replaced silently: pass
``--resume`` to continue that run or ``--overwrite`` to start afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line long."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if any(width < 1 for width in widths):
        raise argparse.ArgumentTypeError(f"widths must be >= 1, got {text!r}")
    return widths


# argparse names a failed type by the function's __name__ in its message.
_positive_int.__name__ = _nonnegative_int.__name__ = "integer"
_positive_float.__name__ = _nonnegative_float.__name__ = _fraction.__name__ = "number"
_widths.__name__ = "list of widths"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nbadam`` command."""
    from . import __version__, rules
    from .optimizers._compact import PRECISIONS

    parser = _Parser(prog="nbadam", description="The Adam family as fused Numba kernels.")
    parser.add_argument("--version", action="version", version=f"nbadam {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    mnist = commands.add_parser(
        "mnist", help="train an MLP on the bundled MNIST digits",
        description="Train a multilayer perceptron on MNIST (the copy bundled with nbadam) "
                    "and report its accuracy on the 10,000 test images after every epoch.")
    mnist.add_argument("--epochs", type=_positive_int, default=10, help="passes over the "
                       "training set (default: 10)")
    mnist.add_argument("--batch-size", type=_positive_int, default=128,
                       help="examples per step (default: 128)")
    mnist.add_argument("--lr", type=_positive_float, default=None,
                       help="learning rate, the peak of a cosine schedule (default: 3 times "
                            "the optimizer's default with --schedule cosine, 3e-3 for adam; "
                            "the optimizer's default with --schedule constant)")
    mnist.add_argument("--optimizer", choices=rules.names(), default="adam",
                       type=str.lower, help="update rule (default: adam)")
    mnist.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                       help="learning rate over the run: cosine decay from --lr to 0 over "
                            "all steps, or constant (default: cosine)")
    mnist.add_argument("--clip-grad-norm", type=_positive_float, default=None, metavar="MAX",
                       help="scale each gradient to an L2 norm of at most MAX (default: off)")
    mnist.add_argument("--ema", type=_fraction, default=None, metavar="DECAY",
                       help="keep an exponential moving average of the weights with this "
                            "decay, and report and save the averaged model (default: off)")
    mnist.add_argument("--state-precision", choices=PRECISIONS,
                       default="float32",
                       help="how the optimizer stores its moments: float32, bfloat16 (half "
                            "the memory) or 8bit (a quarter; both for float32 weights only) "
                            "(default: float32)")
    mnist.add_argument("--label-smoothing", type=_fraction, default=0.0, metavar="EPS",
                       help="train against (1 - EPS) * one-hot + EPS / 10 (default: 0)")
    mnist.add_argument("--validation-split", type=_fraction, default=None, metavar="F",
                       help="hold out the last F of the training images as validation data "
                            "(default: none, or 0.1 with --early-stopping); the test images "
                            "are reported after every epoch either way")
    mnist.add_argument("--early-stopping", type=_positive_int, default=None, metavar="N",
                       help="stop when --monitor has not improved for N epochs and keep the "
                            "best epoch's weights")
    mnist.add_argument("--monitor", choices=("val_loss", "val_accuracy", "loss", "accuracy"),
                       default="val_loss", help="what --early-stopping watches: the "
                       "validation split's or the training data's loss or accuracy "
                       "(default: val_loss)")
    mnist.add_argument("--min-delta", type=_nonnegative_float, default=0.0, metavar="D",
                       help="the smallest change of --monitor that counts as an improvement "
                            "(default: 0)")
    _add_model_arguments(mnist)
    mnist.add_argument("--subset", type=_positive_int, default=None, metavar="N",
                       help="train on the first N training images only (quick runs)")
    mnist.add_argument("--save", metavar="PATH", help="write the trained model (.npz)")
    mnist.add_argument("--plot", metavar="PATH", help="draw loss and accuracy curves "
                       "(.png, .pdf, .svg; needs matplotlib)")
    mnist.add_argument("--checkpoint", metavar="PATH",
                       help="write the training state after every epoch (.npz)")
    mnist.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint if it exists")
    mnist.add_argument("--overwrite", action="store_true",
                       help="with --checkpoint: start afresh even if the checkpoint file "
                            "exists, replacing it after the first epoch (without --resume or "
                            "--overwrite an existing checkpoint is refused)")
    mnist.add_argument("--no-progress", action="store_true",
                       help="no progress bar; print one line per epoch instead")
    mnist.add_argument("--distributed", action="store_true",
                       help="data-parallel over MPI: run as 'mpiexec -n N nbadam mnist "
                            "--distributed' (needs pip install 'nbadam[mpi]')")
    mnist.add_argument("--shard-optimizer", action="store_true",
                       help="with --distributed: split the optimizer state between the "
                            "ranks (ZeRO stage 1)")
    _add_lr_find(commands, rules.names())
    return parser


def _add_model_arguments(command: argparse.ArgumentParser) -> None:
    """The MLP's arguments, the same for ``nbadam mnist`` and ``nbadam lr-find``."""
    command.add_argument("--hidden", type=_widths, default=(256, 128), metavar="W1,W2,...",
                         help="hidden layer widths (default: 256,128)")
    command.add_argument("--activation", choices=("relu", "tanh", "sigmoid"), default="relu",
                         help="hidden activation (default: relu)")
    command.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                         help="parameter and arithmetic dtype (default: float32)")
    command.add_argument("--seed", type=_nonnegative_int, default=0,
                         help="seed of the initial weights and the data order (default: 0)")


def _add_lr_find(commands: Any, rule_names: Sequence[str]) -> None:
    """``nbadam lr-find``: the range test of :func:`nbadam.lr_find` on MNIST's MLP."""
    from .lr_finder import SUGGESTIONS

    find = commands.add_parser(
        "lr-find", help="suggest a learning rate for the MNIST MLP (range test)",
        description="Train the MNIST MLP (a copy) with a learning rate growing exponentially "
                    "from --start-lr to --end-lr, print the suggested rate and draw the loss "
                    "curve (fastai's lr_find).")
    find.add_argument("--optimizer", choices=rule_names, default="adam", type=str.lower,
                      help="update rule (default: adam)")
    find.add_argument("--batch-size", type=_positive_int, default=128,
                      help="examples per step (default: 128)")
    find.add_argument("--start-lr", type=_positive_float, default=1e-7,
                      help="the first learning rate (default: 1e-7)")
    find.add_argument("--end-lr", type=_positive_float, default=10.0,
                      help="the rate the range grows towards (default: 10)")
    find.add_argument("--num-it", type=_positive_int, default=100,
                      help="steps at most (>= 2; default: 100)")
    find.add_argument("--no-stop-div", action="store_true",
                      help="run all --num-it steps even when the loss diverges")
    find.add_argument("--suggest", choices=tuple(SUGGESTIONS), nargs="+", default=["valley"],
                      help="suggestion methods, the first one printed as the suggestion "
                           "(default: valley)")
    find.add_argument("--label-smoothing", type=_fraction, default=0.0, metavar="EPS",
                      help="train against (1 - EPS) * one-hot + EPS / 10 (default: 0)")
    _add_model_arguments(find)
    find.add_argument("--subset", type=_positive_int, default=None, metavar="N",
                      help="use the first N training images only")
    find.add_argument("--plot", metavar="PATH", help="draw the loss against the learning "
                      "rate (.png, .pdf, .svg; needs matplotlib)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nbadam`` command line; returns the exit status.

    Examples
    --------
    >>> from nbadam.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    nbadam 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command, e.g. nbadam mnist")
    run = _Run()
    try:
        with _abort_job_on_error(args):
            if args.command == "lr-find":
                return _lr_find(args)
            return _mnist(args, run)
    except KeyboardInterrupt:
        saved = ""
        if args.checkpoint and run.checkpoint_written:
            saved = (f"; the checkpoint {args.checkpoint} holds the last finished epoch "
                     "(continue with --resume)")
        elif args.checkpoint:
            saved = f"; no epoch finished, so the checkpoint {args.checkpoint} was not written"
        print(f"nbadam: interrupted{saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ImportError, OSError, ValueError, TypeError, NotImplementedError,
            MemoryError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, MemoryError) and not str(exc):
            message = "out of memory; try a smaller model (--hidden) or --batch-size"
        print(f"nbadam {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


class _Run:
    """What a run has done so far, for the message of an interrupted one."""

    def __init__(self) -> None:
        #: Whether the --checkpoint file holds an epoch of this run (or the one resumed).
        self.checkpoint_written = False


def _abort_job_on_error(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """With --distributed on several ranks, an error on any rank ends the whole MPI job."""
    if not getattr(args, "distributed", False):
        return contextlib.nullcontext()
    from . import distributed

    return distributed.abort_on_error(distributed.require_mpi().COMM_WORLD,
                                      f"nbadam {args.command}")


def _check_output(flag: str, path: str | None) -> None:
    """Fail before training, not after, when an output file cannot be written."""
    if path is None:
        return
    from .checkpoint import check_writable

    if not path.strip():
        raise ValueError(f"{flag} needs a file name, got {path!r}")
    check_writable(path, flag)
    if os.path.exists(path) and not os.access(path, os.W_OK) and flag == "--plot":
        # matplotlib writes the image in place (checkpoints and models replace theirs).
        raise PermissionError(f"{flag} {path}: the file exists and is not writable")


def _check_plot_format(path: str) -> None:
    """The image format named by ``path``'s suffix must be one matplotlib can write."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    known = ", ".join(f".{name}" for name in sorted(formats))
    if not suffix:
        raise ValueError(f"--plot {path}: add a suffix naming the image format ({known})")
    if suffix not in formats:
        raise ValueError(f"--plot {path}: matplotlib cannot write .{suffix} images; use one "
                         f"of {known}")


def _mnist(args: argparse.Namespace, run: _Run) -> int:
    from .datasets import load_mnist
    from .nn import MLP, plot_history
    from .nn.plotting import require_matplotlib

    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint PATH")
    if args.overwrite and args.checkpoint is None:
        raise ValueError("--overwrite applies to --checkpoint PATH")
    if args.overwrite and args.resume:
        raise ValueError("--resume continues the --checkpoint file, --overwrite replaces it; "
                         "pass one of them")
    if args.shard_optimizer and not args.distributed:
        raise ValueError("--shard-optimizer needs --distributed")
    comm, ranks = None, ""
    if args.distributed:
        from .distributed import require_mpi

        comm = require_mpi().COMM_WORLD
        ranks = f", {comm.Get_size()} MPI rank{'s' if comm.Get_size() > 1 else ''}"
        if args.shard_optimizer:
            ranks += ", sharded optimizer state"
    lead = comm is None or comm.Get_rank() == 0  # the only rank that prints and writes
    if args.plot is not None:
        require_matplotlib()
    for flag in ("save", "plot", "checkpoint"):
        _check_output(f"--{flag}", getattr(args, flag))
    if args.plot is not None:
        _check_plot_format(args.plot)
    if args.checkpoint is not None and os.path.exists(args.checkpoint):
        if not (args.resume or args.overwrite):
            raise FileExistsError(
                f"--checkpoint {args.checkpoint} already exists (a previous run's checkpoint?); "
                "pass --resume to continue that run, --overwrite to start afresh and replace "
                "it, or choose another file")
        run.checkpoint_written = args.resume

    model = MLP((784, *args.hidden, 10), activation=args.activation,
                dtype=np.dtype(args.dtype), seed=args.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if args.subset is not None:
        x_train, y_train = x_train[:args.subset], y_train[:args.subset]
    split = args.validation_split
    if split is None:
        split = 0.1 if args.early_stopping and args.monitor.startswith("val_") else 0.0
    # Without a split the test images are the validation data; with one they are
    # evaluated after each epoch but never seen by early stopping.
    validation = {"validation_split": split} if split else {
        "validation_data": (x_test, y_test)}
    show_bar = not args.no_progress and sys.stderr.isatty()
    if lead:
        held_out = f", {split:g} held out for validation" if split else ""
        stopping = (f", early stopping on {args.monitor} (patience {args.early_stopping})"
                    if args.early_stopping else "")
        print(f"training {model!r} on {len(x_train)} images{held_out}: {args.optimizer} "
              f"({args.schedule} lr), batch {args.batch_size}, {args.epochs} epochs{stopping}"
              f"{ranks}", flush=True)
    clock = {"start": time.perf_counter(), "epoch": time.perf_counter()}
    tests: dict[str, list[float]] = {"test_loss": [], "test_accuracy": []}

    def report(epoch: int, logs: dict[str, Any]) -> None:
        # fit writes the checkpoint (every epoch, the default) before calling back.
        run.checkpoint_written = args.checkpoint is not None
        if split:
            scores = (model.averaged() if averaging else model).evaluate(x_test, y_test)
            tests["test_loss"].append(scores["loss"])
            tests["test_accuracy"].append(scores["accuracy"])
            measured = (f", val loss {logs['val_loss']:.4f}, val accuracy "
                        f"{logs['val_accuracy']:.4f}, test accuracy {scores['accuracy']:.4f}")
        else:
            measured = (f", test loss {logs['val_loss']:.4f}, "
                        f"test accuracy {logs['val_accuracy']:.4f}")
        now = time.perf_counter()
        if not show_bar and lead:
            print(f"epoch {epoch}/{args.epochs}: loss {logs['loss']:.4f}, "
                  f"accuracy {logs['accuracy']:.4f}{measured} ({now - clock['epoch']:.1f} s)",
                  flush=True)
        clock["epoch"] = now

    # ema, or a schedule-free rule's average: the weights reported and saved.
    from . import rules
    averaging = (args.ema is not None
                 or rules.get(args.optimizer).update({}).evaluation is not None)
    extras = {key: value for key, value in (("clip_grad_norm", args.clip_grad_norm),
                                            ("ema", args.ema)) if value is not None}
    if args.state_precision != "float32":
        extras["state_precision"] = args.state_precision
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
                        optimizer_options=extras or None,
                        label_smoothing=args.label_smoothing, early_stopping=args.early_stopping,
                        monitor=args.monitor, min_delta=args.min_delta, seed=args.seed,
                        progress=not args.no_progress, callback=report,
                        checkpoint=args.checkpoint, resume=args.resume, comm=comm,
                        shard_optimizer=args.shard_optimizer, **validation)
    elapsed = time.perf_counter() - clock["start"]
    if not lead:
        return 0
    if averaging:
        model = model.averaged()          # reported and saved: the averaged weights
    final = model.evaluate(x_test, y_test)
    kept = ""
    if history.best_epoch is not None:
        how = "stopped early" if history.stopped_early else "all epochs run"
        kept = f" (kept epoch {history.best_epoch}, best {args.monitor}; {how})"
    averaged = " with the averaged weights" if averaging else ""
    print(f"test accuracy{averaged}: {final['accuracy']:.4f} (test loss {final['loss']:.4f}) after "
          f"{history.epoch[-1] if history.epoch else 0} epochs{kept} in {elapsed:.1f} s")
    if args.save is not None:
        model.save(args.save)
        print(f"model saved to {args.save}")
    if args.plot is not None:
        if split and len(tests["test_loss"]) == len(history["loss"]):
            history.update(tests)
        plot_history(history, args.plot)
        print(f"curves saved to {args.plot}")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    """Run the range test on the MNIST MLP and print its suggestions."""
    from .datasets import load_mnist
    from .lr_finder import lr_find
    from .nn import MLP
    from .nn.plotting import require_matplotlib

    if args.plot is not None:
        require_matplotlib()
        _check_output("--plot", args.plot)
        _check_plot_format(args.plot)
    model = MLP((784, *args.hidden, 10), activation=args.activation,
                dtype=np.dtype(args.dtype), seed=args.seed)
    (x_train, y_train), _ = load_mnist()
    if args.subset is not None:
        x_train, y_train = x_train[:args.subset], y_train[:args.subset]
    print(f"range test of {model!r} on {len(x_train)} images: {args.optimizer}, batch "
          f"{args.batch_size}, lr {args.start_lr:g} to {args.end_lr:g} over at most "
          f"{args.num_it} steps", flush=True)
    result = lr_find(model, x_train, y_train, optimizer=args.optimizer,
                     start_lr=args.start_lr, end_lr=args.end_lr, num_it=args.num_it,
                     stop_div=not args.no_stop_div, suggest=args.suggest,
                     batch_size=args.batch_size, seed=args.seed,
                     label_smoothing=args.label_smoothing)
    ended = "diverged and stopped" if result.diverged else "ran"
    print(f"{ended} after {len(result.lrs)} steps (lr {result.lrs[-1]:.3g})")
    for name, lr in result.suggestions.items():
        print(f"{name}: {lr:.3g}")
    print(f"suggested learning rate: {result.suggestion:.3g} ({next(iter(result.suggestions))})")
    if args.plot is not None:
        result.save_plot(args.plot)
        print(f"curve saved to {args.plot}")
    return 0
