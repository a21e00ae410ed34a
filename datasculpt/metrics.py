"""The report's metrics of a packing, computed from the output contract alone.

Everything here reads only placed spans (a ``Packing``), the documents' token counts and,
when given, their embeddings, cluster labels and input labels: exactly what anyone can
recompute from ``sequences.jsonl``, the input and ``embeddings.npy``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from datasculpt.backend import to_numpy
from datasculpt.types import Packing
from datasculpt.vectors import ZERO_ROWS_ONLY, l2_normalize

_CHUNK = 1 << 16


def coverage(packing: Packing, doc_len: np.ndarray) -> dict[str, int]:
    """Token accounting: lost, duplicated and out-of-range tokens over all documents."""
    doc, start, end = packing.doc, packing.start, packing.end
    invalid = (start < 0) | (end <= start) | (end > doc_len[doc]) if doc.size else np.zeros(0, bool)
    start = np.clip(start, 0, doc_len[doc])
    end = np.clip(end, start, doc_len[doc])
    span = int((end - start).sum())
    covered = 0
    if doc.size:
        # Put every document on one global axis so one running maximum computes all unions.
        base = np.concatenate(([0], np.cumsum(doc_len)[:-1]))[doc]
        gs, ge = base + start, base + end
        order = np.lexsort((ge, gs))
        gs, ge = gs[order], ge[order]
        reach = np.maximum.accumulate(ge)
        prev = np.concatenate(([-1], reach[:-1]))
        covered = int(np.maximum(0, ge - np.maximum(gs, prev)).sum())
    total = int(doc_len.sum())
    return {
        "total_doc_tokens": total,
        "placed_tokens": span,
        "lost_tokens": total - covered,
        "duplicated_tokens": span - covered,
        "invalid_pieces": int(invalid.sum()),
    }


def seq_doc_pairs(packing: Packing) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(sequence, document)`` pairs, sorted by sequence then document.

    One sort of an int64 key ``seq * n_docs + doc`` (0.5 s at 10M documents):
    ``np.unique(..., axis=0)`` over the stacked rows gives the same pairs but sorts a
    structured view, and ``np.unique`` of the key takes NumPy 2's hash path (2.9 s a call);
    four calls made them the report's largest cost."""
    seq = np.asarray(packing.seq, dtype=np.int64)
    doc = np.asarray(packing.doc, dtype=np.int64)
    if not seq.size:
        return seq, doc
    m = int(doc.max()) + 1
    if int(doc.min()) < 0 or int(seq.min()) < 0 or int(seq.max()) >= np.iinfo(np.int64).max // m:
        pairs = np.unique(np.stack([seq, doc], axis=1), axis=0)  # no key fits: the slow way
        return pairs[:, 0], pairs[:, 1]
    key = np.sort(seq * m + doc)  # a sort, not np.unique: NumPy 2's hash path took 2.9 s
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    return key // m, key % m


def relevance_per_sequence(packing: Packing, embeddings: Any) -> np.ndarray:
    """Mean pairwise cosine of the distinct documents of each sequence (NaN below two)."""
    emb = to_numpy(embeddings)
    n_seq = packing.n_sequences
    seq, doc = seq_doc_pairs(packing)
    sums = np.zeros((n_seq, emb.shape[1]), dtype=np.float64)
    sq = np.zeros(n_seq, dtype=np.float64)
    for lo in range(0, seq.size, _CHUNK):
        s, d = seq[lo : lo + _CHUNK], doc[lo : lo + _CHUNK]
        rows = l2_normalize(np.asarray(emb[d], dtype=np.float64), eps=ZERO_ROWS_ONLY)
        heads = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        sums[s[heads]] += np.add.reduceat(rows, heads, axis=0)
        sq[s[heads]] += np.add.reduceat((rows * rows).sum(axis=1), heads)
    count = np.bincount(seq, minlength=n_seq).astype(np.float64)
    n_pairs = count * (count - 1) / 2
    pair_sum = ((sums * sums).sum(axis=1) - sq) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= 2, pair_sum / n_pairs, np.nan)


def docs_per_sequence(packing: Packing) -> np.ndarray:
    """Distinct documents in each sequence (a document cut into two pieces counts once)."""
    return np.bincount(seq_doc_pairs(packing)[0], minlength=packing.n_sequences)


def purity(packing: Packing, group: np.ndarray, min_docs: int = 1) -> float:
    """Token-weighted mean over sequences of the largest single-group token share.

    ``min_docs=2`` keeps only sequences with two or more documents: a one-document sequence is
    pure by definition, so on long-document corpora the plain figure mostly counts those.
    """
    keep = docs_per_sequence(packing)[packing.seq] >= min_docs if min_docs > 1 else None
    tokens = (packing.end - packing.start).astype(np.float64)
    seq, doc = packing.seq, packing.doc
    if keep is not None:
        tokens, seq, doc = tokens[keep], seq[keep], doc[keep]
    total = tokens.sum()
    if total == 0:
        return math.nan
    _, gid = np.unique(np.asarray(group)[doc], return_inverse=True)
    key = seq * (int(gid.max()) + 1) + gid
    uniq, inv = np.unique(key, return_inverse=True)
    per_pair = np.bincount(inv, weights=tokens)
    pair_seq = uniq // (int(gid.max()) + 1)
    heads = np.flatnonzero(np.concatenate(([True], pair_seq[1:] != pair_seq[:-1])))
    return float(np.maximum.reduceat(per_pair, heads).sum() / total)


def random_pair_cosine(embeddings: Any) -> float:
    """Mean cosine over all pairs of distinct documents: what a random grouping scores.

    Exact and O(N D): for unit rows the sum over pairs is ``(|sum|^2 - N) / 2``, so no pair is
    sampled and the reference is the same on every run.
    """
    emb = to_numpy(embeddings)
    n = emb.shape[0]
    if n < 2:
        return math.nan
    total = np.zeros(emb.shape[1], dtype=np.float64)
    sq = 0.0
    for lo in range(0, n, _CHUNK):
        rows = l2_normalize(np.asarray(emb[lo : lo + _CHUNK], dtype=np.float64),
                            eps=ZERO_ROWS_ONLY)
        total += rows.sum(axis=0)
        sq += float((rows * rows).sum())
    return float((total @ total - sq) / (n * (n - 1)))


def compute_metrics(
    packing: Packing,
    doc_len: np.ndarray,
    ctx_len: int,
    eos: int,
    embeddings: Any | None = None,
    clusters: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric this input allows; semantic ones are ``None`` without their data.

    A document "fits" when its tokens plus its separator fit in one window
    (``doc_len + eos <= ctx_len``); only those count towards ``truncation_rate``, since the
    cut of a longer document is unavoidable and reported as ``forced_cut_documents``.
    """
    doc_len = np.asarray(doc_len, dtype=np.int64)
    seq_tokens = packing.seq_tokens(doc_len, eos)
    n_seq = packing.n_sequences
    total = int(seq_tokens.sum())
    pieces_per_doc = np.bincount(packing.doc, minlength=doc_len.shape[0])
    fits = doc_len + eos <= ctx_len
    lower_bound = math.ceil(total / ctx_len) if total else 0
    out: dict[str, Any] = {
        "n_documents": int(doc_len.shape[0]),
        "n_sequences": n_seq,
        "n_pieces": int(packing.doc.shape[0]),
        "total_tokens": total,
        **coverage(packing, doc_len),
        "overlong_sequences": int((seq_tokens > ctx_len).sum()),
        "empty_sequences": int((seq_tokens == 0).sum()),
        "fill_rate": total / (n_seq * ctx_len) if n_seq else math.nan,
        "seq_ratio": n_seq / lower_bound if lower_bound else math.nan,
        "truncation_rate": float((pieces_per_doc[fits] > 1).mean()) if fits.any() else 0.0,
        "truncated_documents": int((pieces_per_doc[fits] > 1).sum()),
        "forced_cut_documents": int((~fits).sum()),
        "pieces_per_seq": packing.doc.shape[0] / n_seq if n_seq else math.nan,
        "relevance": None,
        "random_pair_cosine": None,
        "cluster_purity": None,
        "label_purity": None,
        "cluster_purity_multi": None,
        "label_purity_multi": None,
    }
    if embeddings is not None and n_seq:
        rel = relevance_per_sequence(packing, embeddings)
        out["relevance"] = float(np.nanmean(rel)) if np.isfinite(rel).any() else None
        out["random_pair_cosine"] = _nan_to_none(random_pair_cosine(embeddings))
    if clusters is not None and n_seq:
        out["cluster_purity"] = purity(packing, clusters)
        out["cluster_purity_multi"] = _nan_to_none(purity(packing, clusters, min_docs=2))
    if labels is not None and n_seq:
        out["label_purity"] = purity(packing, labels)
        out["label_purity_multi"] = _nan_to_none(purity(packing, labels, min_docs=2))
    return out


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def random_grouping(units: Any, ctx_len: int, seed: int) -> Packing:
    """The reference a semantic packer is read against: units in a seeded random order, each
    into the current window until it is full (next fit, nothing cut).

    Its relevance is ``random_pair_cosine`` up to sampling noise and its purity is what a
    grouping blind to content gets on this corpus, so a method's figures can be read as a
    gain over chance rather than as bare numbers.
    """
    order = np.random.default_rng(seed).permutation(len(units))
    length = units.length[order]
    seq = np.empty(len(units), dtype=np.int64)
    cur, used = 0, 0
    for i, n in enumerate(length.tolist()):
        if used + n > ctx_len:
            cur, used = cur + 1, 0
        seq[i] = cur
        used += n
    return Packing(seq=seq, doc=units.doc[order], start=units.start[order],
                   end=units.end[order])


def random_reference(
    units: Any,
    ctx_len: int,
    seed: int,
    embeddings: Any | None = None,
    clusters: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Relevance and purity of a random grouping (``random_grouping``); relevance is the exact
    mean over all document pairs (``random_pair_cosine``)."""
    packing = random_grouping(units, ctx_len, seed)
    out: dict[str, Any] = {"relevance": None, "cluster_purity": None, "label_purity": None,
                           "cluster_purity_multi": None, "label_purity_multi": None}
    if not len(units):
        return out
    if embeddings is not None:
        out["relevance"] = _nan_to_none(random_pair_cosine(embeddings))
    for key, group in (("cluster", clusters), ("label", labels)):
        if group is not None:
            out[f"{key}_purity"] = purity(packing, group)
            out[f"{key}_purity_multi"] = _nan_to_none(purity(packing, group, min_docs=2))
    return out
