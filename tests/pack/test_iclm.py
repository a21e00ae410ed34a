"""iclm: the kNN-path baseline is lossless and puts neighbours next to each other."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import planted
from hypothesis import given, settings
from hypothesis import strategies as st

from datasculpt.backend import resolve_backend
from datasculpt.config import PackConfig
from datasculpt.metrics import compute_metrics
from datasculpt.pack.iclm import pack_iclm, traverse
from datasculpt.tokenize import make_units

CPU = resolve_backend("cpu")


def test_traverse_follows_most_similar_unvisited_and_jumps_by_degree() -> None:
    # 0 -> 1 -> 2 -> (1, 0 visited) jump; 3 has in-degree 0, so the walk starts there.
    idx = np.array([[1, 2], [2, 0], [1, 0], [0, 1]])
    sims = np.array([[0.9, 0.5], [0.8, 0.7], [0.6, 0.4], [0.3, 0.2]])
    path, jumps, step = traverse(idx, sims)
    assert path.tolist() == [3, 0, 1, 2]
    assert jumps == 1
    assert step == pytest.approx((0.3 + 0.9 + 0.8) / 3)


def test_path_keeps_topics_together_and_packing_is_lossless() -> None:
    x, lab = planted(5, 40, d=16, noise=0.1, shuffle=True)
    doc_len = np.random.default_rng(1).integers(20, 700, lab.size)
    units = make_units(doc_len, 512, eos=1)
    packing, stats = pack_iclm(units, x, 512, PackConfig(method="iclm", knn_k=5), CPU, seed=0)
    m = compute_metrics(packing, doc_len, 512, 1, embeddings=x, labels=lab)
    assert m["lost_tokens"] == 0 and m["duplicated_tokens"] == 0
    assert m["overlong_sequences"] == 0
    assert stats["knn"] == "faiss-cpu" and stats["knn_k"] == 5
    # consecutive documents along the output share a topic far more often than at random (~0.2)
    first = np.unique(packing.doc, return_index=True)[1]
    doc_order = packing.doc[np.sort(first)]
    assert (lab[doc_order[1:]] == lab[doc_order[:-1]]).mean() > 0.7
    assert m["label_purity"] > 0.8
    assert 1 <= stats["jumps"] < lab.size // 2 and stats["path_similarity"] > 0.8


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 1500), min_size=1, max_size=40),
    st.integers(8, 600),
    st.integers(0, 1),
    st.integers(1, 6),
)
def test_every_token_once_and_long_documents_stay_in_order(
    lengths: list[int], ctx_len: int, eos: int, k: int
) -> None:
    doc_len = np.asarray(lengths)
    x, _ = planted(3, len(lengths), d=16, noise=0.1, seed=len(lengths), shuffle=True)
    x = x[: len(lengths)]
    units = make_units(doc_len, ctx_len, eos)
    packing, _ = pack_iclm(units, x, ctx_len, PackConfig(knn_k=k), CPU, seed=0)
    m = compute_metrics(packing, doc_len, ctx_len, eos)
    assert m["lost_tokens"] == 0 and m["duplicated_tokens"] == 0 and m["overlong_sequences"] == 0
    # a document's pieces are consecutive in the output and in token order
    change = np.flatnonzero(np.diff(packing.doc) != 0)
    assert np.unique(packing.doc).size == change.size + 1
    same = packing.doc[1:] == packing.doc[:-1]
    assert (packing.start[1:][same] == packing.end[:-1][same]).all()


def test_embeddings_must_match_documents() -> None:
    units = make_units(np.array([5, 6]), 64, 1)
    with pytest.raises(ValueError, match="one embedding per document"):
        pack_iclm(units, np.zeros((3, 4), np.float32), 64, PackConfig(), CPU, 0)
