"""pack.concat: the stream cut into windows, lossless and full, in a seeded or given order."""

from __future__ import annotations

import numpy as np
from helpers import length_corpora
from hypothesis import given, settings
from hypothesis import strategies as st

from datasculpt.metrics import compute_metrics
from datasculpt.pack.concat import cut_stream, pack_concat
from datasculpt.tokenize import make_units

corpora = length_corpora()


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


def test_cut_stream_follows_the_given_order() -> None:
    units = make_units(np.array([5, 5, 5]), ctx_len=8, eos=0)
    packing = cut_stream(units, np.array([2, 0, 1]), 8)
    pieces = list(zip(packing.seq.tolist(), packing.doc.tolist(), packing.start.tolist(),
                      packing.end.tolist(), strict=True))
    assert pieces == [(0, 2, 0, 5), (0, 0, 0, 3), (1, 0, 3, 5), (1, 1, 0, 5)]
