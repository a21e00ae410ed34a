"""Benchmark the DataSculpt packing stage alone, against the paper's original greedy loop.

Input (synthetic, seeded): ``--n-docs`` documents with log-normal token counts (median about
600, heavy tail) clipped to ``[1, 4 * ctx_len]`` and cut into ``ctx_len`` units, 384-d
normalised embeddings drawn around ``--clusters`` planted centres (within-cluster cosine about
0.5), and the planted labels as clusters. Only ``pack_datasculpt`` is timed.

Memory is reported two ways: ``ru_maxrss`` (peak resident set of the whole process, which
includes the input embeddings) and the ``tracemalloc`` peak of a second, traced pack call
(Python and NumPy allocations made by the pack stage itself; NumPy reports to tracemalloc).

The original loop is a faithful pure-Python transcription of ``construct_datasculpt.py`` from
the authors' repository (github.com/8023looker/DataSculpt): per cluster, documents by length
descending; ``K = floor(tokens / ctx_len)`` windows; each document goes to the window
maximising ``cos(running-mean centroid, doc) * remaining capacity`` (cos = 1 for an empty
window) without a feasibility check; stop when every capacity is <= 0. It runs on a subsample
of whole clusters (so its K per cluster matches the full input) and is given embeddings as
pre-parsed Python lists (the original re-parses a JSON string per score), which favours it.

Run::

    python scripts/bench_pack.py --n-docs 1000000 --ctx-len 16384            # the default
    python scripts/bench_pack.py --n-docs 1000000 --strategy unit           # the paper's greedy
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc

# Per-round matrix products are small (B x K x D): BLAS threads cost more to wake than they
# save, and OpenBLAS's thread hand-off is erratic on small VMs. Must be set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import synthetic  # noqa: E402

from datasculpt.config import PackConfig  # noqa: E402
from datasculpt.executors import LocalExecutor  # noqa: E402
from datasculpt.metrics import compute_metrics  # noqa: E402
from datasculpt.pack.datasculpt import pack_datasculpt  # noqa: E402
from datasculpt.tokenize import make_units  # noqa: E402


def synthetic_corpus(
    n_docs: int, ctx_len: int, n_clusters: int, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token counts, normalised float32 embeddings and planted cluster labels.

    Counts go up to four windows so that long documents are cut into several units.
    """
    rng = np.random.default_rng(seed)
    doc_len = np.rint(rng.lognormal(np.log(600.0), 1.3, n_docs))
    doc_len = np.clip(doc_len, 1, 4 * ctx_len).astype(np.int64)
    labels = rng.integers(0, n_clusters, n_docs).astype(np.int64)
    # Centres drawn in float64 and cast (bench_cluster draws float32): kept as recorded.
    centres = synthetic.unit_directions(
        rng.standard_normal((n_clusters, dim)).astype(np.float32))
    emb = synthetic.planted_unit_rows(rng, centres, labels, chunk=65536)
    return doc_len, emb, labels


def original_greedy(doc_len: list[int], vectors: list[list[float]], ctx_len: int,
                    bags_out: list[list[int]] | None = None) -> int:
    """The authors' per-cluster loop (construct_datasculpt.handle_token_num); returns #placed.

    With ``bags_out``, each window's documents (indices into the input) are appended to it.
    """

    def cosine_similarity(v1: list[float], v2: list[float]) -> float:
        if all(x == 0 for x in v1) or all(x == 0 for x in v2):
            return 1
        return np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2))

    def combined_score(doc: tuple[int, list[float]], bag: dict) -> float:
        return cosine_similarity(bag["center_vector"], doc[1]) * bag["capacity"]

    total = sum(doc_len)
    n_windows = total // ctx_len
    if n_windows < 1:
        return 0
    docs = sorted(zip(doc_len, vectors, range(len(doc_len)), strict=True), key=lambda x: x[0],
                  reverse=True)
    sample_tokens, running, cut = n_windows * ctx_len, 0, 0
    for i, (n, _, _) in enumerate(docs):
        running += n
        if running > sample_tokens:
            cut = i + n_windows
            break
    docs = docs[:cut]
    dim = len(vectors[0])
    bags = [{"capacity": ctx_len, "center_vector": [0.0] * dim, "doc_num": 0, "docs": []}
            for _ in range(n_windows)]
    placed = 0
    for doc in docs:
        if all(bag["capacity"] <= 0 for bag in bags):
            break
        k, _ = max(enumerate(bags), key=lambda x: combined_score(doc, x[1]))
        bag = bags[k]
        bag["capacity"] -= doc[0]
        bag["doc_num"] += 1
        m = bag["doc_num"]
        centre = bag["center_vector"]
        bag["center_vector"] = [(x * (m - 1) + y) / m for x, y in zip(centre, doc[1], strict=True)]
        bag["docs"].append(doc[2])
        placed += 1
    if bags_out is not None:
        bags_out.extend(bag["docs"] for bag in bags if bag["docs"])
    return placed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-docs", type=int, default=1_000_000)
    ap.add_argument("--ctx-len", type=int, default=16384)
    ap.add_argument("--batch-size", type=int, default=32, help="unit strategy only")
    ap.add_argument("--subsample", type=int, default=20_000,
                    help="documents (whole clusters) for the original loop; 0 skips it")
    ap.add_argument("--backend", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--strategy", choices=("window", "unit"), default="window")
    ap.add_argument("--score", choices=("paper", "weighted"), default="weighted")
    ap.add_argument("--mode", choices=("strict", "fill"), default="strict")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-trace", action="store_true", help="skip the tracemalloc pass")
    ap.add_argument("--save", default=None,
                    help="write the packing (seq, doc, start, end rows) to this .npy, to compare "
                         "the GPU and CPU runs")
    ap.add_argument("--block-bytes", type=int, default=None,
                    help="pack.block_bytes: run the GPU's block shape (here through NumPy)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="documents of an untimed pack first (compiles the GPU's kernels); "
                         "default 20000 on the GPU, 0 on the CPU")
    args = ap.parse_args()

    t = time.perf_counter()
    doc_len, emb, labels = synthetic_corpus(
        args.n_docs, args.ctx_len, args.clusters, args.dim, args.seed)
    units = make_units(doc_len, args.ctx_len, eos=1)
    print(f"input: {args.n_docs:,} docs, {len(units):,} units, {int(doc_len.sum()):,} tokens, "
          f"median {int(np.median(doc_len))}, {args.clusters} clusters, dim {args.dim} "
          f"(generated in {time.perf_counter() - t:.1f}s)")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, backend={args.backend}, "
          f"strategy={args.strategy}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")

    x = emb
    if args.backend == "gpu":
        import cupy

        x = cupy.asarray(emb)
    cfg = PackConfig(method="datasculpt", strategy=args.strategy, score=args.score,
                     mode=args.mode, batch_size=args.batch_size, block_bytes=args.block_bytes)
    warmup = args.warmup if args.warmup is not None else (20_000 if args.backend == "gpu" else 0)
    if warmup:  # CuPy compiles each kernel on first use: not what a pack costs
        t = time.perf_counter()
        w_len, w_emb, w_lab = synthetic_corpus(warmup, args.ctx_len, args.clusters, args.dim,
                                               args.seed + 1)
        w_x = cupy.asarray(w_emb) if args.backend == "gpu" else w_emb
        pack_datasculpt(make_units(w_len, args.ctx_len, eos=1), w_x, w_lab, args.ctx_len, cfg,
                        seed=args.seed, executor=LocalExecutor())
        print(f"warm-up: {warmup:,} docs packed untimed in {time.perf_counter() - t:.2f}s")

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    local = LocalExecutor()
    packing, stats = pack_datasculpt(units, x, labels, args.ctx_len, cfg, seed=args.seed,
                                     executor=local)
    seconds = time.perf_counter() - t
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    docs_per_s = args.n_docs / seconds
    shape = (f"{stats['groups']:,} groups, {stats['dissolved_windows']:,} dissolved windows"
             if args.strategy == "window" else f"{stats['rounds']:,} rounds")
    print(f"pack: {seconds:.2f}s, {docs_per_s:,.0f} docs/s (kernel {stats['kernel_seconds']:.2f}s, "
          f"{shape}, {stats['windows_opened']:,} windows, "
          f"{stats['remainder_units']:,} units left to the best-fit pass)")
    if args.strategy == "window":
        print(f"steps: {stats['greedy_steps']} greedy steps in {stats['greedy_blocks']} blocks "
              f"(block_bytes={args.block_bytes or 'default'})")
    print(f"memory: ru_maxrss peak {rss_after / 2**20:.2f} GiB for the whole process "
          f"(+{(rss_after - rss_before) / 2**20:.2f} GiB during pack; input embeddings "
          f"{emb.nbytes / 2**30:.2f} GiB)")
    if not args.no_trace:
        tracemalloc.start()
        pack_datasculpt(units, x, labels, args.ctx_len, cfg, seed=args.seed, executor=local)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"memory: tracemalloc peak of the pack stage {peak / 2**30:.3f} GiB")

    if args.save:
        np.save(args.save, np.stack([packing.seq, packing.doc, packing.start, packing.end], 1))
    m = compute_metrics(packing, doc_len, args.ctx_len, 1, emb, labels)
    print("metrics: " + ", ".join(
        f"{k}={m[k]:.4f}" if isinstance(m[k], float) else f"{k}={m[k]}"
        for k in ("fill_rate", "relevance", "truncation_rate", "seq_ratio", "cluster_purity",
                  "pieces_per_seq", "lost_tokens", "duplicated_tokens", "overlong_sequences")))

    if args.subsample:
        # Whole clusters, so the original loop sees as many windows per cluster as at full size.
        chosen, n = [], 0
        sizes = np.bincount(labels, minlength=args.clusters)
        for c in range(args.clusters):
            if n >= args.subsample:
                break
            chosen.append(c)
            n += int(sizes[c])
        sub = np.flatnonzero(np.isin(labels, chosen))
        cut_len = np.minimum(doc_len[sub], args.ctx_len)  # the original has no long-doc cutting
        per_cluster = [np.flatnonzero(labels[sub] == c) for c in chosen]
        lists = [(cut_len[i].tolist(), emb[sub[i]].tolist()) for i in per_cluster]
        t = time.perf_counter()
        placed = sum(original_greedy(lens, vecs, args.ctx_len) for lens, vecs in lists)
        orig_s = time.perf_counter() - t
        orig_rate = sub.size / orig_s
        sub_units = make_units(doc_len[sub], args.ctx_len, eos=1)
        t = time.perf_counter()
        x_sub = x[sub] if args.backend == "cpu" else x[cupy.asarray(sub)]
        pack_datasculpt(sub_units, x_sub, labels[sub], args.ctx_len, cfg, executor=local)
        ours_sub_s = time.perf_counter() - t
        print(f"original loop: {sub.size:,} docs in {len(chosen)} clusters, {orig_s:.2f}s, "
              f"{orig_rate:,.0f} docs/s ({placed:,} placed; the rest dropped by its K=floor)")
        print(f"ours on the same subsample: {ours_sub_s:.3f}s, {sub.size / ours_sub_s:,.0f} docs/s "
              f"({orig_s / ours_sub_s:,.0f}x)")
        print(f"speed ratio (ours at {args.n_docs:,} docs vs original): "
              f"{docs_per_s / orig_rate:,.0f}x")


if __name__ == "__main__":
    main()
