"""The In-Context Pretraining baseline (Shi et al., ICLR 2024): order documents along a path
through the kNN graph, then concatenate and cut like the standard baseline.

The path is the paper's greedy traversal: start at an unvisited document of minimum in-degree
(documents few others point to are hard to reach later), step to the most similar unvisited
neighbour, and when every neighbour is visited jump to the unvisited document of minimum
in-degree. The walk is sequential by nature; it is a tight Python loop costing O(N k).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from datasculpt.backend import Backend
from datasculpt.knn import knn, knn_impl
from datasculpt.pack.concat import cut_stream
from datasculpt.types import Packing, Units


def traverse(idx: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Visit order of the documents: ``(path, jumps, mean similarity of the steps taken)``.

    ``idx[i]`` lists the neighbours of ``i`` from most to least similar. Ties in in-degree go
    to the lower document index, so the path is a function of the graph alone.
    """
    n = idx.shape[0]
    indeg = np.bincount(idx.ravel(), minlength=n) if idx.size else np.zeros(n, np.int64)
    by_degree = np.lexsort((np.arange(n), indeg)).tolist()
    nbrs = idx.tolist()
    nsims = sims.tolist()
    visited = bytearray(n)
    path: list[int] = []
    jumps, step_sim = 0, 0.0
    ptr = 0
    cur = -1
    for _ in range(n):
        nxt = -1
        if cur >= 0:
            row = nbrs[cur]
            for p, j in enumerate(row):
                if not visited[j]:
                    nxt = j
                    step_sim += nsims[cur][p]
                    break
        if nxt < 0:
            while visited[by_degree[ptr]]:
                ptr += 1
            nxt = by_degree[ptr]
            jumps += 1
        visited[nxt] = 1
        path.append(nxt)
        cur = nxt
    steps = n - jumps
    return np.asarray(path, dtype=np.int64), jumps, step_sim / steps if steps else 0.0


def pack_iclm(
    units: Units, embeddings: Any, ctx_len: int, cfg: Any, backend: Backend, seed: int
) -> tuple[Packing, dict[str, Any]]:
    """Pack ``units`` in kNN-path order; a document's units stay consecutive, in start order.

    ``seed`` is accepted for a uniform packer signature; the traversal is deterministic.
    """
    t0 = time.perf_counter()
    n_docs = int(units.doc_len.shape[0])
    if embeddings is None or int(embeddings.shape[0]) != n_docs:
        got = None if embeddings is None else int(embeddings.shape[0])
        raise ValueError(f"pack=iclm needs one embedding per document ({n_docs}), got {got}")
    sims, idx = knn(embeddings, int(cfg.knn_k), backend)
    t_knn = time.perf_counter() - t0
    path, jumps, step_sim = traverse(idx, sims)
    rank = np.empty(n_docs, dtype=np.int64)
    rank[path] = np.arange(n_docs)
    order = np.lexsort((units.start, rank[units.doc]))
    packing = cut_stream(units, order, ctx_len)
    stats = {"knn": knn_impl(backend, int(idx.shape[1])), "knn_k": int(idx.shape[1]),
             "knn_seconds": t_knn, "jumps": jumps, "path_similarity": step_sim}
    return packing, stats
