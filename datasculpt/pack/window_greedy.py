"""The window-centric greedy over groups of units, many groups side by side.

Each window is built in turn: seeded with the longest unit still unplaced in its group, it
repeatedly takes, among the unplaced units of the group that fit what is left of it, the one
with the highest

    cos(unit, window centroid) + fit_bias * len(unit) / remaining

(the small length term prefers, among equally similar units, the one that closes more of the
gap; ``diversity`` optionally subtracts the unit's highest cosine to a member of the window),
until no unit fits; then the group's next window opens, until the group has built its windows.
A unit is taken only when it fits, so no window overflows and no unit is split.

Groups of similar size share a padded block (``C x n`` units, ``C x n x n`` Gram matrix from
one batched product) and every step of the loop advances every group of the block by one
unit, with the same NumPy/CuPy code. A step costs ``O(C n)``; a block takes about
``n + windows`` steps, so the greedy is ``O(N n)`` and the Gram matrices ``O(N n D)``:
nothing is quadratic in N.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from datasculpt.backend import to_numpy

# Units per padded block and Gram entries per block: bound the block's memory (the Gram
# matrices are C x n x n float32) while keeping every step's arrays large enough to amortise
# the per-call overhead of NumPy and of kernel launches. A host step is ~40 NumPy calls whose
# fixed cost outweighs their arithmetic up to ~64K units, so a block of 64 remainder chunks
# of 1,024 units (256 MiB of Gram entries) packs them in half the time of 16 (10M documents:
# 40.5 s -> 22.3 s, same windows: a group's Gram entries and steps do not depend on the
# groups beside it).
_BLOCK_UNITS = 1 << 16
_BLOCK_GRAM = 1 << 26
_UNFIT = 1e7  # score penalty per token a unit overflows the window by


def greedy_block(
    xp: Any, e: Any, lens: Any, n_real: np.ndarray, k_win: np.ndarray, ctx_len: int,
    fit_bias: float, dense: bool | None = None, diversity: float = 0.0, sq_cap: float = 0.0,
) -> tuple[Any, Any]:
    """The window-centric greedy for ``C`` groups side by side.

    ``e`` is ``C x n x D`` (rows past ``n_real[i]`` are padding), ``lens`` ``C x n`` float32
    (units sorted longest first inside each group), ``k_win[i]`` the windows group ``i``
    builds. Groups are sorted by ``n_real + k_win`` descending, so the groups still working at
    step ``t`` are a prefix and every array below is a view. Returns per unit its window
    (local index, -1: not placed) and the step that placed it.

    The score is ranked per window, so it is kept unnormalised: ``d = unit . sum`` plus
    ``fit_bias * |sum| * len / room`` orders units exactly as ``cos + fit_bias * len / room``.

    ``diversity`` subtracts ``diversity * |sum| * m`` where ``m`` is the unit's highest cosine
    to a unit already in the window (maximal marginal relevance): among units equally close
    to the window, the one that repeats none of its members.

    ``sq_cap`` (``pack.cost_cap * ctx_len**2``, rounded down; 0: none) bounds the sum of the
    squared lengths of a window's units, its attention cost: a unit fits only where both its
    tokens and its square fit (in float32: exact while the squares stay below 2^24, within
    float32 rounding above).

    ``dense`` (the default on a GPU, ``_dense_steps``) opens windows with masked writes over
    every group instead of gathering the groups that open one: more arithmetic, but a step
    then never waits for the device (a boolean mask or an ``any()`` is a device->host sync on
    CuPy) and launches fewer kernels. Both give the same windows, in the same order.
    """
    c, n = lens.shape
    f32 = xp.float32
    inf = f32(np.inf)
    sq_cap = float(np.floor(sq_cap))  # whole: a square that does not fit misses by >= 1
    gram = _gram(xp, e)
    del e
    col = xp.arange(n)
    n_real_x, k_win_x = xp.asarray(n_real), xp.asarray(k_win)
    # A unit's length while it is unplaced, +inf once placed (or padding): one comparison
    # with the room of the open window answers "still available and fits".
    avail_len = xp.where(col[None, :] < n_real_x[:, None], lens, inf).astype(f32)
    d = xp.zeros((c, n), dtype=f32)  # unit . (centroid sum of the open window)
    nrm2 = xp.ones(c, dtype=f32)  # |centroid sum|^2
    room = xp.full(c, -1.0, dtype=f32)  # capacity left in the open window; -1: none open
    # squared-length budget left in the open window (sq_cap only)
    sq_room = xp.full(c, -1.0, dtype=f32) if sq_cap else None
    opened = xp.zeros(c, dtype=xp.int64)
    left = n_real_x.astype(xp.int64)  # unplaced units
    win = xp.full((c, n), -1, dtype=xp.int64)
    step = xp.full((c, n), -1, dtype=xp.int64)
    score = xp.empty((c, n), dtype=f32)
    # max cosine of every unit to the open window's members (diversity only)
    near = xp.zeros((c, n), dtype=f32) if diversity else None
    # Each step places a unit or closes a window, so a group is done after n + k steps.
    horizon = n_real + k_win
    scratch = xp.empty((c, n), dtype=f32)
    n_steps = int(horizon.max()) if c else 0
    active = np.searchsorted(-horizon, -np.arange(n_steps), side="left")  # horizon > t
    if dense is None:
        dense = xp is not np
    if dense:
        _dense_steps(xp, gram, lens, avail_len, d, nrm2, room, opened, left, win, step, score,
                     scratch, near, k_win_x, active, ctx_len, fit_bias, diversity, sq_room,
                     sq_cap)
        return win, step
    any_start = True
    for t in range(n_steps):
        a = int(active[t])
        av, dd, gg, ln, rm = avail_len[:a], d[:a], gram[:a], lens[:a], room[:a]
        rows = xp.arange(a)
        # Open a window where none is open, one is still due and a unit is left: its seed is
        # the longest unplaced unit (the first available one: units are sorted by length).
        # Only a window that closed in the last step can make way for one.
        start = (rm < 0) & (opened[:a] < k_win_x[:a]) & (left[:a] > 0)
        sr = xp.flatnonzero(start) if any_start else rows[:0]
        go = xp.ones(sr.shape[0], dtype=bool)
        if sr.shape[0]:
            seed = xp.argmax(av[sr] < inf, axis=1)
            dd[sr] = xp.where(go[:, None], gg[sr, seed], dd[sr])
            nrm2[sr] = xp.where(go, gg[sr, seed, seed], nrm2[sr])
            if near is not None:
                near[sr] = xp.where(go[:, None], gg[sr, seed], near[sr])
            rm[sr] = xp.where(go, ctx_len - ln[sr, seed], rm[sr])
            if sq_room is not None:
                sq_room[sr] = xp.where(go, f32(sq_cap) - ln[sr, seed] ** 2, sq_room[sr])
            win[sr, seed] = xp.where(go, opened[sr], win[sr, seed])
            step[sr, seed] = xp.where(go, t, step[sr, seed])
            av[sr, seed] = xp.where(go, inf, av[sr, seed])
            opened[sr] += go
            left[sr] -= go
        # Every open window takes its best unit among those that fit (none fits a closed
        # window: its room is -1).
        sc = _scores(xp, score[:a], scratch[:a], dd, ln, rm, av, nrm2[:a],
                     None if near is None else near[:a],
                     None if sq_room is None else sq_room[:a], fit_bias, diversity)
        j = xp.argmax(sc, axis=1)
        ok = sc[rows, j] > f32(-_UNFIT / 2)
        # The open window's dot products and norm are updated for every group: a group whose
        # window just closed gets a meaningless update, overwritten when its next window opens.
        nrm2[:a] += 2 * dd[rows, j] + gg[rows, j, j]
        dd += gg[rows, j]
        if near is not None:
            xp.maximum(near[:a], gg[rows, j], out=near[:a])
        # Where nothing fits the window closes (room -1); elsewhere the unit goes in. Masked
        # writes rather than boolean indexing: no device->host sync.
        rm[...] = xp.where(ok, rm - ln[rows, j], f32(-1))
        if sq_room is not None:
            sq_room[:a] = xp.where(ok, sq_room[:a] - ln[rows, j] ** 2, sq_room[:a])
        win[rows, j] = xp.where(ok, opened[:a] - 1, win[rows, j])
        step[rows, j] = xp.where(ok, t, step[rows, j])
        av[rows, j] = xp.where(ok, inf, av[rows, j])
        left[:a] -= ok
        any_start = not bool(ok.all())
    return win, step


def _dense_steps(
    xp: Any, gram: Any, lens: Any, avail_len: Any, d: Any, nrm2: Any, room: Any, opened: Any,
    left: Any, win: Any, step: Any, score: Any, scratch: Any, near: Any | None, k_win_x: Any,
    active: np.ndarray, ctx_len: int, fit_bias: float, diversity: float, sq_room: Any | None,
    sq_cap: float,
) -> None:
    """The greedy's steps with masked writes only (the GPU's loop): no device->host sync and
    about 50 array operations (kernel launches) a step, where gathering the rows that open a
    window as the host loop does took about 75 (counted from the code, without diversity).

    A row whose window is closed and has one due takes its seed in a step of its own: its
    score is ``-column`` over the units still available (the first, longest, wins), and the
    same update as any placement starts the sums from zero. Every sum sees the operands of
    the host loop in the same order (``0 + x`` is ``x``), so both give the same windows and
    the same order inside them; only the step numbers differ.
    """
    f32 = xp.float32
    inf = f32(np.inf)
    c, n = lens.shape
    rows_all = xp.arange(c)
    neg_col = -xp.arange(n, dtype=f32)
    zero = f32(0.0)
    for t in range(active.shape[0]):
        a = int(active[t])
        rows = rows_all[:a]
        av, dd, gg, ln, rm = avail_len[:a], d[:a], gram[:a], lens[:a], room[:a]
        start = (rm < 0) & (opened[:a] < k_win_x[:a]) & (left[:a] > 0)
        sc = _scores(xp, score[:a], scratch[:a], dd, ln, rm, av, nrm2[:a],
                     None if near is None else near[:a],
                     None if sq_room is None else sq_room[:a], fit_bias, diversity)
        # A row that opens a window: the first unit still available is its seed.
        sc = xp.where(start[:, None], xp.where(av < inf, neg_col, -inf), sc)
        j = xp.argmax(sc, axis=1)
        ok = sc[rows, j] > f32(-_UNFIT / 2)
        d_j = xp.where(start, zero, dd[rows, j])
        nrm2[:a] = xp.where(start, zero, nrm2[:a]) + (2 * d_j + gg[rows, j, j])
        xp.add(xp.where(start[:, None], zero, dd), gg[rows, j], out=dd)
        if near is not None:
            xp.maximum(xp.where(start[:, None], -inf, near[:a]), gg[rows, j], out=near[:a])
        l_j = ln[rows, j]
        rm[...] = xp.where(ok, xp.where(start, f32(ctx_len), rm) - l_j, f32(-1))
        if sq_room is not None:
            sq_room[:a] = xp.where(ok, xp.where(start, f32(sq_cap), sq_room[:a]) - l_j * l_j,
                                   sq_room[:a])
        opened[:a] += start & ok
        win[rows, j] = xp.where(ok, opened[:a] - 1, win[rows, j])
        step[rows, j] = xp.where(ok, t, step[rows, j])
        av[rows, j] = xp.where(ok, inf, av[rows, j])
        left[:a] -= ok


def _scores(xp: Any, sc: Any, gap: Any, dd: Any, ln: Any, rm: Any, av: Any, nrm2: Any,
            near: Any | None, sq_room: Any | None, fit_bias: float, diversity: float) -> Any:
    """Every unit's score for its group's open window, written into ``sc`` (``gap``:
    scratch): similarity, the fit term, the diversity term, and the penalty that drops every
    unit that does not fit far below the ones that do."""
    f32 = xp.float32
    if fit_bias:
        coef = f32(fit_bias) * xp.sqrt(nrm2) / xp.maximum(rm, f32(1.0))
        xp.multiply(ln, coef[:, None], out=sc)
        sc += dd
    else:
        sc[...] = dd
    if near is not None:
        sc -= (f32(diversity) * xp.sqrt(nrm2))[:, None] * near
    # Units that do not fit (gap < 0, a whole number of tokens, so <= -1; -inf when placed)
    # drop below every unit that does: scores stay far above -_UNFIT.
    xp.subtract(rm[:, None], av, out=gap)
    xp.minimum(gap, 0, out=gap)
    gap *= f32(_UNFIT)
    sc += gap
    if sq_room is not None:
        _sq_penalty(xp, sc, gap, av, sq_room)
    return sc


def _sq_penalty(xp: Any, sc: Any, gap: Any, av: Any, sq_room: Any) -> None:
    """Drop the units whose square does not fit the window's squared-length budget below
    every unit that does (as the token gap does: squares are whole numbers, so a miss is by
    at least 1)."""
    xp.multiply(av, av, out=gap)
    xp.subtract(sq_room[:, None], gap, out=gap)
    xp.minimum(gap, 0, out=gap)
    gap *= xp.float32(_UNFIT)
    sc += gap


def blocks(sizes: np.ndarray, budget: int | None = None, dim: int = 0,
           max_units: int = _BLOCK_UNITS, max_gram: int = _BLOCK_GRAM) -> list[np.ndarray]:
    """Groups (indices into ``sizes``) in padded blocks.

    On the host (``budget`` None) blocks hold groups of similar size within fixed memory
    bounds: size classes 25% wide keep padding below a fifth of a block, and inside a class
    the groups are taken largest first. A block's step costs the host ``O(C n)`` whatever its
    shape, so small blocks lose little there.

    On a GPU a step costs its kernel launches whatever its size, so the fewest blocks win:
    groups largest first, each block as many as ``budget`` bytes hold padded to its largest
    (``block_bytes``). With tens of GB free every group of a pass shares one block and the
    pass takes as many steps as its longest group plus its windows.
    """
    if budget is None:
        out = []
        cls = np.ceil(np.log(np.maximum(sizes, 1)) / np.log(1.25)).astype(np.int64)
        for k in np.unique(cls).tolist():
            members = np.flatnonzero(cls == k)
            members = members[np.argsort(-sizes[members], kind="stable")]
            n_pad = int(sizes[members].max())
            per = max(1, min(max_units // max(n_pad, 1), max_gram // max(n_pad * n_pad, 1)))
            out.extend(members[i : i + per] for i in range(0, members.shape[0], per))
        return out
    order = np.argsort(-sizes, kind="stable")
    out, i = [], 0
    while i < order.shape[0]:
        per = max(1, budget // block_bytes(int(sizes[order[i]]), dim))
        out.append(order[i : i + per])
        i += per
    return out


# Floats added to each row of the host Gram matrix. NumPy computes ``e @ e.T`` as a syrk,
# then copies the upper triangle into the lower one column by column: with rows of a power
# of two floats (groups of 1,024 units) every element of a column maps to the same cache set,
# and that copy took three quarters of the product (8 x 1,024 x 64: 31 ms, 8 ms padded, on the
# 2-core VM). The same syrk and the same copy, so the same bits.
_GRAM_PAD = 16


def _gram(xp: Any, e: Any) -> Any:
    """``C x n x n``: every group's unit-by-unit inner products (a view of a row-padded
    buffer on the host: ``block_bytes`` leaves it out, 64 bytes a row)."""
    if xp is not np:
        return xp.matmul(e, e.transpose(0, 2, 1))
    c, n, _ = e.shape
    out = np.empty((c, n, n + _GRAM_PAD), dtype=e.dtype)[:, :, :n]
    return np.matmul(e, e.transpose(0, 2, 1), out=out)


def block_bytes(n_pad: int, dim: int) -> int:
    """Device bytes one group padded to ``n_pad`` units holds while its block is packed: its
    Gram matrix, its embeddings (until the Gram product is done) and the step arrays."""
    return n_pad * (4 * n_pad + 4 * dim + 64)


class Solved(NamedTuple):
    """Aligned with the groups' ``members``: each unit's window inside its group (-1: not
    placed) and the step that placed it (increasing within a window); and what it took."""

    win: np.ndarray
    step: np.ndarray
    blocks: int
    steps: int


def solve(
    xp: Any, rows: Any, lens: np.ndarray, members: np.ndarray, g_first: np.ndarray,
    g_count: np.ndarray, k_win: np.ndarray, ctx_len: int, fit_bias: float,
    dense: bool | None = None, diversity: float = 0.0, budget: int | None = None,
    sq_cap: float = 0.0,
) -> Solved:
    """The greedy over groups: group ``i`` owns rows ``members[g_first[i] :][: g_count[i]]``
    of ``rows`` (embeddings; ``lens`` their lengths), longest first, and builds ``k_win[i]``
    windows; ``budget`` shapes the blocks (``blocks``). Groups do not interact, so the
    windows do not depend on the blocks (exactly, where the Gram entries are exact)."""
    win_out = np.full(members.shape[0], -1, dtype=np.int64)
    step_out = np.full(members.shape[0], -1, dtype=np.int64)
    shaped = blocks(g_count, budget, int(rows.shape[1]))
    n_steps = 0
    for blk in shaped:
        horizon = g_count[blk] + k_win[blk]
        blk = blk[np.argsort(-horizon, kind="stable")]
        n_real, kb = g_count[blk], k_win[blk]
        n = int(n_real.max())
        col = np.arange(n)
        real = col[None, :] < n_real[:, None]
        idx = g_first[blk][:, None] + np.minimum(col[None, :], n_real[:, None] - 1)
        # Padding rows repeat the group's last unit: never available, never placed.
        ln = xp.asarray(np.where(real, lens[members[idx]], ctx_len + 1).astype(np.float32))
        # The block's embeddings are passed, not kept: freed once its Gram matrices exist.
        win, step = greedy_block(xp, rows[xp.asarray(members[idx])], ln, n_real, kb, ctx_len,
                                 fit_bias, dense, diversity, sq_cap)
        win, step = to_numpy(win), to_numpy(step)
        win_out[idx[real]] = win[real]
        step_out[idx[real]] = step[real]
        n_steps += int(horizon.max())
    return Solved(win_out, step_out, len(shaped), n_steps)


def groups(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``members``, ``g_first``, ``g_count`` of a list of groups."""
    g_count = np.asarray([p.shape[0] for p in parts], dtype=np.int64)
    members = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    g_first = np.concatenate(([0], np.cumsum(g_count)[:-1])).astype(np.int64)
    return members, g_first, g_count
