"""Atomic artifact writers: a reader never sees a half-written file under its final name."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasculpt.progress import progress_bar
from datasculpt.types import Packing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def _jsonable(value: Any) -> Any:
    """JSON has no NaN/inf; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(_jsonable(obj), fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def write_jsonl(path: str | os.PathLike[str], rows: Sequence[Any]) -> None:
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(_jsonable(row), ensure_ascii=False))
            fh.write("\n")


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def write_parquet(path: str | os.PathLike[str], columns: dict[str, Any]) -> None:
    table = pa.table(columns)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class TextSource:
    """Token ids and character offsets of documents, re-tokenized on demand for the writer."""

    def __init__(self, texts: Sequence[str], tokenizer: Any) -> None:
        self.texts = texts
        self.tok = tokenizer
        self._doc = -1
        self._enc: Any = None

    def _encode(self, doc: int) -> Any:
        if doc != self._doc:  # a long document's pieces arrive one after another
            self._enc = self.tok(self.texts[doc], add_special_tokens=False,
                                 return_offsets_mapping=True)
            self._doc = doc
        return self._enc

    def span(self, doc: int, start: int, end: int) -> tuple[list[int], str]:
        enc = self._encode(doc)
        offsets = enc["offset_mapping"]
        text = self.texts[doc][offsets[start][0] : offsets[end - 1][1]]
        return list(enc["input_ids"][start:end]), text


def write_sequences(
    path: str | os.PathLike[str],
    packing: Packing,
    docids: Sequence[str],
    doc_len: np.ndarray,
    eos: int,
    clusters: np.ndarray | None = None,
    text_source: TextSource | None = None,
    separator: tuple[int, str] | None = None,
    with_text: bool = False,
    with_input_ids: bool = False,
    progress: bool = True,
) -> int:
    """Write ``sequences.jsonl`` per the output contract (DESIGN §6); returns the line count."""
    seq_tokens = packing.seq_tokens(doc_len, eos)
    heads = np.flatnonzero(np.concatenate(([True], packing.seq[1:] != packing.seq[:-1])))
    bounds = np.append(heads, packing.seq.size).tolist() if packing.seq.size else [0]
    doc, start, end = packing.doc.tolist(), packing.start.tolist(), packing.end.tolist()
    cl = clusters.tolist() if clusters is not None else None
    lens = np.asarray(doc_len).tolist()
    sep_id, sep_text = separator if separator is not None else (None, "\n\n")
    n_lines = 0
    with atomic_open(path) as fh:
        for i in progress_bar(progress, range(len(bounds) - 1), desc="write", unit="seq",
                              leave=False):
            lo, hi = bounds[i], bounds[i + 1]
            docs = [
                {"docid": docids[doc[j]], "start": start[j], "end": end[j],
                 "cluster": None if cl is None else cl[doc[j]]}
                for j in range(lo, hi)
            ]
            line: dict[str, Any] = {"seq_id": i, "n_tokens": int(seq_tokens[i]), "docs": docs}
            if (with_text or with_input_ids) and text_source is not None:
                ids: list[int] = []
                parts: list[str] = []
                for j in range(lo, hi):
                    span_ids, span_text = text_source.span(doc[j], start[j], end[j])
                    ids.extend(span_ids)
                    parts.append(span_text)
                    if eos and end[j] == lens[doc[j]]:
                        if sep_id is not None:
                            ids.append(sep_id)
                        parts.append(sep_text)
                    elif not eos and j < hi - 1:
                        parts.append("\n\n")
                if with_text:
                    line["text"] = "".join(parts)
                if with_input_ids:
                    line["input_ids"] = ids
            fh.write(json.dumps(line, ensure_ascii=False))
            fh.write("\n")
            n_lines += 1
    return n_lines
