"""Tests for nbadam.datasets: the bundled MNIST and the IDX reader."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from nbadam.datasets import _load_npz, load_mnist, read_idx

# Published facts about the canonical MNIST split.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_FIRST_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
# MD5 of the uncompressed canonical IDX files, as published with them.
CANONICAL_IDX_MD5 = {
    "x_train": "6bbc9ace898e44ae57da46a324031adb",
    "y_train": "a25bea736e30d166cdddb491f175f624",
    "x_test": "2646ac647ad5339dbf082846283269ea",
    "y_test": "27ae3e4e09519cfbb04c329615203637",
}

IDX_TYPE_CODES = {
    "u1": 0x08,
    "i1": 0x09,
    "i2": 0x0B,
    "i4": 0x0C,
    "f4": 0x0D,
    "f8": 0x0E,
}
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(scope="module")
def mnist() -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = load_mnist()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def bundled_file() -> Path:
    return Path(str(resources.files("nbadam") / "data" / "mnist.npz"))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX: magic, big-endian sizes, big-endian values."""
    code = IDX_TYPE_CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    # np.asarray: a 0-d result can be a NumPy scalar, which ignores byte order.
    big_endian = np.asarray(array, dtype=array.dtype.newbyteorder(">"))
    return header + big_endian.tobytes()


def write_mnist_idx(
    folder: Path,
    arrays: dict[str, np.ndarray],
    *,
    compress: bool = False,
    dotted: bool = False,
) -> dict[str, Path]:
    """Write the four MNIST IDX files into ``folder``; return their paths."""
    paths = {}
    for key, name in IDX_NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        data = idx_bytes(arrays[key])
        if compress:
            name, data = f"{name}.gz", gzip.compress(data)
        paths[key] = folder / name
        paths[key].write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def small(mnist: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A slice of MNIST, small enough to write as IDX files in every test."""
    return {
        "x_train": mnist["x_train"][:100],
        "y_train": mnist["y_train"][:100],
        "x_test": mnist["x_test"][:50],
        "y_test": mnist["y_test"][:50],
    }


def names(path: Path) -> str:
    """A regex that matches ``path`` literally in an error message."""
    return re.escape(str(path))


# The bundled copy.


def test_bundled_shapes_and_dtypes(mnist: dict[str, np.ndarray]) -> None:
    assert mnist["x_train"].shape == (60000, 28, 28)
    assert mnist["y_train"].shape == (60000,)
    assert mnist["x_test"].shape == (10000, 28, 28)
    assert mnist["y_test"].shape == (10000,)
    for array in mnist.values():
        assert array.dtype == np.uint8


def test_bundled_class_counts(mnist: dict[str, np.ndarray]) -> None:
    assert np.bincount(mnist["y_train"], minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist["y_test"], minlength=10).tolist() == TEST_COUNTS


def test_bundled_order_is_canonical(mnist: dict[str, np.ndarray]) -> None:
    assert mnist["y_train"][:10].tolist() == TRAIN_FIRST_LABELS
    assert mnist["y_test"][:10].tolist() == TEST_FIRST_LABELS


def test_bundled_pixel_statistics(mnist: dict[str, np.ndarray]) -> None:
    scaled = mnist["x_train"].astype(np.float64) / 255
    assert round(scaled.mean(), 4) == 0.1307
    assert round(scaled.std(), 4) == 0.3081
    assert mnist["x_train"].min() == 0
    assert mnist["x_train"].max() == 255


def test_bundled_copy_rebuilds_the_canonical_idx_files(
    mnist: dict[str, np.ndarray],
) -> None:
    # Byte-exact, so pixel order and orientation are right too.
    for key, expected in CANONICAL_IDX_MD5.items():
        assert hashlib.md5(idx_bytes(mnist[key])).hexdigest() == expected, key


def test_each_call_returns_new_writable_arrays() -> None:
    (x_first, _), _ = load_mnist()
    x_first[0] = 255
    (x_second, _), _ = load_mnist()
    assert x_second.flags.writeable
    assert not np.shares_memory(x_first, x_second)
    assert x_second[0, 0, 0] == 0


def test_scaling_to_float32(mnist: dict[str, np.ndarray]) -> None:
    x = mnist["x_train"][:10].astype(np.float32) / 255
    assert x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_checksum_detects_a_changed_pixel(
    mnist: dict[str, np.ndarray], tmp_path: Path
) -> None:
    arrays = {key: array.copy() for key, array in mnist.items()}
    arrays["x_test"][123, 14, 14] ^= 1
    file = tmp_path / "mnist.npz"
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match=r"corrupted \(x_test fails its SHA-256"):
        _load_npz(file)


def test_missing_array_is_reported(
    mnist: dict[str, np.ndarray], tmp_path: Path
) -> None:
    file = tmp_path / "mnist.npz"
    np.savez(file, **{k: v for k, v in mnist.items() if k != "y_test"})
    with pytest.raises(ValueError, match="'y_test' is missing.*reinstall nbadam"):
        _load_npz(file)


def test_wrong_shape_is_reported(mnist: dict[str, np.ndarray], tmp_path: Path) -> None:
    arrays = dict(mnist, y_train=mnist["y_train"][:-1])
    file = tmp_path / "mnist.npz"
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match=r"y_train is uint8 \(59999,\)"):
        _load_npz(file)


def test_truncated_file_is_reported(bundled_file: Path, tmp_path: Path) -> None:
    data = bundled_file.read_bytes()
    file = tmp_path / "mnist.npz"
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{names(file)} is corrupted.*reinstall"):
        _load_npz(file)


@pytest.mark.parametrize("content", [b"", b"not a zip archive", b"\x93NUMPY"])
def test_unreadable_file_is_reported(tmp_path: Path, content: bytes) -> None:
    file = tmp_path / "mnist.npz"
    file.write_bytes(content)
    with pytest.raises(ValueError, match="corrupted"):
        _load_npz(file)


def test_single_array_in_place_of_archive_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    with file.open("wb") as stream:
        np.save(stream, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="not an .npz archive"):
        _load_npz(file)


def test_missing_bundled_file_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    with pytest.raises(FileNotFoundError, match=f"{names(file)}.*reinstall"):
        _load_npz(file)


def test_bundled_file_passes_the_internal_loader(bundled_file: Path) -> None:
    assert sorted(_load_npz(bundled_file)) == sorted(IDX_NAMES)


# IDX files.


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
def test_idx_round_trip(
    small: dict[str, np.ndarray], tmp_path: Path, compress: bool, dotted: bool
) -> None:
    write_mnist_idx(tmp_path, small, compress=compress, dotted=dotted)
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path)
    loaded = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
    }
    for key, array in small.items():
        assert loaded[key].dtype == np.uint8
        np.testing.assert_array_equal(loaded[key], array)


def test_load_mnist_accepts_a_string_path(
    small: dict[str, np.ndarray], tmp_path: Path
) -> None:
    write_mnist_idx(tmp_path, small)
    (_, y_train), _ = load_mnist(str(tmp_path))
    np.testing.assert_array_equal(y_train, small["y_train"])


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("shape", [(0,), (5,), (2, 3, 4), ()])
def test_read_idx_round_trip(
    tmp_path: Path, dtype: str, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(0)
    array = np.asarray(rng.standard_normal(shape) * 100).astype(dtype)
    file = tmp_path / "values.idx"
    file.write_bytes(idx_bytes(array))
    result = read_idx(file)
    assert result.shape == shape
    assert result.dtype == np.dtype(dtype).newbyteorder("=")
    assert result.flags.writeable
    np.testing.assert_array_equal(result, array)


def test_read_idx_gzip_is_detected_by_content(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    file = tmp_path / "no-suffix"
    file.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(file), array)


@pytest.mark.parametrize(
    "header", [b"\x12\x34\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00"]
)
def test_bad_magic_names_the_file(tmp_path: Path, header: bytes) -> None:
    file = tmp_path / "bad-idx1-ubyte"
    file.write_bytes(header + b"\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match=f"{names(file)}: bad magic"):
        read_idx(file)


def test_short_file_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "short-idx1-ubyte"
    file.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match=f"{names(file)}: 2 bytes, too short"):
        read_idx(file)


def test_truncated_header_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "header-idx3-ubyte"
    file.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(ValueError, match=f"{names(file)}: truncated header"):
        read_idx(file)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_truncated_data_names_the_file(
    small: dict[str, np.ndarray], tmp_path: Path, compress: bool
) -> None:
    paths = write_mnist_idx(tmp_path, small)
    file = paths["x_train"]
    data = file.read_bytes()[:-10]
    if compress:
        file.unlink()
        file = file.with_name(file.name + ".gz")
        data = gzip.compress(data)
    file.write_bytes(data)
    with pytest.raises(ValueError, match=f"{names(file)}: truncated"):
        load_mnist(tmp_path)


def test_trailing_bytes_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "labels-idx1-ubyte"
    file.write_bytes(idx_bytes(np.arange(3, dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match=f"{names(file)}: trailing bytes"):
        read_idx(file)


def test_damaged_gzip_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "labels-idx1-ubyte.gz"
    data = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{names(file)}: damaged gzip"):
        read_idx(file)


def test_missing_idx_file_names_the_file(
    small: dict[str, np.ndarray], tmp_path: Path
) -> None:
    paths = write_mnist_idx(tmp_path, small)
    paths["y_test"].unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte not found"):
        load_mnist(tmp_path)


def test_read_idx_missing_file_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "absent-idx1-ubyte"
    with pytest.raises(FileNotFoundError, match=names(file)):
        read_idx(file)


def test_labels_in_place_of_images_name_the_file(
    small: dict[str, np.ndarray], tmp_path: Path
) -> None:
    paths = write_mnist_idx(tmp_path, small)
    paths["x_test"].write_bytes(idx_bytes(small["y_test"]))
    with pytest.raises(
        ValueError, match=f"{names(paths['x_test'])}: magic number 2049.*expected 2051"
    ):
        load_mnist(tmp_path)


def test_wrong_image_size_names_the_file(
    small: dict[str, np.ndarray], tmp_path: Path
) -> None:
    arrays = dict(small, x_train=small["x_train"][:, :20, :20])
    paths = write_mnist_idx(tmp_path, arrays)
    with pytest.raises(
        ValueError, match=f"{names(paths['x_train'])}: images are 20x20"
    ):
        load_mnist(tmp_path)


def test_label_out_of_range_names_the_file(
    small: dict[str, np.ndarray], tmp_path: Path
) -> None:
    labels = small["y_train"].copy()
    labels[7] = 10
    paths = write_mnist_idx(tmp_path, dict(small, y_train=labels))
    with pytest.raises(ValueError, match=f"{names(paths['y_train'])}: label 10"):
        load_mnist(tmp_path)


def test_image_and_label_counts_must_match(
    small: dict[str, np.ndarray], tmp_path: Path
) -> None:
    write_mnist_idx(tmp_path, dict(small, y_test=small["y_test"][:-1]))
    with pytest.raises(ValueError, match="50 test images but 49 test labels"):
        load_mnist(tmp_path)


def test_folder_must_exist(tmp_path: Path) -> None:
    folder = tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match=names(folder)):
        load_mnist(folder)


def test_path_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    file.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=f"{names(file)} is not a folder"):
        load_mnist(file)
