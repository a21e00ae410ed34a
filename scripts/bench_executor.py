"""Overhead of ``executor=ray`` against ``executor=local`` on one machine (issue 10).

Writes a synthetic corpus of ``--docs`` documents in ``--shards`` JSONL shards (words of the
packaged tokenizer's vocabulary in topic word lists, log-normal lengths) with aligned
precomputed embeddings, then runs the real command line once per executor into separate run
directories (``overwrite=true``) and prints wall time and per-stage seconds, and whether the
two ``sequences.jsonl`` are byte-identical. ``executor=ray`` starts its own local Ray cluster
(``executor.num_cpus`` = all cores), so its start-up is part of the figure.

    python scripts/bench_executor.py --docs 100000 --shards 8
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import synthetic


def make_corpus(workdir: Path, n_docs: int, n_shards: int, dim: int, seed: int
                ) -> tuple[Path, Path]:
    """Write the shards and embeddings once per size; later runs reuse them from ``workdir``."""
    data = workdir / f"corpus_{n_docs}"
    emb_path = workdir / f"embeddings_{n_docs}.npy"
    if emb_path.exists():
        return data, emb_path
    rng = np.random.default_rng(seed)
    vocab = synthetic.tokenizer_words(rng)
    n_topics = 100
    topic = rng.integers(0, n_topics, size=n_docs)
    length = synthetic.lognormal_words(rng, n_docs, median=300, lo=5, hi=30_000)
    data.mkdir(parents=True, exist_ok=True)
    shards = [data / f"part-{s:03d}.jsonl" for s in range(n_shards)]
    synthetic.write_topic_docs(shards, topic, length, vocab, rng, span=300, docid_prefix="d")
    synthetic.write_planted_embeddings(emb_path, topic, n_topics, dim, rng)
    return data, emb_path


def run(data: Path, emb: Path, out: Path, executor: str, ctx_len: int) -> dict:
    cmd = [sys.executable, "-m", "datasculpt.main", f"input={data}", f"output_dir={out}",
           f"embed.precomputed={emb}", f"ctx_len={ctx_len}", "label_key=topic",
           "overwrite=true", "report.plots=false", "report.progress=false", "backend=cpu",
           f"executor={executor}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"executor={executor} failed:\n{proc.stderr[-3000:]}")
    return {"wall": wall, "report": json.loads((out / "report.json").read_text())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--ctx-len", type=int, default=16384)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/datasculpt_bench_executor"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data, emb = make_corpus(args.workdir, args.docs, args.shards, args.dim, 0)
    print(f"corpus: {args.docs:,} documents in {args.shards} shards, ready in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    res = {}
    for ex in ("local", "ray"):
        res[ex] = run(data, emb, args.workdir / f"run_{ex}", ex, args.ctx_len)
        st = res[ex]["report"]["stages"]
        m = res[ex]["report"]["metrics"]
        print(f"executor={ex}: wall {res[ex]['wall']:.1f} s; {m['total_tokens']:,} tokens, "
              f"{m['n_sequences']:,} sequences; stages (s): "
              + ", ".join(f"{k} {v.get('seconds') or 0:.1f}" for k, v in st.items()),
              flush=True)
    same = filecmp.cmp(args.workdir / "run_local" / "sequences.jsonl",
                       args.workdir / "run_ray" / "sequences.jsonl", shallow=False)
    print(f"ray / local wall: {res['ray']['wall'] / res['local']['wall']:.2f}x; "
          f"sequences.jsonl byte-identical: {same}")


if __name__ == "__main__":
    main()
