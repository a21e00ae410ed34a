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

On a GPU a greedy step costs its kernel launches, not its size, so the shape changes, not the
result: consecutive batches go to one task (``_runs``) whose groups share one greedy per level,
and the greedy's blocks are sized from the device's free memory (``pack.block_bytes``;
``window_greedy.blocks``). Each batch keeps its own numbering, dissolving and waste budget,
so the windows are the host's. At 1M synthetic documents the host runs 15,741 steps in 218
blocks and the GPU shape 1,432 in 4 (docs/BENCHMARKS.md); the remainder's chunks of
``remainder_group`` units take most of the latter (a chunk of ~1,000 units needs as many
steps: its windows are built one unit at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datasculpt.backend import to_numpy, xp_of
from datasculpt.blas import one_blas_thread
from datasculpt.executors import Executor, on_task_device
from datasculpt.executors.base import host_threads
from datasculpt.faults import fault_point
from datasculpt.pack.assignment import Assignment, SortedUnits
from datasculpt.pack.window_greedy import groups, solve
from datasculpt.vectors import ZERO_ROWS_ONLY, l2_normalize, nearest, spherical_lloyd

_KMEANS_ITERS = 3
_KMEANS_SAMPLE = 12  # k-means training points per centroid when a cluster is split
_REM_RUN = 64  # remainder chunks per task: one padded block of the greedy (_BLOCK_GRAM)
_REM_TIER = 8  # a remainder above this many remainder_group chunks is first cut finer
_SPLIT_FILL = 0.8  # a part's window below this fill goes back to its cluster's pool
# Share of the free device memory one padded block of the greedy may take on a GPU (the
# run's gathered embeddings take about as much again at most).
_DEVICE_SHARE = 0.4


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


def _split(x: np.ndarray, max_group: int) -> list[np.ndarray]:
    """Row indices of parts of at most ``max_group`` rows of one cluster (rows longest first).

    Spherical k-means with ``ceil(n / (3/4 max_group))`` centroids, trained on an evenly
    spaced sample (``_KMEANS_SAMPLE`` rows per centroid, initialised from evenly spaced sample
    rows, so nothing is random), then one assignment of every row. A part still larger than
    ``max_group`` is cut round-robin (row ``i`` to piece ``i mod pieces``), which keeps long
    and short units in every piece so each can fill its windows. Every part keeps the rows'
    order (longest first).

    It runs on the host whatever the backend: a split cut differently on the GPU (its float
    sums round otherwise) would change the groups and so the whole packing of the cluster.
    """
    n = x.shape[0]
    k = -(-n // max(1, (3 * max_group) // 4))
    m = min(n, _KMEANS_SAMPLE * k)
    sample = x[(np.arange(m) * n) // m]
    cent = sample[(np.arange(k) * m) // k]
    # One product over all rows (block=None), as the split has always been computed.
    cent = spherical_lloyd(sample, cent, _KMEANS_ITERS, block=None)
    lab = to_numpy(nearest(x, cent, block=None))
    parts = []
    for part in range(k):
        rows = np.flatnonzero(lab == part)
        pieces = -(-rows.shape[0] // max_group)
        parts.extend(rows[i::pieces] for i in range(pieces))
    return parts


def _fill(win: np.ndarray, lens: np.ndarray, n_win: int, ctx_len: int, sq: float) -> np.ndarray:
    """Each window's fill in tokens; with an attention budget (``sq``, ``pack.cost_cap``)
    the larger of its tokens and its used budget in token-equivalents (``ctx_len`` when the
    budget is spent): a window is full when either runs out."""
    fill = np.bincount(win, weights=lens, minlength=n_win)
    if sq:
        squares = np.bincount(win, weights=lens.astype(np.float64) ** 2, minlength=n_win)
        fill = np.maximum(fill, squares * (ctx_len / sq))
    return fill


def _windows_needed(lens: np.ndarray, g_first: np.ndarray, ctx_len: int,
                    sq: float) -> np.ndarray:
    """Windows a group's units fill: ``floor(tokens / ctx_len)``, or as many as its squared
    lengths fill of the attention budget (``sq``) if that is more."""
    k = np.add.reduceat(lens, g_first) // ctx_len
    if sq:
        k = np.maximum(k, (np.add.reduceat(lens.astype(np.float64) ** 2, g_first) // sq)
                       .astype(np.int64))
    return k


def _dissolve(win: np.ndarray, members: np.ndarray, lens: np.ndarray, n_win: int,
              floor: float, eligible: np.ndarray, ctx_len: int = 0, sq: float = 0.0) -> int:
    """Unplace (``win = -1``) the units of the ``eligible`` windows filled (``_fill``) below
    ``floor`` tokens; ``win`` holds window ids ``0 .. n_win`` (-1: unplaced) aligned with
    ``members``. Returns how many non-empty windows were dissolved."""
    placed = win >= 0
    fill = _fill(win[placed], lens[members[placed]], n_win, ctx_len, sq)
    weak = (fill < floor) & eligible
    win[placed & weak[np.where(placed, win, 0)]] = -1
    return int((weak & (fill > 0)).sum())


def _trim_waste(win: np.ndarray, step: np.ndarray, lens: np.ndarray, n_win: int, ctx_len: int,
                max_waste: float, sq: float = 0.0) -> int:
    """Unplace the units of the emptiest windows until the others leave at most
    ``max_waste`` of their capacity empty; returns how many windows were dissolved.

    A window is left part-empty where its cluster ran out of units that fit; each such gap
    costs sequences, and the remainder pass, which mixes the units of neighbouring clusters,
    can fill them. Dissolving the emptiest first keeps as many coherent windows as the budget
    allows, whatever the corpus (a fixed fill threshold dissolved too few windows on some
    corpora and too many on others). With an attention budget a window is full when its
    tokens or its budget run out (``_fill``)."""
    placed = win >= 0
    fill = _fill(win[placed], lens[placed], n_win, ctx_len, sq)
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


@dataclass
class _Run:
    """Consecutive batches packed in one task: each batch's result, and the greedy's blocks
    and steps for all of them (their groups share the blocks)."""

    batches: list[_Batch]
    blocks: int
    steps: int


@dataclass
class _BatchState:
    """One batch's bookkeeping between the levels (positions relative to the run's start)."""

    loc: np.ndarray  # first position of each cluster
    count: np.ndarray  # units of each cluster
    split: np.ndarray  # bool per cluster: split into parts
    lo: int  # the batch's first position
    hi: int  # one past its last
    n_win: int = 0
    n_steps: int = 0
    groups: int = 0
    dissolved: int = 0


def _level_parts(st: _BatchState, win: np.ndarray, max_group: int) -> list[np.ndarray]:
    """Level 2: what the parts of each split cluster left, pooled per cluster, cut into
    pieces of at most ``max_group`` (round-robin: long and short units in every piece)."""
    parts = []
    for i in np.flatnonzero(st.split).tolist():
        left = np.flatnonzero(win[st.loc[i] : st.loc[i] + st.count[i]] < 0) + st.loc[i]
        pieces = -(-left.shape[0] // max_group)
        parts.extend(left[j::pieces] for j in range(pieces))
    return parts


def _pack_run(
    xp: Any, emb: Any, s_doc: np.ndarray, s_len: np.ndarray, firsts: list[np.ndarray],
    counts: list[np.ndarray], ctx_len: int, cfg: Any, budget: int | None,
) -> _Run:
    """Phases 1-4 for consecutive batches of clusters (sorted positions from
    ``firsts[0][0]``). Each batch keeps its own numbering, its own dissolving and its own
    waste budget, exactly as when packed alone; only the greedy runs over the groups of all
    of them at once (on a GPU, one pass of a few hundred steps instead of one per batch)."""
    max_group, fit_bias = int(cfg.max_group), float(cfg.fit_bias)
    sq = sq_cap(cfg, ctx_len)
    lo = int(firsts[0][0])
    hi = int(firsts[-1][-1] + counts[-1][-1])
    rows = emb[xp.asarray(s_doc[lo:hi])]  # the run's embeddings, in sorted order
    lens = s_len[lo:hi]
    win = np.full(hi - lo, -1, dtype=np.int64)
    step = np.full(hi - lo, -1, dtype=np.int64)
    states, level_parts, owners = [], [], []
    for first, count in zip(firsts, counts, strict=True):
        loc = first - lo
        parts, owner = [], []
        for i, (f, n) in enumerate(zip(loc.tolist(), count.tolist(), strict=True)):
            mine = np.arange(f, f + n)
            got = [mine] if n <= max_group else [
                mine[p] for p in _split(to_numpy(rows[f : f + n]), max_group)]
            parts.extend(got)
            owner.extend([i] * len(got))
        split = np.bincount(np.asarray(owner, dtype=np.int64), minlength=count.shape[0]) > 1
        states.append(_BatchState(loc=loc, count=count, split=split, lo=int(loc[0]),
                                  hi=int(loc[-1] + count[-1]), groups=len(owner)))
        level_parts.append(parts)
        owners.append(np.asarray(owner, dtype=np.int64))
    n_blocks = n_steps = 0
    for level in (1, 2):
        if level == 2:
            level_parts = [_level_parts(st, win, max_group) for st in states]
        # Every batch's groups that get a window, then one greedy over all of them.
        jobs = []
        for parts in level_parts:
            members, g_first, _ = groups(parts)
            if not members.size:
                jobs.append(None)
                continue
            k_win = _windows_needed(lens[members], g_first, ctx_len, sq)
            if level == 1:
                k_win = np.maximum(1, k_win)
            keep = k_win > 0
            jobs.append((groups([p for p, k in zip(parts, keep, strict=True) if k]),
                         k_win[keep], keep))
        live = [j for j in jobs if j is not None and j[0][0].size]
        if not live:
            continue
        members = np.concatenate([j[0][0] for j in live])
        g_count = np.concatenate([j[0][2] for j in live])
        k_all = np.concatenate([j[1] for j in live])
        g_first = np.concatenate(([0], np.cumsum(g_count)[:-1])).astype(np.int64)
        solved = solve(xp, rows, lens, members, g_first, g_count, k_all, ctx_len, fit_bias,
                       diversity=float(cfg.diversity), budget=budget, sq_cap=sq)
        n_blocks += solved.blocks
        n_steps += solved.steps
        at = 0
        for st, job, owner in zip(states, jobs, owners, strict=True):
            if job is None or not job[0][0].size:
                continue
            (b_members, _, b_count), k_win, keep = job
            sl = slice(at, at + b_members.shape[0])
            at += b_members.shape[0]
            w_local, s_local = solved.win[sl], solved.step[sl]
            base = np.repeat(np.concatenate(([0], np.cumsum(k_win)[:-1])), b_count)
            w_new = np.where(w_local >= 0, w_local + base, -1)
            if level == 1:  # a part that could not fill a window leaves it to its pool
                in_split = np.repeat(st.split[owner[keep]], k_win)
                st.dissolved += _dissolve(w_new, b_members, lens, int(k_win.sum()),
                                          _SPLIT_FILL * ctx_len, in_split, ctx_len, sq)
            placed = w_new >= 0
            win[b_members[placed]] = st.n_win + w_new[placed]
            step[b_members[placed]] = st.n_steps + s_local[placed]
            st.n_win += int(k_win.sum())
            st.n_steps += int(s_local.max()) + 1
    out = []
    for st in states:
        b_win, b_step = win[st.lo : st.hi].copy(), step[st.lo : st.hi].copy()
        st.dissolved += _trim_waste(b_win, b_step, lens[st.lo : st.hi], st.n_win, ctx_len,
                                    float(cfg.max_waste), sq)
        sums = xp.stack([rows[f : f + n].sum(axis=0)
                         for f, n in zip(st.loc.tolist(), st.count.tolist(), strict=True)])
        out.append(_Batch(win=b_win, step=b_step, n_win=st.n_win, n_steps=st.n_steps,
                          cl_sums=to_numpy(sums).astype(np.float64), groups=st.groups,
                          dissolved=st.dissolved))
    return _Run(batches=out, blocks=n_blocks, steps=n_steps)


def _pack_run_task(run: list[np.ndarray], *, emb: Any, s_doc: np.ndarray, s_len: np.ndarray,
                   cl_first: np.ndarray, cl_count: np.ndarray, ctx_len: int, cfg: Any,
                   budget: int | None) -> _Run:
    """One run of batches of consecutive clusters (an executor task)."""
    fault_point("pack_task")
    emb = on_task_device(emb)
    with one_blas_thread():  # also in a Ray worker's process (blas.py)
        return _pack_run(xp_of(emb), emb, s_doc, s_len, [cl_first[b] for b in run],
                         [cl_count[b] for b in run], ctx_len, cfg, budget)


def _solve_chunks(part: list[np.ndarray], *, emb: Any, s_doc: np.ndarray, s_len: np.ndarray,
                  ctx_len: int, fit_bias: float, diversity: float = 0.0,
                  budget: int | None = None, sq: float = 0.0,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    """One run of remainder chunks (an executor task): the chunks' units, their windows
    (numbered from 0 over the run) and steps, the run's window count, and the greedy's blocks
    and steps."""
    emb = on_task_device(emb)
    xp = xp_of(emb)
    with one_blas_thread():
        return _solve_part(xp, emb, part, s_doc, s_len, ctx_len, fit_bias, diversity, budget,
                           sq)


def _solve_part(xp: Any, emb: Any, part: list[np.ndarray], s_doc: np.ndarray,
                s_len: np.ndarray, ctx_len: int, fit_bias: float, diversity: float,
                budget: int | None, sq: float,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    members, g_first, g_count = groups(part)
    k_win = _windows_needed(s_len[members], g_first, ctx_len, sq)
    rows = emb[xp.asarray(s_doc[members])]
    solved = solve(xp, rows, s_len[members], np.arange(members.shape[0]), g_first, g_count,
                   k_win, ctx_len, fit_bias, diversity=diversity, budget=budget, sq_cap=sq)
    base = np.repeat(np.concatenate(([0], np.cumsum(k_win)[:-1])), g_count)
    return (members, np.where(solved.win >= 0, base + solved.win, -1), solved.step,
            int(k_win.sum()), solved.blocks, solved.steps)


def _remainder_pass(
    xp: Any, emb: Any, s_doc: np.ndarray, s_len: np.ndarray, rem: np.ndarray, size: int,
    unit_win: np.ndarray, unit_rank: np.ndarray, n_win: int, rank: int, ctx_len: int,
    fit_bias: float, executor: Executor, diversity: float = 0.0, budget: int | None = None,
    sq: float = 0.0,
) -> tuple[int, int, int]:
    """Pack ``rem`` (sorted positions in cluster-path order) in chunks of at most ``size``
    consecutive units, each into ``floor(tokens / ctx_len)`` windows numbered from ``n_win``.
    Writes ``unit_win``/``unit_rank`` in place; returns the new window count and the greedy's
    blocks and steps."""
    n_chunks = -(-rem.shape[0] // size) if rem.size else 0
    # Chunks of equal size (not rem_group and a stub): the stub would pack badly.
    bounds = (np.arange(n_chunks + 1) * rem.shape[0]) // max(n_chunks, 1)
    # Inside a chunk: longest first (the greedy's seed order), path order between equals.
    chunks = [rem[a:b][np.argsort(-s_len[rem[a:b]], kind="stable")]
              for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    chunks = [c for c in chunks if int(s_len[c].sum()) >= ctx_len]
    # Chunks are independent: on the host they go to the workers in runs of a fixed number
    # of chunks, whatever the number of workers, because the padded blocks (and so the
    # rounding of the Gram matrices) must not depend on the machine; with a block budget
    # (a GPU) all of them in one run. The runs' windows keep chunk order.
    per = _REM_RUN if budget is None else max(1, len(chunks))
    runs = [chunks[i : i + per] for i in range(0, len(chunks), per)]
    solved = executor.map(_solve_chunks, runs, threads=_workers(xp), gpu=xp is not np,
                          emb=emb, s_doc=s_doc, s_len=s_len, ctx_len=ctx_len,
                          fit_bias=fit_bias, diversity=diversity, budget=budget, sq=sq)
    n_blocks = n_steps = 0
    for members, w_run, s_local, n_run, blk, stp in solved:
        placed = w_run >= 0
        unit_win[members[placed]] = n_win + w_run[placed]
        unit_rank[members[placed]] = rank + s_local[placed]
        n_win += n_run
        n_blocks += blk
        n_steps += stp
    return n_win, n_blocks, n_steps


def _workers(xp: Any) -> int:
    """Threads for independent batches in one process: the host's cores (at most 4: the
    batches share its memory bandwidth); one on the GPU, where a batch already fills it."""
    return host_threads() if xp is np else 1


def sq_cap(cfg: Any, ctx_len: int) -> float:
    """The squared-length budget of a window (``pack.cost_cap * ctx_len**2`` rounded down,
    as the greedy uses it; 0: none)."""
    return float(np.floor(float(getattr(cfg, "cost_cap", 0.0) or 0.0) * float(ctx_len) ** 2))


def _block_budget(xp: Any, cfg: Any) -> int | None:
    """Bytes for one padded block of the greedy: ``pack.block_bytes`` when set; on a GPU
    ``_DEVICE_SHARE`` of its free memory (the CuPy pool's cached blocks count as free); None
    on the host, which keeps its size classes (``window_greedy.blocks``)."""
    if getattr(cfg, "block_bytes", None):
        return int(cfg.block_bytes)
    if xp is np:
        return None
    free, _ = xp.cuda.runtime.memGetInfo()
    return int(_DEVICE_SHARE * (free + xp.get_default_memory_pool().free_bytes()))


def _runs(batches: list[np.ndarray], count: np.ndarray, budget: int | None,
          dim: int) -> list[list[np.ndarray]]:
    """Batches grouped into tasks: one each on the host (they run on threads, or on Ray);
    with a block budget as many consecutive batches as their gathered embeddings fit in it,
    so one greedy covers them all (on a GPU a step costs its launches, not its size)."""
    if budget is None:
        return [[b] for b in batches]
    cap = max(1, budget // (4 * max(dim, 1)))
    out: list[list[np.ndarray]] = []
    n = 0
    for b in batches:
        units = int(count[b].sum())
        if out and n + units <= cap:
            out[-1].append(b)
            n += units
        else:
            out.append([b])
            n = units
    return out


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
    budget = _block_budget(xp, cfg)
    runs = _runs(batches, cl_count, budget, dim)

    results = executor.map(_pack_run_task, runs, threads=_workers(xp), gpu=xp is not np,
                           emb=emb, s_doc=s_doc, s_len=s_len, cl_first=cl_first,
                           cl_count=cl_count, ctx_len=ctx_len, cfg=cfg, budget=budget)
    unit_win = np.full(n_units, -1, dtype=np.int64)
    unit_rank = np.full(n_units, -1, dtype=np.int64)
    cl_sums = np.zeros((k_cl, dim), dtype=np.float64)
    n_win, rank = 0, 0
    done = [r for run in results for r in run.batches]
    n_blocks = sum(run.blocks for run in results)
    n_steps = sum(run.steps for run in results)
    for b, r in zip(batches, done, strict=True):
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
        n_win, blk, stp = _remainder_pass(
            xp, emb, s_doc, s_len, rem, size, unit_win, unit_rank, n_win, rank, ctx_len,
            float(cfg.fit_bias), executor, float(cfg.diversity), budget, sq_cap(cfg, ctx_len))
        n_blocks += blk
        n_steps += stp
        rem = rem[unit_win[rem] < 0]  # still in path order
    placed = unit_win >= 0
    tokens = np.bincount(unit_win[placed], weights=s_len[placed], minlength=n_win)
    cap = (ctx_len - tokens).astype(np.int64)
    cap[:n_main][tokens[:n_main] == 0] = 0  # dissolved: empty, and closed to the best-fit pass
    return Assignment(
        unit_win=unit_win, unit_rank=unit_rank, remainder=np.flatnonzero(unit_win < 0),
        cap=cap, sums=WindowSums(emb, s_doc, unit_win, n_win), used=tokens > 0,
        groups=sum(r.groups for r in done), dissolved_windows=sum(r.dissolved for r in done),
        greedy_blocks=n_blocks, greedy_steps=n_steps)
