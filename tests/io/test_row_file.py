"""io.row_file: a .npy file read by rows, which travels to other processes as its path."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from datasculpt.io.row_file import RowFile, drop_mapped_pages, host_rows


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


def _rss_file() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no RssFile")


@pytest.mark.skipif(sys.platform != "linux", reason="RssFile is read from /proc")
def test_dropped_pages_leave_the_resident_set_and_the_data_stays(tmp_path: Path) -> None:
    # The embed stage copies given vectors map to map: 10M x 64 held 5.1 GB of file pages.
    rng = np.random.default_rng(0)
    want = rng.normal(size=(400_000, 64)).astype(np.float32)  # ~100 MB
    np.save(tmp_path / "src.npy", want)
    src = np.load(tmp_path / "src.npy", mmap_mode="r")
    dst = np.lib.format.open_memmap(tmp_path / "dst.npy", mode="w+", dtype=np.float32,
                                    shape=want.shape)
    base = _rss_file()
    for lo in range(0, want.shape[0], 50_000):
        dst[lo:lo + 50_000] = src[lo:lo + 50_000]
    assert _rss_file() - base > 150 << 20  # both maps' pages resident
    drop_mapped_pages(src, dst, want)  # a plain array is left alone
    assert _rss_file() - base < 40 << 20
    del dst
    assert np.array_equal(np.load(tmp_path / "dst.npy"), want)  # the written pages were kept
