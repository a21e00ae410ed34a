"""The training rows of a packing: each sequence's token ids with the separators placed, and
its pieces' lengths. Every output format (the Parquet shards, Megatron's indexed dataset,
OLMo-core's token files) writes these same rows in the same order, so a trainer reads the
same windows whichever format it takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasculpt.io.token_store import TokenStore
from datasculpt.types import Packing


@dataclass
class Rows:
    """Rows ``seqs`` of a packing, flattened.

    ``ids[row_off[i]:row_off[i + 1]]`` are row ``i``'s token ids (int32); its pieces are
    ``piece_off[i]:piece_off[i + 1]`` of ``doc``/``plen`` (a piece's length counts the
    separator after a document's last piece).
    """

    seqs: np.ndarray  # int64: the sequences (lines of sequences.jsonl), in row order
    ids: np.ndarray  # int32
    row_off: np.ndarray  # int64, len(seqs) + 1
    piece_off: np.ndarray  # int64, len(seqs) + 1
    doc: np.ndarray  # int64 per piece: its document
    plen: np.ndarray  # int64 per piece: its tokens in the row, separator included


def sequence_heads(packing: Packing) -> np.ndarray:
    """Index of every sequence's first piece, and the piece count at the end."""
    return np.searchsorted(packing.seq, np.arange(packing.n_sequences + 1))


def assemble(packing: Packing, heads: np.ndarray, seqs: np.ndarray, store: TokenStore,
             eos: int, sep_id: int | None) -> Rows:
    """The rows of sequences ``seqs`` (in this order), by whole-array operations: one gather
    from the token store, the separators written after each document's last piece."""
    n_pieces = heads[seqs + 1] - heads[seqs]
    piece = np.repeat(heads[seqs] - np.concatenate(([0], np.cumsum(n_pieces)[:-1])),
                      n_pieces) + np.arange(int(n_pieces.sum()))
    doc, start, end = packing.doc[piece], packing.start[piece], packing.end[piece]
    ends_doc = (end == store.offsets[doc + 1] - store.offsets[doc]) & bool(eos)
    n_tok = end - start
    plen = n_tok + ends_doc
    out_first = np.concatenate(([0], np.cumsum(plen)[:-1]))
    total = int(plen.sum())
    ids = np.empty(total, dtype=np.int32)
    dest = np.repeat(out_first - np.concatenate(([0], np.cumsum(n_tok)[:-1])), n_tok) \
        + np.arange(int(n_tok.sum()))
    ids[dest] = store.gather(doc, start, end)
    if ends_doc.any():
        ids[(out_first + n_tok)[ends_doc]] = sep_id
    row_tokens = np.bincount(np.repeat(np.arange(seqs.shape[0]), n_pieces), weights=plen,
                             minlength=seqs.shape[0]).astype(np.int64)
    return Rows(seqs=seqs, ids=ids, row_off=np.concatenate(([0], np.cumsum(row_tokens))),
                piece_off=np.concatenate(([0], np.cumsum(n_pieces))), doc=doc,
                plen=plen.astype(np.int64))


def row_order(n_seq: int, shuffle: bool, seed: int) -> np.ndarray:
    """The order of the rows in every format: a seeded shuffle (pack order groups clusters,
    which would bias a trainer's batches), or pack order."""
    return (np.random.default_rng(seed).permutation(n_seq) if shuffle
            else np.arange(n_seq, dtype=np.int64))


def token_groups(seq_tokens: np.ndarray, order: np.ndarray, limit: int) -> list[int]:
    """Bounds of consecutive rows (positions in ``order``) of at most ``limit`` tokens each (a
    longer row alone): row groups and shard files."""
    bounds, acc = [0], 0
    for i, n in enumerate(seq_tokens[order].tolist()):
        if acc and acc + n > limit:
            bounds.append(i)
            acc = 0
        acc += n
    bounds.append(order.shape[0])
    return bounds
