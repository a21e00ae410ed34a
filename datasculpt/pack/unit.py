"""The unit-centric strategy (``pack.strategy=unit``): every unit chooses a window.

The paper's greedy (Lu et al., arXiv 2409.00997, section 3.3): inside each semantic cluster,
put every unit (a whole document, or a ``ctx_len`` cut of a long one) into the context window
where it scores best on *relevance* (cosine between the document embedding and the window's
running centroid, the normalised sum of its members' embeddings; an empty window counts as 1)
and *capacity*:

* ``score="paper"``    ``sim * remaining``  -- the paper's form; spreads large units over
  the emptiest windows first (largest-fit, weighted by similarity);
* ``score="weighted"`` ``w_rel * sim + w_fit * fit`` with ``fit = 1 - (remaining - len) /
  ctx_len`` -- 1 for a unit that closes the window exactly, so it prefers tight fits.

Units arrive per cluster in descending length (ties: document, then start). A cluster opens
``max(1, floor(tokens / ctx_len))`` windows, so its windows are over-subscribed and end full
(``ceil`` left every cluster a part-empty last window: 15% more sequences than the lower bound
on the embedded sample at 16K). Units that fit no window of their cluster are left to the
finishing phases (``finish.py``), which pack them across clusters.

The kernel is one code path for NumPy and CuPy (``xp = xp_of(embeddings)``). Clusters do not
interact here, so they advance side by side: clusters with similar window counts share a
padded block (``C x K`` windows, ``C x K x D`` centroid sums) and one round takes the next
``B`` units of *every* active cluster. One batched matrix product scores them against their
own cluster's windows (never another's: cost ``O(N * K_cluster * D)``, nothing quadratic in
N), infeasible windows are masked, each unit proposes its best window, and each window accepts
its proposers in unit order while its capacity lasts and while the unit, given the tokens
accepted ahead of it, still prefers that window to its best alternative (sorted by window,
segmented cumulative sums). Accepted units update capacities and centroid sums; refused units
are re-scored against the updated capacities and propose again. ``B = 1`` is exactly the
sequential greedy (the tests compare it with a plain reference); with ``B > 1`` a unit does not
see the centroid updates of the earlier members of its batch, and capacities are never
exceeded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasculpt.backend import scatter_add, to_numpy
from datasculpt.pack.assignment import Assignment, SortedUnits

_POOL: ThreadPoolExecutor | None = None
BATCH_SHARE = 32


def _rel_part(sim: Any, cfg: Any) -> Any:
    """The relevance part of the score: ``sim`` (paper) or ``w_rel * sim`` (weighted).

    A unit's similarities are fixed during its batch, so the kernel computes this once per
    batch; only the capacity part is redone in each conflict round.
    """
    return sim if cfg.score == "paper" else cfg.w_rel * sim


def _score(rel: Any, cap: Any, length: Any, ctx_len: int, cfg: Any) -> Any:
    """The multi-objective score of units (rows) against windows (columns); larger is better.

    ``sim * cap`` (paper) or ``w_rel * sim + w_fit * fit``, from ``rel = _rel_part(sim)``
    (float addition commutes, so the sum has the same bits in either order).
    """
    if cfg.score == "paper":
        return rel * cap
    return rel + cfg.w_fit * (1.0 - (cap - length) / ctx_len)


def _round_scores(xp: Any, out: Any, gap: Any, rel: Any, cap: Any, length: Any, ctx_len: int,
                  cfg: Any) -> Any:
    """``_score`` of every pending unit and window, with -inf where the unit does not fit,
    written into ``out``; ``gap`` is scratch of the same shape and dtype.

    The same operations in the same order as ``_score`` (so the same bits), but in
    place: a conflict round allocates no score-sized temporaries. ``gap = cap - length`` is
    an exact whole number (never -0.0), so its sign bit says "does not fit"; an arithmetic
    shift spreads it into a mask ``m`` of all ones or all zeros, and ``(score | m) & (~m |
    bits(-inf))`` is -inf where ``m`` is set and the score bit for bit elsewhere. On the host
    that is about 3x faster than a boolean-masked write (``copyto`` or ``where``).
    """
    xp.subtract(cap, length, out=gap)
    if cfg.score == "paper":
        xp.multiply(rel, cap, out=out)
    else:
        xp.divide(gap, ctx_len, out=out)
        xp.subtract(1.0, out, out=out)
        if cfg.w_fit != 1:  # x * 1 == x exactly: skip the pass for the default weight
            out *= cfg.w_fit
        out += rel
    itype = xp.int32 if out.dtype == xp.float32 else xp.int64
    m, s = gap.view(itype), out.view(itype)
    xp.right_shift(m, 8 * out.dtype.itemsize - 1, out=m)
    s |= m
    xp.invert(m, out=m)
    m |= xp.asarray(-xp.inf, dtype=out.dtype).view(itype)
    s &= m
    return out



def _batched_dot(xp: Any, e: Any, sums: Any) -> Any:
    """``e[i] @ sums[i].T`` for every cluster ``i`` of the block: ``(a, B, D) x (a, K, D)``.

    This product is most of the kernel's arithmetic. NumPy runs a stack of small GEMMs on one
    core, so on the host the stack is split across the CPU cores (NumPy releases the GIL);
    CuPy already fills the device with one call.
    """
    global _POOL
    n_threads = min(os.cpu_count() or 1, 8)
    if xp is not np or n_threads == 1 or e.shape[0] < 2 * n_threads:
        return xp.matmul(e, sums.transpose(0, 2, 1))
    if _POOL is None:
        _POOL = ThreadPoolExecutor(n_threads, thread_name_prefix="datasculpt-pack")
    res = np.empty((e.shape[0], e.shape[1], sums.shape[1]), dtype=np.result_type(e, sums))
    bounds = np.linspace(0, e.shape[0], n_threads + 1).astype(int)

    def part(lo: int, hi: int) -> None:
        np.matmul(e[lo:hi], sums[lo:hi].transpose(0, 2, 1), out=res[lo:hi])

    list(_POOL.map(part, bounds[:-1], bounds[1:]))
    return res


def _segments(xp: Any, keys: Any) -> tuple[Any, Any]:
    """Start flags and segment ids of the runs of equal values in ``keys`` (already grouped)."""
    starts = xp.ones(keys.shape[0], dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    return starts, xp.cumsum(starts) - 1


def _rank_bounds(xp: Any, occ: Any, n: int, shown: int = 32) -> list[tuple[int, int]]:
    """``[lo, hi)`` of each occurrence rank in ``occ`` sorted: one device->host copy of a
    ``shown``-bin histogram, a second only when some window took ``shown`` units or more."""
    hist = to_numpy(xp.bincount(xp.minimum(occ, shown - 1), minlength=shown))
    if hist[-1] and n:
        hist = to_numpy(xp.bincount(occ, minlength=n))
    bounds = np.cumsum(hist[hist > 0]).tolist()
    return list(zip([0, *bounds[:-1]], bounds, strict=True))



@dataclass
class _Kernel:
    """The window state of the batched greedy, on the backend, shared by its blocks."""

    unit_win: Any  # int64 per sorted unit: its window, -1 while not placed
    unit_rank: Any  # int64 per sorted unit: placement rank
    cap: Any  # int64 per window: tokens it can still take
    sums: Any  # float32 [W, D]: centroid sums
    used: Any  # bool per window
    refused: Any  # int32 per sorted unit: > 0 when it fits no window of its cluster
    rank: int = 0
    rounds: int = 0


def _assign_block(
    xp: Any,
    emb: Any,
    d_doc: Any,
    d_len: Any,
    first: np.ndarray,
    count: np.ndarray,
    k_open: np.ndarray,
    wbase: np.ndarray,
    ctx_len: int,
    cfg: Any,
    batch_size: int,
    out: _Kernel,
) -> None:
    """The batched greedy for a block of clusters padded to the same number of windows ``K``.

    Cluster ``i`` of the block owns units ``first[i] .. first[i] + count[i]`` (sorted) and
    windows ``0 .. k_open[i]`` (padding windows have capacity -1, so nothing fits them).
    ``count`` is non-increasing, so the clusters with units left are a prefix ``[:a]`` and
    every array below is a view, never a gathered copy of the window state.
    """
    n_cl, k_pad, dim = first.shape[0], int(k_open.max()), emb.shape[1]
    tiny, neg = xp.float32(1e-30), -xp.inf
    k_open_x, wbase_x = xp.asarray(k_open), xp.asarray(wbase)
    first_x, count_x = xp.asarray(first), xp.asarray(count)
    # Capacities and lengths are small integers, exact in float32 below 2**24 tokens; keeping
    # the score matrices in float32 halves the memory traffic of every conflict round.
    ftype = xp.float32 if ctx_len < 2**24 else xp.float64
    cap = xp.where(xp.arange(k_pad)[None, :] < k_open_x[:, None], ctx_len, -1).astype(ftype)
    sums = xp.zeros((n_cl, k_pad, dim), dtype=xp.float32)
    norm = xp.ones((n_cl, k_pad), dtype=xp.float32)  # only read for used windows
    used = xp.zeros((n_cl, k_pad), dtype=bool)
    flat_sums, flat_cap = sums.reshape(-1, dim), cap.reshape(-1)
    flat_norm, flat_used = norm.reshape(-1), used.reshape(-1)
    # Empty windows of a cluster always form a suffix (all empty windows score alike and the
    # lowest index wins ties), so next_empty[i] is the whole "which windows are empty" state.
    # int32: a scatter_add target (cupy.add.at's atomics take int32 on every CuPy version).
    next_empty = xp.zeros(n_cl, dtype=xp.int32)
    slot = xp.arange(batch_size)
    too_long = ftype(ctx_len + 1)  # length of a padding slot: fits nowhere
    # Scratch for the per-round score matrix and the capacity gaps: a batch never has more
    # than n_cl * batch_size pending units, and each round uses a prefix.
    s_buf = xp.empty(n_cl * batch_size * k_pad, dtype=ftype)
    g_buf = xp.empty(n_cl * batch_size * k_pad, dtype=ftype)
    for t in range(0, int(count[0]), batch_size):
        a = int(np.searchsorted(-count, -t, side="left"))  # clusters with units left
        valid = (t + slot)[None, :] < count_x[:a, None]
        uidx = first_x[:a, None] + xp.minimum(t + slot[None, :], count_x[:a, None] - 1)
        e = emb[d_doc[uidx]]
        # One batched product scores every cluster's next B units against its own windows.
        sim = _batched_dot(xp, e, sums[:a]) / xp.maximum(norm[:a, None, :], tiny)
        sim = xp.where(used[:a, None, :], sim, xp.float32(1.0)).astype(xp.float32, copy=False)
        rel = _rel_part(sim, cfg)
        # Pending units, flat in greedy order (cluster, then length); the first round works
        # on the batch arrays, later rounds on the shrinking set of refused units. p_row is
        # a pending unit's row of e_flat (its embedding is gathered only when accepted).
        p_len = xp.where(valid, d_len[uidx].astype(ftype), too_long)
        e_flat = e.reshape(-1, dim)
        p_unit, p_valid = uidx.reshape(-1), valid.reshape(-1)
        pi = xp.repeat(xp.arange(a), batch_size)
        p_row = xp.arange(pi.shape[0])
        # Round operands: the first round scores (a, B, K) against the clusters' capacities
        # broadcast over the batch; later rounds are (n, K) with their own capacity rows.
        r_rel, r_cap, r_len = rel, cap[:a, None, :], p_len[:, :, None]
        p_rel, p_len = rel.reshape(-1, k_pad), p_len.reshape(-1)
        while pi.shape[0]:
            out.rounds += 1
            n_p = pi.shape[0]
            shape = r_rel.shape
            score = _round_scores(xp, s_buf[: n_p * k_pad].reshape(shape),
                                  g_buf[: n_p * k_pad].reshape(shape), r_rel, r_cap, r_len,
                                  ctx_len, cfg).reshape(n_p, k_pad)
            row = xp.arange(n_p)
            best = xp.argmax(score, axis=1)
            feasible = score[row, best] > neg
            score[row, best] = neg
            second = score.max(axis=1)  # the unit's best alternative, for the conflict test

            # A unit proposing an empty window proposed its cluster's first empty one; the k-th
            # such proposer of a cluster (in unit order) gets the k-th empty window, which is
            # what the sequential greedy does while the unit still prefers an empty window.
            to_empty = feasible & ~used[pi, best]
            ranks = xp.cumsum(to_empty) - 1
            c_start, c_seg = _segments(xp, pi)
            ranks = ranks - (ranks - to_empty + 1)[c_start][c_seg]
            k = xp.where(to_empty, next_empty[pi] + ranks, best)
            proposes = feasible & (k < k_open_x[pi])

            # Each window takes its proposers in unit order while its capacity lasts and while
            # the unit, seeing the tokens accepted ahead of it, still prefers this window to
            # its best alternative (so the paper form keeps spreading units the way the
            # sequential greedy does); a window's queue stops at its first refusal.
            n_flat = n_cl * k_pad
            ft = pi * k_pad + k
            order = xp.argsort(xp.where(proposes, ft, n_flat), kind="stable")
            ft_s = xp.minimum(ft[order], n_flat - 1)
            l_s = xp.where(proposes, p_len, 0)[order]
            starts, seg = _segments(xp, ft_s)
            # float64: a float32 running sum over a whole round passes 2**24 and stops
            # being exact, which would let a window overflow.
            ahead = xp.cumsum(l_s, dtype=xp.float64) - l_s
            ahead = ahead - ahead[starts][seg]
            room = (flat_cap[ft_s] - ahead).astype(ftype)  # exact: 0 <= room <= ctx_len
            keeps = _score(p_rel[order, xp.minimum(k[order], k_pad - 1)], room, l_s,
                                  ctx_len, cfg)
            fits = proposes[order] & (l_s <= room)
            # The head of each queue always goes in (it sees the state it was scored on), so
            # every round places at least one unit per proposed window.
            ok = fits & ((keeps >= second[order]) | starts)
            bad = xp.cumsum(~ok)
            ok &= (bad - bad[starts][seg]) == 0
            accept = xp.zeros(n_p, dtype=bool)
            accept[order] = ok

            acc = xp.flatnonzero(accept)  # one device->host sync (its size), then gathers
            n_acc = int(acc.shape[0])
            if n_acc:
                acc_units = p_unit[acc]
                out.unit_win[acc_units] = wbase_x[pi[acc]] + k[acc]
                out.unit_rank[acc_units] = xp.arange(out.rank, out.rank + n_acc)
                out.rank += n_acc
                # The accepted units grouped by window, in unit order within a window: the
                # order of ``order[ok]`` (a stable sort of a sorted index), without the
                # boolean masks (each a device->host sync on CuPy).
                by_win = acc[xp.argsort(ft[acc], kind="stable")]
                win, rows, l_ok = ft[by_win], p_row[by_win], p_len[by_win]
                # Add them one occurrence rank at a time, so every fancy-indexed update hits
                # distinct windows (and B = 1 adds exactly as the sequential greedy does).
                occ = xp.arange(n_acc) - xp.searchsorted(win, win, side="left")
                by_occ = xp.argsort(occ, kind="stable")
                for lo_r, hi_r in _rank_bounds(xp, occ, n_acc):
                    sel = by_occ[lo_r:hi_r]
                    flat_sums[win[sel]] += e_flat[rows[sel]]
                # Capacities are whole numbers below 2**24 (exact in float32 and float64), so
                # the atomic adds give the same result in any order.
                scatter_add(flat_cap, win, -l_ok)
                flat_used[win] = True
                new_sums = flat_sums[win]
                flat_norm[win] = xp.sqrt((new_sums * new_sums).sum(axis=1))
                scatter_add(next_empty, pi[acc], to_empty[acc].astype(xp.int32))
            scatter_add(out.refused, p_unit, (~feasible & p_valid).astype(xp.int32))
            # Refused units try again against the updated capacities. Their similarities
            # stay those of the batch start: within a batch a unit does not see the
            # centroid updates of the units accepted before it (exact for B = 1).
            # One sync for the six arrays (a boolean mask on the GPU syncs once per array).
            keep = xp.flatnonzero(feasible & ~accept)
            pi, p_rel, p_len, p_row, p_unit, p_valid = (
                pi[keep], p_rel[keep], p_len[keep], p_row[keep], p_unit[keep], p_valid[keep])
            r_rel, r_cap, r_len = p_rel, cap[pi], p_len[:, None]
    # Hand the block's real (unpadded) windows back to the global window arrays.
    real = xp.arange(k_pad)[None, :] < k_open_x[:, None]
    gid = (wbase_x[:, None] + xp.arange(k_pad)[None, :])[real]
    out.cap[gid] = cap[real].astype(xp.int64)
    out.used[gid] = used[real]
    # The centroid sums are most of the block's memory: one contiguous copy per cluster is
    # about 4x faster on the host than a masked gather followed by a scatter.
    for i, (w0, k_i) in enumerate(zip(wbase.tolist(), k_open.tolist(), strict=True)):
        out.sums[w0 : w0 + k_i] = sums[i, :k_i]



def assign_units(xp: Any, emb: Any, su: SortedUnits, ctx_len: int, cfg: Any,
                 batch_size: int) -> Assignment:
    """Every cluster's units (sorted, longest first) into that cluster's windows.

    A cluster opens ``floor(tokens / ctx_len)`` windows, as in the paper, and at least one:
    each cluster's own windows end (nearly) full, and what does not fit them is packed across
    clusters by the finishing phases instead of leaving every cluster a half-empty last
    window. Clusters run side by side (they do not interact here), grouped into blocks of
    similar window counts (classes 25% wide) so that padding wastes at most a fifth of one.
    """
    cl_tokens = np.bincount(su.cluster, weights=su.length,
                            minlength=su.n_clusters).astype(np.int64)
    n_open = np.maximum(1, cl_tokens // ctx_len)
    win_start = np.zeros(su.n_clusters + 1, dtype=np.int64)
    np.cumsum(n_open, out=win_start[1:])
    n_units, n_win = len(su), int(win_start[-1])
    out = _Kernel(
        unit_win=xp.full(n_units, -1, dtype=xp.int64),
        unit_rank=xp.full(n_units, -1, dtype=xp.int64),
        cap=xp.zeros(n_win, dtype=xp.int64),
        sums=xp.zeros((n_win, emb.shape[1]), dtype=xp.float32),
        used=xp.zeros(n_win, dtype=bool),
        refused=xp.zeros(n_units, dtype=xp.int32),
    )
    d_doc, d_len = xp.asarray(su.doc), xp.asarray(su.length)
    cl_first, cl_count = su.first, su.count
    k_class = np.ceil(np.log(np.maximum(n_open, 1)) / np.log(1.25)).astype(np.int64)
    for kc in np.unique(k_class).tolist():
        members = np.flatnonzero(k_class == kc)
        members = members[np.argsort(-cl_count[members], kind="stable")]
        # A batch is at most 1/BATCH_SHARE of a cluster: its units do not see each other's
        # centroid updates, which costs nothing in a cluster of thousands of units but steers
        # a small cluster (B = 32 over 30 units is the whole cluster in one blind batch).
        block_b = int(min(batch_size, max(1, int(cl_count[members].max()) // BATCH_SHARE)))
        _assign_block(xp, emb, d_doc, d_len, cl_first[members], cl_count[members],
                      n_open[members], win_start[members], ctx_len, cfg, block_b, out)
    return Assignment(
        unit_win=to_numpy(out.unit_win), unit_rank=to_numpy(out.unit_rank),
        remainder=np.flatnonzero(to_numpy(out.refused)), cap=to_numpy(out.cap),
        sums=to_numpy(out.sums), used=to_numpy(out.used), rounds=out.rounds)
