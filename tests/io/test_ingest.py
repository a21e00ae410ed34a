"""Read + tokenize per input shard: the background reader and the in-order merge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import write_jsonl

from datasculpt.executors import LocalExecutor
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
    (tmp_path / "tokens.bin").write_bytes(b"old")  # a layout-1 store's merged copy
    table, n_tok, stats, _ = read_and_tokenize([a, b], opts, "default", 2, tmp_path,
                                               LocalExecutor(), progress=False)
    one = ReadStats()
    docs = list(iter_documents([a, b], opts, one, progress=False))
    assert table.column("docid").to_pylist() == [d.docid for d in docs] == ["x", "y", "z"]
    assert table.column("source").to_pylist() == [str(a), str(a), str(b)]
    assert table.column("line").to_pylist() == [1, 3, 3]
    assert stats.malformed == one.malformed and len(stats.malformed) == 3
    store = TokenStore(tmp_path)
    for i, d in enumerate(docs):
        want = tokenizer(d.text, add_special_tokens=False)["input_ids"]
        assert n_tok[i] == len(want)
        assert store.span(i, 0, int(n_tok[i])).tolist() == want
    assert not list(tmp_path.glob(".token_parts*"))  # the temporary directory is gone
    assert not (tmp_path / "tokens.bin").exists()
    assert store.skip_doc.tolist() == [2]  # z follows b's dropped duplicate y
    assert np.array_equal(store.doc_len, n_tok)


def _messy_shard(path: Path) -> Path:
    """Lines of every length and kind: a BOM, CRLF, blank and broken lines, records without
    an id (named <file>:<line>), a duplicate id, multi-byte text, no final newline."""
    rng = np.random.default_rng(4)
    lines = []
    for i in range(300):
        kind = i % 23
        if kind == 5:
            lines.append("")
        elif kind == 11:
            lines.append("{broken json")
        elif kind == 17:
            lines.append('{"content": "no id here ' + "é" * int(rng.integers(1, 50)) + '"}')
        else:
            docid = "d7" if kind == 19 else f"d{i}"
            words = " ".join(f"w{int(w)}" for w in rng.integers(0, 99, int(rng.integers(1, 400))))
            lines.append(f'{{"docid": "{docid}", "content": "{words}"}}')
    body = "\ufeff" + "\r\n".join(lines[:150]) + "\n" + "\n".join(lines[150:])
    path.write_bytes(body.encode("utf-8"))
    return path


def _parquet_shard(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"docid": f"p{i}" if i % 9 else None, "content": f"parquet row {i} " * (1 + i % 40)}
            for i in range(200)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=16)
    return path


def test_blocks_of_a_shard_hold_each_line_once(tmp_path: Path) -> None:
    from datasculpt.io.read import _iter_records, plan_blocks

    shard = _messy_shard(tmp_path / "m.jsonl")
    whole = list(_iter_records(shard))
    for block_bytes in (1, 97, 1000, 4096):
        blocks = plan_blocks([shard], block_bytes)
        assert len(blocks) == -(-shard.stat().st_size // block_bytes)
        seen, base = [], 0
        for b in blocks:
            got = list(_iter_records(shard, b))
            seen += [(line + base, rec, prob) for line, rec, prob in got]
            base += max((line for line, _, _ in got), default=0)
        assert seen == whole, block_bytes
    pq_shard = _parquet_shard(tmp_path / "p.parquet")
    blocks = plan_blocks([pq_shard], 1500)
    assert len(blocks) > 3
    per_block = [list(_iter_records(pq_shard, b)) for b in blocks]
    # a block is whole row groups (16 rows), its base the rows of the blocks before it
    assert [b.line_base for b in blocks] == np.cumsum([0, *map(len, per_block[:-1])]).tolist()
    assert all(b.line_base % 16 == 0 for b in blocks)
    rows = [(line + b.line_base, rec, prob) for b, got in zip(blocks, per_block, strict=True)
            for line, rec, prob in got]
    assert rows == list(_iter_records(pq_shard)) and len(rows) == 200


@pytest.mark.parametrize("block_bytes", [700, 5000])
def test_blocked_reading_writes_the_same_store(tmp_path: Path, block_bytes: int) -> None:
    shards = [_messy_shard(tmp_path / "a.jsonl"), _parquet_shard(tmp_path / "b.parquet"),
              _messy_shard(tmp_path / "c.jsonl")]  # c repeats a's ids: all duplicates
    opts = ReadOptions()
    runs = {}
    for name, size in (("whole", 1 << 30), ("blocks", block_bytes)):
        out = tmp_path / name
        out.mkdir()
        table, n_tok, stats, _ = read_and_tokenize(shards, opts, "default", 64, out,
                                                   LocalExecutor(), progress=False,
                                                   block_bytes=size)
        runs[name] = (table, n_tok, stats, out)
    (c1, n1, s1, o1), (c2, n2, s2, o2) = runs["whole"], runs["blocks"]
    one = ReadStats()
    docs = list(iter_documents(shards, opts, one, progress=False))
    ids = c2.column("docid").to_pylist()
    assert c1.column("docid").to_pylist() == ids == [d.docid for d in docs]
    assert (c1.column("line").to_pylist() == c2.column("line").to_pylist()
            == [d.line for d in docs])
    assert (c1.column("source").to_pylist() == c2.column("source").to_pylist()
            == [d.source for d in docs])
    assert len(c2.parts) > len(c1.parts)  # one part per block that kept documents
    assert any(d.startswith(str(shards[0])) for d in ids)  # id-less: <file>:<line>
    assert s1.malformed == s2.malformed == one.malformed
    assert s1.records == s2.records == one.records
    assert np.array_equal(n1, n2)
    assert (o1 / "offsets.npy").read_bytes() == (o2 / "offsets.npy").read_bytes()
    # the parts differ with the cut; the documents' ids read through them do not
    s1, s2 = TokenStore(o1), TokenStore(o2)
    assert len(s2.files) > len(s1.files) and s1.skip_doc.size and s2.skip_doc.size
    total = int(s1.offsets[-1])
    assert s1.tokens(0, total).tobytes() == s2.tokens(0, total).tobytes()
    assert not (o1 / "tokens.bin").exists()  # no merged copy
