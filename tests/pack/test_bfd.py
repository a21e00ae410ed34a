"""concat and bfd: lossless, never over ctx_len, and bfd is a true best-fit-decreasing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datasculpt.metrics import compute_metrics
from datasculpt.pack.bfd import pack_bfd
from datasculpt.pack.concat import cut_stream, pack_concat
from datasculpt.tokenize import make_units

corpora = st.tuples(
    st.lists(st.integers(1, 3000), min_size=1, max_size=60),
    st.integers(8, 2048),
    st.integers(0, 1),
)


def _reference_bfd(lengths: list[int], ctx_len: int) -> list[int]:
    """Plain O(n * bins) best-fit-decreasing, the definition the segment tree must match."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    caps: list[int] = []
    for i in order:
        fits = [b for b, c in enumerate(caps) if c >= lengths[i]]
        if fits:
            best = min(caps[b] for b in fits)
            b = fits[[caps[f] for f in fits].index(best)]
            caps[b] -= lengths[i]
        else:
            caps.append(ctx_len - lengths[i])
    return sorted(caps)


@settings(max_examples=150, deadline=None)
@given(corpora, st.integers(0, 3))
def test_concat_is_lossless_and_full(corpus: tuple, seed: int) -> None:
    lengths, ctx_len, eos = corpus
    doc_len = np.asarray(lengths)
    units = make_units(doc_len, ctx_len, eos)
    packing = pack_concat(units, ctx_len, seed)
    m = compute_metrics(packing, doc_len, ctx_len, eos)
    assert m["lost_tokens"] == 0 and m["duplicated_tokens"] == 0 and m["invalid_pieces"] == 0
    assert m["overlong_sequences"] == 0 and m["empty_sequences"] == 0
    tokens = packing.seq_tokens(doc_len, eos)
    # Every sequence but the last is full, except where a separator could not be left alone.
    assert (tokens[:-1] >= ctx_len - 1).all()
    again = pack_concat(units, ctx_len, seed)
    assert np.array_equal(again.doc, packing.doc) and np.array_equal(again.end, packing.end)


@settings(max_examples=150, deadline=None)
@given(corpora)
def test_bfd_never_splits_a_fitting_document_and_matches_reference(corpus: tuple) -> None:
    lengths, ctx_len, eos = corpus
    doc_len = np.asarray(lengths)
    units = make_units(doc_len, ctx_len, eos)
    packing = pack_bfd(units, ctx_len)
    m = compute_metrics(packing, doc_len, ctx_len, eos)
    assert m["lost_tokens"] == 0 and m["duplicated_tokens"] == 0
    assert m["overlong_sequences"] == 0
    assert m["truncation_rate"] == 0.0
    assert len(packing.doc) == len(units)  # units are never split
    caps = sorted((ctx_len - packing.seq_tokens(doc_len, eos)).tolist())
    assert caps == _reference_bfd(units.length.tolist(), ctx_len)


def test_cut_stream_follows_the_given_order() -> None:
    units = make_units(np.array([5, 5, 5]), ctx_len=8, eos=0)
    packing = cut_stream(units, np.array([2, 0, 1]), 8)
    pieces = list(zip(packing.seq.tolist(), packing.doc.tolist(), packing.start.tolist(),
                      packing.end.tolist(), strict=True))
    assert pieces == [(0, 2, 0, 5), (0, 0, 0, 3), (1, 0, 3, 5), (1, 1, 0, 5)]


def test_bfd_fills_better_than_concat_cuts() -> None:
    rng = np.random.default_rng(1)
    doc_len = np.clip(rng.lognormal(6.0, 1.0, size=3000).astype(int), 1, 8000)
    units = make_units(doc_len, 2048, 1)
    bfd = compute_metrics(pack_bfd(units, 2048), doc_len, 2048, 1)
    concat = compute_metrics(pack_concat(units, 2048, 0), doc_len, 2048, 1)
    assert bfd["truncation_rate"] == 0.0 < concat["truncation_rate"]
    assert bfd["seq_ratio"] < 1.02
