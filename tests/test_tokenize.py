"""Token counts from the real tokenizer, and the up-front cut of over-long documents."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasculpt.errors import ConfigError
from datasculpt.tokenize import count_tokens, load_tokenizer, make_units, plain_ids, separator


def test_counts_match_the_tokenizer_without_special_tokens(tokenizer) -> None:
    texts = ["Hello world.", "A much longer sentence about the Andromeda galaxy " * 200, "x"]
    counts, stats = count_tokens(texts, tokenizer, batch_size=2, progress=False)
    expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert counts.tolist() == expected
    assert counts[1] > 512  # no truncation at the model's maximum length
    assert stats["tokens"] == sum(expected)


def test_plain_ids_are_the_tokenizers_ids_uncut(tokenizer) -> None:
    """The offset-free Rust path gives the ids of ``tokenizer(...)`` on messy text, never cut
    at the 128 tokens MiniLM's tokenizer.json truncates at, and leaves the tokenizer as it was."""
    texts = ["", "   ", "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \U0001f600",
             "\u4e2d\u6587\u6587\u672c", "tab\there\r\nCRLF [SEP] [CLS] literal specials",
             "x" * 3000,
             "def f(x):\n    return {'k': [1, 2, 3]}\n" * 200]
    before = tokenizer.backend_tokenizer.truncation
    got = plain_ids(tokenizer)(texts)
    want = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert got == want
    assert len(got[-1]) > 2000  # whole, not the tokenizer.json's 128
    assert tokenizer.backend_tokenizer.truncation == before


def test_separator_and_missing_tokenizer(tokenizer) -> None:
    sep_id, sep_text = separator(tokenizer)
    assert sep_id == tokenizer.sep_token_id and sep_text == "[SEP]"  # BERT: no EOS, so SEP
    with pytest.raises(ConfigError, match="tokenizer path not found"):
        load_tokenizer("/no/such/tokenizer/dir")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=40), st.integers(8, 1024),
       st.integers(0, 1))
def test_units_cover_each_document_once_and_fit(lengths: list[int], ctx_len: int, eos: int) -> None:
    doc_len = np.asarray(lengths)
    units = make_units(doc_len, ctx_len, eos)
    assert (units.length <= ctx_len).all()
    assert (units.end > units.start).all()  # no piece holding only a separator
    for d, n in enumerate(lengths):
        mine = units.doc == d
        starts, ends = units.start[mine], units.end[mine]
        assert starts[0] == 0 and ends[-1] == n
        assert (starts[1:] == ends[:-1]).all()
        if n + eos <= ctx_len:
            assert mine.sum() == 1
        else:
            assert mine.sum() == -(-(n + eos) // ctx_len)


def test_separator_never_left_alone() -> None:
    units = make_units(np.array([16, 15, 8]), ctx_len=8, eos=1)
    pieces = list(zip(units.doc.tolist(), units.start.tolist(), units.end.tolist(), strict=True))
    assert pieces == [(0, 0, 8), (0, 8, 15), (0, 15, 16), (1, 0, 8), (1, 8, 15), (2, 0, 7),
                      (2, 7, 8)]
    assert units.length.tolist() == [8, 7, 2, 8, 8, 7, 2]


def test_units_of_uncut_documents_match_the_cut_construction() -> None:
    """No document cut: the compact units (a broadcast zero start, ``doc_len`` as the end)
    hold the values the general construction gives, read-only."""
    doc_len = np.array([5, 1, 7, 3], dtype=np.int64)
    units = make_units(doc_len, ctx_len=8, eos=1)  # 7 + 1 fits exactly: nothing cut
    assert units.doc.tolist() == [0, 1, 2, 3]
    assert units.start.tolist() == [0, 0, 0, 0]
    assert units.end.tolist() == doc_len.tolist()
    assert units.length.tolist() == [6, 2, 8, 4]
    assert not units.start.flags.writeable and not units.end.flags.writeable
    cut = make_units(doc_len, ctx_len=7, eos=1)  # 7 + 1 > 7: the general path
    assert cut.doc.tolist() == [0, 1, 2, 2, 3]
    assert cut.start.flags.writeable
