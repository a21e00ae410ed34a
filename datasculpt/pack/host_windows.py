"""Windows on the host for the finishing phases: best fit by capacity, ties by similarity.

The finishing phases place few units, one at a time, each into the window whose gap fits it
most tightly; among windows of equal gap the one whose centroid is most similar to the unit
wins. ``Gaps`` finds the tightest gap in O(log distinct capacities); ``HostWindows`` holds
each window's capacity and centroid sum and opens new windows.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from datasculpt.pack.assignment import CentroidSums


class Gaps:
    """Windows indexed by remaining capacity, for best fit in O(log distinct capacities).

    ``by_cap[c]`` lists the windows whose remaining capacity is ``c``; ``caps`` is the sorted
    list of capacities present. Windows of equal capacity are the tie the similarity breaks.
    """

    def __init__(self, cap: np.ndarray, windows: np.ndarray) -> None:
        self.by_cap: dict[int, list[int]] = {}
        for w, c in zip(windows.tolist(), cap[windows].tolist(), strict=True):
            self.by_cap.setdefault(c, []).append(w)
        self.caps = sorted(self.by_cap)

    def smallest_at_least(self, need: int) -> int | None:
        i = bisect.bisect_left(self.caps, need)
        return self.caps[i] if i < len(self.caps) else None

    def largest(self) -> int | None:
        return self.caps[-1] if self.caps else None

    def add(self, w: int, c: int) -> None:
        if c not in self.by_cap:
            self.by_cap[c] = []
            bisect.insort(self.caps, c)
        self.by_cap[c].append(w)

    def move(self, w: int, old: int, new: int) -> None:
        """Window ``w``'s capacity went from ``old`` to ``new`` (once per placement: inlined)."""
        by_cap, caps = self.by_cap, self.caps
        stack = by_cap[old]
        stack.remove(w)
        if not stack:
            del by_cap[old]
            caps.pop(bisect.bisect_left(caps, old))
        stack = by_cap.get(new)
        if stack is None:
            by_cap[new] = [w]
            bisect.insort(caps, new)
        else:
            stack.append(w)


class HostWindows:
    """Host-side window state for the remainder and fill phases (few units, sequential)."""

    # Bound on how many equal-gap windows the similarity tie-break inspects, so a pile of
    # identical gaps (for example many full windows) cannot make one placement linear in W.
    MAX_TIES = 64

    def __init__(self, cap: np.ndarray, sums: CentroidSums, used: np.ndarray,
                 ctx_len: int) -> None:
        self.ctx_len = ctx_len
        self.cap = [int(c) for c in cap.tolist()]
        # [W, D] float32 rows (an array, or a lazy row provider); rows of new windows live in
        # self.new_sums
        self.sums = sums
        self.new_sums: list[np.ndarray] = []
        self.used = used.tolist()
        self.n_fixed = len(self.cap)
        # Norm of each used window's centroid sum, exactly as most_similar computes it, kept
        # until the window next changes (None: not computed yet, or stale). Candidates are
        # mostly windows that did not change since they were last compared.
        self.norm: list[float | None] = [None] * self.n_fixed

    def centroid_sum(self, w: int) -> np.ndarray:
        return self.sums[w] if w < self.n_fixed else self.new_sums[w - self.n_fixed]

    def open(self, dim: int) -> int:
        self.cap.append(self.ctx_len)
        self.used.append(False)
        self.new_sums.append(np.zeros(dim, dtype=np.float32))
        self.norm.append(None)
        return len(self.cap) - 1

    def most_similar(self, candidates: list[int], emb: np.ndarray) -> int:
        # Called once per remainder unit and almost always (98% at 1M documents) with a
        # single candidate, which wins whatever its similarity (finite for finite embeddings;
        # a NaN one used to yield no window, and the placement then failed). The ties, from
        # piles of equal gaps, are compared by float32 dot products (BLAS sdot, as the cached
        # norms): a matrix-vector product may round differently and flip a tie.
        if len(candidates) == 1:
            return candidates[0]
        best_w, best_sim = -1, -math.inf
        used, norms = self.used, self.norm
        for w in sorted(candidates)[: self.MAX_TIES]:
            if used[w]:
                s = self.centroid_sum(w)
                norm = norms[w]
                if norm is None:
                    norm = norms[w] = float(np.sqrt(np.dot(s, s)))
                sim = float(np.dot(s, emb)) / norm if norm > 0 else 0.0
            else:
                sim = 1.0
            if sim > best_sim:
                best_w, best_sim = w, sim
        return best_w

    def place(self, w: int, n_tokens: int, emb: np.ndarray, gaps: Gaps) -> None:
        c = self.cap[w]
        self.cap[w] = c - n_tokens
        gaps.move(w, c, c - n_tokens)
        s = self.centroid_sum(w)
        s += emb  # in place: s is the window's row
        self.used[w] = True
        self.norm[w] = None
