"""Atomic artifact writers: a reader never sees a half-written file under its final name."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from json.encoder import encode_basestring as _encode_str  # json.dumps' own
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasculpt.progress import progress_bar
from datasculpt.types import Packing

_CHUNK = 1 << 18  # pieces whose ids sequences.jsonl's writer reads at once


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask can only be read by setting it


def public_mode(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Give a file made by ``tempfile`` (mode 0600/0700) the mode a plain ``open``/``mkdir``
    would have, so a team sharing a run directory can read its artifacts."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            public_mode(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` that replaces it only if the block succeeds:
    a reader never sees a half-written folder, and a failure keeps the previous one."""
    final = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    public_mode(tmp, directory=True)
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old.{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
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


# One line of sequences.jsonl as ``json.dumps(line, ensure_ascii=False)`` writes it (its
# separators, key order and number formats), filled in by ``str.format``: building a dict per
# piece and encoding it took ~10 s of a 10M-document run.
_PIECE = '{{"docid": {}, "start": {}, "end": {}, "cluster": {}}}'
_LINE = '{{"seq_id": {}, "n_tokens": {}, "docs": [{}]}}\n'


def _json_value(x: Any) -> str:
    """A docid as ``json.dumps(..., ensure_ascii=False)`` encodes it."""
    if type(x) is str:
        return _encode_str(x)
    return json.dumps(x, ensure_ascii=False)


def write_sequences(
    path: str | os.PathLike[str],
    packing: Packing,
    docids: Any,
    doc_len: np.ndarray,
    eos: int,
    clusters: np.ndarray | None = None,
    progress: bool = True,
) -> int:
    """Write ``sequences.jsonl`` per the output contract (docs/DESIGN.md); returns the line
    count. ``docids``: the run's ``DocTable`` (its ids read a chunk of pieces at a time, so
    the writer never holds every id) or a sequence of ids.

    The spans point into the documents; the token ids themselves go to the training shards
    (``datasculpt.io.shards``).
    """
    from datasculpt.io.doc_table import ids_of

    seq_tokens = packing.seq_tokens(doc_len, eos)
    heads = np.flatnonzero(np.concatenate(([True], packing.seq[1:] != packing.seq[:-1])))
    bounds = np.append(heads, packing.seq.size) if packing.seq.size else np.zeros(1, np.int64)
    n_seq = bounds.size - 1
    n_lines = 0
    bar = progress_bar(progress, total=n_seq, desc="write", unit="seq", leave=False)
    with atomic_open(path) as fh:
        s0 = 0
        while s0 < n_seq:
            # the sequences whose pieces make the next chunk (at least one sequence)
            s1 = max(s0 + 1, int(np.searchsorted(bounds, bounds[s0] + _CHUNK, side="right")) - 1)
            s1 = min(s1, n_seq)
            lo, hi = int(bounds[s0]), int(bounds[s1])
            doc = packing.doc[lo:hi]
            ids = ids_of(docids, doc)
            start, end = packing.start[lo:hi].tolist(), packing.end[lo:hi].tolist()
            cl = clusters[doc].tolist() if clusters is not None else [None] * len(start)
            pieces = [_PIECE.format(_json_value(i), s, e, "null" if c is None else c)
                      for i, s, e, c in zip(ids, start, end, cl, strict=True)]
            cuts = (bounds[s0:s1 + 1] - lo).tolist()
            tokens = seq_tokens[s0:s1].tolist()
            fh.write("".join(
                _LINE.format(s0 + i, tokens[i], ", ".join(pieces[cuts[i]:cuts[i + 1]]))
                for i in range(s1 - s0)))
            n_lines += s1 - s0
            bar.update(s1 - s0)
            s0 = s1
    bar.close()
    return n_lines
