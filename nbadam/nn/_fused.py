"""Numba-fused elementwise parts of the MLP's forward and backward passes.

The matrix products stay in NumPy (BLAS); these kernels do the elementwise
work around them in one pass over a ``(batch, width)`` block each, where NumPy
would need two or three passes and a temporary (``benchmarks/scripts/mlp_vs_torch.py
--ops`` measures both):

* ``gather_rows``: pick a batch of rows by index and convert them to the
  model's dtype (uint8 pixels divided by 255) -- NumPy: ``take`` then ``divide``;
* ``bias_<activation>(z, bias, one)``: add the bias and apply the activation
  in place;
* ``<activation>_backward(delta, activation, bias_grad, one)``: multiply the
  incoming delta by the activation's derivative and sum the result over the
  batch into the bias gradient (the activations share one signature, so
  ``one``, the constant 1 in the arrays' dtype, is passed to those that do
  not need it too);
* ``softmax_cross_entropy``: add the output bias, then softmax, cross-entropy
  loss (optionally against smoothed labels), its gradient, the output bias
  gradient and the count of correct predictions, row by row;
* ``add_l2``: add the gradient of an L2 penalty to a weight gradient and
  return the weights' squared sum, in one pass.

They are serial ``njit`` functions that release the GIL: the blocks are small
(a few hundred kilobytes), so a parallel launch would cost more than it saves,
and BLAS already owns the cores around them.  Like the optimizer kernels they
take arrays and scalars only, write in place, and do their elementwise
arithmetic in the arrays' dtype (constants such as ``one`` are passed in that
dtype).  The softmax row sums and the loss are accumulated in float64, a
handful of values per row, for accuracy.
"""

from __future__ import annotations

import math

import numba

_OPTIONS = {"fastmath": False, "nogil": True, "cache": True, "boundscheck": False}
_jit = numba.njit(**_OPTIONS)


@_jit
def gather_rows(x, rows, divisor, out):
    """``out[i] = x[rows[i]] / divisor`` in ``out``'s dtype, for ``i < rows.size``."""
    width = x.shape[1]
    for i in range(rows.size):
        r = rows[i]
        for j in range(width):
            out[i, j] = out.dtype.type(x[r, j]) / divisor


@_jit
def bias_relu(z, bias, one):
    """``z = max(z + bias, 0)`` in place (NaN propagates, as ``np.maximum``)."""
    rows, width = z.shape
    for i in range(rows):
        for j in range(width):
            v = z[i, j] + bias[j]
            z[i, j] = 0 if v < 0 else v


@_jit
def relu_backward(delta, activation, bias_grad, one):
    """``delta *= (activation > 0)``; ``bias_grad = delta.sum(axis=0)``."""
    rows, width = delta.shape
    bias_grad[:] = 0
    for i in range(rows):
        for j in range(width):
            d = delta[i, j] if activation[i, j] > 0 else 0
            delta[i, j] = d
            bias_grad[j] += delta[i, j]


@_jit
def bias_tanh(z, bias, one):
    """``z = tanh(z + bias)`` in place."""
    rows, width = z.shape
    for i in range(rows):
        for j in range(width):
            z[i, j] = math.tanh(z[i, j] + bias[j])


@_jit
def tanh_backward(delta, activation, bias_grad, one):
    """``delta *= 1 - activation**2``; ``bias_grad = delta.sum(axis=0)``."""
    rows, width = delta.shape
    bias_grad[:] = 0
    for i in range(rows):
        for j in range(width):
            a = activation[i, j]
            d = delta[i, j] * (one - a * a)
            delta[i, j] = d
            bias_grad[j] += d


@_jit
def bias_sigmoid(z, bias, one):
    """``z = 1 / (1 + exp(-(z + bias)))`` in place."""
    rows, width = z.shape
    for i in range(rows):
        for j in range(width):
            z[i, j] = one / (one + math.exp(-(z[i, j] + bias[j])))


@_jit
def sigmoid_backward(delta, activation, bias_grad, one):
    """``delta *= activation * (1 - activation)``; ``bias_grad = delta.sum(axis=0)``."""
    rows, width = delta.shape
    bias_grad[:] = 0
    for i in range(rows):
        for j in range(width):
            a = activation[i, j]
            d = delta[i, j] * (a * (one - a))
            delta[i, j] = d
            bias_grad[j] += d


@_jit
def softmax_cross_entropy(logits, bias, labels, delta, bias_grad, scale, on, off, smoothing):
    """Softmax cross-entropy of a batch and its gradient, in one pass.

    ``logits`` (before the bias) becomes ``logits + bias``; ``delta`` receives
    ``scale * softmax(logits) - on * onehot(labels) - off``, the gradient of
    ``scale * sum(losses)`` against the targets
    ``(1 - smoothing) * onehot + smoothing / classes`` when ``on = scale * (1 -
    smoothing)`` and ``off = scale * smoothing / classes`` (in the arrays'
    dtype; ``on = scale, off = 0`` for plain labels, which leaves the
    arithmetic that of plain labels bit for bit), and ``bias_grad`` its column
    sums.  The softmax subtracts each row's maximum first, so no ``exp``
    overflows.

    Returns
    -------
    (float, int)
        The sum of the per-example losses ``logsumexp(row) - row[label]``
        (plus ``smoothing * (row[label] - mean(row))``, the smoothed part)
        and the number of rows whose first maximum is at the label.
    """
    rows, classes = logits.shape
    bias_grad[:] = 0
    loss = 0.0
    correct = 0
    for i in range(rows):
        best = 0
        top = logits[i, 0] + bias[0]
        for j in range(classes):
            v = logits[i, j] + bias[j]
            logits[i, j] = v
            if v > top:
                top = v
                best = j
        total = 0.0
        for j in range(classes):
            e = math.exp(logits[i, j] - top)
            delta[i, j] = e
            total += e
        label = labels[i]
        loss += math.log(total) + (top - logits[i, label])
        if smoothing != 0.0:
            row_sum = 0.0
            for j in range(classes):
                row_sum += logits[i, j]
            loss += smoothing * (logits[i, label] - row_sum / classes)
        weight = scale / total
        for j in range(classes):
            delta[i, j] = delta[i, j] * weight - off
        delta[i, label] -= on
        for j in range(classes):
            bias_grad[j] += delta[i, j]
        if best == label:
            correct += 1
    return loss, correct


@_jit
def add_l2(grad, weight, l2):
    """``grad += l2 * weight`` in place; returns ``sum(weight**2)`` (accumulated in float64).

    The gradient and the value of the penalty ``l2 / 2 * sum(weight**2)``.
    """
    rows, width = grad.shape
    total = 0.0
    for i in range(rows):
        for j in range(width):
            w = weight[i, j]
            grad[i, j] += l2 * w
            total += w * w
    return total


@_jit
def softmax_cross_entropy_loss(logits, labels):
    """Loss sum and correct count of ``logits`` (bias included), no gradient."""
    rows, classes = logits.shape
    loss = 0.0
    correct = 0
    for i in range(rows):
        best = 0
        top = logits[i, 0]
        for j in range(classes):
            if logits[i, j] > top:
                top = logits[i, j]
                best = j
        total = 0.0
        for j in range(classes):
            total += math.exp(logits[i, j] - top)
        label = labels[i]
        loss += math.log(total) + (top - logits[i, label])
        if best == label:
            correct += 1
    return loss, correct


@_jit
def add_bias(z, bias):
    """``z += bias`` (broadcast over rows), in place."""
    rows, width = z.shape
    for i in range(rows):
        for j in range(width):
            z[i, j] += bias[j]
