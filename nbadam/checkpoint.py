"""Checkpoint files: ``.npz`` archives written atomically, read without pickle.

A checkpoint holds named NumPy arrays plus one JSON document of metadata (the
``__meta__`` entry, a 0-d unicode array).  Writing goes to a temporary file in
the destination folder, which is flushed and ``fsync``-ed and then renamed over
the destination, so a crash at any moment leaves either the previous complete
file or the new complete file, never a torn one.  Reading uses
``np.load(allow_pickle=False)``: an archive holding object arrays is refused,
so loading a file never runs code.

Examples
--------
>>> import tempfile, os
>>> import numpy as np
>>> from nbadam.checkpoint import save_npz, load_npz
>>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
>>> save_npz(path, {"w": np.arange(3.0)}, {"format": "example", "step": 7})
>>> meta, arrays = load_npz(path, kind="example", keys={"w"})
>>> meta["step"], arrays["w"]
(7, array([0., 1., 2.]))
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

_META = "__meta__"
FORMAT_VERSION = 1
# mkstemp creates files readable by the owner only; a checkpoint should get the
# permissions of any file the user creates.  Read once: os.umask can only be
# read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
             meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` and JSON ``meta`` to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; written exactly as named (no suffix is added).
    arrays : mapping of str to numpy.ndarray
        The arrays to store.  Object arrays are refused.
    meta : mapping
        JSON-serialisable metadata; must contain ``"format"``, the kind of
        checkpoint, which :func:`load_npz` checks.

    Raises
    ------
    TypeError
        If an array has dtype object or ``meta`` is not JSON-serialisable.
    ValueError
        If ``arrays`` uses the reserved name ``"__meta__"``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from nbadam.checkpoint import save_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.npz")
    >>> save_npz(path, {"w": np.ones(3)}, {"format": "example", "epoch": 2})
    >>> sorted(np.load(path, allow_pickle=False).files)
    ['__meta__', 'w']
    """
    path = os.fspath(path)
    if _META in arrays:
        raise ValueError(f"arrays must not contain the reserved key {_META!r}")
    for key, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise TypeError(f"checkpoint array {key!r} has dtype object, which would need pickle")
    text = json.dumps({"version": FORMAT_VERSION, **meta}, allow_nan=True)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{_META: np.array(text)}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_npz(path: str | os.PathLike, *, kind: str,
             keys: Iterable[str] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint written by :func:`save_npz`, refusing anything unexpected.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    kind : str
        The ``"format"`` the metadata must declare.
    keys : iterable of str, optional
        The exact set of array names expected; missing or extra names are refused.

    Returns
    -------
    meta : dict
        The JSON metadata.
    arrays : dict of str to numpy.ndarray
        The arrays, fully read into memory.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a complete, pickle-free archive of the expected kind.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from nbadam.checkpoint import load_npz, save_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.npz")
    >>> save_npz(path, {"w": np.ones(3)}, {"format": "example", "epoch": 2})
    >>> meta, arrays = load_npz(path, kind="example", keys={"w"})
    >>> meta
    {'version': 1, 'format': 'example', 'epoch': 2}
    >>> load_npz(path, kind="optimizer")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: ... holds a 'example' checkpoint, expected 'optimizer'
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            contents = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise ValueError(f"{path} is not a readable nbadam {kind} checkpoint: {exc}") from None
    if _META not in contents:
        raise ValueError(f"{path} is not an nbadam checkpoint: it has no {_META!r} entry")
    meta_array = contents.pop(_META)
    if meta_array.dtype.kind != "U" or meta_array.ndim != 0:
        raise ValueError(f"{path}: the {_META!r} entry must be a string")
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path} holds a {found!r} checkpoint, expected {kind!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint version {meta.get('version')!r}; "
                         f"this nbadam reads version {FORMAT_VERSION}")
    if keys is not None:
        expected = set(keys)
        missing = sorted(expected - contents.keys())
        extra = sorted(contents.keys() - expected)
        if missing or extra:
            raise ValueError(f"{path}: wrong arrays in the {kind} checkpoint "
                             f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})")
    return meta, contents


def save_optimizer(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> None:
    """Write an optimizer's ``state_dict()`` to ``path`` atomically.

    The file of :meth:`nbadam.Optimizer.save`: the state vectors as arrays
    named ``state.<name>``, everything else as metadata.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    state_dict : mapping
        What :meth:`nbadam.Optimizer.state_dict` returns.
    """
    meta = dict(state_dict)
    arrays = {f"state.{name}": value for name, value in meta.pop("state").items()}
    save_npz(path, arrays, {"format": "optimizer", **meta})


def load_optimizer(path: str | os.PathLike, state_names: Iterable[str]) -> dict[str, Any]:
    """Read a file written by :func:`save_optimizer` back into a ``state_dict``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    state_names : iterable of str
        The state vectors the file must hold, exactly (``exp_avg``, ...).

    Returns
    -------
    dict
        A ``state_dict`` for :meth:`nbadam.Optimizer.load_state_dict`.
    """
    keys = {f"state.{name}" for name in state_names}
    meta, arrays = load_npz(path, kind="optimizer", keys=keys)
    meta.pop("format"), meta.pop("version")
    meta["state"] = {key[len("state."):]: value for key, value in arrays.items()}
    return meta
