"""Loss and accuracy curves of a training history, drawn with matplotlib.

matplotlib is an optional dependency (``pip install "nbadam[plot]"``); it is
imported only when a plot is drawn, and :func:`require_matplotlib` lets a
caller check for it before a long training run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = ["plot_history", "require_matplotlib"]

INSTALL_HINT = 'plotting needs matplotlib; install it with: pip install "nbadam[plot]"'


def require_matplotlib() -> None:
    """Raise ``ImportError`` with an install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike) -> None:
    """Save loss and accuracy per epoch, training, validation and test, as an image.

    Parameters
    ----------
    history : mapping
        What :meth:`nbadam.MLP.fit` returns: ``"loss"`` and ``"accuracy"``
        lists, and optionally ``"val_loss"``, ``"val_accuracy"``,
        ``"test_loss"`` and ``"test_accuracy"``.  The epochs are numbered by
        its ``epoch`` attribute when it has one, and its ``best_epoch`` (the
        epoch early stopping kept) is marked.
    path : str or os.PathLike
        Image file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).

    Raises
    ------
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import os, tempfile
    >>> from nbadam.nn import plot_history
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> plot_history({"loss": [0.5, 0.2], "accuracy": [0.9, 0.95]}, path)
    >>> os.path.getsize(path) > 0
    True
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = list(getattr(history, "epoch", None) or range(1, len(history["loss"]) + 1))
    best = getattr(history, "best_epoch", None)
    # A bare Figure draws with the Agg canvas: no pyplot state, no GUI backend.
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric, label in zip(figure.subplots(1, 2), ("loss", "accuracy"),
                                   ("cross-entropy loss", "accuracy"), strict=True):
        for key, name in ((metric, "training"), (f"val_{metric}", "validation"),
                          (f"test_{metric}", "test")):
            values = list(history.get(key, []))
            if values:
                axes.plot(epochs[:len(values)], values, marker="o", label=name)
        if best is not None:
            axes.axvline(best, color="grey", linestyle="--", linewidth=1,
                         label=f"kept (epoch {best})")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(os.fspath(path), dpi=100)
