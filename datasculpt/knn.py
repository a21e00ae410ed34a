"""Exact k-nearest neighbours by inner product on L2-normalised vectors (cosine similarity).

The ladder: on the GPU, FAISS-GPU brute force on the device array, else a chunked
torch matmul + top-k on the device; on the CPU, faiss-cpu ``IndexFlatIP``, else the same torch
code on the CPU. A missing rung is logged once and the next one runs. Results come back as
host NumPy arrays because their consumers (graph traversal, reports) are host code.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datasculpt.backend import Backend, is_gpu_array, to_numpy

log = logging.getLogger(__name__)

_LOGGED: set[str] = set()
# Query rows per torch matmul: bounds the [chunk, N] similarity block (4 bytes x chunk x N):
# 256 MiB on the host; on a GPU, a quarter of its free memory up to 4 GiB (at N = 1M a host
# budget would mean 67-row matmuls, 15,000 launches).
_TORCH_CHUNK_BYTES = 1 << 28
_GPU_CHUNK_BYTES = 1 << 32
# FAISS-GPU's k-selection handles at most 2048 neighbours per query (GPU_MAX_SELECTION_K).
FAISS_GPU_MAX_K = 2048


def log_once(logger: logging.Logger, key: str, msg: str, *args: Any) -> None:
    """A fallback is worth one line per process, not one per call."""
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.warning(msg, *args)


def _faiss_gpu() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn_impl(backend: Backend, k: int = 1) -> str:
    """The rung that ``knn`` runs on this backend for ``k`` neighbours: faiss-gpu, torch-cuda,
    faiss-cpu or torch-cpu."""
    if backend.is_gpu:
        if _faiss_gpu() is not None:
            if k + 1 <= FAISS_GPU_MAX_K:
                return "faiss-gpu"
            log_once(log, "knn-gpu-k", "knn: FAISS-GPU selects at most %d neighbours; "
                     "using torch matmul top-k on the GPU for k=%d", FAISS_GPU_MAX_K, k)
            return "torch-cuda"
        log_once(log, "knn-gpu", "knn: FAISS-GPU is not available; using torch matmul top-k")
        return "torch-cuda"
    if _faiss() is not None:
        return "faiss-cpu"
    log_once(log, "knn-cpu", "knn: faiss is not installed; using torch matmul top-k on the CPU")
    return "torch-cpu"


_GPU_RES: list[Any] = []


def release_faiss_gpu() -> None:
    """Drop FAISS's GPU resources (their scratch memory) until the next GPU search."""
    _GPU_RES.clear()


def _search_faiss_gpu(x: Any, kk: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss
    import faiss.contrib.torch_utils  # noqa: F401  (lets faiss take torch CUDA tensors)
    import torch

    if not _GPU_RES:
        _GPU_RES.append(faiss.StandardGpuResources())
    t = torch.from_dlpack(x) if is_gpu_array(x) else torch.as_tensor(np.asarray(x)).cuda()
    t = t.float().contiguous()
    sims, idx = faiss.knn_gpu(_GPU_RES[0], t, t, kk, metric=faiss.METRIC_INNER_PRODUCT)
    return sims.cpu().numpy(), idx.cpu().numpy()


def _search_faiss_cpu(x: Any, kk: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    xs = np.ascontiguousarray(to_numpy(x), dtype=np.float32)
    index = faiss.IndexFlatIP(xs.shape[1])
    index.add(xs)
    return index.search(xs, kk)


def search_torch(x: Any, kk: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Chunked ``x @ x.T`` + top-k in torch (any device); exact, memory bounded by the chunk."""
    import torch

    if is_gpu_array(x):
        t = torch.from_dlpack(x)
    else:
        t = torch.as_tensor(np.ascontiguousarray(to_numpy(x)))
    t = t.to(device=device, dtype=torch.float32)
    n = t.shape[0]
    chunk = max(1, min(n, _chunk_bytes(t.device) // (4 * max(n, 1))))
    # Results stay on the device until the end: one transfer, not two syncs per chunk.
    sims = torch.empty((n, kk), dtype=torch.float32, device=t.device)
    idx = torch.empty((n, kk), dtype=torch.int64, device=t.device)
    for a in range(0, n, chunk):
        torch.topk(t[a:a + chunk] @ t.T, kk, dim=1, out=(sims[a:a + chunk], idx[a:a + chunk]))
    return sims.cpu().numpy(), idx.cpu().numpy()


def _chunk_bytes(device: Any) -> int:
    if device.type != "cuda":
        return _TORCH_CHUNK_BYTES
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return max(_TORCH_CHUNK_BYTES, min(_GPU_CHUNK_BYTES, free // 4))


def drop_self(sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From ``k + 1`` hits per row keep ``k``: the row itself when present, else the last hit.

    With duplicate vectors the row itself may tie with its copies and fall off the list; then
    the weakest hit goes instead, so every row keeps exactly ``k`` neighbours.
    """
    n = idx.shape[0]
    drop = idx == np.arange(n)[:, None]
    drop[~drop.any(axis=1), -1] = True
    drop &= np.cumsum(drop, axis=1) == 1  # one per row
    keep = ~drop
    k = idx.shape[1] - 1
    return sims[keep].reshape(n, k), idx[keep].reshape(n, k)


def knn(x: Any, k: int, backend: Backend) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of every row of ``x`` among the other rows, most similar first.

    ``x`` is ``N x D`` and L2-normalised (NumPy or CuPy). Returns host ``(sims, idx)`` of shape
    ``N x min(k, N - 1)``, float32 and int64.
    """
    n = int(x.shape[0])
    k = max(0, min(int(k), n - 1))
    if k == 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    impl = knn_impl(backend, k)
    if impl == "faiss-gpu":
        sims, idx = _search_faiss_gpu(x, k + 1)
    elif impl == "faiss-cpu":
        sims, idx = _search_faiss_cpu(x, k + 1)
    else:
        sims, idx = search_torch(x, k + 1, backend.torch_device)
    sims, idx = drop_self(np.asarray(sims, np.float32), np.asarray(idx, np.int64))
    return sims, idx
