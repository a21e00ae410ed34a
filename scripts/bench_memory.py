"""End-to-end memory benchmark: N documents with precomputed 384-d embeddings on the CPU.

Generates a synthetic corpus (JSONL with texts of log-normal length drawn from per-topic word
lists) plus an aligned ``embeddings.npy`` with planted clusters, then runs the real command
line (``python -m datasculpt.main``) in a child process and reports its wall time and peak
resident memory (``ru_maxrss`` of the child, which covers every stage: read, tokenize, cluster,
pack, write).

    python scripts/bench_memory.py --n-docs 500000 --workdir /tmp/bench_memory
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


def make_corpus(
    workdir: Path, n_docs: int, dim: int, n_topics: int, seed: int
) -> tuple[Path, Path]:
    """Write the corpus and embeddings once per size; later runs reuse them from ``workdir``."""
    rng = np.random.default_rng(seed)
    corpus = workdir / f"corpus_{n_docs}.jsonl"
    emb_path = workdir / f"embeddings_{n_docs}.npy"
    if corpus.exists() and emb_path.exists():
        return corpus, emb_path
    # One token per word, so token counts follow the drawn word counts (median ~150 tokens,
    # heavy tail).
    vocab = synthetic.tokenizer_words(rng)
    topic = rng.integers(0, n_topics, size=n_docs)
    words = synthetic.lognormal_words(rng, n_docs, median=150, lo=5, hi=40_000)
    synthetic.write_topic_docs([corpus], topic, words, vocab, rng, span=200, docid_prefix="doc")
    synthetic.write_planted_embeddings(emb_path, topic, n_topics, dim, rng)
    return corpus, emb_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-docs", type=int, default=500_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--topics", type=int, default=200)
    ap.add_argument("--ctx-len", type=int, default=16384)
    ap.add_argument("--pack", default="datasculpt")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/datasculpt_bench_memory"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpus, emb = make_corpus(args.workdir, args.n_docs, args.dim, args.topics, args.seed)
    print(f"corpus ready in {time.perf_counter() - t0:.1f} s: {corpus} "
          f"({corpus.stat().st_size / 2**20:.0f} MiB), {emb}")
    out = args.workdir / f"run_{args.n_docs}_{args.pack}"
    cmd = [sys.executable, "-m", "datasculpt.main", f"input={corpus}", f"output_dir={out}",
           f"embed.precomputed={emb}", f"ctx_len={args.ctx_len}", f"pack={args.pack}",
           "label_key=topic", "overwrite=true", "report.plots=false", "report.progress=false",
           "backend=cpu"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.exit(f"run failed with exit code {proc.returncode}")
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    stages = {k: round(v.get("seconds") or 0.0, 1) for k, v in report["stages"].items()}
    print(f"documents {m['n_documents']}, tokens {m['total_tokens']}, "
          f"sequences {m['n_sequences']}")
    print(f"wall {wall:.1f} s, peak RSS {peak_kib / 2**20:.2f} GiB; stages (s): {stages}")
    print(f"lost {m['lost_tokens']}, duplicated {m['duplicated_tokens']}, overlong "
          f"{m['overlong_sequences']}, fill {m['fill_rate']:.4f}, truncation "
          f"{m['truncation_rate']:.4f}")


if __name__ == "__main__":
    main()
