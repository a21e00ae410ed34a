"""Stream documents out of JSONL (plain, gzip, zstd) and Parquet shards.

Nothing is dropped silently: every record is either a document or a malformed entry with its
``file:line`` and reason, and ``strict=true`` turns the first malformed record into an error.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.errors import InputError
from datasculpt.io.admission import Admission, IdLog
from datasculpt.progress import progress_bar

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = JSONL_SUFFIXES + PARQUET_SUFFIXES
_BOM = b"\xef\xbb\xbf"
_ADMIT_BATCH = 4096  # records read ahead of the documents yielded: one admission call each


@dataclass(frozen=True)
class ReadOptions:
    text_key: str = "content"
    id_key: str = "docid"
    label_key: str | None = None
    vector_key: str | None = None
    strict: bool = False


@dataclass
class Corpus:
    """Documents in read order; this order is the row order of every later artifact."""

    docids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    vectors: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.docids)

    def add(self, doc: Document, keep_text: bool = True) -> None:
        self.docids.append(doc.docid)
        self.sources.append(doc.source)
        self.lines.append(doc.line)
        if keep_text:
            self.texts.append(doc.text)
        if self.labels is not None:
            self.labels.append(doc.label or "")
        if self.vectors is not None and doc.vector is not None:
            self.vectors.append(doc.vector)


@dataclass
class ReadStats:
    files: list[str] = field(default_factory=list)
    records: int = 0
    documents: int = 0
    malformed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, max_listed: int = 1000) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for m in self.malformed:
            key = m["reason"].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "files": self.files,
            "records": self.records,
            "documents": self.documents,
            "malformed": len(self.malformed),
            "malformed_by_reason": reasons,
            "malformed_records": self.malformed[:max_listed],
            "malformed_listed": min(len(self.malformed), max_listed),
            "all_malformed": self.malformed,
        }


def _has_supported_suffix(path: str) -> bool:
    return path.lower().endswith(SUPPORTED)


def resolve_inputs(spec: str) -> list[Path]:
    """A file, a directory (searched recursively for shards) or a glob, in sorted order."""
    path = os.path.expanduser(str(spec))
    if os.path.isdir(path):
        found = sorted(
            str(p) for p in Path(path).rglob("*") if p.is_file() and _has_supported_suffix(p.name)
        )
        if not found:
            raise InputError(f"no input shards ({', '.join(SUPPORTED)}) under directory {spec}")
    elif os.path.isfile(path):
        if not _has_supported_suffix(path):
            raise InputError(f"unsupported input format: {spec} (expected {', '.join(SUPPORTED)})")
        found = [path]
    elif glob.has_magic(path):
        found = sorted(p for p in glob.glob(path, recursive=True)
                       if os.path.isfile(p) and _has_supported_suffix(p))
        if not found:
            raise InputError(f"no input shards match {spec}")
    else:
        raise InputError(f"input not found: {spec}")
    for p in found:
        if not os.access(p, os.R_OK):
            raise InputError(f"input not readable: {p}")
    return [Path(p) for p in found]


def _zstd_lines(path: Path) -> Iterator[bytes]:
    """Lines of a zstd shard; a cut-short frame raises instead of ending quietly.

    zstandard's stream reader returns a clean EOF when the input stops mid-frame, which would
    drop the tail of a truncated shard without a trace, so frames are decoded by hand here.
    """
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    pending = b""
    in_frame = False
    with open(path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            while chunk:
                in_frame = True
                pending += dobj.decompress(chunk)
                chunk = b""
                if dobj.eof:
                    chunk, in_frame = dobj.unused_data, False
                    dobj = dctx.decompressobj()
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
    if in_frame:
        raise EOFError("zstd stream ended before the end of its frame")
    if pending:
        yield pending


@dataclass(frozen=True)
class Block:
    """The part of one input shard that one read task reads.

    The whole shard (``stop`` None); bytes ``[start, stop)`` of a plain JSONL shard, meaning
    the lines that begin there; or row groups ``[start, stop)`` of a Parquet shard.
    ``line_base`` is the number of lines or rows before the block when known without reading
    (None for a byte range: the merge counts the lines of the blocks before it).
    """

    file_no: int
    start: int = 0
    stop: int | None = None
    line_base: int | None = 0


def plan_blocks(paths: list[Path], block_bytes: int) -> list[Block]:
    """Blocks of about ``block_bytes`` for the shards larger than that, in input order; a
    compressed JSONL shard is read whole (its stream has no seekable line boundaries)."""
    blocks: list[Block] = []
    for file_no, path in enumerate(paths):
        size = os.path.getsize(path)
        name = path.name.lower()
        if size <= block_bytes or not name.endswith((".jsonl", ".parquet")):
            blocks.append(Block(file_no))
        elif name.endswith(".jsonl"):
            n = -(-size // block_bytes)
            cuts = [size * j // n for j in range(n + 1)]
            blocks += [Block(file_no, a, b, None) for a, b in zip(cuts, cuts[1:], strict=False)]
        else:
            blocks += _parquet_blocks(file_no, path, block_bytes)
    return blocks


def _parquet_blocks(file_no: int, path: Path, block_bytes: int) -> list[Block]:
    """Consecutive row groups of about ``block_bytes`` (uncompressed) each."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception:  # reported, with the reason, by the task that reads it whole
        return [Block(file_no)]
    blocks: list[Block] = []
    start = base = rows = size = 0
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).total_byte_size
        rows += meta.row_group(g).num_rows
        if size >= block_bytes or g == meta.num_row_groups - 1:
            blocks.append(Block(file_no, start, g + 1, base))
            start, base, rows, size = g + 1, base + rows, 0, 0
    return blocks or [Block(file_no)]


def _byte_range_lines(path: Path, start: int, stop: int) -> Iterator[bytes]:
    """The lines of a plain file that begin in ``[start, stop)``: a line that begins before
    ``start`` belongs to the block before, whichever block its end falls in."""
    with open(path, "rb") as fh:
        if start > 0:
            fh.seek(start - 1)
            fh.readline()  # the rest of the line the byte before ``start`` belongs to
        pos = fh.tell()
        while pos < stop:
            raw = fh.readline()
            if not raw:
                return
            pos += len(raw)
            yield raw


def _raw_lines(path: Path, block: Block | None = None) -> Iterator[bytes]:
    if block is not None and block.stop is not None:
        yield from _byte_range_lines(path, block.start, block.stop)
        return
    name = path.name.lower()
    if name.endswith((".zst", ".zstd")):
        yield from _zstd_lines(path)
        return
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        yield from fh


def _iter_jsonl(path: Path, block: Block | None = None) -> Iterator[tuple[int, Any, str | None]]:
    """``(line, record, None)`` or ``(line, None, reason)`` for every line of a JSONL shard
    (or of a block of it, numbered from 1 inside the block)."""
    line_no = 0
    first = block is None or block.start == 0
    try:
        for line_no, raw in enumerate(_raw_lines(path, block), start=1):  # noqa: B007
            raw = raw.rstrip(b"\r\n")
            if line_no == 1 and first and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if not raw.strip():
                yield line_no, None, "blank line"
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, None, f"invalid UTF-8: byte {exc.start}"
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line_no, None, f"bad JSON: {exc.msg} at column {exc.colno}"
                continue
            except RecursionError:
                yield line_no, None, "bad JSON: nested too deeply"
                continue
            yield line_no, record, None
    except Exception as exc:  # EOFError, OSError, zstandard.ZstdError: cut short or corrupt
        # Everything before the damage was read; say where the rest of the shard was lost.
        reason = f"unreadable after this point: {exc.__class__.__name__}: {exc}"
        yield line_no + 1, None, reason.splitlines()[0][:300]


def _iter_parquet(path: Path, block: Block | None = None
                  ) -> Iterator[tuple[int, Any, str | None]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        yield 1, None, f"unreadable Parquet file: {exc.__class__.__name__}: {exc}"[:300]
        return
    groups = None if block is None or block.stop is None else list(range(block.start,
                                                                           block.stop))
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=4096, row_groups=groups):
            for record in batch.to_pylist():
                row += 1
                yield row, record, None
    except Exception as exc:
        yield row + 1, None, f"unreadable after this point: {exc.__class__.__name__}: {exc}"[:300]


def _iter_records(path: Path, block: Block | None = None
                  ) -> Iterator[tuple[int, Any, str | None]]:
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return _iter_parquet(path, block)
    return _iter_jsonl(path, block)


def _text_of(record: dict[str, Any], text_key: str) -> tuple[str | None, str | None]:
    keys = (text_key, "text") if text_key == "content" else (text_key,)
    for key in keys:
        if key in record:
            value = record[key]
            if not isinstance(value, str):
                return None, f"text field {key!r} is not a string"
            if not value.strip():
                return None, "empty text"
            return value, None
    return None, f"missing text field {' or '.join(repr(k) for k in keys)}"


def _vector_of(value: Any) -> np.ndarray | None:
    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if vec.ndim != 1 or vec.size == 0 or not np.isfinite(vec).all():
        return None
    return vec


@dataclass(frozen=True)
class Document:
    docid: str
    source: str
    line: int
    text: str
    label: str | None
    vector: np.ndarray | None


@dataclass(frozen=True)
class Candidate:
    """A record that passed the checks that need nothing but the record itself."""

    line: int
    docid: str | None  # None: the record has no id and gets "<file>:<line>" (see check_records)
    text: str
    label: str | None
    vector: np.ndarray | None
    vector_problem: str | None  # reported only if the record is not a duplicate first


def check_records(path: Path, opts: ReadOptions, block: Block | None = None
                  ) -> Iterator[tuple[int, Candidate | None, str | None]]:
    """``(line, candidate, None)`` or ``(line, None, reason)`` for every record of one shard,
    or of one block of it.

    Every check here looks at one record only, so shards can be checked anywhere, in any
    order (one task per shard or block); what depends on the records before it (duplicate
    ids, vector dimensions) is ``io.admission.Admission``'s, in input order. In a block whose
    ``line_base`` is unknown, lines count from the block's first and an id-less record's
    docid is left None, for the merge to name with its line in the shard.
    """
    source = str(path)
    base = 0 if block is None else block.line_base
    for line, record, problem in _iter_records(path, block):
        if base:
            line += base
        if problem is not None:
            yield line, None, problem
            continue
        if not isinstance(record, dict):
            yield line, None, f"not an object: {type(record).__name__}"
            continue
        text, problem = _text_of(record, opts.text_key)
        if text is None:
            yield line, None, problem or "no text"
            continue
        raw_id = record.get(opts.id_key)
        docid = str(raw_id) if raw_id is not None and raw_id != "" else (
            None if base is None else f"{source}:{line}")
        vec, vec_problem = None, None
        if opts.vector_key:
            vec = _vector_of(record.get(opts.vector_key))
            if vec is None:
                vec_problem = f"missing or invalid vector field {opts.vector_key!r}"
        label = None
        if opts.label_key:
            raw_label = record.get(opts.label_key)
            label = "" if raw_label is None else str(raw_label)
        yield line, Candidate(line, docid, text, label, vec, vec_problem), None


def malformed_record(stats: ReadStats, opts: ReadOptions, source: str, line: int,
                     reason: str) -> None:
    """Record a malformed record, or stop the run on it under ``strict=true``."""
    if opts.strict:
        raise InputError(f"malformed record at {source}:{line}: {reason} (strict=true)")
    stats.malformed.append({"file": source, "line": line, "reason": reason})


def iter_documents(
    paths: list[Path], opts: ReadOptions, stats: ReadStats, progress: bool = True
) -> Iterator[Document]:
    """Stream the documents of ``paths`` in a fixed order, recording every malformed record.

    The order and the rules are deterministic, so a second pass over unchanged shards yields
    the same documents: later stages re-stream texts instead of holding them in memory.
    Records are admitted ``_ADMIT_BATCH`` at a time (one hash and lookup call per batch), and
    reported and yielded in their order.
    """
    stats.files = [str(p) for p in paths]
    ids = IdLog(stats.files)
    admission = Admission(ids)
    bar = progress_bar(progress, desc="read", unit="rec", leave=False)
    for file_no, path in enumerate(paths):
        source = str(path)
        batch: list[tuple[int, Candidate | None, str | None]] = []
        records = check_records(path, opts)
        while True:
            batch.clear()
            for item in records:
                batch.append(item)
                if len(batch) == _ADMIT_BATCH:
                    break
            if not batch:
                break
            cands = [c for _, c, _ in batch if c is not None]
            admitted = iter(admission.admit_block(
                source, [c.line for c in cands], [c.docid or "" for c in cands],
                [c.vector_problem for c in cands],
                [None if c.vector is None else c.vector.size for c in cands]))
            for line, cand, problem in batch:
                stats.records += 1
                bar.update(1)
                if cand is not None:
                    problem = next(admitted)
                if problem is not None:
                    malformed_record(stats, opts, source, line, problem)
                    continue
                assert cand is not None and cand.docid is not None
                ids.append(cand.docid, file_no, line)
                stats.documents += 1
                yield Document(cand.docid, source, line, cand.text, cand.label, cand.vector)
    bar.close()
    if stats.malformed:
        log.warning("read: %d malformed records (listed in the report)", len(stats.malformed))


def read_corpus(
    spec: str, opts: ReadOptions, progress: bool = True, keep_text: bool = True
) -> tuple[Corpus, ReadStats]:
    """Read every shard of ``spec`` into memory (texts only when ``keep_text``)."""
    stats = ReadStats()
    corpus = Corpus(labels=[] if opts.label_key else None, vectors=[] if opts.vector_key else None)
    for doc in iter_documents(resolve_inputs(spec), opts, stats, progress):
        corpus.add(doc, keep_text)
    return corpus, stats


@dataclass(frozen=True)
class Source:
    """The input shards and how to read them; ``stream()`` re-reads them in the same order,
    so a stage that needs the texts again (embed, judge) streams them instead of holding
    them. ``spec`` is what the user gave (``input``), or the embedded sample's path."""

    spec: str
    paths: list[Path]
    opts: ReadOptions
    progress: bool

    def stream(self) -> Iterator[Document]:
        return iter_documents(self.paths, self.opts, ReadStats(), self.progress)


def source_of(cfg: Any) -> Source:
    """The run's input from its config: ``input``, or the embedded sample (with its label
    key) when none is given."""
    spec, label_key = cfg.input, cfg.label_key
    if spec is None:
        from datasculpt.data import SAMPLE_LABEL_KEY, SAMPLE_PATH

        spec, label_key = str(SAMPLE_PATH), label_key or SAMPLE_LABEL_KEY
    opts = ReadOptions(text_key=cfg.text_key, id_key=cfg.id_key, label_key=label_key,
                       vector_key=cfg.embed.vector_key, strict=bool(cfg.strict))
    return Source(str(spec), resolve_inputs(str(spec)), opts, bool(cfg.report.progress))
