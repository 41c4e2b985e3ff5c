"""Checkpoint files: atomic writes, pickle-free and strict reads."""

import json
import os
import zipfile

import numpy as np
import pytest

from nbadam.checkpoint import load_npz, save_npz


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
