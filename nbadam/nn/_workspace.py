"""Per-batch buffers of the MLP, shared by the model and its training loop."""

from __future__ import annotations

import numpy as np

from . import _fused


class _Workspace:
    """Per-batch buffers for ``rows`` examples, allocated once and reused.

    ``inputs`` holds the batch converted to the model's dtype, ``hidden[l]``
    the output of hidden layer ``l`` (after its activation), ``logits`` the
    output layer, ``deltas[l]`` the gradient of the loss with respect to the
    pre-activation of layer ``l`` and ``labels`` the batch's labels.  A batch
    of ``b <= rows`` examples uses the first ``b`` rows of each (C-contiguous
    views, so BLAS writes into them directly).
    """

    def __init__(self, sizes: tuple[int, ...], dtype: np.dtype, rows: int):
        self.rows = rows
        self.inputs = np.empty((rows, sizes[0]), dtype)
        self.hidden = [np.empty((rows, width), dtype) for width in sizes[1:-1]]
        self.logits = np.empty((rows, sizes[-1]), dtype)
        self.deltas = [np.empty((rows, width), dtype) for width in sizes[1:]]
        self.labels = np.empty(rows, np.intp)

    def load(self, x: np.ndarray, divisor: np.generic, rows: np.ndarray,
             y: np.ndarray | None = None) -> int:
        """Copy examples ``rows`` of ``x`` (and ``y``) into the buffers; return their count."""
        count = rows.size
        _fused.gather_rows(x, rows, divisor, self.inputs[:count])
        if y is not None:
            # mode="clip" writes straight into ``out``; "raise" would buffer a copy.
            np.take(y, rows, out=self.labels[:count], mode="clip")
        return count
