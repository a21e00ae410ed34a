"""The window-centric strategy (``pack.strategy=window``, the default): windows choose units.

Objective: windows whose documents are about the same thing (high mean pairwise cosine, one
label), every token placed once, no unit cut, few windows. The paper's greedy (``unit.py``)
lets each unit pick a window; on real mixed-length text that spreads a cluster's units thinly
over all of its windows. Here each window is built in turn, taking the units of its group
that are closest to it and fit (``window_greedy.py``). Phases:

1. **Groups.** A group is a cluster; a cluster of more than ``max_group`` units is split by a
   short spherical k-means into parts of about ``3/4 max_group`` units (a group's cost is its
   Gram matrix, linear in the group size per unit).
2. **Windows per group.** ``max(1, floor(tokens / ctx_len))`` windows, built one after the
   other; the units left when they are built stay unplaced.
3. **Second level.** A split cluster's parts first give back their windows below
   ``_SPLIT_FILL``; what its parts left is pooled per cluster and packed the same way
   (``floor(tokens / ctx_len)`` windows) before step 4.
4. **Dissolve.** Where a cluster ran out of units that fit, its windows end part-empty, and
   every such gap costs sequences. The emptiest windows are dissolved (their units unplaced
   again) until the others leave at most ``max_waste`` of their room empty: the remainder
   pass, which mixes neighbouring clusters, can fill what a cluster alone cannot.
5. **Remainder.** What is left is ordered along a nearest-neighbour path through the cluster
   centroids (consecutive units come from the same or similar clusters), cut into chunks of at
   most ``remainder_group`` units, and each chunk is packed by the same greedy (a remainder of
   many chunks is first packed in chunks of ``max_group``: the cost per unit grows with the
   chunk).
6. What is still left goes to the finishing phases' best-fit pass (``finish.py``).

Invariant: a unit is placed in at most one window, a window never holds more than ``ctx_len``
tokens (a unit is taken only when it fits the remaining capacity), and no unit is split here.

Clusters are independent until the remainder, so they are processed in batches of consecutive
clusters (one gather of their embeddings each, bounded memory), as executor tasks: on the host
two or more batches at a time in threads (NumPy releases the GIL in its array loops). Every
batch's result depends only on its input, so the output is the same whatever the thread
timing or the executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datasculpt.backend import to_numpy, xp_of
from datasculpt.executors import Executor, on_task_device
from datasculpt.executors.base import host_threads
from datasculpt.faults import fault_point
from datasculpt.pack.assignment import Assignment, SortedUnits
from datasculpt.pack.window_greedy import groups, solve
from datasculpt.vectors import ZERO_ROWS_ONLY, l2_normalize, nearest, spherical_lloyd

_KMEANS_ITERS = 3
_KMEANS_SAMPLE = 12  # k-means training points per centroid when a cluster is split
_REM_RUN = 16  # remainder chunks per task
_REM_TIER = 8  # a remainder above this many remainder_group chunks is first cut finer
_SPLIT_FILL = 0.8  # a part's window below this fill goes back to its cluster's pool


class WindowSums:
    """Centroid sums of the windows, row by row on first use (host, float32).

    The best-fit pass after the greedy compares only a few windows (ties between equal
    gaps), so summing every window's members up front would cost a pass over all
    embeddings for rows nobody reads. A returned row is cached and may be updated in place.
    """

    def __init__(self, emb: Any, s_doc: np.ndarray, unit_win: np.ndarray, n_win: int) -> None:
        self.emb, self.s_doc = emb, s_doc
        placed = np.flatnonzero(unit_win >= 0)
        order = placed[np.argsort(unit_win[placed], kind="stable")]
        self.members = order
        self.bounds = np.searchsorted(unit_win[order], np.arange(n_win + 1))
        self.rows: dict[int, np.ndarray] = {}

    def __getitem__(self, w: int) -> np.ndarray:
        row = self.rows.get(w)
        if row is None:
            docs = self.s_doc[self.members[self.bounds[w] : self.bounds[w + 1]]]
            rows = to_numpy(self.emb[xp_of(self.emb).asarray(docs)])
            row = self.rows[w] = rows.astype(np.float32).sum(axis=0)
        return row


def _split(xp: Any, x: Any, max_group: int) -> list[np.ndarray]:
    """Row indices of parts of at most ``max_group`` rows of one cluster (rows longest first).

    Spherical k-means with ``ceil(n / (3/4 max_group))`` centroids, trained on an evenly
    spaced sample (``_KMEANS_SAMPLE`` rows per centroid, initialised from evenly spaced sample
    rows, so nothing is random), then one assignment of every row. A part still larger than
    ``max_group`` is cut round-robin (row ``i`` to piece ``i mod pieces``), which keeps long
    and short units in every piece so each can fill its windows. Every part keeps the rows'
    order (longest first).
    """
    n = x.shape[0]
    k = -(-n // max(1, (3 * max_group) // 4))
    m = min(n, _KMEANS_SAMPLE * k)
    sample = x[xp.asarray((np.arange(m) * n) // m)]
    cent = sample[xp.asarray((np.arange(k) * m) // k)]
    # One product over all rows (block=None), as the split has always been computed.
    cent = spherical_lloyd(sample, cent, _KMEANS_ITERS, block=None)
    lab = to_numpy(nearest(x, cent, block=None))
    parts = []
    for part in range(k):
        rows = np.flatnonzero(lab == part)
        pieces = -(-rows.shape[0] // max_group)
        parts.extend(rows[i::pieces] for i in range(pieces))
    return parts


def _dissolve(win: np.ndarray, members: np.ndarray, lens: np.ndarray, n_win: int,
              floor: float, eligible: np.ndarray) -> int:
    """Unplace (``win = -1``) the units of the ``eligible`` windows holding less than
    ``floor`` tokens; ``win`` holds window ids ``0 .. n_win`` (-1: unplaced) aligned with
    ``members``. Returns how many non-empty windows were dissolved."""
    placed = win >= 0
    fill = np.bincount(win[placed], weights=lens[members[placed]], minlength=n_win)
    weak = (fill < floor) & eligible
    win[placed & weak[np.where(placed, win, 0)]] = -1
    return int((weak & (fill > 0)).sum())


def _trim_waste(win: np.ndarray, step: np.ndarray, lens: np.ndarray, n_win: int, ctx_len: int,
                max_waste: float) -> int:
    """Unplace the units of the emptiest windows until the others leave at most
    ``max_waste`` of their capacity empty; returns how many windows were dissolved.

    A window is left part-empty where its cluster ran out of units that fit; each such gap
    costs sequences, and the remainder pass, which mixes the units of neighbouring clusters,
    can fill them. Dissolving the emptiest first keeps as many coherent windows as the budget
    allows, whatever the corpus (a fixed fill threshold dissolved too few windows on some
    corpora and too many on others)."""
    placed = win >= 0
    fill = np.bincount(win[placed], weights=lens[placed], minlength=n_win)
    used = np.flatnonzero(fill > 0)
    if not used.size:
        return 0
    order = used[np.lexsort((used, fill[used]))]  # emptiest first
    free = np.cumsum((ctx_len - fill[order])[::-1])[::-1]  # empty space of order[i:]
    n_drop = int(np.searchsorted(-free, -max_waste * ctx_len * used.shape[0], side="left"))
    drop = np.zeros(n_win, dtype=bool)
    drop[order[:n_drop]] = True
    back = placed & drop[np.where(placed, win, 0)]
    win[back] = -1
    step[back] = -1
    return n_drop


@dataclass
class _Batch:
    """What one batch of clusters packed (phases 1-4), in batch-local numbering."""

    win: np.ndarray  # int64 per unit of the batch: its window, -1 unplaced
    step: np.ndarray  # int64 per unit: the step that placed it (increasing within a window)
    n_win: int  # windows the batch numbered
    n_steps: int  # steps it numbered
    cl_sums: np.ndarray  # float64 [clusters, D]: each cluster's embedding sum, for the path
    groups: int  # groups it packed (clusters or their parts)
    dissolved: int  # windows it dissolved


def _pack_batch(
    xp: Any, emb: Any, s_doc: np.ndarray, s_len: np.ndarray, first: np.ndarray,
    count: np.ndarray, ctx_len: int, cfg: Any,
) -> _Batch:
    """Phases 1-4 for consecutive clusters (sorted positions ``first[0] ..``): per unit of the
    batch its window (batch-local id, -1: unplaced) and step, and each cluster's embedding
    sum (for the remainder's path)."""
    max_group, fit_bias = int(cfg.max_group), float(cfg.fit_bias)
    lo = int(first[0])
    hi = int(first[-1] + count[-1])
    rows = emb[xp.asarray(s_doc[lo:hi])]  # the batch's embeddings, in sorted order
    lens = s_len[lo:hi]
    loc = first - lo
    parts, owner = [], []
    for i, (f, n) in enumerate(zip(loc.tolist(), count.tolist(), strict=True)):
        mine = np.arange(f, f + n)
        got = [mine] if n <= max_group else [mine[p] for p in _split(xp, rows[f : f + n],
                                                                     max_group)]
        parts.extend(got)
        owner.extend([i] * len(got))
    win = np.full(hi - lo, -1, dtype=np.int64)
    step = np.full(hi - lo, -1, dtype=np.int64)
    n_win, n_steps, n_dissolved = 0, 0, 0
    split = np.bincount(np.asarray(owner, dtype=np.int64), minlength=count.shape[0]) > 1
    for level in (1, 2):
        if level == 2:  # what the parts of a split cluster left, pooled per cluster
            parts = []
            for i in np.flatnonzero(split).tolist():
                left = np.flatnonzero(win[loc[i] : loc[i] + count[i]] < 0) + loc[i]
                pieces = -(-left.shape[0] // max_group)
                parts.extend(left[j::pieces] for j in range(pieces))
        members, g_first, g_count = groups(parts)
        if not members.size:
            continue
        tokens = np.add.reduceat(lens[members], g_first)
        k_win = tokens // ctx_len
        if level == 1:
            k_win = np.maximum(1, k_win)
        keep = k_win > 0
        members, g_first, g_count = groups([p for p, k in zip(parts, keep, strict=True) if k])
        k_win = k_win[keep]
        if not members.size:
            continue
        w_local, s_local = solve(xp, rows, lens, members, g_first, g_count, k_win, ctx_len,
                                  fit_bias, diversity=float(cfg.diversity))
        base = np.repeat(np.concatenate(([0], np.cumsum(k_win)[:-1])), g_count)
        w_new = np.where(w_local >= 0, w_local + base, -1)
        if level == 1:  # a part that could not fill a window leaves it to its cluster's pool
            in_split = np.repeat(split[np.asarray(owner)[keep]], k_win)
            n_dissolved += _dissolve(w_new, members, lens, int(k_win.sum()),
                                     _SPLIT_FILL * ctx_len, in_split)
        placed = w_new >= 0
        win[members[placed]] = n_win + w_new[placed]
        step[members[placed]] = n_steps + s_local[placed]
        n_win += int(k_win.sum())
        n_steps += int(s_local.max()) + 1
    n_dissolved += _trim_waste(win, step, lens, n_win, ctx_len, float(cfg.max_waste))
    cl_sums = np.stack([to_numpy(rows[f : f + n].sum(axis=0)).astype(np.float64)
                        for f, n in zip(loc.tolist(), count.tolist(), strict=True)])
    return _Batch(win=win, step=step, n_win=n_win, n_steps=n_steps, cl_sums=cl_sums,
                  groups=len(owner), dissolved=n_dissolved)


def _pack_batch_task(batch: np.ndarray, *, emb: Any, s_doc: np.ndarray, s_len: np.ndarray,
                     cl_first: np.ndarray, cl_count: np.ndarray, ctx_len: int,
                     cfg: Any) -> _Batch:
    """One batch of consecutive clusters (an executor task)."""
    fault_point("pack_task")
    emb = on_task_device(emb)
    return _pack_batch(xp_of(emb), emb, s_doc, s_len, cl_first[batch], cl_count[batch], ctx_len,
                       cfg)


def _solve_chunks(part: list[np.ndarray], *, emb: Any, s_doc: np.ndarray, s_len: np.ndarray,
                  ctx_len: int, fit_bias: float, diversity: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One run of remainder chunks (an executor task): the chunks' units, their windows
    (numbered from 0 over the run) and steps, and the run's window count."""
    emb = on_task_device(emb)
    xp = xp_of(emb)
    members, g_first, g_count = groups(part)
    k_win = np.add.reduceat(s_len[members], g_first) // ctx_len
    rows = emb[xp.asarray(s_doc[members])]
    w_local, s_local = solve(xp, rows, s_len[members], np.arange(members.shape[0]),
                             g_first, g_count, k_win, ctx_len, fit_bias, diversity=diversity)
    base = np.repeat(np.concatenate(([0], np.cumsum(k_win)[:-1])), g_count)
    return members, np.where(w_local >= 0, base + w_local, -1), s_local, int(k_win.sum())


def _remainder_pass(
    xp: Any, emb: Any, s_doc: np.ndarray, s_len: np.ndarray, rem: np.ndarray, size: int,
    unit_win: np.ndarray, unit_rank: np.ndarray, n_win: int, rank: int, ctx_len: int,
    fit_bias: float, executor: Executor, diversity: float = 0.0,
) -> int:
    """Pack ``rem`` (sorted positions in cluster-path order) in chunks of at most ``size``
    consecutive units, each into ``floor(tokens / ctx_len)`` windows numbered from ``n_win``.
    Writes ``unit_win``/``unit_rank`` in place; returns the new window count."""
    n_chunks = -(-rem.shape[0] // size) if rem.size else 0
    # Chunks of equal size (not rem_group and a stub): the stub would pack badly.
    bounds = (np.arange(n_chunks + 1) * rem.shape[0]) // max(n_chunks, 1)
    # Inside a chunk: longest first (the greedy's seed order), path order between equals.
    chunks = [rem[a:b][np.argsort(-s_len[rem[a:b]], kind="stable")]
              for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    chunks = [c for c in chunks if int(s_len[c].sum()) >= ctx_len]
    # Chunks are independent: they go to the workers in runs of a fixed number of chunks,
    # whatever the number of workers, because the padded blocks (and so the rounding of the
    # Gram matrices) must not depend on the machine; the runs' windows keep chunk order.
    runs = [chunks[i : i + _REM_RUN] for i in range(0, len(chunks), _REM_RUN)]
    solved = executor.map(_solve_chunks, runs, threads=_workers(xp), gpu=xp is not np,
                          emb=emb, s_doc=s_doc, s_len=s_len, ctx_len=ctx_len,
                          fit_bias=fit_bias, diversity=diversity)
    for members, w_run, s_local, n_run in solved:
        placed = w_run >= 0
        unit_win[members[placed]] = n_win + w_run[placed]
        unit_rank[members[placed]] = rank + s_local[placed]
        n_win += n_run
    return n_win


def _workers(xp: Any) -> int:
    """Threads for independent batches in one process: the host's cores (at most 4: the
    batches share its memory bandwidth); one on the GPU, where a batch already fills it."""
    return host_threads() if xp is np else 1


def _batches(count: np.ndarray, batch_units: int) -> list[np.ndarray]:
    """Consecutive clusters in batches of at most ``batch_units`` units (a larger cluster
    alone)."""
    out, cur, n = [], [], 0
    for i, c in enumerate(count.tolist()):
        if cur and n + c > batch_units:
            out.append(np.asarray(cur))
            cur, n = [], 0
        cur.append(i)
        n += c
    if cur:
        out.append(np.asarray(cur))
    return out


def _centroid_path(cent: np.ndarray) -> np.ndarray:
    """Rank of every cluster along a greedy nearest-neighbour path from cluster 0.

    Consecutive clusters on the path are similar, so remainder units taken in path order and
    cut into chunks share a chunk with units of the same or neighbouring clusters.
    """
    k = cent.shape[0]
    c = l2_normalize(cent, eps=ZERO_ROWS_ONLY).astype(np.float32)
    rank = np.empty(k, dtype=np.int64)
    seen = np.zeros(k, dtype=bool)
    cur = 0
    for i in range(k):
        rank[cur] = i
        seen[cur] = True
        if i + 1 < k:
            sim = c @ c[cur]
            sim[seen] = -np.inf
            cur = int(np.argmax(sim))
    return rank


def assign_windows(xp: Any, emb: Any, su: SortedUnits, ctx_len: int, cfg: Any,
                   executor: Executor) -> Assignment:
    """Phases 1-5 over the units sorted by cluster: what they leave goes to the best-fit pass.

    The windows' centroid sums are handed over lazily (``WindowSums``).
    """
    s_doc, s_len, cl_first, cl_count = su.doc, su.length, su.first, su.count
    n_units, dim = len(su), int(emb.shape[1])
    k_cl = su.n_clusters
    batches = _batches(cl_count, int(cfg.task_units)) if n_units else []

    results = executor.map(_pack_batch_task, batches, threads=_workers(xp), gpu=xp is not np,
                           emb=emb, s_doc=s_doc, s_len=s_len, cl_first=cl_first,
                           cl_count=cl_count, ctx_len=ctx_len, cfg=cfg)
    unit_win = np.full(n_units, -1, dtype=np.int64)
    unit_rank = np.full(n_units, -1, dtype=np.int64)
    cl_sums = np.zeros((k_cl, dim), dtype=np.float64)
    n_win, rank = 0, 0
    for b, r in zip(batches, results, strict=True):
        lo = int(cl_first[b[0]])
        sl = slice(lo, lo + r.win.shape[0])
        placed = r.win >= 0
        unit_win[sl] = np.where(placed, r.win + n_win, -1)
        unit_rank[sl] = np.where(placed, r.step + rank, -1)
        cl_sums[b] = r.cl_sums
        n_win += r.n_win
        rank += r.n_steps
    n_main = n_win

    # Remainder: along the cluster path, in chunks, by the same greedy.
    rem = np.flatnonzero(unit_win < 0)
    path = _centroid_path(cl_sums) if k_cl else np.zeros(0, np.int64)
    rem = rem[np.lexsort((rem, -s_len[rem], path[su.cluster[rem]]))]
    rem_group = int(cfg.remainder_group)
    # A large remainder is first packed in chunks of max_group (cheap: the cost per unit
    # grows with the chunk), then what that leaves in chunks of remainder_group.
    sizes = [rem_group] if rem.shape[0] <= _REM_TIER * rem_group else [int(cfg.max_group),
                                                                         rem_group]
    for size in sizes:
        n_win = _remainder_pass(xp, emb, s_doc, s_len, rem, size, unit_win, unit_rank, n_win,
                                   rank, ctx_len, float(cfg.fit_bias), executor,
                                   float(cfg.diversity))
        rem = rem[unit_win[rem] < 0]  # still in path order
    placed = unit_win >= 0
    tokens = np.bincount(unit_win[placed], weights=s_len[placed], minlength=n_win)
    cap = (ctx_len - tokens).astype(np.int64)
    cap[:n_main][tokens[:n_main] == 0] = 0  # dissolved: empty, and closed to the best-fit pass
    return Assignment(
        unit_win=unit_win, unit_rank=unit_rank, remainder=np.flatnonzero(unit_win < 0),
        cap=cap, sums=WindowSums(emb, s_doc, unit_win, n_win), used=tokens > 0,
        groups=sum(r.groups for r in results),
        dissolved_windows=sum(r.dissolved for r in results))
