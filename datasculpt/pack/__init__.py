"""Packers: turn units (documents and cuts of long ones) into sequences of at most ctx_len tokens.

``concat`` and ``bfd`` ignore semantics; ``iclm`` orders documents along a kNN path;
``datasculpt`` is the method this project implements (cluster-aware greedy assignment).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from datasculpt.backend import Backend, is_gpu_array
from datasculpt.executors import Executor
from datasculpt.types import Packing, Units

SEMANTIC_METHODS = ("iclm", "datasculpt")


def pack(
    method: str,
    units: Units,
    ctx_len: int,
    cfg: Any,
    seed: int,
    backend: Backend,
    embeddings: Any | None = None,
    clusters: np.ndarray | None = None,
    executor: Executor | None = None,
) -> tuple[Packing, dict[str, Any]]:
    """Run one packer; ``cfg`` is the ``pack`` config node (method-specific knobs);
    ``executor`` runs the independent batches of clusters (``datasculpt`` with the window
    strategy, which needs one; the other packers run in this process)."""
    t0 = time.perf_counter()
    stats: dict[str, Any] = {}
    if method == "concat":
        from datasculpt.pack.concat import pack_concat

        packing = pack_concat(units, ctx_len, seed)
    elif method == "bfd":
        from datasculpt.pack.bfd import pack_bfd

        packing = pack_bfd(units, ctx_len)
    elif method == "iclm":
        from datasculpt.io.row_file import RowFile
        from datasculpt.pack.iclm import pack_iclm

        if isinstance(embeddings, RowFile):  # its kNN searches all rows at once
            embeddings = embeddings.whole()
        packing, stats = pack_iclm(units, embeddings, ctx_len, cfg, backend, seed)
    elif method == "datasculpt":
        from datasculpt.pack.datasculpt import pack_datasculpt

        if clusters is None:
            raise ValueError("pack=datasculpt needs cluster labels")
        packing, stats = pack_datasculpt(units, embeddings, clusters, ctx_len, cfg, seed,
                                         executor=executor)
    else:  # validated earlier; kept for direct API callers
        raise ValueError(f"unknown pack method {method!r}")
    seconds = time.perf_counter() - t0
    if method == "datasculpt":  # the array kernel runs where the embeddings live
        stats["rung"] = "cupy" if is_gpu_array(embeddings) else "numpy"
    elif method == "iclm":
        stats["rung"] = stats["knn"]
    else:  # integer bookkeeping on the host, by design
        stats["rung"] = "host"
    stats = {**stats, "method": method, "seconds": seconds,
             "units_per_s": len(units) / seconds if seconds > 0 else None}
    return packing, stats
