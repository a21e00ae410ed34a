"""doc_table: the documents' metadata as Arrow parts, read back by memory map."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasculpt.io.doc_table import (
    DOC_PARTS,
    PARQUET_ROW_GROUP,
    DocTable,
    DocTableWriter,
    ids_of,
)


def _write(run: Path, sizes: list[int], files: list[str], label_key: str | None,
           seed: int = 0) -> dict[str, list]:
    """Parts of ``sizes`` rows (file of part i: i % len(files)) and the whole table's columns."""
    rng = np.random.default_rng(seed)
    (run / DOC_PARTS).mkdir(parents=True)
    writer = DocTableWriter(run / DOC_PARTS, files, label_key)
    want: dict[str, list] = {"docid": [], "source": [], "line": [], "n_tokens": []}
    if label_key:
        want[label_key] = []
    row = 0
    for i, size in enumerate(sizes):
        ids = [f"doc-{row + j}-é" for j in range(size)]
        lines = np.arange(1, size + 1, dtype=np.int64) * 2
        n_tok = rng.integers(1, 5000, size)
        labels = [f"topic{v}" for v in rng.integers(0, 7, size)] if label_key else None
        writer.add(i, i % len(files), ids, lines, n_tok, labels)
        want["docid"] += ids
        want["source"] += [files[i % len(files)]] * size
        want["line"] += lines.tolist()
        want["n_tokens"] += n_tok.tolist()
        if label_key:
            want[label_key] += labels
        row += size
    writer.close()
    return want


def test_documents_parquet_is_the_bytes_of_one_write(tmp_path: Path) -> None:
    # Over a row group's worth of rows, cut into parts that straddle the group boundary: the
    # streamed file must be what pq.write_table of the whole table writes.
    sizes = [700_000, 1, 400_000, 0, 300_000]
    assert sum(sizes) > PARQUET_ROW_GROUP
    want = _write(tmp_path, sizes, ["/data/a.jsonl", "/data/b.jsonl"], "domain")
    table = DocTable(tmp_path)
    assert len(table) == sum(sizes) and len(table.parts) == 4  # an empty block: no part
    table.write_parquet(tmp_path / "streamed.parquet")
    columns = {**want, "line": np.asarray(want["line"], dtype=np.int64),
               "n_tokens": np.asarray(want["n_tokens"], dtype=np.int64)}
    pq.write_table(pa.table(columns), tmp_path / "whole.parquet")
    assert pq.ParquetFile(tmp_path / "whole.parquet").metadata.num_row_groups == 2
    assert ((tmp_path / "streamed.parquet").read_bytes()
            == (tmp_path / "whole.parquet").read_bytes())


def test_columns_ids_and_rows_read_back(tmp_path: Path) -> None:
    files = ["/data/a.jsonl", "/data/b.jsonl", "/data/c.jsonl"]
    # parts of files 0, 1, 2, 0: file 0's last part is a shard of its own in file_rows
    want = _write(tmp_path, [5, 3, 4, 6], files, "topic", seed=1)
    table = DocTable(tmp_path)
    assert table.column("docid").to_pylist() == want["docid"]
    assert table.column("source").to_pylist() == want["source"]
    assert table.column("line").to_pylist() == want["line"]
    assert table.n_tokens().tolist() == want["n_tokens"]
    assert table.file_rows() == [(0, 0, 5), (1, 5, 3), (2, 8, 4), (0, 12, 6)]
    rows = np.random.default_rng(2).integers(0, len(table), 50)
    assert table.ids(rows) == [want["docid"][r] for r in rows]
    assert table.ids(np.zeros(0, dtype=np.int64)) == []
    assert ids_of(table, rows) == ids_of(np.asarray(want["docid"], dtype=object), rows)
    codes = table.label_codes()
    assert codes is not None and codes.dtype == np.int32
    labels = np.asarray(want["topic"])
    same = labels[:, None] == labels[None, :]  # equal labels, and only they, equal codes
    assert np.array_equal(codes[:, None] == codes[None, :], same)
    again = pickle.loads(pickle.dumps(table))  # a task opens the run's files itself
    assert len(pickle.dumps(table)) < 200 and again.ids(rows) == table.ids(rows)


def test_first_of_finds_any_written_document(tmp_path: Path) -> None:
    (tmp_path / DOC_PARTS).mkdir()
    writer = DocTableWriter(tmp_path / DOC_PARTS, ["a", "b"], None)
    writer.add(0, 0, ["x", "y"], np.array([1, 4]), np.array([3, 3]), None)
    writer.add(1, 1, ["z"], np.array([7]), np.array([2]), None)
    writer.add(2, 0, ["w", "v"], np.array([9, 10]), np.array([2, 1]), None)
    got = [writer.first_of(k) for k in (4, 0, 2, 1, 3)]
    assert got == [("v", "a", 10), ("x", "a", 1), ("z", "b", 7), ("y", "a", 4), ("w", "a", 9)]
    writer.close()
    assert DocTable(tmp_path).label_codes() is None


@pytest.mark.parametrize("label_key", [None, "topic"])
def test_a_run_reads_its_documents_from_the_parts(tmp_path: Path, label_key: str | None) -> None:
    from helpers import notes_corpus, run_pipeline

    out, report = run_pipeline(tmp_path, notes_corpus(30), label_key=label_key,
                               **{"pack.method": "bfd"})
    docs = pq.read_table(out / "documents.parquet")
    table = DocTable(out)
    assert table.column("docid").to_pylist() == docs.column("docid").to_pylist()
    assert table.column("source").to_pylist() == docs.column("source").to_pylist()
    assert docs.column_names[-1] == (label_key or "n_tokens")
    codes = table.label_codes()
    if label_key:
        topics = np.asarray(docs.column("topic").to_pylist())
        assert codes is not None
        assert np.array_equal(codes[:, None] == codes[None, :], topics[:, None] == topics)
        assert report["metrics"]["label_purity"] is not None
    else:
        assert codes is None
    assert not list(out.glob(f"{DOC_PARTS}/cand-*"))  # the tasks' candidate files are gone
    assert not list(out.glob(f".{DOC_PARTS}*"))  # no temporary folder left
