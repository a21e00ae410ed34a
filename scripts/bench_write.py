"""End-to-end memory and write-throughput benchmark of the training-shard output (issue 9).

For each ``--gb`` size, generates a synthetic JSONL corpus of that many bytes of text (whole
words of the packaged tokenizer's vocabulary in topic word lists, log-normal lengths) with an
aligned ``embeddings.npy`` (planted topics), runs the real command line (``python -m
datasculpt.main`` with ``embed.precomputed=...``: read, tokenize into the token store, cluster,
pack, ``sequences.jsonl``, Parquet shards) in a child process, and reports its peak resident
memory and the shard stage's throughput in tokens/s. The point is that peak memory does not
grow with the corpus text: the token store and the shards live on disk.

    python scripts/bench_write.py --gb 0.5 2 --workdir /tmp/datasculpt_bench_write

The embeddings are 32-d so that they, not the text, stay a small part of memory (they are
loaded whole by the cluster and pack stages and grow with the number of documents).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import synthetic


def make_corpus(workdir: Path, gb: float, dim: int, n_topics: int, seed: int
                ) -> tuple[Path, Path, int]:
    """Write the corpus and embeddings once per size; later runs reuse them from ``workdir``."""
    target = int(gb * 2**30)
    corpus = workdir / f"corpus_{gb:g}gb.jsonl"
    emb_path = workdir / f"embeddings_{gb:g}gb.npy"
    count_path = workdir / f"corpus_{gb:g}gb.count"
    if corpus.exists() and emb_path.exists() and count_path.exists():
        return corpus, emb_path, int(count_path.read_text())
    rng = np.random.default_rng(seed)
    vocab = synthetic.tokenizer_words(rng)
    topic = synthetic.write_docs_until(corpus, target, n_topics, median_words=800,
                                       max_words=60_000, vocab=vocab, rng=rng, span=300,
                                       docid_prefix="doc")
    synthetic.write_planted_embeddings(emb_path, topic, n_topics, dim, rng)
    count_path.write_text(str(topic.size))
    return corpus, emb_path, topic.size


def run_one(corpus: Path, emb: Path, out: Path, ctx_len: int) -> dict:
    """Run the CLI in a child and return its report and peak RSS (this process's children)."""
    cmd = [sys.executable, "-m", "datasculpt.main", f"input={corpus}", f"output_dir={out}",
           f"embed.precomputed={emb}", f"ctx_len={ctx_len}", "label_key=topic",
           "overwrite=true", "report.plots=false", "report.progress=false", "backend=cpu"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed with exit code {proc.returncode}")
    report = json.loads((out / "report.json").read_text())
    return {"wall": wall, "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            "report": report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, nargs="+", default=[0.5, 2.0])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--topics", type=int, default=200)
    ap.add_argument("--ctx-len", type=int, default=16384)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/datasculpt_bench_write"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)  # internal: one size, JSON out
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        corpus, emb, _ = make_corpus(args.workdir, args.one, args.dim, args.topics, args.seed)
        res = run_one(corpus, emb, args.workdir / f"run_{args.one:g}gb", args.ctx_len)
        print("RESULT " + json.dumps({"wall": res["wall"], "peak_kib": res["peak_kib"],
                                      "metrics": res["report"]["metrics"],
                                      "stages": res["report"]["stages"]}))
        return
    rows = []
    for gb in args.gb:
        t0 = time.perf_counter()
        corpus, emb, n = make_corpus(args.workdir, gb, args.dim, args.topics, args.seed)
        print(f"{gb:g} GB corpus ready in {time.perf_counter() - t0:.0f} s: {corpus} "
              f"({corpus.stat().st_size / 2**30:.2f} GiB, {n:,} documents)", flush=True)
        # A fresh parent per size: ru_maxrss of children is a maximum over all of them.
        proc = subprocess.run([sys.executable, __file__, "--one", str(gb), "--dim",
                               str(args.dim), "--topics", str(args.topics), "--ctx-len",
                               str(args.ctx_len), "--workdir", str(args.workdir), "--seed",
                               str(args.seed)], capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{gb:g} GB run failed:\n{proc.stderr[-3000:]}")
        res = json.loads(line[len("RESULT "):])
        m, st = res["metrics"], res["stages"]
        shards = st.get("shards", {})
        rows.append((gb, res["peak_kib"] / 2**20))
        print(f"{gb:g} GB: {m['n_documents']:,} documents, {m['total_tokens']:,} tokens, "
              f"{m['n_sequences']:,} sequences; wall {res['wall']:.0f} s, "
              f"peak RSS {res['peak_kib'] / 2**20:.2f} GiB", flush=True)
        print("  stages (s): " + ", ".join(f"{k} {v.get('seconds') or 0:.1f}"
                                           for k, v in st.items()))
        print(f"  shards: {shards.get('shards')} files, {shards.get('rows'):,} rows, "
              f"{shards.get('tokens_per_s') or 0:,.0f} tokens/s; lost {m['lost_tokens']}, "
              f"duplicated {m['duplicated_tokens']}, overlong {m['overlong_sequences']}",
              flush=True)
    if len(rows) > 1:
        (g0, r0), (g1, r1) = rows[0], rows[-1]
        print(f"peak RSS {r0:.2f} GiB at {g0:g} GB -> {r1:.2f} GiB at {g1:g} GB: "
              f"{100 * (r1 - r0) / r0:+.1f}%")


if __name__ == "__main__":
    main()
