"""Feed the training shards to PyTorch: a ``Dataset`` over ``<run>/tokens/*.parquet`` and the
two ways to collate packed rows without letting one document attend to another.

* ``collate_varlen``: the rows of a batch flattened into one row, ``position_ids`` restarting
  at every piece and ``cu_seqlens`` (int32) marking the pieces: what FlashAttention-2's varlen
  kernels (and Hugging Face models given ``position_ids`` with ``attn_implementation=
  "flash_attention_2"``) need to keep attention inside each document.
* ``collate_padded``: a padded ``B x T`` batch with a block-diagonal causal boolean mask
  (``B x 1 x T x T``, True where a query may attend to a key) for SDPA or eager attention.
  Without it a packed row is one long causal sequence and every document sees the ones packed
  before it, the packing bug most reported against trainers' packers.

In both, ``labels`` are the ids with -100 at the first token of every piece (predicting a
document's first token from the previous document teaches nothing) and on padding.
"""

from __future__ import annotations

import bisect
import glob
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

IGNORE_INDEX = -100
FIELDS = ("seq_id", "input_ids", "position_ids", "cu_seqlens", "seq_lengths")


def shard_paths(path: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """The shard files of a run directory, a ``tokens/`` directory, a glob or a list."""
    if isinstance(path, list | tuple):
        return sorted(str(p) for p in path)
    p = Path(path)
    if p.is_dir():
        sub = p / "tokens" if (p / "tokens").is_dir() else p
        files = sorted(str(f) for f in sub.glob("part-*.parquet"))
    else:
        files = sorted(glob.glob(str(path)))
    if not files:
        raise FileNotFoundError(f"no training shards (part-*.parquet) found at {path}")
    return files


class PackedDataset(torch.utils.data.Dataset):
    """The rows of the training shards, in file order (the shards are already shuffled).

    A shard's columns are read on first use through a memory map and kept for the next
    ``cache`` shards, so sequential reading (the usual sampler over shuffled shards) reads
    each file once; random access costs a shard read per miss.
    """

    def __init__(self, path: str | os.PathLike[str] | Sequence[str], cache: int = 2) -> None:
        self.files = shard_paths(path)
        counts = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
        self.starts = np.concatenate(([0], np.cumsum(counts))).tolist()
        self.cache = max(1, cache)
        self._tables: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _shard(self, k: int) -> dict[str, Any]:
        table = self._tables.get(k)
        if table is None:
            t = pq.read_table(self.files[k], columns=list(FIELDS), memory_map=True)
            table = {name: t.column(name).combine_chunks() for name in FIELDS}
            self._tables[k] = table
            while len(self._tables) > self.cache:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(k)
        return table

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.starts, i) - 1
        table, row = self._shard(k), i - self.starts[k]
        out: dict[str, Any] = {"seq_id": int(table["seq_id"][row].as_py())}
        for name in FIELDS[1:]:
            values = table[name][row].values.to_numpy(zero_copy_only=False)
            out[name] = torch.from_numpy(values.astype(np.int64))
        return out


def _labels(ids: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    labels = ids.clone()
    labels[starts] = IGNORE_INDEX
    return labels


def collate_varlen(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One flattened row for FlashAttention varlen: ``input_ids``, ``position_ids`` and
    ``labels`` of shape ``1 x T``, ``cu_seqlens`` (int32, ``0 .. T``) and ``max_seqlen``."""
    ids = torch.cat([b["input_ids"] for b in batch])
    pos = torch.cat([b["position_ids"] for b in batch])
    lengths = torch.cat([b["seq_lengths"] for b in batch])
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    return {
        "input_ids": ids[None],
        "position_ids": pos[None],
        "labels": _labels(ids, cu[:-1].long())[None],
        "cu_seqlens": cu,
        "max_seqlen": int(lengths.max()) if lengths.numel() else 0,
        "seq_id": torch.tensor([b["seq_id"] for b in batch]),
    }


def block_causal_mask(seq_lengths: Sequence[torch.Tensor], total: int) -> torch.Tensor:
    """``B x 1 x T x T`` bool: position ``i`` may attend to ``j`` iff both lie in the same
    piece and ``j <= i``. A padding position attends only to itself, so no softmax row is
    empty (an all-masked row gives NaN in SDPA)."""
    mask = torch.zeros(len(seq_lengths), 1, total, total, dtype=torch.bool)
    causal = torch.ones(total, total, dtype=torch.bool).tril()
    for b, lengths in enumerate(seq_lengths):
        start = 0
        for n in lengths.tolist():
            mask[b, 0, start : start + n, start : start + n] = causal[:n, :n]
            start += n
        pad = torch.arange(start, total)
        mask[b, 0, pad, pad] = True
    return mask


def collate_padded(batch: Sequence[dict[str, Any]], pad_token_id: int = 0) -> dict[str, Any]:
    """A padded batch for SDPA/eager attention: ``input_ids``, ``position_ids``, ``labels``
    (``B x T``) and the block-diagonal causal ``attention_mask`` (``B x 1 x T x T``, bool)."""
    total = max(int(b["input_ids"].numel()) for b in batch)
    n = len(batch)
    ids = torch.full((n, total), pad_token_id, dtype=torch.long)
    pos = torch.zeros((n, total), dtype=torch.long)
    labels = torch.full((n, total), IGNORE_INDEX, dtype=torch.long)
    for r, b in enumerate(batch):
        m = b["input_ids"].numel()
        ids[r, :m] = b["input_ids"]
        pos[r, :m] = b["position_ids"]
        starts = torch.cumsum(b["seq_lengths"], 0) - b["seq_lengths"]
        labels[r, :m] = _labels(b["input_ids"], starts)
    return {
        "input_ids": ids,
        "position_ids": pos,
        "labels": labels,
        "attention_mask": block_causal_mask([b["seq_lengths"] for b in batch], total),
        "seq_id": torch.tensor([b["seq_id"] for b in batch]),
    }
