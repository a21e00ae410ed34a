"""Embeddings given with the run (``embed.precomputed``): an ``N x D`` ``.npy`` file."""

from __future__ import annotations

import os

import numpy as np

from datasculpt.errors import InputError


def load_precomputed(path: str, n: int | None) -> np.ndarray:
    """Memory-map an ``N x D`` ``.npy`` of precomputed embeddings aligned with the documents."""
    path = os.path.expanduser(str(path))
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise InputError(f"precomputed embeddings not found: {path}") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read precomputed embeddings {path}: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        shape = getattr(arr, "shape", None)
        raise InputError(f"precomputed embeddings {path} must be a 2-D array, got shape {shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(
            f"precomputed embeddings {path} have {arr.shape[0]} rows, the corpus {n} documents"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"precomputed embeddings {path} are not numeric (dtype {arr.dtype})")
    return arr
