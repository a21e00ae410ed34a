"""embed.precomputed: an N x D .npy given with the run, memory-mapped and checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from datasculpt.embed import load_precomputed
from datasculpt.errors import InputError


def test_load_precomputed(tmp_path: Any) -> None:
    good = tmp_path / "emb.npy"
    np.save(good, np.ones((5, 3), np.float32))
    arr = load_precomputed(str(good), 5)
    assert arr.shape == (5, 3) and isinstance(arr, np.memmap)

    for bad, n, msg in [
        (good, 4, "5 rows"),
        (tmp_path / "missing.npy", 5, "not found"),
    ]:
        with pytest.raises(InputError, match=msg) as err:
            load_precomputed(str(bad), n)
        assert "\n" not in str(err.value)

    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(5, np.float32))
    with pytest.raises(InputError, match="2-D"):
        load_precomputed(str(flat), 5)

    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="cannot read"):
        load_precomputed(str(pickled), 5)

    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an npy file")
    with pytest.raises(InputError):
        load_precomputed(str(garbage), 5)
