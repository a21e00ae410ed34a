"""The report's metrics (docs/DESIGN.md, "Metrics") on packings whose answers are known by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from datasculpt.metrics import (
    compute_metrics,
    next_fit,
    purity,
    random_grouping,
    random_pair_cosine,
    random_reference,
    relevance_per_sequence,
    seq_doc_pairs,
)
from datasculpt.tokenize import make_units
from datasculpt.types import Packing, Units


def test_token_accounting_counts_lost_duplicated_and_overlong() -> None:
    doc_len = np.array([10, 4, 6])
    packing = Packing.from_lists([
        [(0, 0, 6), (1, 0, 4)],      # 6 + 4 tokens, +1 separator for doc 1
        [(0, 4, 10)],                # tokens 4..6 of doc 0 placed twice
        [(2, 0, 3)],                 # tokens 3..6 of doc 2 never placed
    ])
    m = compute_metrics(packing, doc_len, ctx_len=10, eos=1)
    assert m["lost_tokens"] == 3
    assert m["duplicated_tokens"] == 2
    assert packing.seq_tokens(doc_len, 1).tolist() == [11, 7, 3]
    assert m["overlong_sequences"] == 1
    assert m["total_tokens"] == 21
    assert m["fill_rate"] == pytest.approx(21 / 30)
    assert m["seq_ratio"] == pytest.approx(3 / 3)
    assert m["pieces_per_seq"] == pytest.approx(4 / 3)
    # doc 0 (10 + 1 > 10) is a forced cut; doc 2 sits in one piece; doc 1 whole.
    assert m["forced_cut_documents"] == 1
    assert m["truncation_rate"] == 0.0


def test_truncation_rate_counts_only_documents_that_fit() -> None:
    doc_len = np.array([3, 3, 3, 3])
    packing = Packing.from_lists([[(0, 0, 3), (1, 0, 3), (2, 0, 1)], [(2, 1, 3), (3, 0, 3)]])
    m = compute_metrics(packing, doc_len, ctx_len=8, eos=0)
    assert m["truncation_rate"] == pytest.approx(1 / 4)
    assert m["lost_tokens"] == 0 and m["duplicated_tokens"] == 0


def test_relevance_equals_brute_force_pairwise_cosine() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 5))
    doc_len = np.full(7, 2)
    packing = Packing.from_lists([
        [(0, 0, 2), (1, 0, 2), (2, 0, 2)],
        [(3, 0, 1)],
        [(3, 1, 2), (4, 0, 2), (4, 0, 1)],  # repeated doc counts once
        [(5, 0, 2), (6, 0, 2)],
    ])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def brute(docs: list[int]) -> float:
        return float(np.mean([unit[a] @ unit[b] for a, b in itertools.combinations(docs, 2)]))

    per_seq = relevance_per_sequence(packing, emb)
    assert per_seq[0] == pytest.approx(brute([0, 1, 2]))
    assert math.isnan(per_seq[1])
    assert per_seq[2] == pytest.approx(brute([3, 4]))
    assert per_seq[3] == pytest.approx(brute([5, 6]))
    m = compute_metrics(packing, doc_len, 8, 0, embeddings=emb)
    assert m["relevance"] == pytest.approx(np.mean([brute([0, 1, 2]), brute([3, 4]),
                                                    brute([5, 6])]))


def test_purity_is_token_weighted_majority_share() -> None:
    doc_len = np.array([6, 2, 4, 4])
    packing = Packing.from_lists([[(0, 0, 6), (1, 0, 2)], [(2, 0, 4), (3, 0, 4)]])
    clusters = np.array([0, 1, 2, 2])
    labels = np.array(["law", "law", "law", "food"])
    m = compute_metrics(packing, doc_len, 8, 0, clusters=clusters, labels=labels)
    assert m["cluster_purity"] == pytest.approx((6 + 8) / 16)
    assert m["label_purity"] == pytest.approx((8 + 4) / 16)
    assert m["relevance"] is None


def test_purity_over_multi_document_sequences_skips_single_documents() -> None:
    doc_len = np.array([6, 2, 4, 9])
    # seq 0 mixes two labels; seq 1 is one document (pure by definition); seq 2 is a
    # document cut in two pieces (still one document).
    packing = Packing.from_lists([[(0, 0, 6), (1, 0, 2)], [(2, 0, 4)], [(3, 0, 4), (3, 4, 9)]])
    labels = np.array(["law", "food", "law", "law"])
    m = compute_metrics(packing, doc_len, 10, 0, labels=labels)
    assert m["label_purity"] == pytest.approx((6 + 4 + 9) / 21)
    assert m["label_purity_multi"] == pytest.approx(6 / 8)
    single = Packing.from_lists([[(0, 0, 6)], [(1, 0, 2)]])
    assert compute_metrics(single, doc_len[:2], 10, 0, labels=labels[:2])[
        "label_purity_multi"] is None


def test_random_pair_cosine_is_the_mean_over_all_pairs() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(9, 4)) * rng.uniform(0.5, 3, size=(9, 1))  # not normalised
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    brute = np.mean([unit[a] @ unit[b] for a, b in itertools.combinations(range(9), 2)])
    assert random_pair_cosine(emb) == pytest.approx(brute)
    assert math.isnan(random_pair_cosine(emb[:1]))


def test_random_reference_groups_units_blindly_and_loses_nothing() -> None:
    doc_len = np.array([30, 5, 7, 12, 3, 40])
    units = make_units(doc_len, 16, 1)
    packing = random_grouping(units, 16, seed=3)
    m = compute_metrics(packing, doc_len, 16, 1)
    assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    assert m["truncation_rate"] == 0.0
    assert np.array_equal(packing.seq, random_grouping(units, 16, seed=3).seq)
    emb = np.random.default_rng(0).normal(size=(6, 3))
    ref = random_reference(units, 16, 3, emb, labels=np.array(list("aabbab")))
    assert ref["relevance"] == pytest.approx(random_pair_cosine(emb))
    assert 0 < ref["label_purity"] <= 1 and ref["cluster_purity"] is None


@pytest.mark.parametrize("seed", range(5))
def test_seq_doc_pairs_are_the_distinct_rows_in_order(seed: int) -> None:
    # The int64 key sort gives the pairs np.unique(axis=0) gives, repeats and gaps included.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    seq = np.sort(rng.integers(0, max(1, n // 5), n))
    doc = rng.integers(0, int(rng.choice([3, 50, 10**9])), n)
    packing = Packing(seq=seq, doc=doc, start=np.zeros(n, np.int64), end=np.ones(n, np.int64))
    want = np.unique(np.stack([seq, doc], axis=1), axis=0)
    s, d = seq_doc_pairs(packing)
    assert np.array_equal(s, want[:, 0]) and np.array_equal(d, want[:, 1])
    empty = Packing(*(np.zeros(0, np.int64) for _ in range(4)))
    assert seq_doc_pairs(empty)[0].size == 0


def _next_fit_per_item(length: np.ndarray, ctx_len: int) -> np.ndarray:
    """The per-item loop ``next_fit`` replaced: the rule it must keep exactly."""
    seq, cur, used = [], 0, 0
    for n in length.tolist():
        if used + n > ctx_len:
            cur, used = cur + 1, 0
        seq.append(cur)
        used += n
    return np.asarray(seq, dtype=np.int64)


@pytest.mark.parametrize("seed", range(20))
def test_next_fit_equals_the_per_item_loop(seed: int) -> None:
    # Items of exactly ctx_len, runs that fill a window exactly, zero-length items and items
    # longer than ctx_len (first of all, too) all take the per-item rule's windows.
    rng = np.random.default_rng(seed)
    ctx_len = int(rng.choice([1, 4, 16, 100]))
    n = int(rng.integers(0, 400))
    length = rng.integers(0, ctx_len + 1, n)
    length[rng.random(n) < 0.1] = ctx_len
    length[rng.random(n) < 0.05] = 0
    length[rng.random(n) < 0.3] = ctx_len // 2
    if seed % 4 == 0:
        length[rng.random(n) < 0.1] = ctx_len + 1 + rng.integers(0, 5)
    if seed % 5 == 0 and n:
        length[0] = ctx_len + 3
    assert np.array_equal(next_fit(length, ctx_len), _next_fit_per_item(length, ctx_len))
    assert np.array_equal(next_fit(np.array([4, 4, 8, 1, 7, 9, 0, 16, 0]), 8),
                          _next_fit_per_item(np.array([4, 4, 8, 1, 7, 9, 0, 16, 0]), 8))


def test_random_grouping_is_next_fit_over_the_seeded_order() -> None:
    doc_len = np.random.default_rng(5).integers(1, 60, 500)
    units: Units = make_units(doc_len, 32, 1)
    packing = random_grouping(units, 32, seed=11)
    order = np.random.default_rng(11).permutation(len(units))
    assert np.array_equal(packing.seq, _next_fit_per_item(units.length[order], 32))
    assert np.array_equal(packing.doc, units.doc[order])


def _purity_by_unique(packing: Packing, group: np.ndarray, min_docs: int = 1) -> float:
    """Purity as two ``np.unique`` calls computed it: the figures must stay bit for bit."""
    keep = np.bincount(seq_doc_pairs(packing)[0], minlength=packing.n_sequences)[
        packing.seq] >= min_docs
    tokens = (packing.end - packing.start).astype(np.float64)[keep]
    seq, doc = packing.seq[keep], packing.doc[keep]
    if tokens.sum() == 0:
        return math.nan
    _, gid = np.unique(np.asarray(group)[doc], return_inverse=True)
    key = seq * (int(gid.max()) + 1) + gid
    uniq, inv = np.unique(key, return_inverse=True)
    per_pair = np.bincount(inv, weights=tokens)
    pair_seq = uniq // (int(gid.max()) + 1)
    heads = np.flatnonzero(np.concatenate(([True], pair_seq[1:] != pair_seq[:-1])))
    return float(np.maximum.reduceat(per_pair, heads).sum() / tokens.sum())


@pytest.mark.parametrize("seed", range(6))
def test_purity_keeps_the_bits_of_the_unique_based_figure(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_docs = int(rng.integers(1, 2000))
    n = int(rng.integers(1, 3000))
    seq = np.sort(rng.integers(0, max(1, n // int(rng.choice([2, 7, 300]))), n))
    seq = np.unique(seq, return_inverse=True)[1].astype(np.int64)
    doc = rng.integers(0, n_docs, n)
    start = rng.integers(0, 50, n)
    packing = Packing(seq=seq, doc=doc, start=start, end=start + rng.integers(0, 500, n))
    groups = [rng.integers(0, int(rng.choice([2, 40, n_docs])), n_docs),
              rng.integers(-3, 10**12, n_docs),                    # wide ids: the sort path
              np.array(["law", "food", "code"])[rng.integers(0, 3, n_docs)]]
    for group in groups:
        for min_docs in (1, 2):
            want, got = _purity_by_unique(packing, group, min_docs), purity(packing, group,
                                                                            min_docs)
            assert (math.isnan(want) and math.isnan(got)) or want == got


@pytest.mark.parametrize("seed", range(5))
def test_coverage_counts_tokens_like_a_set_of_positions(seed: int) -> None:
    # Pieces sharing a start (any order among them) and overlapping ones, against brute force.
    rng = np.random.default_rng(seed)
    doc_len = rng.integers(1, 30, 20)
    doc = rng.integers(0, 20, 120)
    start = rng.integers(0, doc_len[doc])
    start[rng.random(120) < 0.3] = 0
    end = start + rng.integers(1, 12, 120)
    m = compute_metrics(Packing(seq=np.sort(rng.integers(0, 30, 120)), doc=doc, start=start,
                                end=end), doc_len, 64, 0)
    pieces = np.stack([doc, start, np.minimum(end, doc_len[doc])], axis=1).tolist()
    seen = {(d, t) for d, a, b in pieces for t in range(a, b)}
    placed = sum(b - a for _, a, b in pieces)
    assert m["lost_tokens"] == int(doc_len.sum()) - len(seen)
    assert m["duplicated_tokens"] == placed - len(seen)
