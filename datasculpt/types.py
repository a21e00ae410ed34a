"""Array records passed between stages.

Every stage speaks in flat arrays indexed by document (the row order of
``documents.parquet``) so that a stage can run in a test, a notebook or a Ray task
without the pipeline around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Units:
    """The pieces a packer places: whole documents, or ``ctx_len`` cuts of long ones.

    ``start``/``end`` are half-open token spans of document ``doc``; ``doc_len`` is the full
    token count of every document (indexed by document, not by unit) so that a packer can
    tell whether a span ends its document (and therefore carries the separator token).
    """

    doc: np.ndarray  # int64 [U]
    start: np.ndarray  # int64 [U]
    end: np.ndarray  # int64 [U]
    doc_len: np.ndarray  # int64 [N]
    eos: int  # 1 when a separator token follows the last span of each document, else 0

    @property
    def length(self) -> np.ndarray:
        """Tokens each unit occupies in a sequence, separator included."""
        return (self.end - self.start) + self.eos * (self.end == self.doc_len[self.doc])

    def __len__(self) -> int:
        return int(self.doc.shape[0])


@dataclass(frozen=True)
class Packing:
    """Placed pieces in output order: sequence ``seq[i]`` holds span ``[start[i], end[i])``.

    ``seq`` is non-decreasing and numbered from 0 without gaps; within a sequence the pieces
    appear in the order they are concatenated.
    """

    seq: np.ndarray  # int64 [P]
    doc: np.ndarray  # int64 [P]
    start: np.ndarray  # int64 [P]
    end: np.ndarray  # int64 [P]

    @property
    def n_sequences(self) -> int:
        return int(self.seq[-1]) + 1 if self.seq.size else 0

    def piece_tokens(self, doc_len: np.ndarray, eos: int) -> np.ndarray:
        """Tokens each placed piece occupies, separator included."""
        return (self.end - self.start) + eos * (self.end == doc_len[self.doc])

    def seq_tokens(self, doc_len: np.ndarray, eos: int) -> np.ndarray:
        """``n_tokens`` of every sequence, as the output contract defines it."""
        return np.bincount(
            self.seq, weights=self.piece_tokens(doc_len, eos), minlength=self.n_sequences
        ).astype(np.int64)

    @staticmethod
    def from_lists(seqs: list[list[tuple[int, int, int]]]) -> Packing:
        """Build from ``[[(doc, start, end), ...], ...]`` (tests and small reference code)."""
        flat = [(s, d, a, b) for s, pieces in enumerate(seqs) for (d, a, b) in pieces]
        arr = np.asarray(flat, dtype=np.int64).reshape(-1, 4)
        return Packing(seq=arr[:, 0], doc=arr[:, 1], start=arr[:, 2], end=arr[:, 3])
