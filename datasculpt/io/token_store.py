"""The token store: every document's token ids, tokenized once, on disk, as the tokenize
tasks' part files.

Each tokenize task writes one part file (``token_parts/part-NNNNNN.bin``: the flat int32 ids of
its block's candidate records, the run's tokenizer, no special tokens). The store *is* those
files, in input order, never merged: at a billion documents a merge would copy the whole
corpus's ids (terabytes) once more only to put them in one file. ``offsets.npy`` keeps the
meaning it had when the store was one file: ``N + 1`` int64 offsets into the concatenation of
the documents' ids in document order, so document ``d`` has ``offsets[d + 1] - offsets[d]``
ids and every reader that only needs lengths or a global token position is unchanged.

That concatenation is virtual. The part files laid end to end in input order (``parts.json``:
each file and its number of ids) hold the same ids, plus those of candidates the merge dropped
(duplicate ids, wrong vector dimension: checks that need earlier records, so only the merge can
make them, after the task wrote the ids). Those are left where they are and stepped over:
``skips.npy`` holds ``(document, skipped)`` rows, sorted, saying that from that document on the
document's position in the parts is its offset plus ``skipped`` ids (until the next row). A run
without dropped records has no rows; each dropped run of records costs one. A part none of
whose candidates became a document is deleted and is not in ``parts.json``.

Readers read spans with ``pread`` into a fresh array, never through a memory map: a map keeps
every page it touched (and the kernel's read-around) in the resident set, so reading all
sequences of a shuffled run would count most of the store against the process's memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from datasculpt.io.write import write_npy
from datasculpt.memory import release_free_memory
from datasculpt.tokenize import plain_ids

OFFSETS = "offsets.npy"
PARTS_DIR = "token_parts"  # the part files, their list and the skips
PARTS = "parts.json"
SKIPS = "skips.npy"
LEGACY_TOKENS = "tokens.bin"  # the merged store of layout 1, removed when a run rebuilds
_MAX_ID = np.iinfo(np.int32).max


# Batches between two ``malloc_trim`` calls: a call costs ~0.6 ms (6 s of a 10M-document
# run when made after every batch), while the heap the id lists fragment between two calls
# is a few batches' worth (~2 MB per 1,000 documents), not the corpus's.
_TRIM_EVERY = 16


class TokenWriter:
    """Tokenizes texts batch by batch and appends their ids to an open binary file.

    Memory holds two batches of ids, never the corpus; every few batches the freed heap goes
    back to the OS (``datasculpt.memory``), so the resident set stays flat over a long corpus.

    A batch is encoded on a thread of its own while the caller reads the next one and this
    writer copies the previous one's ids out: the Rust tokenizer releases the GIL, but the
    Python around it (turning ids into lists, parsing the records) holds it, and done in
    turn with the encoding it left a core idle (the 10M-document tokenize stage kept 1.64 of
    2 cores busy). One thread, first in first out: the file's ids are in input order.
    """

    def __init__(self, fh: BinaryIO, tok: Any, batch_size: int, bar: Any = None) -> None:
        if len(tok) > _MAX_ID:
            raise ValueError(f"a vocabulary of {len(tok)} ids does not fit the int32 token store")
        self.fh, self.batch_size, self.bar = fh, batch_size, bar
        self.encode = plain_ids(tok)
        self.counts: list[int] = []
        self.batch: list[str] = []
        self.flushes = 0
        self._pending: Future[list[list[int]]] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="datasculpt-encode")

    def add(self, text: str) -> None:
        self.batch.append(text)
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Start encoding the current batch, and write the one before it."""
        ahead = self._pool.submit(self.encode, self.batch) if self.batch else None
        self.batch = []
        self._write_pending()
        self._pending = ahead

    def _write_pending(self) -> None:
        if self._pending is None:
            return
        ids = self._pending.result()
        self._pending = None
        lens = [len(x) for x in ids]
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=sum(lens))
        self.fh.write(flat.tobytes())
        self.counts.extend(lens)
        if self.bar is not None:
            self.bar.update(len(ids))
        del ids, flat
        self.flushes += 1
        if self.flushes % _TRIM_EVERY == 0:
            release_free_memory()  # else the freed id lists' pages stay resident (memory.py)

    def lengths(self) -> np.ndarray:
        """Every text's token count, once all are written (the writer is closed)."""
        self.flush()
        self._write_pending()
        self.close()
        return np.asarray(self.counts, dtype=np.int64)

    def close(self) -> None:
        """Stop the encoding thread (a batch still encoding is dropped)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)


def write_offsets(out_dir: Path, n_tokens: np.ndarray) -> np.ndarray:
    offsets = np.zeros(n_tokens.size + 1, dtype=np.int64)
    np.cumsum(n_tokens, out=offsets[1:])
    write_npy(out_dir / OFFSETS, offsets)
    return offsets


def write_parts(store_dir: Path, parts: Iterable[tuple[str, int]], skips: np.ndarray) -> None:
    """The list of ``(file name, ids)`` in input order and the ``(document, skipped)`` rows
    (``skips``, shape ``(K, 2)``) beside the part files already in ``store_dir``."""
    write_npy(store_dir / SKIPS, np.asarray(skips, dtype=np.int64).reshape(-1, 2))
    listed = [{"file": name, "tokens": int(n)} for name, n in parts]
    (store_dir / PARTS).write_text(json.dumps({"parts": listed}, indent=0) + "\n")


def store_files(run_dir: Path) -> list[str]:
    """The store's files relative to ``run_dir``: the stage's artifacts, so a run whose part
    file went missing is not reused."""
    path = run_dir / PARTS_DIR / PARTS
    if not path.exists():
        return [OFFSETS, f"{PARTS_DIR}/{PARTS}"]
    names = [p["file"] for p in json.loads(path.read_text())["parts"]]
    return [OFFSETS, f"{PARTS_DIR}/{PARTS}", f"{PARTS_DIR}/{SKIPS}",
            *(f"{PARTS_DIR}/{n}" for n in names)]


def store_stats(n_tokens: np.ndarray, offsets: np.ndarray, seconds: float) -> dict[str, Any]:
    return {
        "documents": int(n_tokens.size),
        "tokens": int(n_tokens.sum()),
        "seconds": seconds,
        "tokens_per_s": float(n_tokens.sum() / seconds) if seconds > 0 else None,
        "store_bytes": int(offsets[-1]) * 4,
    }


class TokenStore:
    """Random access to the token store of a run directory (read-only), across its parts.

    Readers see the documents' ids as one array (``offsets``) and never which part holds
    them; ``gather`` maps each span to its part and position there."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / PARTS_DIR
        self.offsets = np.load(run_dir / OFFSETS, allow_pickle=False)
        listed = json.loads((self.dir / PARTS).read_text())["parts"]
        self.files = [self.dir / p["file"] for p in listed]
        sizes = np.asarray([int(p["tokens"]) for p in listed], dtype=np.int64)
        self.part_start = np.zeros(sizes.size + 1, dtype=np.int64)  # in the parts laid end to end
        np.cumsum(sizes, out=self.part_start[1:])
        skips = np.load(self.dir / SKIPS, allow_pickle=False).reshape(-1, 2)
        self.skip_doc, self.skipped = skips[:, 0].copy(), skips[:, 1].copy()

    @property
    def doc_len(self) -> np.ndarray:
        return np.diff(self.offsets)

    def _placed(self, doc: np.ndarray) -> np.ndarray:
        """Where each document's ids start in the parts laid end to end."""
        if not self.skip_doc.size:
            return self.offsets[doc]
        row = np.searchsorted(self.skip_doc, doc, side="right") - 1
        return self.offsets[doc] + np.where(row >= 0, self.skipped[np.maximum(row, 0)], 0)

    def span(self, doc: int, start: int, end: int) -> np.ndarray:
        """One span, without ``gather``'s array work: callers read long documents one at a
        time, and the per-call cost is then the read's."""
        out = np.empty(max(int(end) - int(start), 0), dtype=np.int32)
        if not out.size:
            return out
        placed = int(self.offsets[doc])
        if self.skip_doc.size:
            row = int(np.searchsorted(self.skip_doc, doc, side="right")) - 1
            placed += int(self.skipped[row]) if row >= 0 else 0
        part = int(np.searchsorted(self.part_start, placed, side="right")) - 1
        src = placed + int(start) - int(self.part_start[part])
        self._read(self.files[part], np.asarray([src * 4]), np.asarray([0]),
                   np.asarray([out.size * 4]), memoryview(out).cast("B"))
        return out

    def tokens(self, lo: int, hi: int) -> np.ndarray:
        """Ids ``lo`` to ``hi`` of all documents' ids in document order (what ``tokens.bin``
        held when the store was one file)."""
        if hi <= lo:
            return np.empty(0, dtype=np.int32)
        first = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        last = int(np.searchsorted(self.offsets, hi, side="left"))
        doc = np.arange(first, last, dtype=np.int64)
        begin = self.offsets[doc]
        return self.gather(doc, np.maximum(lo - begin, 0),
                           np.minimum(hi, self.offsets[doc + 1]) - begin)

    def gather(self, doc: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The ids of many spans, concatenated in order.

        Spans that follow one another in the same part (consecutive documents, a long
        document's pieces) are read as one, and the reads go part by part, so a gather holds
        one open file at a time whatever the number of parts."""
        doc = np.asarray(doc, dtype=np.int64)
        start = np.asarray(start, dtype=np.int64)
        length = np.asarray(end, dtype=np.int64) - start
        total = int(length.sum())
        out = np.empty(total, dtype=np.int32)
        if not total:
            return out
        nonempty = length > 0
        doc, start, length = doc[nonempty], start[nonempty], length[nonempty]
        dest = np.concatenate(([0], np.cumsum(length)[:-1]))
        placed = self._placed(doc)
        part = np.searchsorted(self.part_start, placed, side="right") - 1
        src = placed + start - self.part_start[part]
        # a span continuing the previous one in the same part joins it
        new = np.ones(src.size, dtype=bool)
        new[1:] = (part[1:] != part[:-1]) | (src[1:] != src[:-1] + length[:-1])
        heads = np.flatnonzero(new)
        run_len = np.add.reduceat(length, heads)
        part, src, dest = part[heads], src[heads], dest[heads]
        buf = memoryview(out).cast("B")
        order = np.argsort(part, kind="stable")
        cuts = np.flatnonzero(np.diff(part[order])) + 1
        for sel in np.split(order, cuts):
            self._read(self.files[int(part[sel[0]])], src[sel] * 4, dest[sel] * 4,
                       run_len[sel] * 4, buf)
        return out

    @staticmethod
    def _read(path: Path, src: np.ndarray, dest: np.ndarray, size: np.ndarray,
              buf: memoryview) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset, pos, n in zip(src.tolist(), dest.tolist(), size.tolist(), strict=True):
                while n:  # pread may return less than asked
                    got = os.preadv(fd, [buf[pos : pos + n]], offset)
                    if got <= 0:
                        raise OSError(f"{path} is shorter than the token store's index says")
                    pos, offset, n = pos + got, offset + got, n - got
        finally:
            os.close(fd)
