"""DataSculpt packing: semantic clusters packed into context windows, cluster by cluster.

Two steps. A *strategy* places each cluster's units (whole documents, or ``ctx_len`` cuts of
long ones) into windows of that cluster, where they are most similar to the window's other
members: ``window`` (the default, ``window.py``) builds each window in turn from the units
closest to it; ``unit`` (``unit.py``) is the paper's greedy, where every unit chooses its best
window. Clusters do not interact in this step, so both run many clusters side by side, where
the embeddings live (NumPy or CuPy). The *finishing phases* (``finish.py``) then place what
the strategy left across clusters, optionally dissolve windows into the others' gaps
(``mode="fill"``), and build the :class:`~datasculpt.types.Packing`. The two steps meet in an
:class:`~datasculpt.pack.assignment.Assignment`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from datasculpt.backend import to_numpy, xp_of
from datasculpt.blas import one_blas_thread
from datasculpt.executors import Executor
from datasculpt.io.row_file import RowFile
from datasculpt.pack.assignment import Assignment, sort_units
from datasculpt.pack.finish import finish
from datasculpt.types import Packing, Units

STRATEGIES = ("window", "unit")


def pack_datasculpt(
    units: Units,
    embeddings: Any,
    clusters: np.ndarray,
    ctx_len: int,
    cfg: Any,
    seed: int = 0,
    executor: Executor | None = None,
) -> tuple[Packing, dict[str, Any]]:
    """Pack ``units`` into sequences of at most ``ctx_len`` tokens, cluster by cluster.

    ``embeddings`` is ``N x D`` (one normalised row per document, NumPy or CuPy: the kernels
    run where they live; or a :class:`RowFile`, whose rows each batch reads on the host);
    ``clusters`` holds one integer label per document; ``executor`` runs the window
    strategy's independent batches of clusters (required by that strategy; the unit strategy
    runs in this process). The greedy has no random choice, so ``seed`` only keeps the packer
    signature uniform. Returns a NumPy :class:`Packing` (sequences ordered by cluster, then
    window; pieces in placement order) and stats.
    """
    del seed  # deterministic by construction: ties go to the lowest window index
    t0 = time.perf_counter()
    mode, strategy = cfg.mode, cfg.strategy
    batch_size = int(cfg.batch_size)
    if (mode not in ("strict", "fill") or cfg.score not in ("paper", "weighted")
            or strategy not in STRATEGIES):
        raise ValueError(f"bad pack config: strategy={strategy!r}, mode={mode!r}, "
                         f"score={cfg.score!r}")
    if batch_size < 1:
        raise ValueError(f"pack.batch_size must be >= 1, got {batch_size}")
    xp = xp_of(embeddings)
    emb = _rows(embeddings)
    clusters = to_numpy(clusters)
    if np.any(units.length > ctx_len):
        raise ValueError("a unit is longer than ctx_len; cut long documents before packing")

    cost_cap = float(getattr(cfg, "cost_cap", 0.0) or 0.0)
    if cost_cap:  # no unit may hold more attention than a window is allowed
        from datasculpt.tokenize import make_units

        units = make_units(units.doc_len, max(1, int(np.sqrt(cost_cap) * ctx_len)), units.eos)
    su = sort_units(units, clusters)
    with one_blas_thread():  # the kernels' choices must not depend on the cores (blas.py)
        return _pack(units, su, xp, emb, ctx_len, cfg, strategy, mode, batch_size, executor,
                     t0)


def _rows(embeddings: Any) -> Any:
    """The embeddings as the kernels index them: a float32 :class:`RowFile` as it is (each
    batch gathers its own rows from the file), an array as float32 where it lives."""
    if isinstance(embeddings, RowFile):
        if embeddings.dtype == np.float32:
            return embeddings
        embeddings = embeddings.whole()
    xp = xp_of(embeddings)
    return xp.asarray(embeddings, dtype=xp.float32)


def _pack(units: Units, su: Any, xp: Any, emb: Any, ctx_len: int, cfg: Any, strategy: str,
          mode: str, batch_size: int, executor: Executor | None,
          t0: float) -> tuple[Packing, dict[str, Any]]:
    assignment: Assignment
    if strategy == "unit":
        from datasculpt.pack.unit import assign_units

        assignment = assign_units(xp, emb, su, ctx_len, cfg, batch_size)
    else:
        from datasculpt.pack.window import assign_windows

        if executor is None:
            raise ValueError("pack.strategy=window runs its batches of clusters as executor "
                             "tasks: pass an executor (datasculpt.executors.LocalExecutor() "
                             "runs them in this process)")
        assignment = assign_windows(xp, emb, su, ctx_len, cfg, executor)
    t_kernel = time.perf_counter() - t0
    cluster_windows = assignment.n_windows
    done = finish(assignment, su, units, xp, emb, ctx_len, mode)

    packing = done.packing
    seconds = time.perf_counter() - t0
    n_docs = int(np.count_nonzero(np.bincount(units.doc))) if len(units) else 0
    stats = {
        "clusters": su.n_clusters,
        "windows_opened": done.windows_opened,
        "cluster_windows": cluster_windows,
        "strategy": strategy,
        "sequences": int(packing.n_sequences),
        "remainder_units": done.remainder_units,
        "rounds": assignment.rounds,
        "batch_size": batch_size,
        "score": cfg.score,
        "mode": mode,
        "dissolved_windows": done.dissolved_windows + assignment.dissolved_windows,
        "groups": assignment.groups,
        "greedy_blocks": assignment.greedy_blocks,
        "greedy_steps": assignment.greedy_steps,
        "fill_cuts": done.fill_cuts,
        "kernel_seconds": t_kernel,
        "seconds": seconds,
        "docs_per_s": n_docs / seconds if seconds > 0 else None,
    }
    return packing, stats
