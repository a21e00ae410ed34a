"""How well static document vectors separate labelled domains, before any packing.

For each token limit and each way of weighing a token's count in its document (``count``:
Model2Vec's mean; ``binary``: each distinct token once; ``log``: 1 + log(count); ``sqrt``),
prints the share of every document's ``--k`` nearest neighbours (cosine, after the corpus mean
is removed as the pipeline does) that carry its label. The encoder's own embeddings, given
with ``--encoder-embeddings``, are the reference. This is the measurement behind
``embed.term_weight``'s default (docs/BENCHMARKS.md)::

    python scripts/bench_static_vectors.py \\
        --encoder-embeddings ~/.cache/datasculpt/bench_quality/embeddings.npy

Rows of ``--encoder-embeddings`` must follow the input's records (the dev corpus has no
malformed line, so ``documents.parquet`` and the input agree).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from datasculpt.config import EmbedConfig  # noqa: E402
from datasculpt.embed import clipped_ids  # noqa: E402
from datasculpt.embed.static import static_model_dir  # noqa: E402

WEIGHTS = {"count": lambda c: c, "binary": np.ones_like, "log": lambda c: 1 + np.log(c),
           "sqrt": np.sqrt}


def neighbour_agreement(vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of each row's ``k`` nearest rows (cosine, corpus mean removed) with its label."""
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    x = x - x.mean(axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    hits = 0
    for a in range(0, x.shape[0], 2048):
        sim = x[a : a + 2048] @ x.T
        sim[np.arange(sim.shape[0]), np.arange(a, a + sim.shape[0])] = -np.inf
        near = np.argpartition(-sim, k, axis=1)[:, :k]
        hits += int((labels[near] == labels[a : a + 2048, None]).sum())
    return hits / (x.shape[0] * k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(Path.home() / ".cache/datasculpt/devcorpus/"
                                              "devcorpus.jsonl"))
    ap.add_argument("--text-key", default="content")
    ap.add_argument("--label-key", default="domain")
    ap.add_argument("--model", default="default", help="embed.model to distil (cached)")
    ap.add_argument("--pca-dims", type=int, default=256, help="0: all dimensions")
    ap.add_argument("--max-length", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--encoder-embeddings", help="the encoder's embeddings.npy, for reference")
    args = ap.parse_args()

    from model2vec import StaticModel

    with open(args.input, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    labels = np.asarray([str(r[args.label_key]) for r in records])
    cfg = OmegaConf.structured(EmbedConfig(model=args.model, kind="static",
                                           pca_dims=args.pca_dims or None))
    model = StaticModel.from_pretrained(str(static_model_dir(cfg)), force_download=False)
    model.tokenizer.no_truncation()
    table = np.asarray(model.embedding, dtype=np.float32)
    longest = max(args.max_length)
    ids = [np.asarray(x, dtype=np.int64) for x in clipped_ids(
        model.tokenize, [str(r[args.text_key]) for r in records], longest)]
    print(f"{len(records)} documents, {len(set(labels.tolist()))} labels, table "
          f"{table.shape[0]} x {table.shape[1]}, {args.k} nearest neighbours")
    if args.encoder_embeddings:
        enc = np.load(args.encoder_embeddings, mmap_mode="r").astype(np.float32)
        print(f"encoder embeddings: {neighbour_agreement(enc, labels, args.k):.4f}")
    print("| tokens | " + " | ".join(WEIGHTS) + " |")
    print("|---|" + "---|" * len(WEIGHTS))
    for max_length in args.max_length:
        cells = []
        for weigh in WEIGHTS.values():
            vec = np.zeros((len(ids), table.shape[1]), dtype=np.float32)
            for i, doc in enumerate(ids):
                tok, count = np.unique(doc[:max_length], return_counts=True)
                vec[i] = (table[tok] * weigh(count.astype(np.float32))[:, None]).sum(axis=0)
            cells.append(f"{neighbour_agreement(vec, labels, args.k):.4f}")
        print(f"| {max_length} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
