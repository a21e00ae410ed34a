"""vectors: L2 normalisation and spherical k-means on NumPy and torch, against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasculpt.vectors import (
    ZERO_ROWS_ONLY,
    l2_normalize,
    label_sums,
    nearest,
    spherical_lloyd,
    spherical_lloyd_until_stable,
)


def planted(n: int = 600, k: int = 5, dim: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    x = centres[rng.integers(0, k, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_l2_normalize_keeps_zero_rows_on_every_library() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    t = l2_normalize(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [[0.6, 0.8], [0.0, 0.0]])


def test_l2_normalize_with_a_tiny_eps_is_dividing_by_the_norm() -> None:
    # What metrics and the window path rely on: every non-zero float64 row to unit length.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 7)) * rng.lognormal(0, 8, (50, 1))
    x[3] = 0
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    want = x / np.where(norm > 0, norm, 1.0)
    assert np.array_equal(l2_normalize(x, eps=ZERO_ROWS_ONLY), want)


def test_nearest_is_the_argmax_whatever_the_block() -> None:
    x = planted()
    cent = x[:5]
    want = np.argmax(x @ cent.T, axis=1)
    for block in (None, 7, 1 << 16):
        np.testing.assert_array_equal(nearest(x, cent, block), want)
    got = nearest(torch.from_numpy(x), torch.from_numpy(cent), 7)
    np.testing.assert_array_equal(got.numpy(), want)


def test_label_sums_agree_across_libraries() -> None:
    x = planted()
    lab = np.arange(x.shape[0]) % 4
    want = np.stack([x[lab == j].sum(axis=0) for j in range(5)])  # label 4 is empty
    np.testing.assert_allclose(label_sums(x, lab, 5), want, atol=1e-5)
    got = label_sums(torch.from_numpy(x), torch.from_numpy(lab), 5).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def numpy_reference(x: np.ndarray, cent: np.ndarray, niter: int) -> np.ndarray:
    """The window split's k-means as it was written inline: one-hot sums, unblocked."""
    k = cent.shape[0]
    for _ in range(niter):
        onehot = np.argmax(x @ cent.T, axis=1)[:, None] == np.arange(k)[None, :]
        new = onehot.T.astype(np.float32) @ x
        norm = np.sqrt((new * new).sum(axis=1, keepdims=True))
        cent = np.where(norm > 0, new / np.maximum(norm, np.float32(1e-12)), cent)
    return cent


def torch_reference(x: torch.Tensor, cent: torch.Tensor, niter: int, chunk: int) -> torch.Tensor:
    """The cluster stage's torch rung as it was written: index_add_ sums, blocked argmax."""
    for _ in range(niter):
        lab = torch.cat([torch.argmax(x[a:a + chunk] @ cent.T, dim=1)
                         for a in range(0, x.shape[0], chunk)])
        sums = torch.zeros_like(cent).index_add_(0, lab, x)
        empty = sums.norm(dim=1) == 0
        cent = torch.where(empty[:, None], cent, torch.nn.functional.normalize(sums, dim=1))
    return cent


@pytest.mark.parametrize("niter", [1, 3, 10])
def test_spherical_lloyd_has_the_bits_of_both_former_copies(niter: int) -> None:
    x = planted()
    cent = x[[0, 1, 2, 3, 4, 5, 6, 7]]  # more centroids than planted clusters: some go empty
    got = spherical_lloyd(x, cent, niter, block=None)
    assert np.array_equal(got.view(np.int32), numpy_reference(x, cent, niter).view(np.int32))
    t, tc = torch.from_numpy(x), torch.from_numpy(cent)
    assert torch.equal(spherical_lloyd(t, tc, niter, block=97),
                       torch_reference(t, tc, niter, 97))


def test_an_unchosen_centroid_stays_put() -> None:
    rng = np.random.default_rng(2)
    x = np.zeros((200, 8), dtype=np.float32)
    x[:, 0] = 1.0
    x += 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    x = l2_normalize(x)
    far = np.zeros((1, 8), dtype=np.float32)
    far[0, 0] = -1.0  # opposite every row: nobody's nearest centroid
    cent = np.concatenate([x[:3], far])
    got = spherical_lloyd(x, cent, 2)
    np.testing.assert_array_equal(got[3], far[0])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_lloyd_until_stable_stops_at_a_fixed_point_or_says_it_did_not() -> None:
    x = planted(seed=3)
    cent = x[:8]
    got, iters, converged = spherical_lloyd_until_stable(x, cent, 100, block=97)
    assert converged and iters > 1
    assert np.array_equal(got, spherical_lloyd(x, cent, iters, block=97))
    assert np.array_equal(spherical_lloyd(x, got, 1, block=97), got)  # moves nothing
    assert not np.array_equal(spherical_lloyd(x, cent, iters - 1, block=97), got)
    short, n_short, ok = spherical_lloyd_until_stable(x, cent, iters - 1, block=97)
    assert (n_short, ok) == (iters - 1, False)
    assert not np.array_equal(spherical_lloyd(x, short, 1, block=97), short)
