"""The token store: every document's token ids, tokenized once, on disk.

``tokens.bin`` is the flat int32 concatenation of the documents' ids (the run's tokenizer, no
special tokens) in document order; ``offsets.npy`` holds ``N + 1`` int64 offsets, so document
``d`` is ``tokens[offsets[d] : offsets[d + 1]]``. The tokenize stage streams texts into it batch
by batch (memory holds one batch of ids, never the corpus), and the writer reads any span back
by random access through a memory map: the corpus is never re-read or re-tokenized to build
training shards.
"""

from __future__ import annotations

import os
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from datasculpt.io.write import write_npy
from datasculpt.memory import release_free_memory
from datasculpt.tokenize import plain_ids

TOKENS = "tokens.bin"
OFFSETS = "offsets.npy"
_MAX_ID = np.iinfo(np.int32).max


class TokenWriter:
    """Tokenizes texts batch by batch and appends their ids to an open binary file.

    Memory holds one batch of ids, never the corpus; after each batch the freed heap goes back
    to the OS (``datasculpt.memory``), so the resident set stays flat over a long corpus.
    """

    def __init__(self, fh: BinaryIO, tok: Any, batch_size: int, bar: Any = None) -> None:
        if len(tok) > _MAX_ID:
            raise ValueError(f"a vocabulary of {len(tok)} ids does not fit the int32 token store")
        self.fh, self.batch_size, self.bar = fh, batch_size, bar
        self.encode = plain_ids(tok)
        self.counts: list[int] = []
        self.batch: list[str] = []

    def add(self, text: str) -> None:
        self.batch.append(text)
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        ids = self.encode(self.batch)
        lens = [len(x) for x in ids]
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=sum(lens))
        self.fh.write(flat.tobytes())
        self.counts.extend(lens)
        if self.bar is not None:
            self.bar.update(len(self.batch))
        self.batch.clear()
        del ids, flat
        release_free_memory()  # else the freed id lists' pages stay resident (memory.py)

    def lengths(self) -> np.ndarray:
        self.flush()
        return np.asarray(self.counts, dtype=np.int64)


def write_offsets(out_dir: Path, n_tokens: np.ndarray) -> np.ndarray:
    offsets = np.zeros(n_tokens.size + 1, dtype=np.int64)
    np.cumsum(n_tokens, out=offsets[1:])
    write_npy(out_dir / OFFSETS, offsets)
    return offsets


def store_stats(n_tokens: np.ndarray, offsets: np.ndarray, seconds: float) -> dict[str, Any]:
    return {
        "documents": int(n_tokens.size),
        "tokens": int(n_tokens.sum()),
        "seconds": seconds,
        "tokens_per_s": float(n_tokens.sum() / seconds) if seconds > 0 else None,
        "store_bytes": int(offsets[-1]) * 4,
    }


class TokenStore:
    """Random access to the token store of a run directory (read-only).

    Spans are read with ``pread`` into a fresh array, never through a memory map: a map keeps
    every page it touched (and the kernel's read-around) in the resident set, so reading all
    sequences of a shuffled run would count most of the store against the process's memory.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / TOKENS
        self.offsets = np.load(run_dir / OFFSETS, allow_pickle=False)

    @property
    def doc_len(self) -> np.ndarray:
        return np.diff(self.offsets)

    def span(self, doc: int, start: int, end: int) -> np.ndarray:
        return self.gather(np.asarray([doc]), np.asarray([start]), np.asarray([end]))

    def gather(self, doc: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The ids of many spans, concatenated in order."""
        length = np.asarray(end, dtype=np.int64) - np.asarray(start, dtype=np.int64)
        total = int(length.sum())
        out = np.empty(total, dtype=np.int32)
        if not total:
            return out
        src = (self.offsets[np.asarray(doc)] + np.asarray(start)) * 4
        buf = memoryview(out).cast("B")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            pos = 0
            for offset, n in zip(src.tolist(), (length * 4).tolist(), strict=True):
                while n:  # pread may return less than asked
                    got = os.preadv(fd, [buf[pos : pos + n]], offset)
                    if got <= 0:
                        raise OSError(f"{self.path} is shorter than its offsets say")
                    pos, offset, n = pos + got, offset + got, n - got
        finally:
            os.close(fd)
        return out
