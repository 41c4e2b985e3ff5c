"""Checkpoint files: atomic writes, pickle-free and strict reads."""

import errno
import io
import json
import os
import signal
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nbadam import checkpoint
from nbadam.checkpoint import check_writable, load_npz, save_npz

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def test_round_trip(tmp_path):
    path = tmp_path / "c.npz"
    arrays = {"a": np.arange(5.0), "b": np.ones((2, 3), dtype=np.float32)}
    save_npz(path, arrays, {"format": "thing", "step": 3, "x": 0.1})
    meta, loaded = load_npz(path, kind="thing", keys={"a", "b"})
    assert meta["step"] == 3 and meta["x"] == 0.1
    for key in arrays:
        assert np.array_equal(loaded[key], arrays[key]) and loaded[key].dtype == arrays[key].dtype


def test_no_temporary_file_is_left_behind(tmp_path):
    save_npz(tmp_path / "c.npz", {"a": np.zeros(2)}, {"format": "thing"})
    save_npz(tmp_path / "c.npz", {"a": np.ones(2)}, {"format": "thing"})
    assert os.listdir(tmp_path) == ["c.npz"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(2)}, {"format": "thing"})
    with pytest.raises(TypeError):
        save_npz(path, {"a": np.zeros(2)}, {"format": "thing", "bad": object()})
    _, arrays = load_npz(path, kind="thing")
    assert np.array_equal(arrays["a"], np.zeros(2))
    assert os.listdir(tmp_path) == ["c.npz"]


def test_object_arrays_are_refused_on_save(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_npz(tmp_path / "c.npz", {"a": np.array([{}], dtype=object)}, {"format": "x"})


def test_object_array_in_file_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    meta = np.array(json.dumps({"format": "thing", "version": 1}))
    np.savez(path, __meta__=meta, a=np.array([print], dtype=object))
    with pytest.raises(ValueError, match="evil.npz"):
        load_npz(path, kind="thing")


@pytest.mark.parametrize("cut", [0, 10, 200, -20])
def test_truncated_file_is_refused(tmp_path, cut):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.arange(100.0)}, {"format": "thing"})
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(ValueError, match="c.npz"):
        load_npz(path, kind="thing")


def test_missing_and_extra_keys_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(1), "z": np.zeros(1)}, {"format": "thing"})
    with pytest.raises(ValueError, match=r"missing: \['b'\]; unexpected: \['z'\]"):
        load_npz(path, kind="thing", keys={"a", "b"})


def test_wrong_kind_and_foreign_archives_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(1)}, {"format": "model"})
    with pytest.raises(ValueError, match="'model' checkpoint, expected 'optimizer'"):
        load_npz(path, kind="optimizer")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(1))
    with pytest.raises(ValueError, match="no '__meta__'"):
        load_npz(plain, kind="model")
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError):
        load_npz(tmp_path / "z.npz", kind="model")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "nope.npz", kind="thing")


def test_file_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        import importlib

        import nbadam.checkpoint as checkpoint
        importlib.reload(checkpoint)
        checkpoint.save_npz(tmp_path / "c.npz", {"a": np.zeros(1)}, {"format": "thing"})
    finally:
        os.umask(old)
        importlib.reload(checkpoint)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o640


# -- what a save does to the file system ---------------------------------------------------------

def unwritable_folder(tmp_path):
    """A folder where no file can be created, even by root (or skip)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    if os.path.isdir("/sys"):
        try:
            fd, probe = tempfile.mkstemp(dir="/sys")
        except OSError:
            return Path("/sys")
        os.close(fd)
        os.unlink(probe)
    pytest.skip("no folder here refuses new files to root")


@pytest.mark.parametrize("length", [243, 250, 255])
def test_file_names_up_to_the_limit_save_and_load(tmp_path, length):
    name = "c" * (length - 4) + ".npz"
    save_npz(tmp_path / name, {"a": np.arange(3.0)}, {"format": "thing"})
    save_npz(tmp_path / name, {"a": np.arange(4.0)}, {"format": "thing"})
    _, arrays = load_npz(tmp_path / name, kind="thing", keys={"a"})
    assert np.array_equal(arrays["a"], np.arange(4.0))
    assert os.listdir(tmp_path) == [name]


def test_a_name_beyond_the_limit_is_an_error_naming_it(tmp_path):
    name = "c" * 300 + ".npz"
    with pytest.raises(OSError) as info:
        save_npz(tmp_path / name, {"a": np.zeros(1)}, {"format": "thing"})
    assert info.value.errno == errno.ENAMETOOLONG and name in str(info.value)
    assert ".tmp" not in str(info.value)
    with pytest.raises(OSError, match="255"):
        check_writable(tmp_path / name)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_resaving_keeps_the_file_mode(tmp_path, mode):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(1)}, {"format": "thing"})
    path.chmod(mode)
    save_npz(path, {"a": np.ones(1)}, {"format": "thing"})
    assert path.stat().st_mode & 0o777 == mode
    assert np.array_equal(load_npz(path, kind="thing")[1]["a"], np.ones(1))


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "real.npz"
    save_npz(real, {"a": np.zeros(1)}, {"format": "thing"})
    real.chmod(0o600)
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    save_npz(link, {"a": np.ones(1)}, {"format": "thing"})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert np.array_equal(load_npz(real, kind="thing")[1]["a"], np.ones(1))
    assert real.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path / "runs")) == ["real.npz"]   # temp file was there


def test_a_dangling_symlink_creates_its_target_and_a_loop_is_refused(tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "target.npz")
    save_npz(link, {"a": np.ones(1)}, {"format": "thing"})
    assert link.is_symlink() and (tmp_path / "target.npz").is_file()
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(OSError, match="loop.npz: too many levels of symbolic links"):
        save_npz(loop, {"a": np.ones(1)}, {"format": "thing"})
    assert loop.is_symlink()


def test_save_into_an_unwritable_folder_names_the_target(tmp_path):
    folder = unwritable_folder(tmp_path)
    with pytest.raises(PermissionError) as info:
        save_npz(folder / "c.npz", {"a": np.zeros(1)}, {"format": "thing"})
    assert str(folder / "c.npz") in str(info.value) and ".tmp" not in str(info.value)
    with pytest.raises(PermissionError, match="cannot create a file"):
        check_writable(folder / "c.npz", "checkpoint")


def test_a_failed_write_names_the_target_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(1)}, {"format": "thing"})
    saved = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    with pytest.raises(OSError) as info:
        save_npz(path, {"a": np.ones(1)}, {"format": "thing"})
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and ".tmp" not in str(info.value)
    assert path.read_bytes() == saved and os.listdir(tmp_path) == ["c.npz"]


def test_saving_over_a_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "c.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="c.npz"):
        check_writable(tmp_path / "c.npz")
    with pytest.raises(OSError, match="c.npz"):
        save_npz(tmp_path / "c.npz", {"a": np.zeros(1)}, {"format": "thing"})
    assert os.listdir(tmp_path) == ["c.npz"]


def test_check_writable_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "c.npz")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="empty"):
        check_writable("", "checkpoint")
    with pytest.raises(TypeError, match="checkpoint"):
        check_writable(3, "checkpoint")


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_save_killed_midway_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(3)}, {"format": "thing"})
    left = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:   # pragma: no cover - the child is killed
            try:
                checkpoint.np.savez = lambda *args, **kwargs: os.kill(os.getpid(),
                                                                      signal.SIGKILL)
                save_npz(path, {"a": np.ones(3)}, {"format": "thing"})
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        left.append(temporaries(tmp_path))
    # Each kill leaves its temporary file; the second save removed the first's.
    assert len(left[0]) == len(left[1]) == 1 and left[0] != left[1]
    assert np.array_equal(load_npz(path, kind="thing")[1]["a"], np.zeros(3))
    save_npz(path, {"a": np.full(3, 2.0)}, {"format": "thing"})
    assert os.listdir(tmp_path) == ["c.npz"]
    assert np.array_equal(load_npz(path, kind="thing")[1]["a"], np.full(3, 2.0))


@pytest.mark.skipif(fcntl is None, reason="needs fcntl")
def test_stale_temporaries_go_but_a_save_in_progress_and_other_files_stay(tmp_path):
    path = tmp_path / "c.npz"
    prefix = checkpoint._temporary_prefix("c.npz")
    stale = tmp_path / f"{prefix}abcd1234.tmp"
    older = tmp_path / ".c.npz.zz99_x0a.tmp"              # an earlier nbadam's naming
    busy = tmp_path / f"{prefix}busy0000.tmp"
    other = tmp_path / f"{checkpoint._temporary_prefix('d.npz')}abcd1234.tmp"
    for file in (stale, older, busy, other):
        file.write_bytes(b"partial")
    with open(busy, "rb") as held:                         # a live save holds its lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        save_npz(path, {"a": np.zeros(1)}, {"format": "thing"})
        assert temporaries(tmp_path) == sorted([busy.name, other.name])
    save_npz(path, {"a": np.zeros(1)}, {"format": "thing"})
    assert temporaries(tmp_path) == [other.name]


def test_the_temporary_name_is_short_and_per_target():
    for name in ("c.npz", "é" * 60 + ".npz", "x" * 251 + ".npz"):
        prefix = checkpoint._temporary_prefix(name)
        assert len(os.fsencode(prefix)) + len("abcdefgh.tmp") <= 255 - 60
        assert prefix != checkpoint._temporary_prefix(name + "x")


# -- what a load accepts -------------------------------------------------------------------------

def test_npy_files_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "weights.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(ValueError, match=r"weights.npz is a single NumPy array saved with "
                                         r"np.save \(.npy\)"):
        load_npz(path, kind="thing")


def test_other_byte_orders_and_fortran_order_load_natively(tmp_path):
    path = tmp_path / "c.npz"
    big = np.arange(6.0).astype(">f8")
    fortran = np.asfortranarray(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    np.savez(path, __meta__=np.array(json.dumps({"format": "thing", "version": 1})),
             big=big, fortran=fortran)
    _, arrays = load_npz(path, kind="thing",
                         expected={"big": ((6,), np.float64), "fortran": ((2, 3), None)})
    assert arrays["big"].dtype == np.float64 and arrays["big"].dtype.isnative
    assert np.array_equal(arrays["big"], np.arange(6.0))
    assert np.array_equal(arrays["fortran"], fortran)


def test_compressed_archives_load(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, __meta__=np.array(json.dumps({"format": "thing", "version": 1})),
                        a=np.zeros(10_000))
    assert np.array_equal(load_npz(path, kind="thing", keys={"a"})[1]["a"], np.zeros(10_000))


def test_expected_shapes_and_dtypes_are_checked_before_reading(tmp_path):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(4, np.float32)}, {"format": "thing", "n": 4})
    with pytest.raises(ValueError, match=r"'a' is \(4,\) float32, expected \(4,\) float64"):
        load_npz(path, kind="thing", expected={"a": ((4,), np.float64)})

    def expect(meta):
        if meta["n"] != 5:
            raise ValueError(f"n is {meta['n']}, this run needs 5")
        return {"a": ((5,), None)}

    with pytest.raises(ValueError, match="c.npz: n is 4, this run needs 5"):
        load_npz(path, kind="thing", expected=expect)
    with pytest.raises(ValueError, match=r"c.npz: malformed metadata \(KeyError"):
        load_npz(path, kind="thing", expected=lambda meta: {"a": ((meta["m"],), None)})


def test_a_member_claiming_more_than_its_compressed_bytes_can_hold_is_refused():
    header = checkpoint._Header((10**9,), False, np.dtype(np.float64), b"\x93NUMPY" + bytes(122))
    info = zipfile.ZipInfo("a.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size, info.compress_size = 128 + 8 * 10**9, 4096
    with pytest.raises(ValueError, match="more than the compression can give"):
        checkpoint._check_member_size(header, info, "c.npz: array 'a'")
    info.compress_type, info.compress_size = zipfile.ZIP_STORED, 100
    with pytest.raises(ValueError, match="more than the compression can give"):
        checkpoint._check_member_size(header, info, "c.npz: array 'a'")
    info.file_size = 100
    with pytest.raises(ValueError, match="declares shape"):
        checkpoint._check_member_size(header, info, "c.npz: array 'a'")


@pytest.mark.parametrize("header", [
    {"descr": "<f8", "fortran_order": False, "shape": (-3,)},
    {"descr": [("a", "<f8"), ("b", "<i4")], "fortran_order": False, "shape": (2,)},
])
def test_negative_shapes_and_structured_dtypes_are_refused(tmp_path, header):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    path = tmp_path / "c.npz"
    save_npz(path, {}, {"format": "thing"})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("a.npy", buffer.getvalue() + bytes(24))
    with pytest.raises(ValueError, match="c.npz: array 'a'"):
        load_npz(path, kind="thing")


def test_npy_format_version_3_and_duplicate_members_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.zeros(1)}, {"format": "thing"})
    with zipfile.ZipFile(path, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")                        # zipfile: duplicate name
        archive.writestr("a.npy", b"\x93NUMPY\x03\x00" + bytes(8))
    with pytest.raises(ValueError, match="'a.npy' appears twice"):
        load_npz(path, kind="thing")
    save_npz(path, {}, {"format": "thing"})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("a.npy", b"\x93NUMPY\x03\x00" + bytes(8))
    with pytest.raises(ValueError, match="format version 3.0"):
        load_npz(path, kind="thing")
