"""Clustering: spherical k-means, then ISODATA refinement.

k-means gives a first partition; each ISODATA round then (1) assigns every document to its
nearest centroid, (2) recomputes centroids as normalised means and measures how far they moved,
(3) merges centroid pairs closer than ``merge_threshold``, (4) splits clusters that are too
spread or too heavy in tokens with a 2-means inside them, and (5) folds clusters too light to
fill ``min_cluster_windows`` windows into their nearest neighbour. It stops when a round moved
the centroids by less than ``epsilon`` on average and changed no cluster, or after ``max_iter``
rounds.

Above ``cell_docs`` documents one k-means would need k ~ sqrt(N) centroids (~15M at 1B), so
the clustering runs in two levels: a coarse k-means cuts the corpus into cells, and the above
runs, unchanged, inside each cell as one executor task (``_cluster_cells``). Up to
``cell_docs`` nothing changes, bit for bit.

Choices worth knowing:

* Automatic k is ``ceil(total_tokens / (windows_per_cluster * ctx_len))`` clipped to
  ``[1, min(N // 2, ceil(sqrt(N)))]``. k-means costs ``O(N k D)`` per iteration, so k stays
  near ``sqrt(N)``; the token-mass split rule still breaks up clusters too heavy to pack.
* The centroid shift of a round is the mean of ``1 - cos(old_j, new_j)`` over the clusters of
  step (2), where k has not changed yet; steps (3)-(5) change k and count as "changed", which
  by itself prevents convergence in that round.
* Assignment in a round is exact (one matmul) while k is at most ``assign_candidates``; above
  that, on the host, a document is compared only with the ``assign_candidates`` centroids
  nearest to its current one, which makes a round ``O(N m D)`` instead of ``O(N k D)``. Right
  after k-means the nearest centroid is virtually always among them. On the GPU assignment is
  always exact: one blocked product over all centroids beats a kernel launch per cluster.
* Every k-means rung trains on the sample and starts from the centroids that faiss-cpu
  draws with the run's seed (``_faiss_perm_head``); how they iterate from there differs
  (docs/DESIGN.md, "What differs between the CPU and the GPU").
* Mean cosine to a centroid is ``|S_j| / n_j`` for the member sum ``S_j``, so spreads cost
  nothing beyond the centroid update.
* Labels are renumbered at the end by each cluster's smallest document index, so equal inputs
  and seed give identical arrays whatever the implementation's internal numbering.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from datasculpt.backend import (
    Backend,
    is_gpu_array,
    resolve_backend,
    scatter_add,
    to_device,
    to_numpy,
    xp_of,
)
from datasculpt.blas import one_blas_thread
from datasculpt.errors import ConfigError
from datasculpt.executors import Executor, LocalExecutor, on_task_device
from datasculpt.executors.base import host_threads
from datasculpt.io.row_file import RowFile, host_rows
from datasculpt.knn import log_once
from datasculpt.vectors import (
    ROW_BLOCK,
    l2_normalize,
    nearest,
    spherical_lloyd,
    spherical_lloyd_until_stable,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 16  # rows per row-dot block: bounds the gathered centroids to chunk x D
_SPLIT_ITERS = 10  # 2-means iterations inside a cluster being split
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ClusterResult:
    """Per-document labels (int32, canonical order), ``k x D`` centroids and stage stats."""

    labels: np.ndarray
    centroids: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- array helpers


def _segment_sum(x: Any, labels: Any, k: int) -> Any:
    """Row sums of the unit rows ``x`` per label, ``k x D`` float32.

    The host adds each label's rows in document order (``scatter_add``), so a sum has the same
    bits whichever thread or executor computes it. A GPU's float atomics land in no fixed
    order, so there the rows are added in fixed point (``_fixed_point_sum``), which no order
    changes. The two differ in the last bits, as the host and GPU products do anyway.
    """
    if is_gpu_array(x):
        return _fixed_point_sum(x, labels, k)
    xp = xp_of(x)
    out = xp.zeros((k, x.shape[1]), dtype=xp.float32)
    scatter_add(out, labels, x.astype(xp.float32, copy=False))
    return out


def _fixed_point_sum(x: Any, labels: Any, k: int, block: int = ROW_BLOCK) -> Any:
    """Per-label sums of rows whose entries lie in ``[-1, 1]``, the same bits in any order.

    Each entry is rounded to a multiple of ``2**-s`` and the multiples are added as int64,
    which is exact and so order-free: GPU atomics give the same sums on every run. Each sum is
    then rounded to float32 once. ``s`` is the finest scale at which ``n`` entries cannot
    overflow (``n * 2 * 2**s <= 2**62``): 42 for a block of 2**18 rows, where every entry of
    magnitude ``2**-19`` or more is kept exactly. Rows are converted ``block`` at a time, so
    the int64 copy stays ``block x D``.
    """
    xp = xp_of(x)
    n = int(x.shape[0])
    scale = 2.0 ** (61 - max(n, 1).bit_length())
    acc = xp.zeros((k, x.shape[1]), dtype=xp.int64)
    for a in range(0, n, block):
        q = xp.rint(x[a:a + block].astype(xp.float32, copy=False) * xp.float32(scale))
        scatter_add(acc, labels[a:a + block], q.astype(xp.int64))
    return (acc.astype(xp.float64) / scale).astype(xp.float32)


def _rowdot(x: Any, c: Any, lab: Any) -> Any:
    """``sum(x[i] * c[lab[i]])`` for every row, in blocks so the gathered centroids stay small."""
    xp = xp_of(x)
    out = xp.empty(x.shape[0], dtype=xp.float32)
    for a in range(0, x.shape[0], _CHUNK):
        out[a:a + _CHUNK] = xp.einsum("nd,nd->n", x[a:a + _CHUNK], c[lab[a:a + _CHUNK]])
    return out


def _candidates(c: Any, m: int) -> Any:
    """``k x m``: each centroid's ``m`` nearest centroids, itself first."""
    xp = xp_of(c)
    k = c.shape[0]
    cc = c @ c.T
    cc[xp.arange(k), xp.arange(k)] = 2.0  # the current centroid is always a candidate
    return xp.argsort(-cc, axis=1)[:, :m]


def _assign_among(x: Any, c: Any, labels: Any, nbr: Any) -> Any:
    """Nearest centroid among ``nbr[labels[i]]`` for every row ``i`` (``nbr`` from
    ``_candidates``: the centroids nearest each document's current one).

    Documents are grouped by current label (one sort) and each group meets its candidate
    centroids in one matmul: a loop over clusters, never over documents. The products are
    small (a cluster's members by ``m`` centroids), where OpenBLAS rounds differently with
    another thread count, so the stage holds BLAS at one thread (``cluster``, the tasks).
    """
    xp = xp_of(x)
    k = c.shape[0]
    order = xp.argsort(labels, kind="stable")
    bounds = to_numpy(xp.searchsorted(labels[order], xp.arange(k + 1))).tolist()
    out = labels.copy()
    for j in range(k):
        a, b = bounds[j], bounds[j + 1]
        if b > a:
            rows = order[a:b]
            out[rows] = nbr[j][xp.argmax(x[rows] @ c[nbr[j]].T, axis=1)]
    return out


def _first_per_segment(seg: Any, key: Any) -> Any:
    """Row index with the smallest ``key`` in each segment id (ties: lowest row), segment order."""
    xp = xp_of(key)
    order = xp.argsort(key, kind="stable")
    _, first = xp.unique(seg[order], return_index=True)
    return order[first]


# --------------------------------------------------------------------------- k-means ladder


def _faiss_perm_head(n: int, count: int, seed: int) -> np.ndarray:
    """The first ``count`` entries of FAISS's ``rand_perm(n, seed)`` (faiss/utils/random.cpp),
    the permutation behind its k-means sample and initial centroids.

    Every rung seeds from it, so each starts where faiss-cpu starts, whether or not FAISS is
    installed. FAISS shuffles with ``std::mt19937`` seeded by the low 32 bits of ``seed``
    (NumPy's legacy MT19937 seeding is the same), swapping entry ``i`` with
    ``i + mt() % (n - i)``; the first ``count`` swaps decide the first ``count`` entries, so
    this costs ``O(count)``, not ``O(n)``. (FAISS's k-means seeds from the clock when ``seed``
    is negative; here its low 32 bits still seed the other rungs.)
    """
    count = min(count, n)
    key = np.random.RandomState(seed & 0xFFFFFFFF).get_state()[1]
    gen = np.random.MT19937()
    gen.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
    swaps = max(0, min(count, n - 1))
    i = np.arange(swaps, dtype=np.int64)
    partner = (i + gen.random_raw(swaps).astype(np.int64) % (n - i)).tolist()
    moved: dict[int, int] = {}  # position -> entry, where the shuffle has changed it
    head = [0] * count
    for a, b in enumerate(partner):
        head[a] = moved.get(b, b)
        moved[b] = moved.get(a, a)
    for a in range(swaps, count):
        head[a] = moved.get(a, a)
    return np.asarray(head, dtype=np.int64)


def _sample_rows(n: int, k: int, seed: int, max_points: int) -> np.ndarray | None:
    """The rows k-means trains on, in FAISS's order: ``None`` (all rows, in order) up to
    ``k * max_points`` rows, else the head of FAISS's seeded permutation."""
    return None if n <= k * max_points else _faiss_perm_head(n, k * max_points, seed)


def _torch_sample(x: Any, k: int, seed: int, device: str, max_points: int) -> Any:
    """The training sample of ``_sample_rows`` as a float32 torch tensor on ``device``; only
    the sample is copied when ``x`` lives elsewhere."""
    import torch

    t = torch.from_dlpack(x) if is_gpu_array(x) else torch.from_numpy(np.asarray(x))
    rows = _sample_rows(int(t.shape[0]), k, seed, max_points)
    if rows is not None:
        t = t[torch.from_numpy(rows).to(t.device)]
    return t.to(device=device, dtype=torch.float32)


def _torch_init(train: Any, k: int, seed: int) -> Any:
    """The ``k`` rows of the training sample FAISS starts from (``rand_perm(m, seed + 1)``)."""
    import torch

    rows = _faiss_perm_head(int(train.shape[0]), k, seed + 1)
    return train[torch.from_numpy(rows).to(train.device)]


def _kmeans_torch(x: Any, k: int, niter: int, seed: int, device: str, max_points: int) -> Any:
    """``niter`` spherical Lloyd iterations in torch (device or CPU) from FAISS's sample and
    initial centroids."""
    train = _torch_sample(x, k, seed, device, max_points)
    return spherical_lloyd(train, _torch_init(train, k, seed), niter)


def _kmeans_faiss(x: Any, k: int, niter: int, seed: int, gpu: bool, max_points: int) -> Any:
    import faiss

    if gpu and (not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1):
        raise _RungMissing("this faiss build has no GPU support")

    if is_gpu_array(x):
        # FAISS trains from host memory: copy the training sample only, not all of x. It is
        # the sample FAISS would draw from all of x, in its order, so FAISS draws no other
        # and starts from the centroids faiss-cpu starts from.
        x = _torch_sample(x, k, seed, "cpu", max_points).numpy()
    xs = np.ascontiguousarray(to_numpy(x), dtype=np.float32)
    km = faiss.Kmeans(xs.shape[1], k, niter=niter, seed=seed, spherical=True, gpu=gpu,
                      max_points_per_centroid=max_points, min_points_per_centroid=1,
                      verbose=False)
    km.train(xs)
    return km.centroids


def _spherical_polish(train: Any, cent: Any, max_iter: int) -> tuple[Any, dict[str, Any]]:
    """Spherical Lloyd iterations from ``cent`` until the training sample's labels stop
    changing (a spherical k-means fixed point), at most ``max_iter``; the stats say which,
    and running out of iterations is a warning, since the centroids are then no fixed point."""
    cent, iters, converged = spherical_lloyd_until_stable(train, cent, max_iter)
    if not converged:
        log.warning("kmeans: the spherical polish of cuML's centroids still moved labels after "
                    "%d iterations (cluster.kmeans_iter); its centroids are not a fixed point",
                    iters)
    return cent, {"kmeans_polish_iterations": iters, "kmeans_polish_converged": converged}


def _kmeans_cuml(x: Any, k: int, niter: int, seed: int, max_points: int
                 ) -> tuple[Any, dict[str, Any]]:
    """cuML k-means (Euclidean Lloyd) from the sample and initial centroids of the other
    rungs (not cuML's own k-means|| seeding), then a spherical polish from its centroids
    (``_spherical_polish``, at most ``niter`` iterations); returns the centroids and the
    polish's stats.

    cuML has no spherical k-means: on unit vectors its Euclidean assignment favours centroids
    of small norm (tight clusters), so its partition is not the one the FAISS and torch rungs
    converge to. The polish runs until the labels stop changing, so the result is a spherical
    k-means fixed point, unless the stats and a warning say that the iterations ran out.
    """
    import torch
    from cuml.cluster import KMeans

    train = _torch_sample(x, k, seed, "cuda", max_points)
    # n_init=1: with an array init, cuML's default ("auto") would run 10 times from it.
    km = KMeans(n_clusters=k, max_iter=niter, random_state=seed, output_type="cupy",
                init=to_device(_torch_init(train, k, seed)), n_init=1)
    km.fit(train)  # cuML takes the torch CUDA tensor through __cuda_array_interface__
    cent = l2_normalize(torch.from_dlpack(km.cluster_centers_).to(train.dtype))
    return _spherical_polish(train, cent, niter)


def kmeans(
    x: Any, k: int, niter: int, seed: int, backend: Backend, max_points_per_centroid: int = 256,
    rung: str = "auto",
) -> tuple[Any, Any, str]:
    """Spherical k-means of the normalised rows of ``x``: ``(centroids, labels, impl)``.

    Centroids are normalised and live on the backend; labels are the exact nearest centroid.
    The ladder is cuML -> FAISS-GPU -> torch on the GPU and faiss-cpu -> torch on the CPU, each
    step taken (and logged) when the rung above is not installed or fails to import;
    ``rung`` names one rung and makes its absence an error.
    """
    cent, labels, impl, _ = _train_kmeans(x, k, niter, seed, backend, max_points_per_centroid,
                                          rung)
    return cent, nearest(x, cent) if labels is None else labels, impl


GPU_RUNGS = ("cuml", "faiss-gpu", "torch")
CPU_RUNGS = ("faiss-cpu", "torch")


class _RungMissing(Exception):
    """A library that imports but lacks what the rung needs (a CPU-only FAISS build)."""


def _rung_unavailable(name: str, exc: BaseException, forced: bool) -> None:
    """Not installed: the next rung, logged once. Installed but broken (an import error
    inside it, a CUDA mismatch): a warning every time, with the error. Asked for by name
    (``cluster.kmeans=...``): an error, never a quiet substitute."""
    missing = isinstance(exc, _RungMissing) or (
        isinstance(exc, ModuleNotFoundError)
        and (exc.name or "").split(".")[0] in ("cuml", "faiss"))
    why = f"{exc.__class__.__name__}: {exc}"
    if forced:
        state = "not available" if missing else "installed but failing"
        raise ConfigError(f"cluster.kmeans={name}: {state} ({why})") from exc
    if missing:
        log_once(log, f"kmeans-{name}", "kmeans: %s is not available (%s); trying the next rung",
                 name, why)
    else:
        log.warning("kmeans: %s is installed but failing (%s); trying the next rung", name, why)


def _train_kmeans(
    x: Any, k: int, niter: int, seed: int, backend: Backend, max_points_per_centroid: int,
    rung: str = "auto",
) -> tuple[Any, Any, str, dict[str, Any]]:
    """``kmeans`` without the final assignment: ``(centroids, labels or None, impl, stats)``;
    labels come only with the trivial ``k = 1`` and ``k = N``, stats only from a rung that
    has some (cuML's polish). ``rung`` forces one rung."""
    xp = backend.xp
    n = int(x.shape[0])
    k = max(1, min(int(k), n))
    if k == 1 or k == n:
        cent = l2_normalize(x.sum(axis=0, keepdims=True)) if k == 1 else x.copy()
        labels = xp.arange(n, dtype=xp.int64) if k == n else xp.zeros(n, xp.int64)
        return cent, labels, "trivial", {}
    ladder = GPU_RUNGS if backend.is_gpu else CPU_RUNGS
    if rung != "auto" and rung not in ladder:
        raise ConfigError(f"cluster.kmeans={rung} is not a rung of the {backend.name} backend "
                          f"(choose auto, {', '.join(ladder)})")
    train = {  # each: (centroids, the rung's stats)
        "cuml": lambda: _kmeans_cuml(x, k, niter, seed, max_points_per_centroid),
        "faiss-gpu": lambda: (
            _kmeans_faiss(x, k, niter, seed, True, max_points_per_centroid), {}),
        "faiss-cpu": lambda: (
            _kmeans_faiss(x, k, niter, seed, False, max_points_per_centroid), {}),
        "torch": lambda: (_kmeans_torch(x, k, niter, seed, backend.torch_device,
                                        max_points_per_centroid), {}),
    }
    cent, impl, stats = None, "", {}
    for name in ladder if rung == "auto" else (rung,):
        try:
            cent, stats = train[name]()
        except (ImportError, _RungMissing) as exc:
            _rung_unavailable(name, exc, forced=rung != "auto")
            continue
        impl = f"torch-{backend.torch_device}" if name == "torch" else name
        break
    return l2_normalize(xp.asarray(backend.asarray(cent), dtype=xp.float32)), None, impl, stats


# --------------------------------------------------------------------------- ISODATA


def auto_k(n: int, total_tokens: float, ctx_len: int, windows_per_cluster: float) -> int:
    """Starting k from the token mass, clipped to ``[1, min(N // 2, ceil(sqrt(N)))]``."""
    k = math.ceil(total_tokens / max(windows_per_cluster * ctx_len, 1.0))
    return int(max(1, min(k, n // 2, math.ceil(math.sqrt(n)))))


@dataclass
class _State:
    """Labels and per-cluster sums of the current partition (every cluster non-empty)."""

    labels: Any  # int64 [N]
    sums: Any  # float32 [k, D]; centroid = sums / |sums|
    count: Any  # int64 [k]
    mass: Any  # float64 [k] tokens

    @property
    def k(self) -> int:
        return int(self.sums.shape[0])

    @property
    def centroids(self) -> Any:
        return l2_normalize(self.sums)

    @property
    def spread(self) -> Any:
        """Mean ``1 - cos`` of the members to their centroid (rows are unit vectors)."""
        xp = xp_of(self.sums)
        return 1.0 - xp.sqrt((self.sums * self.sums).sum(axis=1)) / xp.maximum(self.count, 1)


def _state(x: Any, w: Any, labels: Any, k: int) -> _State:
    """Per-cluster sums for ``labels`` in ``[0, k)``, with empty clusters dropped and renumbered."""
    xp = xp_of(x)
    count = xp.bincount(labels, minlength=k)
    if bool((count == 0).any()):
        remap = xp.cumsum(count > 0) - 1
        labels = remap[labels]
        k = int(remap[-1]) + 1
        count = xp.bincount(labels, minlength=k)
    mass = xp.bincount(labels, weights=w, minlength=k)
    return _State(labels, _segment_sum(x, labels, k), count, mass)


def _block_task(bounds: tuple[int, int], *, x: Any, w: Any, labels: Any, k: int, cent: Any,
                nbr: Any) -> tuple[Any, Any, Any, Any]:
    """One block ``[a, b)`` of rows (an executor task): its labels (reassigned when ``cent``
    is given, among ``nbr`` candidates when that is given too) and its per-cluster sums,
    counts and token mass over ``k`` clusters."""
    a, b = bounds
    xb, wb, lab, cent, nbr = (on_task_device(v) for v in (
        x[a:b], w[a:b], None if labels is None else labels[a:b], cent, nbr))
    xp = xp_of(xb)
    if cent is not None:
        with one_blas_thread():  # also in a Ray worker's process (blas.py)
            lab = nearest(xb, cent) if nbr is None else _assign_among(xb, cent, lab, nbr)
    return (lab, _segment_sum(xb, lab, k), xp.bincount(lab, minlength=k),
            xp.bincount(lab, weights=wb, minlength=k))


class _Passes:
    """The passes over every document of a round, as executor tasks over fixed blocks of
    ``task_docs`` rows whose results are added in block order. The partition fixes the
    rounding, so every executor and thread count gives the same bits: on the host, where a
    block adds its rows in document order, and on a GPU, where it adds them in fixed point
    (``_segment_sum``) and its products are cuBLAS's (reproducible on one GPU model and
    library version). Token masses are integers, exact in float64 in any order. The host and
    the GPU do not give each other's bits (docs/DESIGN.md, "What differs between the CPU and
    the GPU"). The rows and their token counts reach the tasks once per run
    (``executor.share``); only the labels and the k x D centroids travel per pass."""

    def __init__(self, x: Any, w: Any, backend: Backend, executor: Executor,
                 task_docs: int) -> None:
        self.backend, self.executor = backend, executor
        n = int(x.shape[0])
        self.bounds = [(a, min(a + task_docs, n)) for a in range(0, n, task_docs)]
        self.x, self.w = executor.share(x), executor.share(w)

    def state(self, k: int, labels: Any = None, cent: Any = None, nbr: Any = None
              ) -> tuple[_State, Any]:
        """The partition after (re)assignment, empty clusters dropped and renumbered, and the
        old ids that survived (in order)."""
        xp = self.backend.xp
        gpu = self.backend.is_gpu
        parts = self.executor.map(
            _block_task, self.bounds, threads=1 if gpu else host_threads(), gpu=gpu,
            x=self.x, w=self.w, labels=labels, k=k, cent=cent, nbr=nbr)
        parts = [[self.backend.asarray(v) for v in p] for p in parts]
        labels = xp.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        sums, count, mass = parts[0][1], parts[0][2], parts[0][3]
        for p in parts[1:]:
            sums, count, mass = sums + p[1], count + p[2], mass + p[3]
        kept = xp.nonzero(count > 0)[0]
        if int(kept.shape[0]) < k:
            remap = xp.cumsum(count > 0) - 1
            labels, sums, count, mass = remap[labels], sums[kept], count[kept], mass[kept]
        return _State(labels, sums, count, mass), kept


def _merge(st: _State, threshold: float, max_tokens: float) -> tuple[Any, int]:
    """Greedy matching of centroid pairs with cosine >= threshold, closest pairs first.

    A cluster merges at most once per round (classic ISODATA), and never into a pair heavier
    than ``max_tokens``, which the split rule would undo in the next round.
    """
    xp = xp_of(st.sums)
    c = st.centroids
    sim = c @ c.T
    iu = xp.triu(xp.ones((st.k, st.k), dtype=bool), 1)
    cand = iu & (sim >= threshold) & ((st.mass[:, None] + st.mass[None, :]) <= max_tokens)
    ii, jj = (to_numpy(a) for a in xp.nonzero(cand))
    if ii.size == 0:
        return st.labels, 0
    s = to_numpy(sim[xp.asarray(ii), xp.asarray(jj)])
    target = np.arange(st.k)
    used = np.zeros(st.k, dtype=bool)
    for p in np.lexsort((jj, ii, -s)).tolist():
        i, j = int(ii[p]), int(jj[p])
        if not (used[i] or used[j]):
            used[i] = used[j] = True
            target[j] = i
    n_merged = int((target != np.arange(st.k)).sum())
    return xp.asarray(target)[st.labels], n_merged


def _split(
    x: Any, st: _State, split_threshold: float, max_tokens: float, min_tokens: float,
    merge_threshold: float, w: Any,
) -> tuple[Any, int]:
    """Bisect every cluster too spread or too heavy with a 2-means inside it (all at once).

    Seeds are the member farthest from the centroid and the member farthest from that one.
    A spread-triggered split is kept only when both halves can fill ``min_tokens`` and are
    less similar than ``merge_threshold``; otherwise the fold or merge rule would undo it.
    So a spread cluster lighter than ``2 * min_tokens`` is not tried at all: no halves of it
    could both fill ``min_tokens`` (token masses are integers, exact in float64), and a
    cluster's 2-means does not depend on the others tried beside it (each settles at a fixed
    point or runs the full ``_SPLIT_ITERS``), so the splits made are the same. At 1M static
    vectors these were 90% of the members tried in the later rounds.
    """
    xp = xp_of(x)
    k = st.k
    heavy = st.mass > max_tokens
    could = (st.spread > split_threshold) & (st.mass >= 2.0 * min_tokens)
    want = (could | heavy) & (st.count >= 2)
    if not bool(want.any()):
        return st.labels, 0
    members = xp.nonzero(want[st.labels])[0]
    sel = xp.nonzero(want)[0]
    local = xp.full(k, -1, dtype=xp.int64)
    local[sel] = xp.arange(sel.shape[0])
    seg = local[st.labels[members]]
    xs = x[members]
    cent = st.centroids[sel]
    a_rows = _first_per_segment(seg, _rowdot(xs, cent, seg))
    a = xs[a_rows]
    b = xs[_first_per_segment(seg, _rowdot(xs, a, seg))]
    side = None
    for _ in range(_SPLIT_ITERS):
        new_side = (_rowdot(xs, b, seg) > _rowdot(xs, a, seg)).astype(xp.int64)
        if side is not None and bool((new_side == side).all()):
            break
        side = new_side
        sums = _segment_sum(xs, seg * 2 + side, 2 * sel.shape[0]).reshape(-1, 2, xs.shape[1])
        filled = xp.sqrt((sums * sums).sum(axis=2)) > 0
        a = xp.where(filled[:, :1], l2_normalize(sums[:, 0]), a)
        b = xp.where(filled[:, 1:], l2_normalize(sums[:, 1]), b)
    n_sel = sel.shape[0]
    half_mass = xp.bincount(seg * 2 + side, weights=w[members], minlength=2 * n_sel)
    half_mass = half_mass.reshape(n_sel, 2)
    half_count = xp.bincount(seg * 2 + side, minlength=2 * n_sel).reshape(n_sel, 2)
    ok = (half_count > 0).all(axis=1)
    soft = ((half_mass >= min_tokens).all(axis=1) & ((a * b).sum(axis=1) < merge_threshold))
    ok &= heavy[sel] | soft
    n_split = int(ok.sum())
    if n_split == 0:
        return st.labels, 0
    new_id = xp.full(n_sel, -1, dtype=xp.int64)
    new_id[ok] = k + xp.arange(n_split)
    labels = st.labels.copy()
    moved = ok[seg] & (side == 1)
    labels[members[moved]] = new_id[seg[moved]]
    return labels, n_split


def _fold(x: Any, st: _State, min_tokens: float) -> tuple[Any, int]:
    """Move the members of clusters lighter than ``min_tokens`` to the nearest other centroid.

    Clusters at or above the bound receive them; when none is, the heaviest one does (so a
    corpus smaller than one window ends in a single cluster).
    """
    xp = xp_of(x)
    small = st.mass < min_tokens
    if st.k == 1 or not bool(small.any()):
        return st.labels, 0
    targets = xp.nonzero(~small)[0]
    if targets.shape[0] == 0:
        targets = xp.argmax(st.mass).reshape(1)
        small = xp.ones(st.k, dtype=bool)
        small[targets] = False
    rows = xp.nonzero(small[st.labels])[0]
    labels = st.labels.copy()
    labels[rows] = targets[nearest(x[rows], st.centroids[targets])]
    return labels, int(small.sum())


def _canonical(labels: Any, k: int) -> tuple[Any, Any]:
    """Renumber clusters by their smallest document index; returns (labels, old id per new id)."""
    xp = xp_of(labels)
    old, first = xp.unique(labels, return_index=True)
    by_first = old[xp.argsort(first)]
    rank = xp.empty(k, dtype=xp.int64)
    rank[by_first] = xp.arange(by_first.shape[0])
    return rank[labels], by_first


def cluster(
    embeddings: Any, n_tokens: np.ndarray, ctx_len: int, cfg: Any, backend: Backend, seed: int,
    executor: Executor,
) -> ClusterResult:
    """Cluster documents for packing; ``n_tokens`` weights the token-mass rules.

    Up to ``cfg.cell_docs`` documents this is one flat k-means + ISODATA (``_cluster_flat``),
    bit for bit what it has always been. Above it the automatic k (~sqrt(N)) would be out of
    reach of one k-means, so the corpus is cut into cells first (``_cluster_cells``).

    ``embeddings`` is an ``N x D`` array (host or device) or a :class:`RowFile` (the run's
    ``embeddings.npy``): the cells read their rows from it on the host, while the flat path,
    one k-means over everything, maps all of it."""
    cell_docs = getattr(cfg, "cell_docs", None)
    # One BLAS thread, set here for the threads the passes start (blas.py): the candidate
    # products' rounding must not depend on the cores, and the block tasks already keep the
    # host's cores busy side by side.
    with one_blas_thread():
        if cell_docs is None or int(embeddings.shape[0]) <= int(cell_docs):
            return _cluster_flat(_whole(embeddings), n_tokens, ctx_len, cfg, backend, seed,
                                 executor)
        return _cluster_cells(embeddings, n_tokens, ctx_len, cfg, backend, seed, executor)


def _cluster_flat(
    embeddings: Any, n_tokens: np.ndarray, ctx_len: int, cfg: Any, backend: Backend, seed: int,
    executor: Executor,
) -> ClusterResult:
    """One k-means + ISODATA over all of ``embeddings``.

    k-means trains on a sample in this process; the assignment passes and centroid sums of
    every round run as ``executor`` tasks over blocks of ``cfg.task_docs`` documents."""
    xp = backend.xp
    t0 = time.perf_counter()
    x = l2_normalize(xp.asarray(backend.asarray(embeddings), dtype=xp.float32))
    w = xp.asarray(backend.asarray(np.asarray(n_tokens)), dtype=xp.float64)
    n, dim = int(x.shape[0]), int(x.shape[1])
    if n == 0:
        return ClusterResult(np.zeros(0, np.int32), np.zeros((0, dim), np.float32),
                             {"k": 0, "iterations": 0, "final_shift": 0.0})
    total = float(w.sum())
    k0 = int(cfg.k) if cfg.k is not None else auto_k(n, total, ctx_len, cfg.windows_per_cluster)
    k0 = max(1, min(k0, n))
    min_tokens = float(cfg.min_cluster_windows) * ctx_len
    max_tokens = float(cfg.max_cluster_tokens or 64 * ctx_len)
    m = int(cfg.assign_candidates)
    max_points = int(cfg.max_points_per_centroid)

    cent, labels, km_impl, km_stats = _train_kmeans(x, k0, int(cfg.kmeans_iter), seed, backend,
                                                    max_points, str(cfg.kmeans))
    t_kmeans = time.perf_counter() - t0
    passes = _Passes(x, w, backend, executor, int(cfg.task_docs))
    st, _ = passes.state(int(cent.shape[0]), labels=labels,
                         cent=cent if labels is None else None)
    rounds: list[dict[str, Any]] = []
    shift, converged = 0.0, False
    for _ in range(int(cfg.max_iter)):
        t_round = time.perf_counter()
        old = st.centroids
        # On the GPU one blocked GEMM over all centroids beats a launch per cluster.
        exact = st.k <= m or backend.is_gpu
        new, kept = passes.state(st.k, labels=st.labels, cent=old,
                                 nbr=None if exact else _candidates(old, m))
        # Clusters emptied by the assignment drop out: compare the survivors only.
        shift = max(0.0, float((1.0 - (old[kept] * new.centroids).sum(axis=1)).mean()))
        st = new
        labels, n_merged = _merge(st, float(cfg.merge_threshold), max_tokens)
        if n_merged:
            st, _ = passes.state(st.k, labels=labels)
        labels, n_split = _split(x, st, float(cfg.split_threshold), max_tokens, min_tokens,
                                 float(cfg.merge_threshold), w)
        if n_split:
            st, _ = passes.state(st.k + n_split, labels=labels)
        labels, n_folded = _fold(x, st, min_tokens)
        if n_folded:
            st, _ = passes.state(st.k, labels=labels)
        rounds.append({"k": st.k, "shift": shift, "merged": n_merged, "split": n_split,
                       "folded": n_folded, "assign": "exact" if exact else f"candidates-{m}",
                       "seconds": time.perf_counter() - t_round})
        if shift < float(cfg.epsilon) and not (n_merged or n_split or n_folded):
            converged = True
            break
    if not rounds and st.k > 1:  # max_iter == 0 still honours the minimum cluster size
        labels, n_folded = _fold(x, st, min_tokens)
        if n_folded:
            st, _ = passes.state(st.k, labels=labels)

    labels, old_ids = _canonical(st.labels, st.k)
    order = to_numpy(old_ids)
    spread = to_numpy(st.spread)[order]
    stats = {
        "k": st.k, "k_initial": k0, "iterations": len(rounds), "final_shift": shift,
        "converged": converged, "kmeans": km_impl, **km_stats, "xp": xp.__name__,
        "kmeans_seconds": t_kmeans,
        "isodata_seconds": time.perf_counter() - t0 - t_kmeans,
        "seconds": time.perf_counter() - t0, "rounds": rounds,
        "assign": rounds[-1]["assign"] if rounds else "exact",
        "sizes": to_numpy(st.count)[order].astype(int).tolist(),
        "tokens": to_numpy(st.mass)[order].astype(int).tolist(),
        "spread": [round(float(s), 6) for s in spread],
        "min_cluster_tokens": min_tokens, "max_cluster_tokens": max_tokens,
    }
    log.info("cluster: k=%d (start %d, %s) after %d rounds, shift %.2e, %.1fs", st.k, k0,
             km_impl, len(rounds), shift, stats["seconds"])
    return ClusterResult(
        labels=to_numpy(labels).astype(np.int32),
        centroids=np.ascontiguousarray(to_numpy(st.centroids)[order], dtype=np.float32),
        stats=stats,
    )


# --------------------------------------------------------------------------- two levels


class _InTask(LocalExecutor):
    """The executor of the block passes inside one cell's task: serial, because the cells
    themselves already run in parallel (threads or processes), and the bits depend on the
    blocks, not on who runs them."""

    def map(self, fn: Callable[..., R], items: Sequence[T], *, threads: int = 1,
            gpu: bool = False, **shared: Any) -> list[R]:
        del threads
        return super().map(fn, items, threads=1, gpu=gpu, **shared)


def _cell_task(idx: Any, *, x: Any, w: Any, unit: bool, ctx_len: int, cfg: Any,
               backend: str, seed: int) -> ClusterResult:
    """One cell (an executor task): today's flat clustering of the rows ``idx`` of ``x``,
    its own k from its own token mass. ``backend`` travels by name (a module does not
    pickle) and is rebuilt where the task runs.

    ``unit``: ``x`` is the normalised matrix where the task computes (the GPU path, which
    moved it there once); else ``x`` is the host rows as given (a :class:`RowFile` or an
    array) and the task reads its own rows and normalises them, the bits the normalised
    matrix would give (a row's norm is its own)."""
    be = resolve_backend(backend)
    with one_blas_thread():  # also in a Ray worker's process (blas.py)
        if unit:
            xb = on_task_device(x)
            rows = xp_of(xb).asarray(idx)
            return _cluster_flat(xb[rows], on_task_device(w)[rows], ctx_len, cfg, be, seed,
                                 _InTask())
        return _cluster_flat(l2_normalize(host_rows(x, idx)), w[idx], ctx_len, cfg, be, seed,
                             _InTask())


def _nearest_task(bounds: tuple[int, int], *, x: Any, cent: Any) -> Any:
    """The nearest centroid of every row of the block ``[a, b)`` of the host rows ``x`` (an
    executor task): only the block is read and normalised, in the blocks of ``_Passes``,
    so the products and labels are those of a pass over the normalised matrix."""
    a, b = bounds
    with one_blas_thread():  # also in a Ray worker's process (blas.py)
        return nearest(l2_normalize(host_rows(x, slice(a, b))), cent)


def _coarse_by_rows(
    x: Any, shared: Any, k1: int, cfg: Any, backend: Backend, seed: int, executor: Executor,
) -> tuple[np.ndarray, str]:
    """Cells on the host, reading rows of ``x`` (a :class:`RowFile` or a host array) by index:
    the coarse k-means trains on its sample only (``_sample_rows``: the rows FAISS would draw
    from all of ``x``, in its order, so every rung starts and iterates as on all of it), and
    every document meets the centroids in executor tasks over blocks of ``task_docs`` rows.
    Returns the canonical cell of every document and the rung."""
    n = int(x.shape[0])
    rows = _sample_rows(n, k1, seed, int(cfg.max_points_per_centroid))
    # A sample no larger than k (max_points_per_centroid 1) would be k-means' trivial case,
    # not the k-means FAISS runs on it: train on everything, as FAISS then does.
    whole = rows is None or rows.shape[0] <= k1
    train = l2_normalize(host_rows(x, slice(None) if whole else rows))
    cent, labels, km_impl, _ = _train_kmeans(
        train, k1, int(cfg.kmeans_iter), seed, backend, int(cfg.max_points_per_centroid),
        str(cfg.kmeans))
    del train
    if labels is None or not whole:
        task_docs = int(cfg.task_docs)
        bounds = [(a, min(a + task_docs, n)) for a in range(0, n, task_docs)]
        parts = executor.map(_nearest_task, bounds, threads=host_threads(), x=shared,
                             cent=to_numpy(cent))
        labels = np.concatenate([to_numpy(p) for p in parts]) if parts else np.zeros(0, int)
    cell, _ = _canonical(to_numpy(labels), int(cent.shape[0]))
    return to_numpy(cell), km_impl


def _coarse_on_device(
    embeddings: Any, w: Any, k1: int, cfg: Any, backend: Backend, seed: int,
    executor: Executor,
) -> tuple[np.ndarray, str, Any, Any]:
    """Cells on the GPU: the normalised matrix moved there once (the rounds of every cell
    compute with it), the coarse k-means and a pass of ``_Passes`` over all of it. Returns
    the canonical cell of every document, the rung and the shared matrix and token counts."""
    xp = backend.xp
    x = l2_normalize(xp.asarray(backend.asarray(_whole(embeddings)), dtype=xp.float32))
    cent, labels, km_impl, _ = _train_kmeans(
        x, k1, int(cfg.kmeans_iter), seed, backend, int(cfg.max_points_per_centroid),
        str(cfg.kmeans))
    passes = _Passes(x, w, backend, executor, int(cfg.task_docs))
    st, _ = passes.state(int(cent.shape[0]), labels=labels,
                         cent=cent if labels is None else None)
    cell, _ = _canonical(st.labels, st.k)
    return to_numpy(cell), km_impl, passes.x, passes.w


def _whole(embeddings: Any) -> Any:
    """All rows: a :class:`RowFile` as its memory map (no copy), an array as it is."""
    return embeddings.whole() if isinstance(embeddings, RowFile) else embeddings


def _cluster_cells(
    embeddings: Any, n_tokens: np.ndarray, ctx_len: int, cfg: Any, backend: Backend, seed: int,
    executor: Executor,
) -> ClusterResult:
    """Two levels: a coarse spherical k-means with ``ceil(N / cell_docs)`` centroids (the
    k-means ladder, trained on a sample) puts every document in a cell by block passes; then
    each cell runs ``_cluster_flat`` as one executor task. Cells are numbered by their first
    document and each cell's clusters keep its canonical numbering after the clusters of the
    cells before it, so labels are deterministic and the clusters of one cell are
    consecutive (the packer sorts units by label and batches consecutive clusters).

    On the host nothing holds the ``N x D`` matrix: the sample, each block of the coarse
    assignment and each cell's rows are read from ``embeddings`` (best a :class:`RowFile`,
    which tasks in other processes map themselves) and normalised where they are read. On
    the GPU the normalised matrix is moved to the device once, as every pass there uses it."""
    xp = backend.xp
    t0 = time.perf_counter()
    w = xp.asarray(backend.asarray(np.asarray(n_tokens)), dtype=xp.float64)
    n = int(embeddings.shape[0])
    k1 = math.ceil(n / int(cfg.cell_docs))
    gpu = backend.is_gpu
    if gpu:
        cell, km_impl, x_shared, w_shared = _coarse_on_device(embeddings, w, k1, cfg, backend,
                                                              seed, executor)
    else:
        x_shared, w_shared = executor.share(embeddings), executor.share(w)
        cell, km_impl = _coarse_by_rows(embeddings, x_shared, k1, cfg, backend, seed, executor)
    order = np.argsort(cell, kind="stable")  # ascending documents inside each cell
    members = np.split(order, np.cumsum(np.bincount(cell))[:-1])
    t_coarse = time.perf_counter() - t0
    parts = executor.map(_cell_task, members, threads=1 if gpu else host_threads(), gpu=gpu,
                         x=x_shared, w=w_shared, unit=gpu, ctx_len=ctx_len, cfg=cfg,
                         backend=backend.name, seed=seed)
    out = np.empty(n, dtype=np.int32)
    offset = 0
    for idx, part in zip(members, parts, strict=True):
        out[idx] = np.asarray(to_numpy(part.labels), dtype=np.int32) + offset
        offset += int(part.stats["k"])
    cells = [p.stats for p in parts]
    stats = {
        "k": offset, "cells": len(parts), "cell_docs": int(cfg.cell_docs),
        "cell_sizes": [int(i.shape[0]) for i in members],
        "cell_k": [int(s["k"]) for s in cells],
        "k_initial": sum(int(s["k_initial"]) for s in cells),
        "iterations": max(int(s["iterations"]) for s in cells),
        "final_shift": max(float(s["final_shift"]) for s in cells),
        "converged": all(bool(s.get("converged", True)) for s in cells),
        "kmeans": cells[0].get("kmeans", km_impl), "coarse_kmeans": km_impl, "xp": xp.__name__,
        "coarse_seconds": t_coarse, "seconds": time.perf_counter() - t0,
        "assign": "exact" if all(s.get("assign") == "exact" for s in cells) else "candidates",
        "sizes": [v for s in cells for v in s.get("sizes", [])],
        "tokens": [v for s in cells for v in s.get("tokens", [])],
        "spread": [v for s in cells for v in s.get("spread", [])],
        "min_cluster_tokens": cells[0].get("min_cluster_tokens"),
        "max_cluster_tokens": cells[0].get("max_cluster_tokens"),
    }
    log.info("cluster: %d cells of ~%d documents (coarse %s, %.1fs), k=%d, %.1fs", len(parts),
             int(cfg.cell_docs), km_impl, t_coarse, offset, stats["seconds"])
    return ClusterResult(
        labels=out,
        centroids=np.ascontiguousarray(
            np.concatenate([to_numpy(p.centroids) for p in parts]), dtype=np.float32),
        stats=stats,
    )
