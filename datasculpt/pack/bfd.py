"""Best-fit-decreasing bin packing: the "fewer truncations" baseline, blind to semantics.

Following "Fewer Truncations Improve Language Modeling" (Ding et al., 2024), open bins are
indexed by their remaining capacity in a segment tree over capacities ``0..ctx_len``, so the
best fit (the smallest capacity that still holds the unit) is found in O(log ctx_len).
"""

from __future__ import annotations

import numpy as np

from datasculpt.types import Packing, Units


class _CapacityTree:
    """Max segment tree over capacities: leaf ``c`` is ``c`` while a bin has that capacity."""

    def __init__(self, max_capacity: int) -> None:
        size = 1
        while size < max_capacity + 1:
            size *= 2
        self.size = size
        self.tree = [-1] * (2 * size)
        self.bins: list[list[int]] = [[] for _ in range(max_capacity + 1)]

    def _set(self, cap: int, present: bool) -> None:
        i = cap + self.size
        tree = self.tree
        tree[i] = cap if present else -1
        i //= 2
        while i:
            left, right = tree[2 * i], tree[2 * i + 1]
            tree[i] = left if left > right else right
            i //= 2

    def add(self, cap: int, bin_id: int) -> None:
        stack = self.bins[cap]
        stack.append(bin_id)
        if len(stack) == 1:
            self._set(cap, True)

    def pop_best_fit(self, need: int) -> tuple[int, int] | None:
        """Remove and return ``(capacity, bin)`` with the smallest capacity >= ``need``."""
        tree = self.tree
        if tree[1] < need:
            return None
        i = 1
        while i < self.size:
            i = 2 * i if tree[2 * i] >= need else 2 * i + 1
        cap = i - self.size
        stack = self.bins[cap]
        bin_id = stack.pop()
        if not stack:
            self._set(cap, False)
        return cap, bin_id


def pack_bfd(units: Units, ctx_len: int) -> Packing:
    """Pack units longest first, each into the open bin it fills most tightly; never split one.

    Units longer than ``ctx_len`` cannot occur: the tokenize stage cuts long documents first.
    """
    lengths = units.length
    if np.any(lengths > ctx_len):
        raise ValueError("a unit is longer than ctx_len; cut long documents before packing")
    order = np.lexsort((units.start, units.doc, -lengths))
    tree = _CapacityTree(ctx_len)
    unit_bin = np.empty(len(units), dtype=np.int64)
    n_bins = 0
    for u, length in zip(order.tolist(), lengths[order].tolist(), strict=True):
        found = tree.pop_best_fit(length)
        if found is None:
            cap, bin_id = ctx_len, n_bins
            n_bins += 1
        else:
            cap, bin_id = found
        unit_bin[u] = bin_id
        tree.add(cap - length, bin_id)
    # Within a bin, pieces keep the order in which they were placed (longest first).
    placed_rank = np.empty(len(units), dtype=np.int64)
    placed_rank[order] = np.arange(len(units))
    out = np.lexsort((placed_rank, unit_bin))
    return Packing(
        seq=unit_bin[out], doc=units.doc[out], start=units.start[out], end=units.end[out]
    )
