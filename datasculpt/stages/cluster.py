"""Stage 3, cluster: a label per document (``clusters.npy``) and the centroids
(``centroids.npy``): spherical k-means, then ISODATA refinement by token mass."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datasculpt.io.write import write_npy
from datasculpt.runner import Inputs, Run, Stage

log = logging.getLogger("datasculpt")


def _work(run: Run, inputs: Inputs) -> dict[str, Any]:
    from datasculpt.cluster import cluster

    result = cluster(inputs["embed"].by_rows(), inputs["tokenize"].doc_len, run.cfg.ctx_len,
                     run.cfg.cluster, run.backend, run.cfg.seed, run.executor)
    write_npy(run.out / "clusters.npy", np.asarray(result.labels, dtype=np.int32))
    write_npy(run.out / "centroids.npy", np.asarray(result.centroids, dtype=np.float32))
    return dict(result.stats)


def _load(run: Run, inputs: Inputs) -> np.ndarray:
    labels = np.load(run.out / "clusters.npy", mmap_mode="r", allow_pickle=False)  # not heap
    log.info("cluster: %d clusters", int(labels.max()) + 1)
    return labels


def _rung(stats: dict[str, Any]) -> str | None:
    return stats.get("kmeans") and f"{stats['kmeans']}; rounds on {stats.get('xp')}"


CLUSTER = Stage("cluster", _work, artifacts=lambda run: ["clusters.npy", "centroids.npy"],
                reads=("cluster", "ctx_len", "seed"), inputs=("tokenize", "embed"),
                load=_load, rung=_rung)
