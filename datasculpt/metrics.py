"""The metrics of DESIGN §5, computed from the output contract alone.

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


def relevance_per_sequence(packing: Packing, embeddings: Any) -> np.ndarray:
    """Mean pairwise cosine of the distinct documents of each sequence (NaN below two)."""
    emb = to_numpy(embeddings)
    n_seq = packing.n_sequences
    pairs = np.unique(np.stack([packing.seq, packing.doc], axis=1), axis=0)
    seq, doc = pairs[:, 0], pairs[:, 1]
    sums = np.zeros((n_seq, emb.shape[1]), dtype=np.float64)
    sq = np.zeros(n_seq, dtype=np.float64)
    for lo in range(0, seq.size, _CHUNK):
        s, d = seq[lo : lo + _CHUNK], doc[lo : lo + _CHUNK]
        rows = np.asarray(emb[d], dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows /= np.where(norms > 0, norms, 1.0)
        heads = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        sums[s[heads]] += np.add.reduceat(rows, heads, axis=0)
        sq[s[heads]] += np.add.reduceat((rows * rows).sum(axis=1), heads)
    count = np.bincount(seq, minlength=n_seq).astype(np.float64)
    n_pairs = count * (count - 1) / 2
    pair_sum = ((sums * sums).sum(axis=1) - sq) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= 2, pair_sum / n_pairs, np.nan)


def purity(packing: Packing, group: np.ndarray) -> float:
    """Token-weighted mean over sequences of the largest single-group token share."""
    tokens = (packing.end - packing.start).astype(np.float64)
    total = tokens.sum()
    if total == 0:
        return math.nan
    _, gid = np.unique(np.asarray(group)[packing.doc], return_inverse=True)
    key = packing.seq * (int(gid.max()) + 1) + gid
    uniq, inv = np.unique(key, return_inverse=True)
    per_pair = np.bincount(inv, weights=tokens)
    pair_seq = uniq // (int(gid.max()) + 1)
    heads = np.flatnonzero(np.concatenate(([True], pair_seq[1:] != pair_seq[:-1])))
    return float(np.maximum.reduceat(per_pair, heads).sum() / total)


def compute_metrics(
    packing: Packing,
    doc_len: np.ndarray,
    ctx_len: int,
    eos: int,
    embeddings: Any | None = None,
    clusters: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every DESIGN §5 metric this input allows; semantic ones are ``None`` without their data.

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
        "cluster_purity": None,
        "label_purity": None,
    }
    if embeddings is not None and n_seq:
        rel = relevance_per_sequence(packing, embeddings)
        out["relevance"] = float(np.nanmean(rel)) if np.isfinite(rel).any() else None
    if clusters is not None and n_seq:
        out["cluster_purity"] = purity(packing, clusters)
    if labels is not None and n_seq:
        out["label_purity"] = purity(packing, labels)
    return out
