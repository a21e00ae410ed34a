"""A 2-D ``.npy`` file read by rows, in whatever process reads it.

The embeddings of a large run do not fit a driver's heap (1B x 384 float32 is 1.5 TB), and an
executor that ships its tasks' inputs to other processes (Ray) would copy a matrix into its
object store. A :class:`RowFile` travels as its path instead: each process maps the file on
first use (``np.load(mmap_mode="r")``) and reads only the rows it indexes, so the pages it
touches are the page cache's, not a heap's. Like Ray's inputs, the run directory must be on
a filesystem every worker sees.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class RowFile:
    """Rows of the ``N x D`` array in the ``.npy`` file ``path``: ``rows[idx]`` and
    ``rows[a:b]`` are host arrays, as with the array itself.

    No ``__array__``: the whole matrix is read only by asking for it (:meth:`whole`), so an
    accidental ``np.asarray`` (a full copy) fails instead of quietly costing ``N x D``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(Path(path).resolve())  # Ray workers start in other directories
        self._mm: np.ndarray | None = None
        mm = self._open()
        if mm.ndim != 2:
            raise ValueError(f"{self.path}: a row file holds a 2-D array, not {mm.shape}")
        self.shape: tuple[int, int] = (int(mm.shape[0]), int(mm.shape[1]))
        self.dtype = mm.dtype

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def _open(self) -> np.ndarray:
        """The memory map of this process (opened once; a race between threads only maps
        the file twice)."""
        if self._mm is None:
            self._mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._mm

    def __getitem__(self, key: Any) -> np.ndarray:
        """The rows ``key`` selects: a slice is a view of the map, an index array a copy of
        those rows only."""
        return np.asarray(self._open()[key])

    def whole(self) -> np.ndarray:
        """All rows, as a view of the map (no copy; what is read lands in the page cache)."""
        return np.asarray(self._open())

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(f"{self.path} is read by rows (rows[idx]); whole() maps all of it")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as the path: another process maps the file itself."""
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype.str}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.shape = state["path"], tuple(state["shape"])
        self.dtype, self._mm = np.dtype(state["dtype"]), None

    def __repr__(self) -> str:
        return f"RowFile({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def drop_mapped_pages(*arrays: Any) -> None:
    """Let the pages a pass has touched in memory-mapped arrays leave this process's resident
    set (``madvise(MADV_DONTNEED)``; written pages are flushed first and stay in the page
    cache, to be written back as usual). A pass over two maps of a 10M x 64 matrix (the
    embed stage's copy of given vectors) otherwise held both, 5.1 GB of the run's peak RSS,
    though the kernel could have dropped them. A no-op for arrays that are not maps, and
    where ``madvise`` is missing."""
    import mmap

    for a in arrays:
        mm = getattr(a, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            continue
        if a.flags.writeable:
            mm.flush()
        mm.madvise(mmap.MADV_DONTNEED)


def host_rows(x: Any, idx: Any) -> np.ndarray:
    """Rows ``idx`` (an index array or a slice) of a host array or :class:`RowFile` as a
    float32 host array, reading nothing else."""
    return np.asarray(x[idx], dtype=np.float32)
