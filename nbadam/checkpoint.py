"""Checkpoint files: ``.npz`` archives written atomically, read without pickle.

A checkpoint holds named NumPy arrays plus one JSON document of metadata (the
``__meta__`` entry, a 0-d unicode array).

Writing (:func:`save_npz`) goes to a temporary file in the destination
folder, which is flushed and ``fsync``-ed and then renamed over the
destination, so a crash at any moment leaves either the previous complete
file or the new complete file, never a torn one.  The temporary name is short
(at most 63 bytes), so any file name the file system accepts can be saved.  A
re-saved file keeps its permission bits (a private ``0600`` checkpoint stays
private); a new one gets those of any file the user creates (``0666`` less the
umask).  A symbolic link is followed: the file it points to is replaced and
the link stays a link.  Temporary files left by a save that was killed are
removed by the next save of the same file.

Reading (:func:`load_npz`) never runs code and never reads more than the file
declares it needs: the archive's member names, then the metadata (at most
16 MiB), then every member's ``.npy`` header (shape, dtype, size) are checked
against what the caller expects *before* any array data is decompressed, so a
file with an extra, highly compressed member or a header declaring a huge
shape is refused without allocating memory for it.  Object arrays (which would
need pickle) are refused.

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

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

import numpy as np

try:  # POSIX: a save in progress holds a lock on its temporary file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_META = "__meta__"
FORMAT_VERSION = 1
# mkstemp creates files readable by the owner only; a new checkpoint should get
# the permissions of any file the user creates.  Read once: os.umask can only be
# read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: Largest metadata document read, in bytes of its UCS-4 array (4 per character).
MAX_META_BYTES = 16 * 2**20
#: Deepest nesting of lists and objects accepted in the metadata.
MAX_META_DEPTH = 32
#: Largest ``.npy`` header read (NumPy's own limit for untrusted files).
_MAX_HEADER_BYTES = 10_000
#: Deflate cannot expand data by more than about 1032:1; a member claiming more lies.
_MAX_DEFLATE_RATIO = 1100
#: Characters of the target's name kept in the temporary name (then a hash of all of it).
_TEMP_NAME_CHARS = 32
_READ_CHUNK = 2**20

#: What :func:`load_npz` expects of one array: its shape and dtype (``None``: any float).
ArraySpec = tuple[tuple[int, ...], np.dtype | type | str | None]
Expected = Mapping[str, ArraySpec] | Callable[[dict], Mapping[str, ArraySpec]]


class _Refused(ValueError):
    """A problem found in a file; the message already names the file."""


# -- writing ------------------------------------------------------------------------------------

def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
             meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` and JSON ``meta`` to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; written exactly as named (no suffix is added).  An
        existing file keeps its permission bits; a symbolic link is followed
        and the file it points to is replaced.
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
    OSError
        If the file cannot be written; the error names ``path`` (not the
        temporary file), and the previous file, if any, is left untouched.

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
    target = _resolve(path)
    folder = os.path.dirname(target)
    mode = _mode_for(target, path)
    _remove_stale_temporaries(folder, os.path.basename(target))
    try:
        fd, tmp = _create_temporary(target)
    except OSError as exc:
        raise _naming(exc, path) from None
    handle = None
    try:
        handle = os.fdopen(fd, "wb")
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, mode)
        np.savez(handle, **{_META: np.array(text)}, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
        if fcntl is None:  # pragma: no cover - Windows cannot rename an open file
            handle.close()
        # POSIX: the lock is held until the temporary name is gone, so a concurrent
        # save of the same file never takes it for a stale one.
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise
    finally:
        if handle is not None:
            handle.close()
        else:
            os.close(fd)
    _fsync_folder(folder)


def check_writable(path: str | os.PathLike, what: str | None = None) -> None:
    """Raise now, before a long computation, if :func:`save_npz` could not write ``path``.

    Checks that ``path`` is a non-empty file name (not a folder) in an
    existing folder where a file can be created, by creating and removing a
    temporary file there, and that the name is not too long for the file
    system.  A symbolic link is checked where it points.

    Parameters
    ----------
    path : str or os.PathLike
        The file that will be written.
    what : str, optional
        How to name the target in messages (``"checkpoint"``, ``"--save"``);
        by default the path alone.

    Raises
    ------
    TypeError
        If ``path`` is not a path.
    ValueError
        If ``path`` is empty.
    OSError
        ``FileNotFoundError`` if the folder does not exist,
        ``IsADirectoryError`` if ``path`` is a folder, ``PermissionError`` (or
        another ``OSError``) if no file can be created there.

    Examples
    --------
    >>> import os, tempfile
    >>> from nbadam.checkpoint import check_writable
    >>> check_writable(os.path.join(tempfile.mkdtemp(), "run.npz"))
    >>> check_writable("/no/such/folder/run.npz", "checkpoint")
    Traceback (most recent call last):
        ...
    FileNotFoundError: checkpoint /no/such/folder/run.npz: the folder /no/such/folder does not exist
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what or 'path'} must be a file path, got {path!r}")
    path = os.fspath(path)
    label = f"{what} {path}" if what else path
    if not path:
        raise ValueError(f"{what or 'path'} is empty; give a file name such as run.npz")
    target = _resolve(path)
    folder, name = os.path.split(target)
    if os.path.isdir(target):
        raise _os_error(errno.EISDIR, f"{label}: is a folder, expected a file name")
    if not os.path.isdir(folder):
        problem = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise _os_error(errno.ENOENT, f"{label}: the folder {folder} {problem}")
    limit = _name_max(folder)
    if limit is not None and len(os.fsencode(name)) > limit:
        raise _os_error(errno.ENAMETOOLONG, f"{label}: the file name is "
                        f"{len(os.fsencode(name))} bytes long; this file system allows {limit}")
    try:
        fd, probe = _create_temporary(target)
    except OSError as exc:
        raise _os_error(exc.errno, f"{label}: cannot create a file in {folder} "
                                   f"({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _resolve(path: str) -> str:
    """The file a save of ``path`` replaces: symbolic links followed, made absolute."""
    target = os.path.realpath(path)
    if os.path.islink(target):  # a loop of links: realpath gave up
        raise _os_error(errno.ELOOP, f"{path}: too many levels of symbolic links")
    return target


def _mode_for(target: str, path: str) -> int:
    """Permission bits of the new file: those of the file it replaces, else umask's."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK
    except OSError as exc:
        raise _naming(exc, path) from None


def _temporary_prefix(name: str) -> str:
    """Short, and the same for every save of ``name``: a cut of the name and its hash."""
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    return f".{name[:_TEMP_NAME_CHARS]}.{digest}."


def _create_temporary(target: str) -> tuple[int, str]:
    folder, name = os.path.split(target)
    return tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(name), suffix=".tmp")


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Delete temporary files that a killed save of ``name`` left behind.

    Only files nobody holds a lock on are removed: a save in progress (in any
    process) keeps its temporary file locked until it is renamed.  Without
    ``fcntl`` (Windows) nothing is removed.  Files of an older nbadam, named
    ``.<name>.<8 characters>.tmp``, are recognised too.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return
    ours = re.compile(re.escape(_temporary_prefix(name)) + r"[A-Za-z0-9_]{8}\.tmp\Z")
    older = re.compile(r"\." + re.escape(name) + r"\.[A-Za-z0-9_]{8}\.tmp\Z")
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not (ours.match(entry) or older.match(entry)):
            continue
        candidate = os.path.join(folder, entry)
        try:
            fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(candidate)
        except OSError:  # locked by a save in progress, or already gone
            continue
        finally:
            os.close(fd)


def _naming(exc: OSError, path: str) -> OSError:
    """The same error, naming the destination instead of a temporary file."""
    return _os_error(exc.errno, f"cannot save {path}: {exc.strerror or exc}")


def _os_error(code: int | None, message: str) -> OSError:
    """The ``OSError`` subclass of ``code`` (``PermissionError``, ...) with a plain message."""
    cls = type(OSError(code, "")) if code is not None else OSError
    error = cls(message)
    error.errno = code
    return error


def _name_max(folder: str) -> int | None:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - platform-dependent
        return None


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


# -- reading ------------------------------------------------------------------------------------

def load_npz(path: str | os.PathLike, *, kind: str, keys: Iterable[str] | None = None,
             expected: Expected | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint written by :func:`save_npz`, refusing anything unexpected.

    The archive's member names, the metadata and each member's ``.npy``
    header are checked before any array data is decompressed, so what a file
    can make this function allocate is bounded by the arrays the caller
    expects (and, without ``expected``, by what the members' compressed
    sizes can honestly hold).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    kind : str
        The ``"format"`` the metadata must declare.
    keys : iterable of str, optional
        The exact set of array names expected; missing or extra names are refused.
    expected : mapping or callable, optional
        The exact arrays expected, as ``{name: (shape, dtype)}`` (a dtype of
        ``None`` accepts float32 or float64), or a function of the metadata
        returning that mapping, which may raise ``ValueError`` to refuse the
        metadata (a ``TypeError``, ``AttributeError``, ``KeyError`` or
        ``IndexError`` it raises is reported as malformed metadata).  It runs
        before any array data is read.  Replaces ``keys``.

    Returns
    -------
    meta : dict
        The JSON metadata.
    arrays : dict of str to numpy.ndarray
        The arrays, fully read into memory, in native byte order.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a complete, pickle-free archive of the expected
        kind and contents; the message names the file.

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
    >>> load_npz(path, kind="example", expected={"w": ((4,), np.float64)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: ...: array 'w' is (3,) float64, expected (4,) float64
    >>> load_npz(path, kind="optimizer")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: ... holds a 'example' checkpoint, expected 'optimizer'
    """
    if keys is not None and expected is not None:
        raise TypeError("pass keys or expected, not both")
    path = os.fspath(path)
    try:
        with open(path, "rb") as raw:
            if raw.read(6) == b"\x93NUMPY":
                raise _Refused(
                    f"{path} is a single NumPy array saved with np.save (.npy), not an nbadam "
                    f"{kind} checkpoint; load it with np.load, or pass a file written by the "
                    "matching save()")
            raw.seek(0)
            with zipfile.ZipFile(raw) as archive:
                return _read_archive(archive, path, kind, keys, expected)
    except FileNotFoundError:
        raise
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
            NotImplementedError, RuntimeError, struct.error) as exc:
        # RuntimeError: zipfile's "encrypted" and "compression method" refusals.
        raise ValueError(f"{path} is not a readable nbadam {kind} checkpoint: {exc}") from None


def _read_archive(archive: zipfile.ZipFile, path: str, kind: str, keys: Iterable[str] | None,
                  expected: Expected | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    members = _members(archive, path)
    if _META not in members:
        raise _Refused(f"{path} is not an nbadam checkpoint: it has no {_META!r} entry")
    meta = _read_meta(archive, members.pop(_META), path)
    if meta.get("format") != kind:
        raise _Refused(f"{path} holds a {meta.get('format')!r} checkpoint, expected {kind!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise _Refused(f"{path} has checkpoint version {meta.get('version')!r}; "
                       f"this nbadam reads version {FORMAT_VERSION}")
    specs: Mapping[str, ArraySpec] | None = None
    if callable(expected):
        try:
            specs = expected(meta)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            # A lookup or type error here means the metadata is not what it must be.
            text = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, ValueError):
                text = f"malformed metadata ({type(exc).__name__}: {text})"
            raise _Refused(text if path in text else f"{path}: {text}") from None
    elif expected is not None:
        specs = expected
    if specs is not None:
        keys = specs
    if keys is not None:
        wanted = set(keys)
        missing = sorted(wanted - members.keys())
        extra = sorted(members.keys() - wanted)
        if missing or extra:
            raise _Refused(f"{path}: wrong arrays in the {kind} checkpoint "
                           f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})")
    headers = {}
    for name, info in members.items():  # every header checked before any data is read
        header = _read_header(archive, info, path, name)
        _check_header(header, name, path, None if specs is None else specs[name])
        _check_member_size(header, info, f"{path}: array {name!r}")
        headers[name] = header
    return meta, {name: _read_data(archive, members[name], header, path, name)
                  for name, header in headers.items()}


def _members(archive: zipfile.ZipFile, path: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's ``<name>.npy`` members by name; anything else is refused."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        if not name.endswith(".npy") or info.is_dir():
            raise _Refused(f"{path} is not an nbadam checkpoint: it holds {name!r}, "
                           "which is not a .npy array")
        if name[:-4] in members:
            raise _Refused(f"{path} is not an nbadam checkpoint: {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise _Refused(f"{path}: {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refused(f"{path}: {name!r} uses zip compression method "
                           f"{info.compress_type}; nbadam writes stored or deflated members")
        members[name[:-4]] = info
    return members


class _Header:
    """A member's ``.npy`` header: what it declares, and the raw bytes it took."""

    def __init__(self, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, raw: bytes):
        self.shape, self.fortran, self.dtype, self.raw = shape, fortran, dtype, raw
        self.nbytes = math.prod(shape) * dtype.itemsize


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str,
                 name: str) -> _Header:
    with archive.open(info) as handle:
        return _parse_header(handle, path, name)


def _parse_header(handle: IO[bytes], path: str, name: str) -> _Header:
    """Read one ``.npy`` header without trusting its length field."""
    where = f"{path}: array {name!r}"
    magic = handle.read(8)
    if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
        raise _Refused(f"{where} is not in .npy format")
    version = (magic[6], magic[7])
    if version == (1, 0):
        length_format = "<H"
    elif version == (2, 0):
        length_format = "<I"
    else:
        raise _Refused(f"{where} has .npy format version {version[0]}.{version[1]}; "
                       "nbadam reads versions 1.0 and 2.0")
    length_bytes = handle.read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        raise _Refused(f"{where}: truncated .npy header")
    (length,) = struct.unpack(length_format, length_bytes)
    if length > _MAX_HEADER_BYTES:
        raise _Refused(f"{where} has a {length}-byte .npy header; at most "
                       f"{_MAX_HEADER_BYTES} are read")
    text = handle.read(length)
    if len(text) < length:
        raise _Refused(f"{where}: truncated .npy header")
    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    try:
        shape, fortran, dtype = reader(io.BytesIO(length_bytes + text),
                                       max_header_size=_MAX_HEADER_BYTES)
    except Exception as exc:  # parsing untrusted text: any failure is a refusal
        # (NumPy's parser raises ValueError, SyntaxError, tokenize.TokenError,
        # RecursionError, MemoryError, ... depending on what the header holds.)
        problem = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise _Refused(f"{where} has a malformed .npy header ({problem})") from None
    if any(size < 0 for size in shape):
        raise _Refused(f"{where} declares the negative shape {shape}")
    return _Header(tuple(shape), fortran, dtype, magic + length_bytes + text)


def _check_header(header: _Header, name: str, path: str, spec: ArraySpec | None) -> None:
    """Refuse a header that does not match the caller's expectation or its member."""
    where = f"{path}: array {name!r}"
    dtype = header.dtype
    if dtype.hasobject:
        raise _Refused(f"{where} has dtype object, which would need pickle; refused")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(f"{where} has the structured dtype {dtype}; refused")
    if spec is not None:
        shape, want = tuple(spec[0]), spec[1]
        native = dtype.newbyteorder("=")
        ok = (native in (np.dtype(np.float32), np.dtype(np.float64)) if want is None
              else native == np.dtype(want))
        if header.shape != shape or not ok:
            wanted = "float32 or float64" if want is None else str(np.dtype(want))
            raise _Refused(f"{where} is {header.shape} {native}, expected {shape} {wanted}")


def _check_member_size(header: _Header, info: zipfile.ZipInfo, where: str) -> None:
    size = len(header.raw) + header.nbytes
    if info.file_size != size:
        raise _Refused(f"{where} declares shape {header.shape} of {header.dtype} "
                       f"({header.nbytes} bytes) but its member holds {info.file_size} bytes")
    if info.compress_type == zipfile.ZIP_STORED:
        honest = info.compress_size == info.file_size
    else:
        honest = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 2**16
    if not honest:
        raise _Refused(f"{where}: its member claims {info.file_size} bytes from "
                       f"{info.compress_size} compressed ones, more than the compression "
                       "can give; the file is damaged or crafted")


def _read_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: _Header, path: str,
               name: str) -> np.ndarray:
    """Read a member whose header passed the checks, into exactly one new array."""
    where = f"{path}: array {name!r}"
    dtype = header.dtype
    shape = header.shape[::-1] if header.fortran else header.shape
    array = np.empty(shape, dtype)
    with archive.open(info) as handle:
        if handle.read(len(header.raw)) != header.raw:
            raise _Refused(f"{where} changed while it was read")
        if header.nbytes:
            buffer = memoryview(array.reshape(-1).view(np.uint8))
            done = 0
            while done < header.nbytes:
                chunk = handle.read(min(_READ_CHUNK, header.nbytes - done))
                if not chunk:
                    raise _Refused(f"{where} is truncated ({done} of {header.nbytes} bytes)")
                buffer[done:done + len(chunk)] = chunk
                done += len(chunk)
        if handle.read(1):  # also makes zipfile check the member's CRC-32
            raise _Refused(f"{where} has trailing bytes")
    if header.fortran:
        array = array.T
    if not dtype.isnative:
        array = array.byteswap().view(dtype.newbyteorder("="))
    return array


def _read_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> dict[str, Any]:
    """The metadata document, read only if small, parsed only if shallow."""
    header = _read_header(archive, info, path, _META)
    if header.dtype.kind != "U" or header.shape != ():
        raise _Refused(f"{path}: the {_META!r} entry must be a string")
    if header.nbytes > MAX_META_BYTES:
        raise _Refused(f"{path}: the {_META!r} entry declares {header.nbytes} bytes; "
                       f"metadata is at most {MAX_META_BYTES}")
    _check_member_size(header, info, f"{path}: the {_META!r} entry")
    text = str(_read_data(archive, info, header, path, _META))
    try:
        meta = json.loads(text)
    except RecursionError:
        raise _Refused(f"{path}: the metadata is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise _Refused(f"{path}: the metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _Refused(f"{path}: the metadata must be a JSON object, got "
                       f"{type(meta).__name__}")
    if _depth(meta) > MAX_META_DEPTH:
        raise _Refused(f"{path}: the metadata is nested more than {MAX_META_DEPTH} levels deep")
    return meta


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_META_DEPTH:
            break
        children: Iterator[Any] = iter(())
        if isinstance(item, dict):
            children = iter(item.values())
        elif isinstance(item, list):
            children = iter(item)
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


# -- optimizers -----------------------------------------------------------------------------------

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


#: Types of the metadata fields of an optimizer file (checked when present).
_OPTIMIZER_FIELDS: dict[str, tuple[type, ...]] = {
    "optimizer": (str,), "size": (int,), "dtype": (str,), "step_count": (int,),
    "skipped_steps": (int,), "hyperparameters": (dict,), "scalars": (dict,),
}


def load_optimizer(path: str | os.PathLike, state_names: Iterable[str], *,
                   size: int | None = None, dtype: Any = None,
                   specs: Callable[[dict[str, Any]], Mapping[str, ArraySpec]] | None = None,
                   ) -> dict[str, Any]:
    """Read a file written by :func:`save_optimizer` back into a ``state_dict``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    state_names : iterable of str
        The state vectors the file must hold, exactly (``exp_avg``, ...).
    size : int, optional
        The length every state vector must have.  Pass it: then nothing
        larger is ever read.  By default the ``size`` the file declares.
    dtype : numpy.dtype, optional
        The dtype every state vector must have; by default the file's
        ``dtype`` (float32 or float64).
    specs : callable, optional
        ``specs(meta) -> {name: (shape, dtype)}``: the arrays a file with
        metadata ``meta`` must hold (compact state keeps codes of its own
        dtype); it replaces ``state_names`` and ``dtype`` once ``size`` and
        ``dtype`` of the file are checked.

    Returns
    -------
    dict
        A ``state_dict`` for :meth:`nbadam.Optimizer.load_state_dict`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an intact optimizer file with these state vectors;
        the message names the file.
    """
    names = list(state_names)
    source = os.fspath(path)

    def expect(meta: dict[str, Any]) -> dict[str, ArraySpec]:
        for field, types in _OPTIMIZER_FIELDS.items():
            value = meta.get(field)
            if field in meta and (not isinstance(value, types) or isinstance(value, bool)):
                raise ValueError(f"malformed optimizer file: {field!r} is {value!r}")
        length = meta.get("size") if size is None else size
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise ValueError(f"malformed optimizer file: 'size' is {meta.get('size')!r}")
        kind = meta.get("dtype") if dtype is None else np.dtype(dtype).name
        if kind not in ("float32", "float64"):
            raise ValueError(f"malformed optimizer file: 'dtype' is {meta.get('dtype')!r}, "
                             "expected 'float32' or 'float64'")
        if specs is not None:
            return {f"state.{name}": (tuple(shape), np.dtype(kind_))
                    for name, (shape, kind_) in specs(meta).items()}
        return {f"state.{name}": ((length,), np.dtype(kind)) for name in names}

    meta, arrays = load_npz(source, kind="optimizer", expected=expect)
    meta.pop("format"), meta.pop("version")
    meta["state"] = {key[len("state."):]: value for key, value in arrays.items()}
    return meta
