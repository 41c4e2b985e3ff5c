"""Load the MNIST handwritten digits.

nbadam ships the full MNIST database (60,000 training and 10,000 test
images of 28x28 grey-scale digits) as ``nbadam/data/mnist.npz``, so examples,
tests and benchmarks run without a network. :func:`load_mnist` can also read
the four canonical IDX files from a folder, and :func:`read_idx` parses one
IDX file.

Loading only loads: the arrays come back as stored (``uint8`` pixels in
0..255, ``uint8`` labels in 0..9). Flattening, scaling and one-hot encoding
are left to the caller.

MNIST is the work of Yann LeCun, Corinna Cortes and Christopher J. C. Burges,
and is distributed under the Creative Commons Attribution-Share Alike 3.0
licence (CC BY-SA 3.0). The bundled copy holds the canonical split and order:
written back as IDX files, it reproduces the original files byte for byte
(their published MD5 checksums match).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "read_idx"]

_SIDE = 28

# SHA-256 of each bundled array's raw C-order bytes. The arrays are hashed
# rather than the .npz file, whose bytes depend on the zlib that compressed it.
_BUNDLED_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# The hash does not see the shape, so it is checked separately.
_BUNDLED_SHAPES = {
    "x_train": (60000, _SIDE, _SIDE),
    "y_train": (60000,),
    "x_test": (10000, _SIDE, _SIDE),
    "y_test": (10000,),
}
# What a damaged .npz raises, depending on where the damage is: the zip
# directory, a member's compressed stream, the .npy header inside it, or a
# lone .npy in place of the archive (the TypeError from _read_npz).
_NPZ_READ_ERRORS = (
    OSError,
    EOFError,
    TypeError,
    ValueError,
    zipfile.BadZipFile,
    zlib.error,
)

# IDX type codes (third byte of the magic number); multi-byte values are
# big-endian.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_mnist(
    path: str | os.PathLike[str] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding the four canonical IDX files
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``. Each may
        be gzipped (``.gz`` suffix) and may use the dotted spelling
        ``train-images.idx3-ubyte``. By default the copy bundled with nbadam
        is loaded and checked against its stored SHA-256 checksums.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images of shape ``(n, 28, 28)`` and labels of shape ``(n,)``, both
        ``uint8``; ``n`` is 60,000 and 10,000 for the bundled copy. Every
        call reads the data afresh and returns new, writable arrays owned by
        the caller, so keep the result rather than calling again.

    Raises
    ------
    FileNotFoundError
        If ``path`` or one of the IDX files in it does not exist, or the
        bundled file is missing from the installation.
    ValueError
        If a file is damaged: the bundled copy fails its checksum or cannot
        be read, or an IDX file has a wrong magic number, wrong dimensions or
        a length that does not match its header.

    Notes
    -----
    MNIST was created by Yann LeCun, Corinna Cortes and Christopher J. C.
    Burges and is licensed under CC BY-SA 3.0.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_train.dtype
    ((60000, 28, 28), dtype('uint8'))
    >>> y_train[:10]
    array([5, 0, 4, 1, 9, 2, 1, 3, 1, 4], dtype=uint8)
    >>> x = x_train.reshape(len(x_train), -1).astype(np.float32) / 255
    >>> x.shape, x.dtype
    ((60000, 784), dtype('float32'))
    """
    if path is None:
        ref = resources.files("nbadam") / "data" / "mnist.npz"
        # as_file gives a real path even when the package is imported from
        # a zip archive.
        with resources.as_file(ref) as file:
            arrays = _load_npz(file)
    else:
        arrays = _load_idx_folder(Path(path))
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, plain or gzipped, into an array.

    IDX is the format of the original MNIST files: a 4-byte magic number
    (two zero bytes, a type code and the number of dimensions), one
    big-endian 32-bit size per dimension, then the values in C order.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is recognised from the content, not the
        name.

    Returns
    -------
    numpy.ndarray
        A new array with the file's shape, in native byte order: ``uint8``,
        ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the magic number is invalid, the gzip data is damaged, or the file
        length does not match the shape in its header. The message names the
        file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> _ = file.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(file)
    array([7, 2, 1], dtype=uint8)
    """
    return _read_idx(Path(path))[1]


def _load_npz(file: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load the bundled ``.npz`` and check every array against its checksum."""

    def corrupted(problem: str) -> ValueError:
        return ValueError(
            f"the bundled MNIST data at {file} is corrupted ({problem}); "
            "reinstall nbadam to restore it, e.g. "
            "`pip install --force-reinstall --no-deps nbadam`"
        )

    if not Path(file).is_file():
        raise FileNotFoundError(
            f"the bundled MNIST data is missing: {file} does not exist; "
            "reinstall nbadam to restore it"
        )
    try:
        arrays = _read_npz(file)
    except _NPZ_READ_ERRORS as exc:
        raise corrupted(f"cannot read it: {exc}") from exc

    for key, shape in _BUNDLED_SHAPES.items():
        if key not in arrays:
            raise corrupted(f"array {key!r} is missing")
        array = arrays[key]
        if array.dtype != np.uint8 or array.shape != shape:
            raise corrupted(
                f"{key} is {array.dtype} {array.shape}, expected uint8 {shape}"
            )
        digest = hashlib.sha256(np.ascontiguousarray(array)).hexdigest()
        if digest != _BUNDLED_SHA256[key]:
            raise corrupted(f"{key} fails its SHA-256 check")
    return arrays


def _read_npz(file: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` archive, refusing pickled objects."""
    loaded = np.load(file, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise TypeError("it holds a single array, not an .npz archive")
    with loaded as npz:
        return {key: npz[key] for key in npz.files}


def _load_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """Read and cross-check the four canonical MNIST IDX files in ``folder``."""
    if not folder.exists():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is not a folder; pass the folder that holds the MNIST IDX files"
        )
    arrays = {}
    for key, stem in _IDX_STEMS.items():
        file = _find_idx_file(folder, stem)
        magic, array = _read_idx(file)
        is_images = key.startswith("x")
        expected_magic = _IMAGES_MAGIC if is_images else _LABELS_MAGIC
        if magic != expected_magic:
            kind = "images" if is_images else "labels"
            raise ValueError(
                f"{file}: magic number {magic} (0x{magic:08x}), expected "
                f"{expected_magic} (0x{expected_magic:08x}) for MNIST {kind}"
            )
        if is_images and array.shape[1:] != (_SIDE, _SIDE):
            raise ValueError(
                f"{file}: images are {array.shape[1]}x{array.shape[2]}, "
                f"expected {_SIDE}x{_SIDE}"
            )
        if not is_images and array.size and array.max() > 9:
            raise ValueError(f"{file}: label {array.max()} is outside 0..9")
        arrays[key] = array
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_images != n_labels:
            raise ValueError(
                f"{folder}: {n_images} {split} images but {n_labels} {split} labels"
            )
    return arrays


def _find_idx_file(folder: Path, stem: str) -> Path:
    """Return the first existing spelling of ``stem`` in ``folder``."""
    dotted = stem.replace("-idx", ".idx")
    names = [stem, f"{stem}.gz", dotted, f"{dotted}.gz"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"MNIST file {stem} not found in {folder} (looked for {', '.join(names)})"
    )


def _read_idx(file: Path) -> tuple[int, np.ndarray]:
    """Parse an IDX file; return its magic number and a native-order array."""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file not found: {file}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic; IDX files start with zero bytes
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{file}: damaged gzip data ({exc})") from exc

    if len(raw) < 4:
        raise ValueError(f"{file}: {len(raw)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", raw[:4])
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\0\0" or type_code not in _IDX_DTYPES:
        raise ValueError(
            f"{file}: bad magic number {magic} (0x{magic:08x}); an IDX file "
            "starts with two zero bytes, a type code (0x08 for unsigned bytes) "
            "and the number of dimensions, e.g. 2051 for MNIST images and "
            "2049 for labels"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{file}: truncated header: {ndim} dimensions need {header_size} "
            f"bytes, the file has {len(raw)}"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = _IDX_DTYPES[type_code]
    expected_size = header_size + math.prod(shape) * dtype.itemsize
    if len(raw) != expected_size:
        problem = "truncated" if len(raw) < expected_size else "trailing bytes"
        raise ValueError(
            f"{file}: {problem}: the header gives shape {shape} of {dtype.name}, "
            f"{expected_size} bytes in all, but the file has {len(raw)} bytes"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    # astype copies, so the result is writable and in native byte order.
    return magic, values.astype(dtype.newbyteorder("="))
