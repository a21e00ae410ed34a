"""``datasculpt.blas``: one BLAS thread while a packing kernel runs (the packing itself is
checked under two threads in tests/pack/test_datasculpt.py)."""

from __future__ import annotations

import numpy as np
from helpers import numpy_blas_threads as _blas_threads
from threadpoolctl import threadpool_limits

from datasculpt.blas import one_blas_thread


def test_products_inside_are_the_single_thread_bits_and_the_limit_is_restored() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 384)).astype(np.float32)
    c = rng.standard_normal((11, 384)).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):
        ref = x @ c.T
    with threadpool_limits(2, user_api="blas"):
        assert _blas_threads() == {2}
        with one_blas_thread():
            assert _blas_threads() == {1}
            assert np.array_equal(x @ c.T, ref)
        assert _blas_threads() == {2}
