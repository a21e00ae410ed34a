"""pack.bfd: lossless, never over ctx_len, never splits a document that fits, and is a true
best-fit-decreasing (against a plain O(n * bins) reference)."""

from __future__ import annotations

import numpy as np
from helpers import length_corpora
from hypothesis import given, settings

from datasculpt.metrics import compute_metrics
from datasculpt.pack.bfd import pack_bfd
from datasculpt.pack.concat import pack_concat
from datasculpt.tokenize import make_units

corpora = length_corpora()


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


def test_bfd_fills_better_than_concat_cuts() -> None:
    rng = np.random.default_rng(1)
    doc_len = np.clip(rng.lognormal(6.0, 1.0, size=3000).astype(int), 1, 8000)
    units = make_units(doc_len, 2048, 1)
    bfd = compute_metrics(pack_bfd(units, 2048), doc_len, 2048, 1)
    concat = compute_metrics(pack_concat(units, 2048, 0), doc_len, 2048, 1)
    assert bfd["truncation_rate"] == 0.0 < concat["truncation_rate"]
    assert bfd["seq_ratio"] < 1.02
