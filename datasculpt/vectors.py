"""Rows on the unit sphere: L2 normalisation and spherical k-means, written once.

Embeddings are compared by cosine, so every stage normalises rows and groups them by the
largest inner product. These helpers take NumPy, CuPy or torch arrays and return the same
kind. Where the libraries differ (allocation, the per-label sum) each keeps the operation its
callers have always run, so a result has the same bits as before this module existed.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from datasculpt.backend import xp_of

ROW_BLOCK = 1 << 16  # rows per product in ``nearest``: bounds the rows x centroids temporary
# An ``eps`` below the norm of every non-zero float64 row (at least 1e-162): ``l2_normalize``
# then scales each such row to unit length, and only an all-zero row stays as it is.
ZERO_ROWS_ONLY = 1e-300


def _is_torch(x: Any) -> bool:
    return array_api_compat.is_torch_array(x)


def l2_normalize(x: Any, eps: float = 1e-12) -> Any:
    """Rows scaled to unit L2 norm; a row whose norm is below ``eps`` is divided by ``eps``
    instead, so an all-zero row stays zero.

    A torch tensor goes through ``torch.nn.functional.normalize`` (the same rule): its fused
    norm rounds differently from a sum of squares, and the encoder's vectors keep their bits.
    """
    if _is_torch(x):
        import torch

        return torch.nn.functional.normalize(x, dim=1, eps=eps)
    xp = xp_of(x)
    return x / xp.maximum(xp.sqrt((x * x).sum(axis=1, keepdims=True)), eps)


def nearest(x: Any, cent: Any, block: int | None = ROW_BLOCK) -> Any:
    """Index (int64) of the centroid with the largest inner product, for every row of ``x``.

    The product runs over ``block`` rows at a time (``None``: all at once). How a product's
    rows are blocked changes the rounding of a BLAS or cuBLAS product, so a caller keeps the
    blocking its results have always been computed with.
    """
    n = int(x.shape[0])
    if _is_torch(x):
        import torch

        out = torch.empty(n, dtype=torch.int64, device=x.device)
    else:
        xp = xp_of(x)
        out = xp.empty(n, dtype=xp.int64)
    step = block or max(n, 1)
    for a in range(0, n, step):
        out[a:a + step] = (x[a:a + step] @ cent.T).argmax(1)
    return out


def label_sums(x: Any, labels: Any, k: int) -> Any:
    """``k x D``: the sum of the rows of ``x`` carrying each label in ``[0, k)``.

    NumPy and CuPy add through a one-hot product, which is deterministic on the GPU (a
    scatter-add's atomics are not); torch adds with ``index_add_``.
    """
    if _is_torch(x):
        import torch

        return torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device).index_add_(
            0, labels, x)
    xp = xp_of(x)
    onehot = labels[:, None] == xp.arange(k)[None, :]
    return onehot.T.astype(x.dtype) @ x


def _where(x: Any) -> Any:
    if _is_torch(x):
        import torch

        return torch.where
    return xp_of(x).where


def _lloyd_step(x: Any, cent: Any, labels: Any) -> Any:
    """Each centroid moved to the normalised sum of the rows ``labels`` gives it; a centroid
    that no row chose stays where it was."""
    sums = label_sums(x, labels, int(cent.shape[0]))
    filled = (sums * sums).sum(1) > 0
    return _where(x)(filled[:, None], l2_normalize(sums), cent)


def spherical_lloyd(x: Any, cent: Any, niter: int, block: int | None = ROW_BLOCK) -> Any:
    """``niter`` spherical Lloyd iterations from the unit rows ``cent``: assign every row of
    ``x`` to its nearest centroid (``nearest``, in ``block`` rows), move each centroid to its
    members' normalised sum; a centroid that no row chose stays where it was."""
    for _ in range(niter):
        cent = _lloyd_step(x, cent, nearest(x, cent, block))
    return cent


def spherical_lloyd_until_stable(x: Any, cent: Any, max_iter: int,
                                 block: int | None = ROW_BLOCK) -> tuple[Any, int, bool]:
    """The iterations of ``spherical_lloyd`` until the assignment stops changing, at most
    ``max_iter``: ``(centroids, iterations, converged)``.

    A fixed number of iterations promises nothing about where they end. When an iteration's
    centroids give every row the label it had, they are the normalised sums of their own
    members, so a further iteration would move nothing: a fixed point (up to the last bits
    of sums added by atomics). ``converged`` is false when ``max_iter`` ran out first. The
    centroids after ``i`` iterations are those of ``spherical_lloyd(x, cent, i, block)``.
    """
    labels = nearest(x, cent, block)
    for i in range(1, max_iter + 1):
        cent = _lloyd_step(x, cent, labels)
        new = nearest(x, cent, block)
        if bool((new == labels).all()):
            return cent, i, True
        labels = new
    return cent, max_iter, False
