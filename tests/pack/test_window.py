"""Tests of the window-centric DataSculpt strategy (``pack.window`` and its greedy,
``pack.window_greedy``; the default strategy).

Two independent readers keep it honest: ``window_reference`` is the greedy written as a plain
loop over one group (one window at a time, one unit at a time), against which the batched
kernel (many groups side by side in padded blocks) must agree exactly; ``check_packing``
(tests/helpers.py) recomputes the token accounting from the output alone.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from helpers import (
    assert_same_packing,
    check_packing,
    packing_corpus,
    small_packing_input,
    small_packing_params,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasculpt.config import PackConfig
from datasculpt.executors import LocalExecutor
from datasculpt.metrics import compute_metrics
from datasculpt.pack import window, window_greedy
from datasculpt.pack.datasculpt import pack_datasculpt
from datasculpt.tokenize import make_units

LOCAL = LocalExecutor()


def window_cfg(**kw) -> PackConfig:
    return PackConfig(method="datasculpt", strategy="window", **kw)


# ---------------------------------------------------------------- sequential reference


def window_reference(lens: np.ndarray, emb: np.ndarray, k: int, ctx_len: int,
                     fit_bias: float, diversity: float = 0.0,
                     sq_cap: float = 0.0) -> tuple[list[int], list[int]]:
    """One group, straight from the definition: ``k`` windows one after the other, each
    seeded with the longest unplaced unit (the first, units are sorted) and then taking the
    fitting unit of highest ``cos + fit_bias * len / room`` (kept as ``unit . sum + fit_bias *
    |sum| * len / room``, in float32 like the kernel), less ``diversity * |sum|`` times the
    unit's highest dot product with a member, until none fits (with ``sq_cap``, a unit fits
    only if its square also fits what is left of the window's squared-length budget); ties
    to the lowest index.
    Returns each unit's window (-1: not placed) and its position in the window."""
    f32 = np.float32
    n = lens.shape[0]
    gram = (emb @ emb.T).astype(f32)  # integer embeddings: exact
    win, order = [-1] * n, [-1] * n
    for w in range(k):
        free = [u for u in range(n) if win[u] < 0]
        if not free:
            break
        s = free[0]
        win[s], order[s] = w, 0
        d = gram[s].copy()
        near = gram[s].copy()
        nrm2 = f32(gram[s, s])
        room = f32(ctx_len - lens[s])
        sq_room = f32(sq_cap) - f32(lens[s]) ** 2
        taken = 1
        while True:
            best, best_score = -1, -math.inf
            coef = f32(fit_bias) * np.sqrt(nrm2) / max(room, f32(1.0))
            coef_div = f32(diversity) * np.sqrt(nrm2)
            for u in range(n):
                if win[u] >= 0 or lens[u] > room:
                    continue
                if sq_cap and f32(lens[u]) ** 2 > sq_room:
                    continue
                score = f32(lens[u]) * coef + d[u] if fit_bias else d[u]
                if diversity:
                    score = f32(score - coef_div * near[u])
                if score > best_score:
                    best, best_score = u, score
            if best < 0:
                break
            win[best], order[best] = w, taken
            taken += 1
            nrm2 = f32(nrm2 + (f32(2) * d[best] + gram[best, best]))
            d = d + gram[best]
            near = np.maximum(near, gram[best])
            room = f32(room - lens[best])
            sq_room = f32(sq_room - f32(lens[best]) ** 2)
    return win, order


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), ctx_len=st.integers(8, 80),
       fit_bias=st.sampled_from([0.0, 0.1, 0.5, 5.0]), n_groups=st.integers(1, 12),
       diversity=st.sampled_from([0.0, 0.0, 0.3, 1.0]),
       cost_cap=st.sampled_from([0.0, 0.0, 0.3, 0.6]))
def test_batched_kernel_is_the_sequential_greedy(seed, ctx_len, fit_bias, n_groups, diversity,
                                                 cost_cap):
    rng = np.random.default_rng(seed)
    groups, lens_all, embs = [], [], []
    for _ in range(n_groups):
        n = int(rng.integers(1, 40))
        # Many short units per window in some groups, a few long ones in others (no longer
        # than a window's squared-length budget allows, as pack_datasculpt cuts them).
        top = ctx_len // int(rng.integers(1, 9))
        if cost_cap:
            top = min(top, int(np.sqrt(cost_cap) * ctx_len))
        lens = np.sort(rng.integers(1, max(top, 1) + 1, n))[::-1]
        # Small integer vectors: every dot product is exact in float32, so the batched and
        # the plain loop see the same scores bit for bit, ties included.
        emb = rng.integers(-1, 2, (n, 4)).astype(np.float32)
        groups.append(np.arange(n) + sum(g.shape[0] for g in groups))
        lens_all.append(lens)
        embs.append(emb)
    lens = np.concatenate(lens_all).astype(np.int64)
    rows = np.concatenate(embs)
    members, g_first, g_count = window_greedy.groups(groups)
    k_win = np.maximum(1, np.add.reduceat(lens[members], g_first) // ctx_len)
    # dense: the GPU's sync-free steps, run here through NumPy; budget: the GPU's blocks (all
    # groups in one, or a few groups per block), the host's size classes when None.
    few = 3 * window_greedy.block_bytes(40, 4)
    sq_cap = float(np.floor(cost_cap * ctx_len**2))
    for dense, budget in ((False, None), (True, None), (True, 1 << 40), (False, few)):
        win, step, n_blocks, _ = window_greedy.solve(
            np, rows, lens, members, g_first, g_count, k_win, ctx_len, fit_bias, dense=dense,
            diversity=diversity, budget=budget, sq_cap=sq_cap)
        if budget == 1 << 40:
            assert n_blocks == 1
        for i, g in enumerate(groups):
            ref_win, ref_order = window_reference(lens[g], rows[g], int(k_win[i]), ctx_len,
                                                  fit_bias, diversity, sq_cap)
            got = win[g_first[i] : g_first[i] + g_count[i]]
            assert got.tolist() == ref_win, f"group {i}, dense={dense}, budget={budget}"
            # Placement order inside every window is the reference's.
            s = step[g_first[i] : g_first[i] + g_count[i]]
            for w in set(ref_win) - {-1}:
                mine = np.flatnonzero(got == w)
                assert mine[np.argsort(s[mine])].tolist() == sorted(
                    mine.tolist(), key=lambda u: ref_order[u])


def test_window_never_overflows_and_takes_the_most_similar_unit():
    # One group, ctx 10: the seed (6 tokens) must take the unit most like it that fits.
    lens = np.array([6, 4, 4, 3, 2])
    emb = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    win, _ = window_reference(lens, emb, 1, 10, 0.0)
    assert win == [0, -1, 0, -1, -1]  # 6 + 4 (the similar 4, not the first 4) = 10
    members, g_first, g_count = window_greedy.groups([np.arange(5)])
    got = window_greedy.solve(np, emb, lens, members, g_first, g_count, np.array([1]), 10,
                              0.0).win
    assert got.tolist() == win


# ---------------------------------------------------------------- strategy invariants

small = small_packing_params(60)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=small, mode=st.sampled_from(["strict", "fill"]), max_group=st.sampled_from([2, 5, 128]),
       remainder_group=st.sampled_from([2, 7, 1024]),
       max_waste=st.sampled_from([0.0, 0.005, 1.0]))
def test_every_token_once_and_no_overlong(p, mode, max_group, remainder_group, max_waste):
    units, emb, clusters = small_packing_input(p)
    cfg = window_cfg(mode=mode, max_group=max_group, remainder_group=remainder_group,
                     max_waste=max_waste)
    packing, stats = pack_datasculpt(units, emb, clusters, p["ctx_len"], cfg, executor=LOCAL)
    mine = check_packing(packing, units, p["ctx_len"], emb)
    assert stats["sequences"] == mine["n_sequences"]
    m = compute_metrics(packing, units.doc_len, p["ctx_len"], units.eos, emb)
    assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    if mode == "strict":  # never a split unit: the placed pieces are exactly the units
        placed = sorted(zip(packing.doc.tolist(), packing.start.tolist(),
                            packing.end.tolist(), strict=True))
        assert placed == sorted(zip(units.doc.tolist(), units.start.tolist(),
                                    units.end.tolist(), strict=True))
    assert_same_packing(packing, pack_datasculpt(units, emb, clusters, p["ctx_len"], cfg,
                                         executor=LOCAL)[0])


def test_output_does_not_depend_on_the_number_of_threads(monkeypatch):
    # Many batches and remainder runs: the thread pool is used, and must change nothing.
    doc_len, emb, labels = packing_corpus(4000, 1024, 40, 16, seed=7, median=150)
    units = make_units(doc_len, 1024, 1)
    cfg = window_cfg(max_group=16, remainder_group=32, task_units=300)
    outs = []
    for n in (1, 3):
        monkeypatch.setattr(window, "_workers", lambda xp, n=n: n)
        outs.append(pack_datasculpt(units, emb, labels, 1024, cfg, executor=LOCAL)[0])
    assert_same_packing(*outs)


@pytest.mark.parametrize("block_bytes", [1 << 40, 200_000])
def test_the_gpu_block_shape_gives_the_host_packing_in_fewer_steps(block_bytes):
    # pack.block_bytes runs the GPU's shape through NumPy: many batches in one run and every
    # group of a pass in one block (1 << 40), or a few groups per block (200 kB). Integer
    # embeddings keep every Gram entry exact whatever the padding, so the windows must be
    # the host's unit for unit; a GPU step costs its launches, so the steps must drop.
    rng = np.random.default_rng(3)
    doc_len = np.clip(np.rint(rng.lognormal(np.log(200), 1.2, 6000)), 1, 3 * 1024)
    units = make_units(doc_len.astype(np.int64), 1024, 1)
    emb = rng.integers(-2, 3, (6000, 16)).astype(np.float32)
    clusters = rng.integers(0, 30, 6000)
    cfg = dict(max_group=32, remainder_group=128, task_units=600)
    host, h = pack_datasculpt(units, emb, clusters, 1024, window_cfg(**cfg), executor=LOCAL)
    gpu, g = pack_datasculpt(units, emb, clusters, 1024,
                             window_cfg(**cfg, block_bytes=block_bytes), executor=LOCAL)
    assert_same_packing(host, gpu)
    assert g["greedy_blocks"] < h["greedy_blocks"] and g["greedy_steps"] < h["greedy_steps"]
    if block_bytes == 1 << 40:  # two levels and two remainder passes, one block each
        assert g["greedy_blocks"] <= 4
    check_packing(gpu, units, 1024, emb)


def test_large_clusters_are_split_and_still_packed_well():
    # 3 clusters of ~1,300 units: every cluster is split (max_group 64) and packed in parts.
    ctx_len = 4096
    doc_len, emb, labels = packing_corpus(4000, ctx_len, 3, 32, seed=2, median=300)
    units = make_units(doc_len, ctx_len, 1)
    packing, stats = pack_datasculpt(units, emb, labels, ctx_len, window_cfg(max_group=64),
                                     executor=LOCAL)
    assert stats["groups"] > 3 * (4000 // 64) // 2
    mine = check_packing(packing, units, ctx_len, emb)
    assert mine["truncation_rate"] == 0.0
    assert mine["n_sequences"] <= 1.01 * math.ceil(units.length.sum() / ctx_len)
    m = compute_metrics(packing, doc_len, ctx_len, 1, emb, labels, labels)
    assert m["label_purity_multi"] >= 0.98


def test_window_beats_unit_on_relevance_and_purity_on_a_topic_corpus():
    # 24 topics, 12 planted clusters of two topics each: the cluster labels are coarser than
    # the topics, so which units share a window inside a cluster decides the purity.
    rng = np.random.default_rng(5)
    n, dim, ctx_len = 6000, 32, 4096
    topic = rng.integers(0, 24, n)
    centres = rng.standard_normal((24, dim))
    emb = centres[topic] * 0.5 + rng.standard_normal((n, dim)) / np.sqrt(dim)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    doc_len = np.clip(np.rint(rng.lognormal(np.log(400), 1.0, n)), 16, 3 * ctx_len)
    doc_len = doc_len.astype(np.int64)
    clusters = topic // 2
    units = make_units(doc_len, ctx_len, 1)
    got = {}
    for strategy in ("window", "unit"):
        cfg = PackConfig(method="datasculpt", strategy=strategy)
        packing, _ = pack_datasculpt(units, emb, clusters, ctx_len, cfg, executor=LOCAL)
        got[strategy] = compute_metrics(packing, doc_len, ctx_len, 1, emb, clusters, topic)
    w, u = got["window"], got["unit"]
    assert w["lost_tokens"] == w["duplicated_tokens"] == w["overlong_sequences"] == 0
    assert w["truncation_rate"] == 0.0 and w["seq_ratio"] <= 1.01
    assert w["relevance"] > u["relevance"] + 0.02
    assert w["label_purity_multi"] > u["label_purity_multi"]




def test_cost_cap_bounds_the_windows_attention_for_more_cuts():
    # pack.cost_cap 0.25: no window's units may square-sum past a quarter of ctx_len^2, so a
    # document longer than half a window is cut, and windows of long pieces close early.
    ctx_len = 4096
    doc_len, emb, labels = packing_corpus(3000, ctx_len, 6, 16, seed=4, median=600)
    units = make_units(doc_len, ctx_len, 1)
    free, _ = pack_datasculpt(units, emb, labels, ctx_len, window_cfg(), executor=LOCAL)
    capped, cs = pack_datasculpt(units, emb, labels, ctx_len, window_cfg(cost_cap=0.25),
                                 executor=LOCAL)

    def attention(p):
        plen = p.piece_tokens(doc_len, 1).astype(np.int64)
        return np.bincount(p.seq, weights=plen * plen)

    check_packing(capped, make_units(doc_len, ctx_len // 2, 1), ctx_len, emb)
    a_free, a_cap = attention(free), attention(capped)
    cap = 0.25 * ctx_len**2
    assert a_free.max() > cap  # without the cap some windows hold long documents
    # The greedy's windows keep the cap; only the best-fit pass of its remainder may not.
    assert np.mean(a_cap > cap) <= cs["remainder_units"] / cs["sequences"]
    assert a_cap.max() < a_free.max()
    # The price: more documents cut (sequences may even drop: cut pieces fill gaps better).
    def cut_docs(p):
        return int((np.bincount(p.doc, minlength=doc_len.shape[0]) > 1).sum())

    assert cut_docs(capped) > cut_docs(free)


@pytest.mark.parametrize("n", [1, 7, 128, 1000, 1024])
def test_host_gram_is_numpys_product_bit_for_bit(n: int) -> None:
    """The row-padded host Gram (window_greedy._gram) is the same syrk as ``e @ e.T``: the
    greedy's choices, and so every packing, keep their bits."""
    from datasculpt.pack.window_greedy import _gram

    e = np.random.default_rng(n).standard_normal((3, n, 64)).astype(np.float32)
    g = _gram(np, e)
    assert g.shape == (3, n, n)
    assert np.array_equal(g, np.matmul(e, e.transpose(0, 2, 1)))


def test_windows_do_not_depend_on_how_many_groups_share_a_block(monkeypatch) -> None:
    """Float embeddings (Gram entries rounded), groups of 250 to 256 units: a group's windows
    are the same whether it is packed alone, 4 to a block or every group in one block (the
    host's remainder chunks, 64 to a block since issue 21, were 16)."""
    rng = np.random.default_rng(11)
    sizes = rng.integers(250, 257, 24)
    lens = np.concatenate([np.sort(rng.integers(1, 200, s))[::-1] for s in sizes])
    rows = rng.standard_normal((lens.shape[0], 64)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    members = np.arange(lens.shape[0])
    g_count = sizes.astype(np.int64)
    g_first = np.concatenate(([0], np.cumsum(g_count)[:-1])).astype(np.int64)
    k_win = np.add.reduceat(lens, g_first) // 1024
    got = {}
    shape = window_greedy.blocks
    for per_block in (1, 4, 24):
        monkeypatch.setattr(window_greedy, "blocks", functools.partial(
            shape, max_gram=per_block * 256 * 256))
        solved = window_greedy.solve(np, rows, lens, members, g_first, g_count, k_win, 1024,
                                     0.1)
        assert solved.blocks >= -(-24 // per_block)
        got[per_block] = (solved.win, solved.step)
    for per_block in (4, 24):
        assert np.array_equal(got[per_block][0], got[1][0])
        assert np.array_equal(got[per_block][1], got[1][1])
