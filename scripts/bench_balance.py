"""Load balance across data-parallel ranks on a real corpus: the shuffled rows against the
balanced order (``output.balance``), and the packer's own cost cap (``pack.cost_cap``) with
its price in relevance, cuts and sequences.

Runs the real pipeline (``datasculpt.run``) on ``--input`` once per ctx_len and cost cap, in
one work directory (tokenization and embeddings are reused), then measures, for every rank
count, the imbalance (the most loaded rank's cost over the mean, per step, averaged over the
steps) and the simulated step time of the shuffled rows and of the balanced ones, with the
cost model and the simulated machine of ``datasculpt/balance.py``. Prints Markdown tables::

    python scripts/make_dev_corpus.py
    python scripts/bench_balance.py                          # 16K and 64K, 8 and 64 ranks
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

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import datasculpt  # noqa: E402
from datasculpt.balance import (  # noqa: E402
    balanced_order,
    imbalance,
    sequence_costs,
    step_seconds,
)
from datasculpt.io.rows import row_order  # noqa: E402
from datasculpt.types import Packing  # noqa: E402

DEFAULT_INPUT = Path.home() / ".cache" / "datasculpt" / "devcorpus" / "devcorpus.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--label-key", default="domain")
    ap.add_argument("--work-dir", default=str(Path.home() / ".cache" / "datasculpt" /
                                              "bench_quality"))
    ap.add_argument("--ctx", type=int, nargs="+", default=[16384, 65536])
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--cost-caps", type=float, nargs="+", default=[0.0, 0.5, 0.25])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not Path(args.input).exists():
        sys.exit(f"input not found: {args.input} (make it with scripts/make_dev_corpus.py)")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"input: {args.input}; machine: {platform.platform()}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d')}; micro_batch {args.micro_batch}, window "
          f"{args.window}, hidden {args.hidden}, layout contiguous")
    work = Path(args.work_dir)
    bal_lines = ["| ctx | pack.cost_cap | ranks | steps | imbalance shuffled | imbalance "
                 "balanced | step time shuffled | step time balanced | saved |",
                 "|---|---|---|---|---|---|---|---|---|"]
    cap_lines = ["| ctx | pack.cost_cap | sequences | truncation | relevance | label purity "
                 "(>= 2 docs) | cluster purity (>= 2 docs) | max / mean window cost | "
                 "cost CV |", "|---|---|---|---|---|---|---|---|---|"]
    for ctx in args.ctx:
        for cap in args.cost_caps:
            overrides = {"input": args.input, "label_key": args.label_key, "ctx_len": ctx,
                         "pack.cost_cap": cap, "report.plots": False,
                         "report.progress": False, "output.tokens": False,
                         "seed": args.seed}
            t0 = time.perf_counter()
            report = datasculpt.run(datasculpt.default_config(**overrides),
                                    output_dir=str(work))
            m = report["methods"]["datasculpt"]
            arr = np.load(work / "pieces_datasculpt.npy", allow_pickle=False)
            packing = Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])
            doc_len = np.asarray(pq.read_table(work / "documents.parquet",
                                               columns=["n_tokens"]).column(0), dtype=np.int64)
            cost = sequence_costs(packing, doc_len, 1, args.hidden)
            cap_lines.append(
                f"| {ctx} | {cap:g} | {m['n_sequences']} | {m['truncation_rate']:.4f} | "
                f"{m['relevance']:.4f} | {m['label_purity_multi']:.4f} | "
                f"{m['cluster_purity_multi']:.4f} | {cost.max() / cost.mean():.3f} | "
                f"{cost.std() / cost.mean():.3f} |")
            order = row_order(cost.shape[0], True, args.seed)
            for ranks in args.ranks:
                done = balanced_order(order, cost, ranks, args.micro_batch, args.window,
                                      "contiguous", args.seed)
                steps = cost.shape[0] // (ranks * args.micro_batch)
                if not steps:
                    continue
                before = imbalance(order, cost, ranks, args.micro_batch, "contiguous")
                after = imbalance(done, cost, ranks, args.micro_batch, "contiguous")
                t_before = step_seconds(order, cost, ranks, args.micro_batch, "contiguous",
                                        args.hidden)
                t_after = step_seconds(done, cost, ranks, args.micro_batch, "contiguous",
                                       args.hidden)
                bal_lines.append(
                    f"| {ctx} | {cap:g} | {ranks} | {steps} | {before:.4f} | {after:.4f} | "
                    f"{t_before:.1f} s | {t_after:.1f} s | {1 - t_after / t_before:.1%} |")
            print(f"ctx {ctx}, cost_cap {cap:g}: {time.perf_counter() - t0:.1f}s", flush=True)
    print()
    print("\n".join(bal_lines))
    print()
    print("\n".join(cap_lines))


if __name__ == "__main__":
    main()
