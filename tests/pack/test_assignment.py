"""sort_units: the order both strategies work in, by one int64 key where the keys fit."""

from __future__ import annotations

import numpy as np
import pytest

from datasculpt.pack.assignment import sort_units
from datasculpt.tokenize import make_units


def _reference(units, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order and cluster numbers as np.unique + np.lexsort give them."""
    _, unit_cl = np.unique(clusters[units.doc], return_inverse=True)
    order = np.lexsort((units.start, units.doc, -units.length, unit_cl))
    return order, unit_cl[order]


@pytest.mark.parametrize("labels", ["dense", "gaps", "negative", "huge"])
@pytest.mark.parametrize("ctx_len", [64, 100_000])
def test_sorted_units_are_those_of_unique_and_lexsort(labels: str, ctx_len: int) -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    doc_len = rng.integers(1, 300, n)  # at ctx_len 64 many documents are cut: starts > 0
    units = make_units(doc_len, ctx_len, 1)
    clusters = rng.integers(0, 40, n)
    if labels == "gaps":  # labels 0..78, only even ones used
        clusters = clusters * 2
    elif labels == "negative":
        clusters = clusters - 20
    elif labels == "huge":  # the four keys' ranges no longer fit one int64
        clusters = clusters * (1 << 50)
    su = sort_units(units, clusters)
    order, cluster = _reference(units, clusters)
    assert np.array_equal(su.order, order)
    assert np.array_equal(su.cluster, cluster)
    assert np.array_equal(su.count, np.bincount(cluster))
    assert (units.start > 0).any() == (ctx_len == 64)


@pytest.mark.parametrize("spans", [(1, 5, 3), (1000, 1, 70), (2**40, 2**30, 2)])
def test_lexsort_ints_is_np_lexsort(spans: tuple[int, ...]) -> None:
    """One int64 key where the ranges fit (negative keys and constant ones included), the
    lexsort where they do not: the same permutation, ties in index order."""
    from datasculpt.pack.assignment import lexsort_ints

    rng = np.random.default_rng(len(spans) + spans[0] % 97)
    keys = tuple(rng.integers(-s // 2, s - s // 2, 20_000) for s in spans)
    assert np.array_equal(lexsort_ints(keys), np.lexsort(keys))
    assert lexsort_ints(tuple(k[:0] for k in keys)).shape == (0,)
