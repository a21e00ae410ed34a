"""Cluster-stage timings on synthetic normalised vectors with planted clusters.

    python scripts/bench_cluster.py --sizes 200000 1000000 [--dim 384] [--backend cpu|gpu]
        [--warmup 20000]

Each document gets a lognormal token count (mean ~1000) and ctx_len 16384, so automatic k
applies. Prints seconds for k-means and every ISODATA round, iterations, final k and the
token-weighted purity of the found clusters against the planted ones, and per size a line
``cluster_seconds: <s> n=<N> backend=<name>`` that scripts/gpu_check.sh reads. ``--warmup``
clusters a small input first, untimed: on a GPU the first call compiles CuPy's kernels and
starts cuBLAS, which would otherwise be charged to the first size.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import synthetic  # noqa: E402

from datasculpt.backend import resolve_backend  # noqa: E402
from datasculpt.cluster import cluster  # noqa: E402
from datasculpt.config import ClusterConfig  # noqa: E402
from datasculpt.executors import LocalExecutor  # noqa: E402


def planted(n: int, dim: int, n_planted: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows = planted direction + isotropic noise of equal norm (cos to the direction ~0.7)."""
    rng = np.random.default_rng(seed)
    dirs = synthetic.unit_directions(rng.standard_normal((n_planted, dim), dtype=np.float32))
    truth = rng.integers(0, n_planted, n)
    return synthetic.planted_unit_rows(rng, dirs, truth, chunk=1 << 17), truth


def purity(pred: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> float:
    key = pred.astype(np.int64) * (int(truth.max()) + 1) + truth
    uniq, inv = np.unique(key, return_inverse=True)
    per_pair = np.bincount(inv, weights=weight)
    best = np.zeros(int(pred.max()) + 1)
    np.maximum.at(best, uniq // (int(truth.max()) + 1), per_pair)
    return float(best.sum() / weight.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--ctx-len", type=int, default=16384)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0,
                    help="documents clustered once, untimed, before the sizes (0: none)")
    args = ap.parse_args()
    backend = resolve_backend(args.backend)
    print(f"machine: {platform.node()}, cores {os.cpu_count()}, backend {backend.name}")
    if args.warmup:
        _warm_up(args, backend)
    for n in args.sizes:
        n_planted = max(2, int(math.sqrt(n) / 2))
        t0 = time.perf_counter()
        x, truth = planted(n, args.dim, n_planted, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        n_tokens = np.clip(rng.lognormal(6.5, 0.8, n), 16, 60_000).astype(np.int64)
        gen_s = time.perf_counter() - t0
        xs = backend.asarray(x)
        t0 = time.perf_counter()
        res = cluster(xs, n_tokens, args.ctx_len, ClusterConfig(), backend, args.seed,
                      LocalExecutor())
        total = time.perf_counter() - t0
        st = res.stats
        rounds = ", ".join(
            f"r{i + 1} {r['seconds']:.1f}s k={r['k']} shift={r['shift']:.1e} "
            f"m/s/f={r['merged']}/{r['split']}/{r['folded']} ({r['assign']})"
            for i, r in enumerate(st["rounds"])
        )
        print(f"N={n} D={args.dim} planted={n_planted} tokens={int(n_tokens.sum())} "
              f"(data {gen_s:.1f}s)")
        print(f"  total {total:.1f}s: kmeans[{st['kmeans']}] k={st['k_initial']} "
              f"{st['kmeans_seconds']:.1f}s, isodata {st['isodata_seconds']:.1f}s "
              f"({st['iterations']} rounds, converged={st['converged']}, "
              f"final_shift={st['final_shift']:.2e})")
        print(f"  rounds: {rounds}")
        print(f"  final k={st['k']}, max cluster tokens {max(st['tokens'])}, "
              f"purity vs planted {purity(res.labels, truth, n_tokens.astype(float)):.4f}")
        print(f"cluster_seconds: {total:.3f} n={n} backend={backend.name}")
        sys.stdout.flush()
        del x, xs, res


def _warm_up(args: argparse.Namespace, backend: Any) -> None:
    """One untimed call at --warmup documents, with the seed of the timed ones: the same code
    paths (k-means rung, ISODATA rounds) get their first-call costs paid here."""
    n = args.warmup
    x, _ = planted(n, args.dim, max(2, int(math.sqrt(n) / 2)), args.seed)
    n_tokens = np.clip(np.random.default_rng(args.seed + 1).lognormal(6.5, 0.8, n), 16,
                       60_000).astype(np.int64)
    t0 = time.perf_counter()
    cluster(backend.asarray(x), n_tokens, args.ctx_len, ClusterConfig(), backend, args.seed,
            LocalExecutor())
    print(f"warm-up: N={n} in {time.perf_counter() - t0:.1f}s (untimed)")


if __name__ == "__main__":
    main()
