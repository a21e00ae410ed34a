"""Packing quality of every strategy and every baseline on a real corpus, at several ctx_lens.

Runs the real pipeline (``datasculpt.run``: read, tokenize, embed, cluster, pack, report) on
``--input`` once per ctx_len and packing strategy, in one work directory, so tokenization and
embedding are computed once and reused (the pipeline's own resume). Prints one Markdown table:
for every ctx_len, the window-centric default, the paper's unit-centric greedy, the
``concat``/``bfd``/``iclm`` baselines and a random grouping of the same units (the reference a
semantic packer is read against).

Defaults fit the development corpus of ``scripts/make_dev_corpus.py``::

    python scripts/make_dev_corpus.py
    python scripts/bench_quality.py                         # 2K, 8K, 16K
    python scripts/bench_quality.py --ctx 4096 --input my.jsonl --label-key topic

The first run embeds the corpus (about 6 minutes for the 4,769-document dev corpus on two CPU
cores); later runs with the same ``--work-dir`` reuse it.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402
from bench_pack import original_greedy  # noqa: E402

import datasculpt  # noqa: E402
from datasculpt.metrics import compute_metrics  # noqa: E402
from datasculpt.tokenize import make_units  # noqa: E402
from datasculpt.types import Packing  # noqa: E402

DEFAULT_INPUT = Path.home() / ".cache" / "datasculpt" / "devcorpus" / "devcorpus.jsonl"
COLUMNS = ("lossless", "truncation", "seq_ratio", "fill", "relevance", "label purity (>= 2 docs)",
           "cluster purity (>= 2 docs)", "sequences")


def _row(name: str, m: dict) -> list[str]:
    def f(key: str, spec: str = "{:.4f}") -> str:
        v = m.get(key)
        return "n/a" if v is None else spec.format(v)

    if "lost_tokens" not in m:  # the random-grouping reference: semantic figures only
        lossless = "-"
    else:
        lossless = "yes" if m["lost_tokens"] == m["duplicated_tokens"] == \
            m["overlong_sequences"] == 0 else "**no**"
    return [name, lossless, f("truncation_rate"), f("seq_ratio"), f("fill_rate"), f("relevance"),
            f("label_purity_multi"), f("cluster_purity_multi"), f("n_sequences", "{:d}")]


def original(work_dir: Path, ctx_len: int, label_key: str, cut: bool) -> dict:
    """The authors' own Phase-2 loop (``bench_pack.original_greedy``) on the run's clusters and
    embeddings: no separator, no feasibility check, and what does not fit its
    ``floor(tokens / ctx_len)`` windows per cluster is dropped. ``cut=False`` feeds it whole
    documents (their code has no cut of long ones: a window then holds a document of any
    length); ``cut=True`` feeds it our units (long documents cut into ``ctx_len`` pieces first),
    the fair comparison of the two greedy phases on the same input."""
    docs = pq.read_table(work_dir / "documents.parquet").to_pydict()
    doc_len = np.asarray(docs["n_tokens"], dtype=np.int64)
    emb = np.load(work_dir / "embeddings.npy", allow_pickle=False)
    clusters = np.load(work_dir / "clusters.npy", allow_pickle=False)
    units = make_units(doc_len, ctx_len if cut else int(doc_len.max()) + 1, 0)
    u_cl = clusters[units.doc]
    bags: list[list[int]] = []
    for c in np.unique(u_cl).tolist():
        mine = np.flatnonzero(u_cl == c)
        found: list[list[int]] = []
        original_greedy(units.length[mine].tolist(), emb[units.doc[mine]].tolist(), ctx_len,
                        found)
        bags.extend([int(mine[i]) for i in bag] for bag in found)
    packing = Packing.from_lists([[(int(units.doc[u]), int(units.start[u]), int(units.end[u]))
                                   for u in bag] for bag in bags])
    return compute_metrics(packing, doc_len, ctx_len, 0, emb, clusters,
                           np.asarray(docs[label_key]))


def judged(work_dir: Path, method: str, ctx_len: int, label_key: str, emb_path: str) -> dict:
    """The metrics of one packing of the run, relevance measured with other embeddings."""
    docs = pq.read_table(work_dir / "documents.parquet").to_pydict()
    arr = np.load(work_dir / f"pieces_{method}.npy", allow_pickle=False)
    packing = Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])
    clusters = np.load(work_dir / "clusters.npy", allow_pickle=False)
    emb = np.load(emb_path, mmap_mode="r", allow_pickle=False)
    return compute_metrics(packing, np.asarray(docs["n_tokens"], dtype=np.int64), ctx_len, 1,
                           np.asarray(emb), clusters, np.asarray(docs[label_key]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--label-key", default="domain")
    ap.add_argument("--ctx", type=int, nargs="+", default=[2048, 8192, 16384])
    ap.add_argument("--work-dir", default=str(Path.home() / ".cache" / "datasculpt" /
                                              "bench_quality"))
    ap.add_argument("--strategies", nargs="+", default=["window", "unit"])
    ap.add_argument("--original", action="store_true",
                    help="also run the authors' original Phase-2 loop (pure Python, slow)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra config overrides, e.g. pack.max_waste=0.01")
    ap.add_argument("--judge-embeddings", default=None,
                    help="an embeddings.npy (rows = the corpus's documents) that relevance is "
                         "measured with instead of the run's own, e.g. the encoder's when "
                         "the run used embed=static")
    args = ap.parse_args()
    if not Path(args.input).exists():
        sys.exit(f"input not found: {args.input} (make it with scripts/make_dev_corpus.py)")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    print(f"input: {args.input}; machine: {platform.platform()}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d')}")
    lines = ["| ctx | packer | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for ctx in args.ctx:
        reference = None
        for strategy in args.strategies:
            overrides = {"input": args.input, "label_key": args.label_key, "ctx_len": ctx,
                         "pack.strategy": strategy, "report.plots": False,
                         "report.progress": False,
                         "report.baselines": strategy == args.strategies[0]}
            for item in args.set:
                key, _, value = item.partition("=")
                overrides[key] = yaml.safe_load(value)  # 512 -> int, null -> None
            t0 = time.perf_counter()
            report = datasculpt.run(datasculpt.default_config(**overrides),
                                    output_dir=args.work_dir)
            seconds = time.perf_counter() - t0
            methods = report["methods"]
            if args.judge_embeddings:
                methods = {name: judged(Path(args.work_dir), name, ctx, args.label_key,
                                        args.judge_embeddings) for name in methods}
            label = {"window": "datasculpt window (default)",
                     "unit": "datasculpt unit (paper's greedy)"}.get(strategy, strategy)
            lines.append(f"| {ctx} | " + " | ".join(_row(label, methods["datasculpt"])) + " |")
            for name in ("concat", "bfd", "iclm"):
                if name in methods:
                    lines.append(f"| {ctx} | " + " | ".join(_row(name, methods[name])) + " |")
            reference = reference or report.get("reference")
            print(f"ctx {ctx}, strategy {strategy}: {seconds:.1f}s "
                  f"(pack {report['stages']['pack']['seconds']:.2f}s)", flush=True)
        for cut in (True, False) if args.original else ():
            t0 = time.perf_counter()
            m = original(Path(args.work_dir), ctx, args.label_key, cut)
            name = "authors' loop, " + ("our units" if cut else "whole documents")
            lines.append(f"| {ctx} | " + " | ".join(_row(name, m)) + " |")
            print(f"ctx {ctx}, {name}: {time.perf_counter() - t0:.1f}s, "
                  f"{m['lost_tokens']:,} of {m['total_doc_tokens']:,} tokens lost, "
                  f"{m['overlong_sequences']:,} of {m['n_sequences']:,} windows over ctx_len",
                  flush=True)
        if reference:
            lines.append(f"| {ctx} | " + " | ".join(_row("random grouping", reference)) + " |")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
