"""Read + tokenize per input shard: the background reader and the in-order merge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl

from datasculpt.io.ingest import _prefetched, read_and_tokenize
from datasculpt.io.read import ReadOptions, ReadStats, iter_documents
from datasculpt.io.token_store import TokenStore


def test_prefetch_keeps_the_order_and_hands_on_the_reader_error() -> None:
    assert list(_prefetched(iter(range(5000)), depth=7)) == list(range(5000))

    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(_prefetched(broken()))


def test_an_abandoned_prefetch_stops_its_thread() -> None:
    before = threading.active_count()
    it = _prefetched(iter(range(10**9)), depth=4)
    assert next(it) == 0
    it.close()  # the consumer leaves early: the producer must not block forever
    assert threading.active_count() == before


def test_shards_merge_like_one_pass(tmp_path: Path, tokenizer) -> None:
    # Problems and duplicates across shards land exactly where a single pass meets them.
    a = write_jsonl(tmp_path / "a.jsonl", [{"docid": "x", "content": "alpha beta"}, "{bad",
                                           {"docid": "y", "content": "gamma " * 30}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"docid": "y", "content": "dup"}, "",
                                           {"docid": "z", "content": "delta epsilon"}])
    opts = ReadOptions()
    corpus, n_tok, stats, _ = read_and_tokenize([a, b], opts, "default", 2, tmp_path,
                                                progress=False)
    one = ReadStats()
    docs = list(iter_documents([a, b], opts, one, progress=False))
    assert corpus.docids == [d.docid for d in docs] == ["x", "y", "z"]
    assert stats.malformed == one.malformed and len(stats.malformed) == 3
    store = TokenStore(tmp_path)
    for i, d in enumerate(docs):
        want = tokenizer(d.text, add_special_tokens=False)["input_ids"]
        assert n_tok[i] == len(want)
        assert store.span(i, 0, int(n_tok[i])).tolist() == want
    assert not list(tmp_path.glob(".tokenize.*"))  # the part files are gone
    assert np.array_equal(store.doc_len, n_tok)
