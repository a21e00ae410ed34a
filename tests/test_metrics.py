"""DESIGN §5 metrics on packings whose answers are known by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from datasculpt.metrics import compute_metrics, relevance_per_sequence
from datasculpt.types import Packing


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
