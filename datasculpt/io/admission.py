"""Admission: the read checks that depend on earlier records (unique ids, one vector dimension).

Every admitted id must stay findable until the end of the read, and at 1B documents a dict of
id strings (~100+ bytes each) does not fit on one driver. What is kept instead is a 64-bit hash
of each admitted id with the document's admitted index (16 bytes a document). A hash match is
not taken as a duplicate on its own: the first occurrence's id is looked up by its index (the
caller keeps the admitted ids anyway: the corpus's ``docids``) and compared exactly, so two
different ids that share a hash are both admitted, and the documents admitted and the
duplicates reported are those of an exact set of ids, in input order.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Sequence

import numpy as np

# Where an admitted document is: its id, its shard, its line (what a duplicate's report names).
FirstOf = Callable[[int], tuple[str, str, int]]


def hash_ids(docids: Sequence[str]) -> np.ndarray:
    """64-bit hashes (uint64) of ``docids``.

    blake2b rather than ``hash()``: Python salts str hashes per process (PYTHONHASHSEED), and a
    hash that changes between runs would make collisions, hence the work, differ between runs.
    It is in the standard library (xxhash is ~5x faster but no dependency of ours) and costs
    ~0.5 us an id, a small part of reading and tokenizing one. Surrogates (JSON allows lone
    ones) are encoded as they are: any injective encoding will do, the recheck is on strings.
    Called through the module (``admission.hash_ids``), so a test can put a weak hash here to
    force collisions.
    """
    b2 = hashlib.blake2b
    digests = b"".join([b2(d.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                        for d in docids])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64, copy=False)


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one, in O(n + m log n): no sort of the whole, no index array of n."""
    (ha, ia), (hb, ib) = a, b
    at = np.searchsorted(ha, hb, side="right") + np.arange(hb.size)
    rest = np.ones(ha.size + hb.size, dtype=bool)
    rest[at] = False
    h = np.empty(rest.size, dtype=np.uint64)
    i = np.empty(rest.size, dtype=np.int64)
    h[at], i[at] = hb, ib
    h[rest], i[rest] = ha, ia
    return h, i


class HashIndex:
    """hash -> admitted index of every admitted id: 16 bytes a document (two int64 arrays).

    New entries come a block at a time and are looked up a block at a time, so the index is
    sorted runs (a log-structured merge): a block's entries become a run, and a run merges
    with the one before it as soon as that one is not twice its size. An entry then moves
    O(log n) times in all, where merging every block into one sorted array would move the
    whole index per block (1B documents in 1,000 blocks: 1,000 copies of 16 GB). The runs are
    kept per hash range (the top ``SHARD_BITS`` bits): a merge copies one range, so the
    transient copy is 1/16 of the index instead of all of it (hashes are uniform, the ranges
    even). A lookup is a binary search per run and range: O(log n) runs.
    """

    SHARD_BITS = 4

    def __init__(self) -> None:
        self._shards: list[list[tuple[np.ndarray, np.ndarray]]] = [
            [] for _ in range(1 << self.SHARD_BITS)]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes + i.nbytes for runs in self._shards for h, i in runs)

    @property
    def runs(self) -> int:
        return sum(len(runs) for runs in self._shards)

    def _ranges(self, hs: np.ndarray) -> list[tuple[int, int, int]]:
        """``(shard, start, stop)`` of the sorted hashes ``hs`` in each hash range they meet."""
        shift = np.uint64(64 - self.SHARD_BITS)
        bounds = np.searchsorted(hs >> shift, np.arange((1 << self.SHARD_BITS) + 1))
        return [(s, int(bounds[s]), int(bounds[s + 1])) for s in range(len(bounds) - 1)
                if bounds[s + 1] > bounds[s]]

    def matches(self, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(position in hs, admitted index)`` for every entry whose hash equals one of the
        sorted ``hs``: the candidates to recheck (several per position only where hashes
        collide). Sorted queries search each run in order, which the caches like."""
        if not self._size or not hs.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pos, idx = [], []
        for s, a, b in self._ranges(hs):
            q = hs[a:b]
            for rh, ri in self._shards[s]:
                lo = np.searchsorted(rh, q, side="left")
                hit = np.flatnonzero(rh[np.minimum(lo, rh.size - 1)] == q)
                if not hit.size:
                    continue
                # the far side only for the hits: most queries are new ids
                reps = np.searchsorted(rh, q[hit], side="right") - lo[hit]
                first = np.repeat(lo[hit], reps)
                within = np.arange(first.size) - np.repeat(np.cumsum(reps) - reps, reps)
                pos.append(a + np.repeat(hit, reps))
                idx.append(ri[first + within])
        if not pos:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(pos), np.concatenate(idx)

    def add(self, hs: np.ndarray, idx: np.ndarray) -> None:
        """Index the admitted ``idx`` under their sorted hashes ``hs``."""
        idx = np.asarray(idx, dtype=np.int64)
        for s, a, b in self._ranges(hs):
            runs = self._shards[s]
            runs.append((hs[a:b].copy(), idx[a:b].copy()))
            while len(runs) > 1 and runs[-2][0].size <= 2 * runs[-1][0].size:
                newer = runs.pop()
                runs[-1] = _merge(runs[-1], newer)
        self._size += int(hs.size)


class IdLog:
    """The admitted documents' ids and places, for a pass that keeps no corpus (a streaming
    re-read): ids as UTF-8 end to end and two int64s each, instead of a str object apiece."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        self._ids = bytearray()
        self._ends = array("q")
        self._at = array("q")  # file << 40 | line

    def __len__(self) -> int:
        return len(self._ends)

    def append(self, docid: str, file_no: int, line: int) -> None:
        self._ids += docid.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._ids))
        self._at.append((file_no << 40) | line)

    def __call__(self, k: int) -> tuple[str, str, int]:
        start = self._ends[k - 1] if k else 0
        at = self._at[k]
        return (self._ids[start:self._ends[k]].decode("utf-8", "surrogatepass"),
                self.files[at >> 40], at & ((1 << 40) - 1))


class Admission:
    """The checks that depend on earlier records: unique ids and one vector dimension.

    Fed the candidates of every shard (or block of one) in input order, it admits the same
    documents wherever and however the shards were checked. ``first_of(k)`` gives the id and
    place of the ``k``-th admitted document: the caller keeps the admitted documents in that
    order anyway (the corpus), and only a hash match asks for one.
    """

    def __init__(self, first_of: FirstOf) -> None:
        self.first_of = first_of
        self.index = HashIndex()
        self.admitted = 0
        self.dim: int | None = None

    def admit_block(self, source: str, lines: Sequence[int], docids: Sequence[str],
                    vector_problems: Sequence[str | None],
                    vector_dims: Sequence[int | None]) -> list[str | None]:
        """Why each candidate of one block of ``source`` is not a document (``None``: it is),
        as if they were admitted one by one in order; the admitted ones get the next indices.

        Only the candidates whose hash was admitted before or recurs in the block can be
        duplicates; without vectors the others are admitted without a Python step each.
        """
        n = len(docids)
        problems: list[str | None] = [None] * n
        if not n:
            return problems
        h = hash_ids(docids)
        order = np.argsort(h, kind="stable")  # the one sort: lookups, recurrences, new runs
        hs = h[order]
        earlier: dict[int, list[int]] = {}
        pos, idx = self.index.matches(hs)
        for p, k in zip(order[pos].tolist(), idx.tolist(), strict=True):
            earlier.setdefault(p, []).append(k)
        same = hs[1:] == hs[:-1]
        recurs = np.zeros(n, dtype=bool)
        recurs[order[1:][same]] = True
        recurs[order[:-1][same]] = True
        if vector_dims.count(None) < n or vector_problems.count(None) < n:
            walk: Sequence[int] = range(n)
        else:
            suspect = recurs.copy()
            suspect[list(earlier)] = True
            walk = np.flatnonzero(suspect).tolist()
        recurs_l = recurs.tolist()
        in_block: dict[str, int] = {}  # id -> position, of the admitted ones whose hash recurs
        rejected: list[int] = []
        for i in walk:
            docid, dim = docids[i], vector_dims[i]
            first = None
            for k in earlier.get(i, ()):
                fid, fsource, fline = self.first_of(k)
                if fid == docid:
                    first = f"{fsource}:{fline}"
                    break
            if first is None and recurs_l[i]:
                j = in_block.get(docid)
                if j is not None:
                    first = f"{source}:{int(lines[j])}"
            if first is not None:
                problems[i] = f"duplicate id {docid!r} (first at {first})"
            elif vector_problems[i] is not None:
                problems[i] = vector_problems[i]
            elif dim is not None and self.dim is not None and dim != self.dim:
                problems[i] = f"vector has dimension {dim}, earlier ones {self.dim}"
            else:
                if dim is not None:
                    self.dim = dim
                if recurs_l[i]:
                    in_block[docid] = i
                continue
            rejected.append(i)
        keep = np.ones(n, dtype=bool)
        keep[rejected] = False
        rank = np.cumsum(keep) - 1  # the admitted index of each kept one, in input order
        kept = keep[order]
        if kept.any():
            self.index.add(hs[kept], self.admitted + rank[order][kept])
            self.admitted += int(rank[-1]) + 1
        return problems
