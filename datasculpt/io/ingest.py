"""Read + tokenize, one input shard (or block of a large one) per task, merged in input order.

Shards larger than the block size are cut into blocks (byte ranges of plain JSONL, row groups
of Parquet; ``plan_blocks``). Each task checks its block's records (``check_records``: nothing
that depends on other records), tokenizes every candidate into a part file and returns the
candidates' metadata. The merge then walks the blocks in input order, numbers the lines of
byte-range blocks within their shard and applies the checks that depend on earlier records
(``Admission``: duplicate ids, vector dimension). It copies no ids: the part files become the
token store as they are (``token_store``), the ids of dropped candidates stepped over. The same
tasks and the same merge run under every executor, so ``documents.parquet``, ``offsets.npy``
and the store's files are the same bytes under local and Ray; the documents and their ids do
not depend on the block size either (only how the ids are cut into parts). A document's global
index is its position in that merge.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from datasculpt.errors import InputError
from datasculpt.executors import Executor
from datasculpt.io.admission import Admission
from datasculpt.io.doc_table import (
    DOC_PARTS,
    DocTable,
    DocTableWriter,
    read_ipc,
    shard_runs,
    write_ipc,
)
from datasculpt.io.read import (
    Block,
    ReadOptions,
    ReadStats,
    check_records,
    malformed_record,
    plan_blocks,
)
from datasculpt.io.token_store import (
    LEGACY_TOKENS,
    PARTS_DIR,
    TokenWriter,
    store_stats,
    write_offsets,
    write_parts,
)
from datasculpt.io.write import atomic_dir
from datasculpt.progress import progress_bar


@dataclass
class ShardPart:
    """What one task found in one block: its problems, and where its candidates are.

    The candidates' metadata (in line order) is an Arrow file beside the block's token part
    (``meta_path``: docid or null, line, n_tokens, vector problem, vector dimension, label),
    so what travels back to the driver is small whatever the block holds. Lines are the
    shard's, or the block's own (from 1) when its ``line_base`` is unknown; ``n_lines`` then
    moves the next block of the shard along."""

    block: Block
    records: int
    problems: list[tuple[int, str]]  # (line, reason) of records that are no candidates
    candidates: int
    tokens_path: str
    meta_path: str
    n_lines: int = 0


def _prefetched(items: Iterator[Any], depth: int = 256) -> Iterator[Any]:
    """``items``, produced on a background thread.

    Reading and JSON parsing are Python and hold the GIL; the tokenizer is Rust and releases
    it for a batch. Overlapped, the two keep both of a small machine's cores busy instead of
    taking turns. The order is the producer's, so nothing downstream changes.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()
    failed: list[BaseException] = []

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer is gone

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            failed.append(exc)
        put(done)

    thread = threading.Thread(target=produce, name="datasculpt-read", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield item
    finally:
        stop.set()
        thread.join()
    if failed:
        raise failed[0]


def ingest_block(index: int, *, blocks: list[Block], paths: list[Path], opts: ReadOptions,
                 tokenizer: str, batch_size: int, part_dir: str, progress: bool) -> ShardPart:
    """Check and tokenize one block into ``part_dir`` (an executor task)."""
    from datasculpt.tokenizer_cache import load_run_tokenizer

    block = blocks[index]
    tok = load_run_tokenizer(tokenizer)
    path = Path(part_dir) / f"part-{index:06d}.bin"
    part = ShardPart(block, 0, [], 0, str(path), str(Path(part_dir) / f"cand-{index:06d}.arrow"))
    lines: list[int] = []
    docids: list[str | None] = []
    labels: list[str] | None = [] if opts.label_key else None
    vector_problems: list[str | None] = []
    vector_dims: list[int | None] = []
    source = Path(paths[block.file_no])
    bar = progress_bar(progress, desc=f"tokenize {source.name}", unit="doc", leave=False)
    with open(path, "wb") as fh:
        writer = TokenWriter(fh, tok, batch_size, bar)
        try:
            for line, cand, problem in _prefetched(check_records(source, opts, block)):
                part.records += 1
                part.n_lines = max(part.n_lines, line)
                if cand is None:
                    part.problems.append((line, problem or "malformed"))
                    continue
                lines.append(line)
                docids.append(cand.docid)
                if labels is not None:
                    labels.append(cand.label or "")
                vector_problems.append(cand.vector_problem)
                vector_dims.append(None if cand.vector is None else int(cand.vector.size))
                writer.add(cand.text)
            n_tokens = writer.lengths()
        finally:
            writer.close()
    bar.close()
    part.candidates = len(lines)
    columns = {"docid": pa.array(docids, type=pa.string()),
               "line": pa.array(lines, type=pa.int64()),
               "n_tokens": pa.array(n_tokens, type=pa.int64()),
               "vector_problem": pa.array(vector_problems, type=pa.string()),
               "vector_dim": pa.array(vector_dims, type=pa.int64())}
    if labels is not None:
        columns["label"] = pa.array(labels, type=pa.string())
    write_ipc(part.meta_path, pa.table(columns))
    return part


class _Skips:
    """The ``(document, skipped)`` rows of the store (``token_store``): where the ids of
    dropped candidates make a document's position in the parts differ from its offset."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.skipped = 0  # ids of dropped candidates so far, in the listed parts
        self.last = 0  # the skip of the last document with a row (or none)

    def add(self, first_doc: int, n_tokens: np.ndarray, keep: np.ndarray) -> None:
        """One listed part (at least one candidate kept) whose documents are numbered from
        ``first_doc``."""
        if keep.all():
            if self.skipped != self.last:
                self.rows.append(np.asarray([[first_doc, self.skipped]], dtype=np.int64))
                self.last = self.skipped
            return
        dropped = np.where(keep, 0, n_tokens)
        before = self.skipped + np.cumsum(dropped) - dropped  # dropped ids before each candidate
        skip = before[keep]
        changed = skip != np.concatenate(([self.last], skip[:-1]))
        docs = first_doc + np.flatnonzero(changed)
        self.rows.append(np.stack([docs, skip[changed]], axis=1).astype(np.int64))
        self.last = int(skip[-1])
        self.skipped += int(dropped.sum())

    def array(self) -> np.ndarray:
        return np.concatenate(self.rows) if self.rows else np.zeros((0, 2), dtype=np.int64)


def read_and_tokenize(paths: list[Path], opts: ReadOptions, tokenizer: str, batch_size: int,
                      out_dir: Path, executor: Executor, progress: bool = True,
                      block_bytes: int = 1 << 28,
                      ) -> tuple[DocTable, np.ndarray, ReadStats, dict[str, Any]]:
    """The read + tokenize stage: the documents' metadata in input order (``doc_parts/``),
    every document's token count, the read stats, and the token store written into
    ``out_dir``. The output does not depend on ``block_bytes`` (nor on the executor): only
    how the work is cut."""
    t0 = time.perf_counter()
    stats = ReadStats(files=[str(p) for p in paths])
    blocks = plan_blocks(paths, block_bytes)
    # the tasks write their parts where the store will be: it is renamed into place, not copied
    with atomic_dir(out_dir / PARTS_DIR) as part_dir, \
            atomic_dir(out_dir / DOC_PARTS) as doc_dir:
        parts = executor.map(ingest_block, range(len(blocks)), blocks=blocks, paths=paths,
                             opts=opts, tokenizer=tokenizer, batch_size=batch_size,
                             part_dir=str(part_dir),
                             progress=progress and executor.task_progress)
        docs = DocTableWriter(doc_dir, stats.files, opts.label_key)
        # a hash match is rechecked against the first occurrence's id, read from its part
        admission = Admission(docs.first_of)
        lengths: list[np.ndarray] = []
        listed: list[tuple[str, int]] = []
        skips = _Skips()
        line_offset, file_no = 0, -1
        for index, part in enumerate(parts):
            if part.block.file_no != file_no:
                line_offset, file_no = 0, part.block.file_no
            offset = line_offset if part.block.line_base is None else 0
            first_doc = docs.rows
            meta = read_ipc(part.meta_path)
            keep = _merge_part(index, part, meta, offset, opts, stats, admission, docs)
            n_tokens = meta.column("n_tokens").to_numpy()
            del meta
            Path(part.meta_path).unlink()
            line_offset += part.n_lines
            path = Path(part.tokens_path)
            if not keep.any():  # no document's ids in it: not part of the store
                path.unlink()
                continue
            skips.add(first_doc, n_tokens, keep)
            listed.append((path.name, int(n_tokens.sum())))
            lengths.append(n_tokens[keep])
        write_parts(part_dir, listed, skips.array())
        docs.close()
    (out_dir / LEGACY_TOKENS).unlink(missing_ok=True)  # a layout-1 store's merged copy
    n_tokens = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = write_offsets(out_dir, n_tokens)
    return (DocTable(out_dir), n_tokens, stats,
            store_stats(n_tokens, offsets, time.perf_counter() - t0))


def _merge_part(index: int, part: ShardPart, meta: Any, offset: int, opts: ReadOptions,
                stats: ReadStats, admission: Admission, docs: DocTableWriter) -> np.ndarray:
    """Admit one block's candidates (``meta``) in line order (their lines moved by
    ``offset`` to the shard's), interleaved with its problems exactly as a single pass over
    the shard meets them, and write the admitted ones as the block's part of the documents'
    table; returns which candidates became documents. Its lists live for one block."""
    file_no = part.block.file_no
    source = stats.files[file_no]
    stats.records += part.records
    keep = np.zeros(part.candidates, dtype=bool)
    line_arr = meta.column("line").to_numpy() + offset
    lines = line_arr.tolist()
    docids = [d or f"{source}:{line}"
              for d, line in zip(meta.column("docid").to_pylist(), lines, strict=True)]
    admitted = admission.admit_block(source, lines, docids,
                                     meta.column("vector_problem").to_pylist(),
                                     meta.column("vector_dim").to_pylist())
    problems = ((line + offset, reason) for line, reason in part.problems)
    pending = next(problems, None)
    for i, (line, problem) in enumerate(zip(lines, admitted, strict=True)):
        while pending is not None and pending[0] < line:
            malformed_record(stats, opts, source, *pending)
            pending = next(problems, None)
        if problem is not None:
            malformed_record(stats, opts, source, line, problem)
            continue
        keep[i] = True
    while pending is not None:
        malformed_record(stats, opts, source, *pending)
        pending = next(problems, None)
    stats.documents += int(keep.sum())
    kept = np.flatnonzero(keep)
    labels = (meta.column("label").take(pa.array(kept)).to_pylist()
              if opts.label_key else None)
    docs.add(index, file_no, [docids[i] for i in kept.tolist()], line_arr[kept],
             meta.column("n_tokens").to_numpy()[kept], labels)
    return keep


def document_blocks(sources: list[str], files: list[str]) -> list[tuple[int, int, int]]:
    """``(file_no, first row, rows)`` per input shard that kept documents: a shard's documents
    are consecutive rows of ``documents.parquet``."""
    file_no = {f: i for i, f in enumerate(files)}
    return shard_runs((file_no[src], 1) for src in sources)


def _document_lines(run_dir: Path, first: int, count: int) -> np.ndarray:
    """The ``line`` column of rows ``[first, first + count)``, reading only the row groups
    that hold them (a task reads its own shard's rows, not the corpus's)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(run_dir / "documents.parquet")
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    starts = np.concatenate(([0], np.cumsum(sizes)))
    groups = [g for g in range(len(sizes)) if starts[g] < first + count and starts[g + 1] > first]
    col = pf.read_row_groups(groups, columns=["line"]).column(0).to_numpy()
    lo = first - int(starts[groups[0]])
    return col[lo : lo + count]


def document_texts(block: tuple[int, int, int], *, paths: list[Path], opts: ReadOptions,
                   run_dir: str) -> Iterator[dict[str, Any]]:
    """``{"row", "text"}`` for every document of one input shard (an executor reader): the
    shard is read again and the records ``documents.parquet`` kept are picked by line, so a
    row lands at its global index wherever the reader runs."""
    file_no, first, count = block
    lines = _document_lines(Path(run_dir), first, count).tolist()
    k = 0
    for line, cand, _ in check_records(Path(paths[file_no]), opts):
        if k == count:
            break
        if cand is not None and line == lines[k]:
            yield {"row": first + k, "text": cand.text}
            k += 1
    if k != count:
        raise InputError(f"{paths[file_no]} changed since it was read ({k} of {count} "
                         "documents found); rerun with overwrite=true")
