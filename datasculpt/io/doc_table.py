"""The documents' metadata as columns on disk, one Arrow file per input block (``doc_parts/``).

A driver that kept docid, source, line and label as Python lists paid ~0.3 KB a document
(~300 GB at 1B). The merge of the tokenize stage writes each block's admitted documents as
an uncompressed Arrow IPC file instead, and every later stage reads them memory-mapped: the
ids are in the page cache, not on the driver's heap, and a stage reads the rows it needs
(the writer the ids of one chunk of pieces, the embed stage one shard's rows). The source
of a row is not stored per row: a part belongs to one input shard (``parts.json`` names it).

``documents.parquet``, the users' view of the same table, is written from the parts in
row groups of the size ``pq.write_table`` uses, so it is the same bytes as before.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from datasculpt.io.write import atomic_open, atomic_path

DOC_PARTS = "doc_parts"
PARTS_JSON = "parts.json"
# pq.write_table's default row group (pyarrow >= 15): writing the same groups from the parts
# gives documents.parquet the bytes a write of the whole table gives.
PARQUET_ROW_GROUP = 1 << 20


def write_ipc(path: str | Path, table: pa.Table) -> None:
    """An uncompressed Arrow IPC file: read back memory-mapped, without a copy."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_ipc(path: str | Path) -> pa.Table:
    """The table of an IPC file, its buffers in a memory map (the page cache, not the heap)."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def _schema(label_key: str | None) -> pa.Schema:
    fields = [("docid", pa.string()), ("line", pa.int64()), ("n_tokens", pa.int64())]
    if label_key:
        fields.append(("label", pa.string()))
    return pa.schema(fields)


class DocTableWriter:
    """Writes the admitted documents of each block, in input order, into ``directory``."""

    def __init__(self, directory: Path, files: list[str], label_key: str | None) -> None:
        self.directory = directory
        self.files = files
        self.label_key = label_key
        self.parts: list[dict[str, Any]] = []
        self._starts: list[int] = []  # the first row of each part
        self.rows = 0
        self._cache: tuple[int, pa.Table] | None = None

    def add(self, index: int, file_no: int, docids: list[str], lines: np.ndarray,
            n_tokens: np.ndarray, labels: list[str] | None) -> None:
        """The admitted documents of block ``index`` (a part with no rows is not written)."""
        if not docids:
            return
        columns: list[Any] = [pa.array(docids, type=pa.string()),
                              pa.array(lines, type=pa.int64()),
                              pa.array(n_tokens, type=pa.int64())]
        if self.label_key:
            columns.append(pa.array(labels if labels is not None else [""] * len(docids),
                                    type=pa.string()))
        name = f"docs-{index:06d}.arrow"
        write_ipc(self.directory / name,
                  pa.Table.from_arrays(columns, schema=_schema(self.label_key)))
        self.parts.append({"file": name, "file_no": file_no, "rows": len(docids)})
        self._starts.append(self.rows)
        self.rows += len(docids)

    def first_of(self, k: int) -> tuple[str, str, int]:
        """The id, shard and line of the ``k``-th document written (admission's recheck of a
        hash match: rare, so one part is read per call, the last one kept open)."""
        p = bisect.bisect_right(self._starts, k) - 1
        if self._cache is None or self._cache[0] != p:
            self._cache = (p, read_ipc(self.directory / self.parts[p]["file"]))
        table, row = self._cache[1], k - self._starts[p]
        return (table.column("docid")[row].as_py(), self.files[self.parts[p]["file_no"]],
                int(table.column("line")[row].as_py()))

    def close(self) -> None:
        self._cache = None
        with atomic_open(self.directory / PARTS_JSON) as fh:
            json.dump({"files": self.files, "label_key": self.label_key,
                       "parts": self.parts}, fh)


class DocTable:
    """The documents' metadata of a run, read from ``doc_parts/`` by memory map.

    It pickles as its run directory (an executor task opens the files where it runs)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        meta = json.loads((self.run_dir / DOC_PARTS / PARTS_JSON).read_text())
        self.files: list[str] = meta["files"]
        self.label_key: str | None = meta["label_key"]
        self.parts: list[dict[str, Any]] = meta["parts"]
        rows = [int(p["rows"]) for p in self.parts]
        self.starts = np.concatenate(([0], np.cumsum(rows, dtype=np.int64)))

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return DocTable, (str(self.run_dir),)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @cached_property
    def _tables(self) -> list[pa.Table]:
        return [read_ipc(self.run_dir / DOC_PARTS / p["file"]) for p in self.parts]

    def _source(self, p: int) -> pa.Array:
        src = pa.array([self.files[self.parts[p]["file_no"]]], type=pa.string())
        return src.take(pa.array(np.zeros(self.parts[p]["rows"], dtype=np.int64)))

    def batches(self) -> Iterator[pa.Table]:
        """Each part as the columns of ``documents.parquet`` (the label under its key)."""
        for p, table in enumerate(self._tables):
            columns = {"docid": table.column("docid"), "source": self._source(p),
                       "line": table.column("line"), "n_tokens": table.column("n_tokens")}
            if self.label_key:
                columns[self.label_key] = table.column("label")
            yield pa.table(columns)

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of every row (chunks in the memory maps; ``source`` is built)."""
        if name == "source":
            return pa.chunked_array([self._source(p) for p in range(len(self.parts))],
                                    type=pa.string())
        # the parts' chunks themselves: a list of ChunkedArrays would be converted value by
        # value (3 s for 10M rows)
        return pa.chunked_array([c for t in self._tables for c in t.column(name).chunks],
                                type=_schema(self.label_key).field(name).type)

    def n_tokens(self) -> np.ndarray:
        return self.column("n_tokens").to_numpy().astype(np.int64, copy=False)

    def ids(self, rows: np.ndarray) -> list[str]:
        """The docids of ``rows`` (any order), gathered part by part: a take over the
        chunked column would concatenate every part's ids first."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list[Any] = [None] * rows.size
        part = np.searchsorted(self.starts, rows, side="right") - 1
        order = np.argsort(part, kind="stable")
        bounds = np.flatnonzero(np.diff(part[order])) + 1
        for sel in np.split(order, bounds) if rows.size else ():
            p = int(part[sel[0]])
            got = self._tables[p].column("docid").take(pa.array(rows[sel] - self.starts[p]))
            for i, docid in zip(sel.tolist(), got.to_pylist(), strict=True):
                out[i] = docid
        return out

    def label_codes(self) -> np.ndarray | None:
        """The label of each row as an int32 code (equal labels, equal codes): what the
        purity metrics compare, at 4 bytes a row instead of a string object."""
        if not self.label_key:
            return None
        labels = self.column("label")
        values = pa.compute.unique(labels)
        return np.concatenate([
            pa.compute.index_in(chunk, value_set=values).to_numpy(zero_copy_only=False)
            for chunk in labels.chunks] or [np.zeros(0)]).astype(np.int32)

    def file_rows(self) -> list[tuple[int, int, int]]:
        """``(file_no, first row, rows)`` per input shard that kept documents: a shard's
        documents are consecutive rows."""
        return shard_runs((int(p["file_no"]), int(p["rows"])) for p in self.parts)

    def write_parquet(self, path: str | Path) -> None:
        """``documents.parquet``, streamed from the parts in ``pq.write_table``'s row groups."""
        import pyarrow.parquet as pq

        schema = None
        pending: list[pa.Table] = []
        held = 0
        with atomic_path(path) as tmp:
            writer: pq.ParquetWriter | None = None
            for batch in self.batches():
                if schema is None:
                    schema = batch.schema
                    writer = pq.ParquetWriter(tmp, schema)
                pending.append(batch)
                held += batch.num_rows
                while held >= PARQUET_ROW_GROUP:
                    group = pa.concat_tables(pending)
                    # one chunk per column, as a whole table's columns are: the writer cuts
                    # its pages per chunk, and other cuts would be other bytes
                    writer.write_table(  # type: ignore[union-attr]
                        group.slice(0, PARQUET_ROW_GROUP).combine_chunks())
                    rest = group.slice(PARQUET_ROW_GROUP)
                    pending, held = [rest], rest.num_rows
            if writer is None:
                writer = pq.ParquetWriter(tmp, self._empty_schema())
            if held:
                writer.write_table(pa.concat_tables(pending).combine_chunks())
            writer.close()

    def _empty_schema(self) -> pa.Schema:
        fields = [("docid", pa.string()), ("source", pa.string()), ("line", pa.int64()),
                  ("n_tokens", pa.int64())]
        if self.label_key:
            fields.append((self.label_key, pa.string()))
        return pa.schema(fields)


def shard_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``(file_no, first row, rows)`` from ``(file_no, rows)`` runs in row order, consecutive
    runs of one shard joined."""
    blocks: list[tuple[int, int, int]] = []
    row = 0
    for file_no, rows in runs:
        if blocks and blocks[-1][0] == file_no:
            f, first, count = blocks[-1]
            blocks[-1] = (f, first, count + rows)
        else:
            blocks.append((file_no, row, rows))
        row += rows
    return blocks


def doc_files(run_dir: Path) -> list[str]:
    """The parts' paths relative to ``run_dir`` (for the manifest)."""
    path = run_dir / DOC_PARTS / PARTS_JSON
    if not path.exists():
        return [f"{DOC_PARTS}/{PARTS_JSON}"]
    names = [p["file"] for p in json.loads(path.read_text())["parts"]]
    return [f"{DOC_PARTS}/{PARTS_JSON}", *(f"{DOC_PARTS}/{n}" for n in names)]



def ids_of(docids: Any, rows: np.ndarray) -> list[str]:
    """The docids of ``rows`` from a ``DocTable`` or any sequence of ids (tests, scripts)."""
    if isinstance(docids, DocTable):
        return docids.ids(rows)
    if isinstance(docids, np.ndarray):
        return docids[rows].tolist()
    return [docids[i] for i in np.asarray(rows).tolist()]
