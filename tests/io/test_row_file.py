"""io.row_file: a .npy file read by rows, which travels to other processes as its path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from datasculpt.io.row_file import RowFile, host_rows


def test_rows_are_the_array_rows_and_only_the_path_is_pickled(tmp_path: Path,
                                                               monkeypatch) -> None:
    x = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    monkeypatch.chdir(tmp_path)
    rows = RowFile("e.npy")  # a relative path is kept absolute: workers start elsewhere
    assert rows.shape == (1000, 64) and len(rows) == 1000 and rows.dtype == np.float32
    idx = np.array([999, 3, 3, 500])
    np.testing.assert_array_equal(rows[idx], x[idx])
    np.testing.assert_array_equal(rows[10:20], x[10:20])
    np.testing.assert_array_equal(rows.whole(), x)
    assert host_rows(rows, idx).dtype == np.float32
    blob = pickle.dumps(rows)
    assert len(blob) < 1000  # the path, not 256 KB of rows
    monkeypatch.chdir("/")
    back = pickle.loads(blob)
    assert back.shape == rows.shape and back.dtype == rows.dtype
    np.testing.assert_array_equal(back[idx], x[idx])


def test_the_whole_matrix_is_never_copied_by_accident(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.eye(3, dtype=np.float32))
    with pytest.raises(TypeError, match="read by rows"):
        np.asarray(RowFile(tmp_path / "e.npy"))
    np.save(tmp_path / "v.npy", np.arange(3.0))
    with pytest.raises(ValueError, match="2-D"):
        RowFile(tmp_path / "v.npy")
