"""The finishing phases both strategies share: what the strategy left, across clusters.

After a strategy has placed each cluster's units into that cluster's windows
(:class:`~datasculpt.pack.assignment.Assignment`):

1. **Remainder.** The units left are placed across clusters, longest first, by best fit (the
   tightest gap that holds the whole unit; similarity to the window's centroid breaks ties
   between equal gaps), into new windows where nothing fits.
2. **Fill** (``mode="fill"`` only). The windows holding the fewest units are dissolved into
   the gaps of the others, splitting units where a whole one does not fit, until exactly
   enough windows remain to hold every token.
3. **Output.** Windows in (cluster, window) order, then the windows opened here in the order
   they were opened; empty windows are dropped; pieces in placement order.

Invariant (checked by the tests): every token of every unit is placed exactly once and no
window ever holds more than ``ctx_len`` tokens (separator included); ``mode="strict"`` never
splits a unit; a split piece carries the separator only when it ends its document, and no
piece is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datasculpt.backend import to_numpy
from datasculpt.pack.assignment import Assignment, SortedUnits, lexsort_ints
from datasculpt.pack.host_windows import Gaps, HostWindows
from datasculpt.types import Packing, Units

# A piece placed by the fill phase: (window, rank, document, start, end).
Piece = tuple[int, int, int, int, int]


@dataclass
class Finished:
    """The packing and what the finishing phases did."""

    packing: Packing
    windows_opened: int  # windows numbered in all (the strategy's and the remainder's)
    remainder_units: int  # units the strategy left to the best-fit pass
    dissolved_windows: int  # windows the fill phase dissolved
    fill_cuts: int  # cuts the fill phase made


def _place_remainder(hw: HostWindows, a: Assignment, su: SortedUnits, xp: Any, emb: Any,
                     rank: int) -> int:
    """Phase 1: the units left, best fit decreasing with similarity ties; writes their window
    and rank into ``a`` and returns the next rank."""
    cap = np.asarray(hw.cap)
    gaps = Gaps(cap, np.flatnonzero(cap > 0))
    rem = a.remainder
    rem = rem[np.lexsort((rem, -su.length[rem]))]
    rem_emb = (to_numpy(emb[xp.asarray(su.doc[rem])]) if rem.size
               else np.zeros((0, emb.shape[1])))
    dim = int(emb.shape[1])
    rem_win = []
    smallest_at_least, by_cap = gaps.smallest_at_least, gaps.by_cap  # hot loop: bind once
    for need, e in zip(su.length[rem].tolist(), rem_emb, strict=True):
        c = smallest_at_least(need)
        if c is None:
            w = hw.open(dim)
            gaps.add(w, hw.ctx_len)
        else:
            w = hw.most_similar(by_cap[c], e)
        hw.place(w, need, e, gaps)
        rem_win.append(w)
    # Remainder units are placed in order, so their ranks are consecutive.
    a.unit_win[rem] = rem_win
    a.unit_rank[rem] = np.arange(rank, rank + rem.shape[0])
    return rank + int(rem.shape[0])


def _split_into(
    hw: HostWindows, gaps: Gaps, d: int, s: int, e: int, ends_doc: bool, emb: np.ndarray,
    pieces: list[Piece], rank: int,
) -> tuple[int, int]:
    """Place span ``[s, e)`` of document ``d`` whole by best fit, else across the largest gaps.

    Returns the next rank and the number of cuts made. A piece that ends the document carries
    the separator, so a gap exactly as large as the remaining tokens takes one token fewer
    (never a zero-token piece); a span that fits nowhere opens a new window.
    """
    cuts = 0
    sep = 1 if ends_doc else 0
    while s < e:
        need = e - s + sep
        c = gaps.smallest_at_least(need)
        if c is not None:
            w = hw.most_similar(gaps.by_cap[c], emb)
            take = e - s
        else:
            c = gaps.largest()
            take = min(e - s, c) if c is not None else 0
            if take == e - s and sep:
                take -= 1
            if take <= 0:
                w = hw.open(emb.shape[0])
                gaps.add(w, hw.ctx_len)
                continue
            w = gaps.by_cap[c][0]
            cuts += 1
        n_tokens = take + (sep if s + take == e else 0)
        hw.place(w, n_tokens, emb, gaps)
        pieces.append((w, rank, d, s, s + take))
        rank += 1
        s += take
    return rank, cuts


def _fill(hw: HostWindows, a: Assignment, su: SortedUnits, units: Units, xp: Any, emb: Any,
          ctx_len: int, rank: int, pieces: list[Piece]) -> tuple[int, int]:
    """Phase 2: dissolve windows into the others' gaps until exactly enough windows remain to
    hold every token; the moved units leave ``a`` (window -1) and come back as ``pieces``.
    Returns the windows dissolved and the cuts made.

    Donors are the windows holding the fewest units (then the fewest tokens): every moved unit
    risks a cut, so moving few units keeps truncations low (on the embedded sample at 4K: 2
    cut documents instead of 7 with emptiest-first).
    """
    unit_win, n_windows = a.unit_win, len(hw.cap)
    fill = ctx_len - np.asarray(hw.cap)
    in_use = np.flatnonzero(np.bincount(unit_win, minlength=n_windows) > 0)
    n_keep = int(-(-int(su.length.sum()) // ctx_len))
    if in_use.shape[0] <= n_keep:
        return 0, 0
    n_in = np.bincount(unit_win[unit_win >= 0], minlength=n_windows)
    by_fill = in_use[np.lexsort((in_use, fill[in_use], n_in[in_use]))]
    donors = by_fill[: in_use.shape[0] - n_keep]
    n_dissolved = int(donors.shape[0])
    gaps = Gaps(np.asarray(hw.cap), by_fill[n_dissolved:])
    moved = np.flatnonzero(np.isin(unit_win, donors))
    moved = moved[np.lexsort((moved, -su.length[moved]))]
    moved_emb = to_numpy(emb[xp.asarray(su.doc[moved])])
    sel = su.order[moved]
    work = list(zip(moved.tolist(), moved_emb, units.doc[sel].tolist(),
                    units.start[sel].tolist(), units.end[sel].tolist(), strict=True))
    # Two passes: every unit that fits a gap whole goes first (best fit, longest first); only
    # then are the others cut across what is left. One pass let a long unit take the gaps
    # that smaller units could have filled whole.
    n_cuts = 0
    for whole_only in (True, False):
        deferred = []
        for u, e, d, s, t in work:
            ends_doc = bool(units.eos) and t == int(units.doc_len[d])
            if whole_only and gaps.smallest_at_least(t - s + int(ends_doc)) is None:
                deferred.append((u, e, d, s, t))
                continue
            unit_win[u] = -1
            rank, cuts = _split_into(hw, gaps, d, s, t, ends_doc, e, pieces, rank)
            n_cuts += cuts
        work = deferred
    return n_dissolved, n_cuts


def _packing(a: Assignment, su: SortedUnits, units: Units, pieces: list[Piece],
             n_windows: int) -> Packing:
    """Phase 3: the placed units and the fill phase's pieces as sequences, windows in order
    and empty ones dropped (dissolved windows, or windows the weighted score left unused)."""
    placed = a.unit_win >= 0
    src = su.order[placed]
    p_win = np.concatenate([a.unit_win[placed], np.asarray([p[0] for p in pieces], np.int64)])
    p_rank = np.concatenate([a.unit_rank[placed], np.asarray([p[1] for p in pieces], np.int64)])
    p_doc = np.concatenate([units.doc[src], np.asarray([p[2] for p in pieces], np.int64)])
    p_start = np.concatenate([units.start[src], np.asarray([p[3] for p in pieces], np.int64)])
    p_end = np.concatenate([units.end[src], np.asarray([p[4] for p in pieces], np.int64)])
    occupied = np.bincount(p_win, minlength=n_windows) > 0
    seq_of_win = np.cumsum(occupied) - 1
    out = lexsort_ints((p_rank, p_win))
    return Packing(
        seq=seq_of_win[p_win[out]].astype(np.int64),
        doc=p_doc[out].astype(np.int64),
        start=p_start[out].astype(np.int64),
        end=p_end[out].astype(np.int64),
    )


def finish(a: Assignment, su: SortedUnits, units: Units, xp: Any, emb: Any, ctx_len: int,
           mode: str) -> Finished:
    """Complete the strategy's assignment ``a`` (updated in place) into a :class:`Packing`;
    ``emb`` are the document embeddings (``xp`` arrays), ``mode`` is ``strict`` or ``fill``."""
    hw = HostWindows(a.cap, a.sums, a.used, ctx_len)
    rank = int(a.unit_rank.max()) + 1 if len(su) else 0
    rank = _place_remainder(hw, a, su, xp, emb, rank)
    pieces: list[Piece] = []
    n_dissolved, n_cuts = 0, 0
    if mode == "fill" and len(su):
        n_dissolved, n_cuts = _fill(hw, a, su, units, xp, emb, ctx_len, rank, pieces)
    n_windows = len(hw.cap)
    return Finished(packing=_packing(a, su, units, pieces, n_windows),
                    windows_opened=n_windows, remainder_units=int(a.remainder.shape[0]),
                    dissolved_windows=n_dissolved, fill_cuts=n_cuts)
