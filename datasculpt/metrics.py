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
        # By start alone: pieces tied on start may come in any order, since each adds only
        # what reaches past the running maximum, and one key sorts in half lexsort's time.
        order = np.argsort(gs)
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


Pairs = tuple[np.ndarray, np.ndarray]


def relevance_per_sequence(
    packing: Packing, embeddings: Any, pairs: Pairs | None = None
) -> np.ndarray:
    """Mean pairwise cosine of the distinct documents of each sequence (NaN below two).

    ``pairs`` is ``seq_doc_pairs(packing)`` when the caller already has it: at 10M pieces the
    sort is half a second, and the report needs the pairs for purity as well."""
    emb = to_numpy(embeddings)
    n_seq = packing.n_sequences
    seq, doc = seq_doc_pairs(packing) if pairs is None else pairs
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


def docs_per_sequence(packing: Packing, pairs: Pairs | None = None) -> np.ndarray:
    """Distinct documents in each sequence (a document cut into two pieces counts once)."""
    seq = (seq_doc_pairs(packing) if pairs is None else pairs)[0]
    return np.bincount(seq, minlength=packing.n_sequences)


def group_ids(group: Any) -> np.ndarray:
    """Dense int64 ids of the groups (labels, clusters), one per document.

    Purity only asks which documents share a group, so any one-to-one relabelling gives the
    same figure, bit for bit; ids that already are small non-negative integers are kept, and
    anything else (strings) is sorted once here rather than once per ``purity`` call."""
    group = np.asarray(group)
    if group.dtype.kind in "iu" and (not group.size or (int(group.min()) >= 0 and int(
            group.max()) < max(group.size, 1 << 16))):
        return group.astype(np.int64, copy=False)
    return np.unique(group, return_inverse=True)[1].reshape(-1).astype(np.int64, copy=False)


def purity(packing: Packing, group: np.ndarray, min_docs: int = 1,
           pairs: Pairs | None = None) -> float:
    """Token-weighted mean over sequences of the largest single-group token share.

    ``min_docs=2`` keeps only sequences with two or more documents: a one-document sequence is
    pure by definition, so on long-document corpora the plain figure mostly counts those.
    ``pairs`` is ``seq_doc_pairs(packing)`` when the caller already has it.
    """
    keep = (docs_per_sequence(packing, pairs)[packing.seq] >= min_docs if min_docs > 1
            else None)
    tokens = (packing.end - packing.start).astype(np.float64)
    seq, doc = packing.seq, packing.doc
    if keep is not None:
        tokens, seq, doc = tokens[keep], seq[keep], doc[keep]
    total = tokens.sum()
    if total == 0:
        return math.nan
    gid = group_ids(group)[doc]
    n_groups = int(gid.max()) + 1
    pair_seq, per_pair = _sums_by_key(np.asarray(seq, dtype=np.int64) * n_groups + gid, tokens)
    pair_seq //= n_groups
    heads = np.flatnonzero(np.concatenate(([True], pair_seq[1:] != pair_seq[:-1])))
    return float(np.maximum.reduceat(per_pair, heads).sum() / total)


def _sums_by_key(key: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys, ascending, and the sum of ``weights`` of each.

    Each sum is ``np.bincount``'s: the weights added one by one in input order, whatever the
    bins are numbered, so these are the bits ``np.unique(key, return_inverse=True)`` and a
    bincount of the inverse gave. Keys spanning a small range are counted straight into their
    bins (no sort); wider ones go through one argsort."""
    lo, hi = int(key.min()), int(key.max())
    if hi - lo <= 4 * key.size + (1 << 20):
        key = key - lo
        present = np.flatnonzero(np.bincount(key))
        return present + lo, np.bincount(key, weights=weights)[present]
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    inv = np.empty(key.size, dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    return ordered[new], np.bincount(inv, weights=weights)


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
    *,
    pairs: Pairs | None = None,
    seq_relevance: np.ndarray | None = None,
    pair_cosine: float | None = None,
) -> dict[str, Any]:
    """Every metric this input allows; semantic ones are ``None`` without their data.

    A document "fits" when its tokens plus its separator fit in one window
    (``doc_len + eos <= ctx_len``); only those count towards ``truncation_rate``, since the
    cut of a longer document is unavoidable and reported as ``forced_cut_documents``.

    ``pairs`` (``seq_doc_pairs``), ``seq_relevance`` (``relevance_per_sequence``) and
    ``pair_cosine`` (``random_pair_cosine``) are passed by a caller that needs them elsewhere
    too: each sorts every piece or reads every embedding row, seconds at 10M documents.
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
    if not n_seq:
        return out
    need_pairs = clusters is not None or labels is not None or (
        embeddings is not None and seq_relevance is None)
    if pairs is None and need_pairs:
        pairs = seq_doc_pairs(packing)
    if embeddings is not None:
        rel = (relevance_per_sequence(packing, embeddings, pairs) if seq_relevance is None
               else seq_relevance)
        out["relevance"] = float(np.nanmean(rel)) if np.isfinite(rel).any() else None
        out["random_pair_cosine"] = _nan_to_none(
            random_pair_cosine(embeddings) if pair_cosine is None else pair_cosine)
    out.update(_purities(packing, clusters, labels, pairs))
    return out


def _purities(packing: Packing, clusters: np.ndarray | None, labels: np.ndarray | None,
              pairs: Pairs | None) -> dict[str, float | None]:
    """Cluster and label purity, plain and over sequences of two or more documents."""
    out: dict[str, float | None] = {}
    for key, group in (("cluster", clusters), ("label", labels)):
        if group is not None:
            ids = group_ids(group)
            out[f"{key}_purity"] = purity(packing, ids)
            out[f"{key}_purity_multi"] = _nan_to_none(purity(packing, ids, 2, pairs))
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
    return Packing(seq=next_fit(units.length[order], ctx_len), doc=units.doc[order],
                   start=units.start[order], end=units.end[order])


def next_fit(length: np.ndarray, ctx_len: int) -> np.ndarray:
    """The window of every item placed in order into the current window while it fits, else
    into a new one (the first item of a window always goes in).

    A loop over windows, not items: each window runs from its first item to the last one whose
    running total stays within ``ctx_len`` (one ``searchsorted`` on the prefix sums), so 10M
    items in 25K windows take milliseconds, not the seconds of a per-item loop. An item longer
    than ``ctx_len`` gets a window of its own; as the first item of all it opens window 1,
    leaving window 0 empty, as the per-item rule ``used + n > ctx_len`` does.
    """
    length = np.asarray(length, dtype=np.int64)
    n = length.size
    seq = np.empty(n, dtype=np.int64)
    if not n:
        return seq
    ends = np.concatenate(([0], np.cumsum(length)))
    i, cur = 0, int(length[0] > ctx_len)
    while i < n:
        j = max(i + 1, int(np.searchsorted(ends, ends[i] + ctx_len, side="right")) - 1)
        seq[i:j] = cur
        i, cur = j, cur + 1
    return seq


def random_reference(
    units: Any,
    ctx_len: int,
    seed: int,
    embeddings: Any | None = None,
    clusters: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    pair_cosine: float | None = None,
) -> dict[str, Any]:
    """Relevance and purity of a random grouping (``random_grouping``); relevance is the exact
    mean over all document pairs (``random_pair_cosine``, or ``pair_cosine`` when the caller
    has computed it already)."""
    out: dict[str, Any] = {"relevance": None, "cluster_purity": None, "label_purity": None,
                           "cluster_purity_multi": None, "label_purity_multi": None}
    if not len(units):
        return out
    if embeddings is not None:
        out["relevance"] = _nan_to_none(
            random_pair_cosine(embeddings) if pair_cosine is None else pair_cosine)
    if clusters is not None or labels is not None:
        packing = random_grouping(units, ctx_len, seed)
        out.update(_purities(packing, clusters, labels, seq_doc_pairs(packing)))
    return out
