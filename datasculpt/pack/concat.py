"""The standard pre-training baseline: shuffle, concatenate, cut every ``ctx_len`` tokens."""

from __future__ import annotations

import numpy as np

from datasculpt.types import Packing, Units


def cut_stream(units: Units, order: np.ndarray, ctx_len: int) -> Packing:
    """Concatenate ``units`` in ``order`` and cut the stream every ``ctx_len`` tokens.

    A separator token stays with the last token of its document: when a cut would leave the
    separator alone at the head of the next sequence, the cut moves one token earlier, so
    every piece holds at least one document token and ``n_tokens`` never exceeds ``ctx_len``.
    """
    doc, start, end, doc_len, eos = units.doc, units.start, units.end, units.doc_len, units.eos
    out_seq: list[int] = []
    out_doc: list[int] = []
    out_start: list[int] = []
    out_end: list[int] = []
    seq, fill = 0, 0
    for u in order.tolist():
        d, s, e = int(doc[u]), int(start[u]), int(end[u])
        ends_doc = bool(eos) and e == int(doc_len[d])
        while s < e:
            room = ctx_len - fill
            if room == 0:
                seq, fill, room = seq + 1, 0, ctx_len
            take = min(e - s, room)
            sep = 1 if ends_doc and s + take == e else 0
            if take + sep > room:
                if take == 1:  # a lone token + separator cannot share this sequence's last slot
                    seq, fill = seq + 1, 0
                    continue
                take, sep = take - 1, 0
            out_seq.append(seq)
            out_doc.append(d)
            out_start.append(s)
            out_end.append(s + take)
            fill += take + sep
            s += take
    return Packing(
        seq=np.asarray(out_seq, dtype=np.int64),
        doc=np.asarray(out_doc, dtype=np.int64),
        start=np.asarray(out_start, dtype=np.int64),
        end=np.asarray(out_end, dtype=np.int64),
    )


def pack_concat(units: Units, ctx_len: int, seed: int) -> Packing:
    """Seeded document shuffle, then concatenate and cut; a long document's pieces stay in order."""
    rng = np.random.default_rng(seed)
    n_docs = units.doc_len.shape[0]
    rank = rng.permutation(n_docs)  # shuffled position of every document
    order = np.lexsort((units.start, rank[units.doc]))
    return cut_stream(units, order, ctx_len)
