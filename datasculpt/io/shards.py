"""Training shards: the packed sequences as token ids, in Parquet files a trainer loads as is.

``tokens/part-00000.parquet``, ``part-00001.parquet``, ... one row per sequence, columns
``seq_id`` int64 (its line in ``sequences.jsonl``), ``input_ids`` list<int32>
(the pieces' tokens in order, the separator after a document's last piece), ``position_ids``
list<int32> (restarting at 0 at every piece, the flash-attention varlen convention),
``cu_seqlens`` list<int32> (``0, len(piece 1), ..., len(input_ids)``), ``seq_lengths``
list<int32> (each piece's length; TRL's column name for packed data), ``docids``
list<string>, ``cost`` int64 (the row's training cost, ``sum(len^2) + 12 * hidden * tokens``:
``datasculpt.balance``), and ``text`` (the decoded ``input_ids``) when asked for.

Rows are in the order every format shares (``balance.output_order``: a seeded shuffle of the
sequences, since pack order groups clusters, balanced across ranks when asked for). Ids come
from the token store by random access and each Parquet row group (about ``ROW_GROUP_TOKENS``
tokens) is assembled with whole-array operations, so memory holds one row group per shard
being written, never a shard or the corpus; shards are independent, so an executor writes
them side by side. The shards are written into a temporary directory that replaces
``tokens/`` only when every shard is complete.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasculpt.executors import Executor
from datasculpt.executors.base import host_threads
from datasculpt.io.doc_table import DocTable, ids_of
from datasculpt.io.rows import assemble, sequence_heads, token_groups
from datasculpt.io.token_store import TokenStore
from datasculpt.io.write import atomic_dir
from datasculpt.progress import progress_bar
from datasculpt.types import Packing

SHARD_DIR = "tokens"
ROW_GROUP_TOKENS = 1 << 21  # tokens per Parquet row group: bounds the writer's memory
COLUMNS = ("seq_id", "input_ids", "position_ids", "cu_seqlens", "seq_lengths", "docids",
           "cost")


def _lists(offsets: np.ndarray, values: Any) -> pa.Array:
    """A list array from per-row value counts' running offsets (int32) and flat values."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def _shard_table(packing: Packing, heads: np.ndarray, seqs: np.ndarray, store: TokenStore,
                 docids: Any, eos: int, sep_id: int | None, tok: Any | None,
                 cost: np.ndarray) -> pa.Table:
    """The rows of sequences ``seqs`` (in this order) as one Arrow table."""
    r = assemble(packing, heads, seqs, store, eos, sep_id)
    ids, row_off, piece_off, plen = r.ids, r.row_off, r.piece_off, r.plen
    n_pieces = np.diff(piece_off)
    positions = (np.arange(ids.shape[0]) - np.repeat(
        np.concatenate(([0], np.cumsum(plen)[:-1])), plen)).astype(np.int32)
    # cu_seqlens of a row: 0, then the running sum of its pieces' lengths.
    within = np.cumsum(plen) - np.repeat(row_off[:-1], n_pieces)
    cu_off = np.concatenate(([0], np.cumsum(n_pieces + 1)))
    cu = np.zeros(int(cu_off[-1]), dtype=np.int32)
    cu_pos = np.repeat(cu_off[:-1] + 1 - piece_off[:-1], n_pieces) + np.arange(plen.shape[0])
    cu[cu_pos] = within
    doc = r.doc
    columns = {
        "seq_id": pa.array(seqs.astype(np.int64)),
        "input_ids": _lists(row_off, pa.array(ids)),
        "position_ids": _lists(row_off, pa.array(positions)),
        "cu_seqlens": _lists(cu_off, pa.array(cu)),
        "seq_lengths": _lists(piece_off, pa.array(plen.astype(np.int32))),
        "docids": _lists(piece_off, pa.array(ids_of(docids, doc), type=pa.string())),
        "cost": pa.array(cost[seqs].astype(np.int64)),
    }
    if tok is not None:
        columns["text"] = pa.array(tok.batch_decode(
            [ids[a:b].tolist() for a, b in zip(row_off[:-1], row_off[1:], strict=True)]),
            type=pa.string())
    return pa.table(columns)


def _write_shard(k: int, *, run_dir: str, tmp: str, packing: Packing, heads: np.ndarray,
                 order: np.ndarray, bounds: list[int], seq_tokens: np.ndarray,
                 docids: Any, eos: int, sep_id: int | None, tok: Any | None,
                 cost: np.ndarray) -> int:
    """Write shard ``k`` (an executor task); returns its row count.

    A shard is assembled one row group at a time: memory holds ``ROW_GROUP_TOKENS`` tokens'
    worth of arrays, whatever ``shard_tokens`` is.
    """
    store = TokenStore(Path(run_dir))
    a, b = bounds[k], bounds[k + 1]
    cuts = [a + c for c in token_groups(seq_tokens, order[a:b], ROW_GROUP_TOKENS)]
    writer = None
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        table = _shard_table(packing, heads, order[lo:hi], store, docids, eos, sep_id, tok,
                             cost)
        if writer is None:
            writer = pq.ParquetWriter(Path(tmp) / f"part-{k:05d}.parquet", table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return b - a


def write_shards(
    run_dir: Path,
    packing: Packing,
    store: TokenStore,
    docids: Any,
    eos: int,
    sep_id: int | None,
    *,
    order: np.ndarray,
    cost: np.ndarray,
    shard_tokens: int,
    text_tokenizer: Any | None = None,
    progress: bool = True,
    executor: Executor,
) -> dict[str, Any]:
    """Write ``run_dir/tokens/part-*.parquet`` (replacing what was there); returns stats.

    Rows go in ``order`` (``balance.output_order``), each with its ``cost``
    (``balance.sequence_costs``). ``text_tokenizer`` adds the ``text`` column (its decode
    of ``input_ids``). Shards are
    independent: ``executor`` writes them side by side (each reads the token store itself).
    """
    t0 = time.perf_counter()
    n_seq = packing.n_sequences
    heads = sequence_heads(packing)
    seq_tokens = packing.seq_tokens(store.doc_len, eos)
    # Shards of at most shard_tokens tokens (a longer sequence gets a shard of its own).
    bounds = token_groups(seq_tokens, order, shard_tokens)
    with atomic_dir(run_dir / SHARD_DIR) as tmp:
        bar = progress_bar(progress, total=n_seq, desc="shards", unit="seq", leave=False)
        # Two at a time in one process: a shard's row groups already keep a core busy in
        # Arrow's encoder, and each holds its own row group in memory.
        for rows in executor.map(_write_shard, range(len(bounds) - 1), threads=host_threads(2),
                                 run_dir=str(run_dir), tmp=str(tmp), packing=packing,
                                 heads=heads, order=order, bounds=bounds, seq_tokens=seq_tokens,
                                 docids=docids if isinstance(docids, DocTable)
                                 else np.asarray(docids, dtype=object), eos=eos,
                                 sep_id=sep_id, tok=text_tokenizer, cost=cost):
            bar.update(rows)
        bar.close()
    seconds = time.perf_counter() - t0
    tokens = int(seq_tokens.sum())
    return {"shards": len(bounds) - 1, "rows": n_seq, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else None}


def shard_files(run_dir: Path) -> list[str]:
    """The shard paths of a run, relative to it (for the manifest)."""
    return sorted(str(p.relative_to(run_dir)) for p in (run_dir / SHARD_DIR).glob("part-*.parquet"))
