"""The training shards (issue 9): every row checked against an independent tokenization.

Nothing is decoded or trusted: each document is re-tokenized on its own with the run's
tokenizer, and every row's ``input_ids``, ``position_ids``, ``cu_seqlens``, ``seq_lengths``
and ``docids`` are rebuilt from ``sequences.jsonl`` spans and compared.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import check_contract, notes_corpus, read_sequences, run_pipeline, small_bpe_tokenizer

from datasculpt.io.token_store import TokenStore
from datasculpt.tokenize import load_tokenizer


def shard_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for f in sorted(glob.glob(str(out / "tokens" / "part-*.parquet"))):
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def check_shards(out: Path, docs: list[dict[str, str]], tok: Any, ctx_len: int,
                 eos_id: int | None) -> list[dict[str, Any]]:
    """Every row against the spans of ``sequences.jsonl`` and a fresh tokenization."""
    ids_of = {d["docid"]: tok(d["content"], add_special_tokens=False)["input_ids"] for d in docs}
    seqs = {s["seq_id"]: s for s in read_sequences(out / "sequences.jsonl")}
    rows = shard_rows(out)
    assert sorted(r["seq_id"] for r in rows) == sorted(seqs), "every seq_id exactly once"
    for row in rows:
        seq = seqs[row["seq_id"]]
        want, lengths = [], []
        for piece in seq["docs"]:
            full = ids_of[piece["docid"]]
            span = full[piece["start"] : piece["end"]]
            if eos_id is not None and piece["end"] == len(full):
                span = [*span, eos_id]
            want.extend(span)
            lengths.append(len(span))
        assert row["input_ids"] == want
        assert row["docids"] == [p["docid"] for p in seq["docs"]]
        assert row["seq_lengths"] == lengths
        assert row["cu_seqlens"] == [0, *np.cumsum(lengths).tolist()]
        assert row["position_ids"] == [i for n in lengths for i in range(n)]
        # The default cost model (datasculpt.balance): width 4096.
        assert row["cost"] == sum(n * n for n in lengths) + 12 * 4096 * sum(lengths)
        assert len(row["input_ids"]) == seq["n_tokens"] <= ctx_len
    return rows


def test_every_row_of_every_shard_matches_an_independent_tokenization(tmp_path: Path,
                                                                      tokenizer: Any) -> None:
    docs = notes_corpus()
    out, report = run_pipeline(tmp_path, docs, **{"output.shard_tokens": 1500})
    check_contract(out, ctx_len=256, append_eos=True)
    rows = check_shards(out, docs, tokenizer, 256, tokenizer.sep_token_id)
    stats = report["stages"]["shards"]
    files = sorted((out / "tokens").glob("part-*.parquet"))
    assert stats["shards"] == len(files) > 1  # several files, rows spread over them
    assert stats["rows"] == len(rows) == report["metrics"]["n_sequences"]
    assert stats["tokens"] == sum(len(r["input_ids"]) for r in rows)
    assert stats["shuffle"] is True
    assert [r["seq_id"] for r in rows] != sorted(r["seq_id"] for r in rows)  # shuffled
    # The token store is the tokenization the shards came from.
    store = TokenStore(out)
    for d, doc in enumerate(pq.read_table(out / "documents.parquet").column("docid").to_pylist()):
        content = next(x["content"] for x in docs if x["docid"] == doc)
        assert store.span(d, 0, int(store.doc_len[d])).tolist() == tokenizer(
            content, add_special_tokens=False)["input_ids"]


def test_unshuffled_shards_keep_pack_order_and_text_decodes_the_ids(tmp_path: Path,
                                                                    tokenizer: Any) -> None:
    docs = notes_corpus(12)
    out, _ = run_pipeline(tmp_path, docs, **{"output.shuffle": False, "output.text": True,
                                    "pack.method": "bfd", "report.semantic_metrics": False})
    rows = check_shards(out, docs, tokenizer, 256, tokenizer.sep_token_id)
    assert [r["seq_id"] for r in rows] == list(range(len(rows)))
    for r in rows:
        assert r["text"] == tokenizer.decode(r["input_ids"])
        assert ("[SEP]" in r["text"]) == (tokenizer.sep_token_id in r["input_ids"])
    assert any(tokenizer.sep_token_id in r["input_ids"] for r in rows)


def test_shards_use_the_run_tokenizer_not_the_encoders(tmp_path: Path, tokenizer: Any) -> None:
    docs = notes_corpus(18, seed=1)
    path = small_bpe_tokenizer(docs, tmp_path / "bpe")
    mine = load_tokenizer(str(path))
    out, _ = run_pipeline(tmp_path, docs, tokenizer=str(path), ctx_len=128)
    counts = pq.read_table(out / "documents.parquet").column("n_tokens").to_pylist()
    want = [len(mine(d["content"], add_special_tokens=False)["input_ids"]) for d in docs]
    assert counts == want
    assert counts != [len(tokenizer(d["content"], add_special_tokens=False)["input_ids"])
                      for d in docs]
    rows = check_shards(out, docs, mine, 128, mine.eos_token_id)
    assert max(max(r["input_ids"]) for r in rows) < len(mine)


def test_datasets_load_dataset_reads_the_shards(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out, report = run_pipeline(tmp_path, notes_corpus(15), **{"output.shard_tokens": 800})
    ds = datasets.load_dataset("parquet", data_files=str(out / "tokens" / "*.parquet"),
                               split="train")
    assert ds.num_rows == report["metrics"]["n_sequences"]
    assert set(ds.column_names) == {"seq_id", "input_ids", "position_ids", "cu_seqlens", "cost",
                                    "seq_lengths", "docids"}
    assert ds.features["input_ids"].feature.dtype == "int32"


def test_shards_follow_the_resume_rules(tmp_path: Path) -> None:
    docs = notes_corpus(15)
    out, first = run_pipeline(tmp_path, docs)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").iterdir()}
    _, again = run_pipeline(tmp_path, docs)
    assert again["stages"]["shards"]["reused"] is True
    assert {p.name: p.stat().st_mtime_ns for p in (out / "tokens").iterdir()} == before
    _, ordered = run_pipeline(tmp_path, docs, **{"output.shuffle": False})
    assert "reused" not in ordered["stages"]["shards"]
    assert [r["seq_id"] for r in shard_rows(out)] == list(range(len(shard_rows(out))))
    run_pipeline(tmp_path, docs, **{"output.tokens": False})
    assert not (out / "tokens").exists()
    assert not list(out.glob(".tokens*"))  # no temporary directory left behind
