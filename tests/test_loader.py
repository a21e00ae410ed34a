"""``datasculpt.loader``: the shards as a PyTorch dataset, collated two ways, with attention
kept inside every document (checked on real attention, not only on the mask's shape)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from helpers import notes_corpus, run_pipeline

from datasculpt.loader import (
    IGNORE_INDEX,
    PackedDataset,
    block_causal_mask,
    collate_padded,
    collate_varlen,
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out, _ = run_pipeline(tmp_path_factory.mktemp("loader"), notes_corpus(24, seed=3),
                 **{"output.shard_tokens": 1000, "pack.method": "bfd",
                    "report.semantic_metrics": False})
    return out


def _pieces(item: dict) -> list[tuple[int, int]]:
    ends = torch.cumsum(item["seq_lengths"], 0).tolist()
    return list(zip([0, *ends[:-1]], ends, strict=True))


def test_dataset_reads_every_row_of_every_shard(shards: Path) -> None:
    ds = PackedDataset(shards)
    files = sorted((shards / "tokens").glob("part-*.parquet"))
    assert len(files) > 1
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert len(ds) == len(rows)
    for i in (0, len(ds) // 2, len(ds) - 1, 3, 1):  # out of order: shard cache misses
        item = ds[i]
        assert item["seq_id"] == rows[i]["seq_id"]
        assert item["input_ids"].tolist() == rows[i]["input_ids"]
        assert item["position_ids"].tolist() == rows[i]["position_ids"]
        assert item["input_ids"].dtype == torch.int64
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert len(PackedDataset(str(shards / "tokens" / "*.parquet"))) == len(ds)


def test_varlen_collate_marks_every_document_boundary(shards: Path) -> None:
    ds = PackedDataset(shards)
    batch = [ds[i] for i in range(4)]
    out = collate_varlen(batch)
    ids, pos, cu = out["input_ids"][0], out["position_ids"][0], out["cu_seqlens"]
    assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == ids.numel()
    # The segments are exactly the rows' pieces, in order, and positions restart in each.
    segments = [(int(a), int(b)) for a, b in zip(cu[:-1], cu[1:], strict=True)]
    offset, want = 0, []
    for item in batch:
        want += [(offset + a, offset + b) for a, b in _pieces(item)]
        offset += item["input_ids"].numel()
    assert segments == want
    for a, b in segments:
        assert pos[a:b].tolist() == list(range(b - a))
        assert out["labels"][0, a] == IGNORE_INDEX
        assert torch.equal(out["labels"][0, a + 1 : b], ids[a + 1 : b])
    assert out["max_seqlen"] == max(b - a for a, b in segments)


def test_padded_collate_mask_keeps_attention_inside_each_document(shards: Path) -> None:
    ds = PackedDataset(shards)
    batch = [ds[i] for i in range(5)]
    out = collate_padded(batch, pad_token_id=0)
    mask, total = out["attention_mask"], out["input_ids"].shape[1]
    assert mask.shape == (5, 1, total, total) and mask.dtype == torch.bool
    for r, item in enumerate(batch):
        piece = torch.full((total,), -1, dtype=torch.long)  # piece index of each position
        for k, (a, b) in enumerate(_pieces(item)):
            piece[a:b] = k
        i, j = torch.meshgrid(torch.arange(total), torch.arange(total), indexing="ij")
        allowed = (piece[i] == piece[j]) & (piece[i] >= 0) & (j <= i)
        real = piece >= 0
        assert torch.equal(mask[r, 0][real][:, real], allowed[real][:, real])
        assert not mask[r, 0][real][:, ~real].any()  # nobody attends to padding
        assert out["labels"][r][~real].eq(IGNORE_INDEX).all()


def test_sdpa_with_the_mask_equals_attention_run_per_document(shards: Path) -> None:
    ds = PackedDataset(shards)
    batch = [ds[i] for i in range(3)]
    out = collate_padded(batch)
    b, total, heads, dim = len(batch), out["input_ids"].shape[1], 2, 8
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, heads, total, dim, generator=gen) for _ in range(3))
    packed = F.scaled_dot_product_attention(q, k, v, attn_mask=out["attention_mask"])
    naive = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the packing bug
    leaked = False
    for r, item in enumerate(batch):
        for a, e in _pieces(item):
            alone = F.scaled_dot_product_attention(q[r:r + 1, :, a:e], k[r:r + 1, :, a:e],
                                                   v[r:r + 1, :, a:e], is_causal=True)
            torch.testing.assert_close(packed[r:r + 1, :, a:e], alone)
            leaked |= a > 0 and not torch.allclose(naive[r:r + 1, :, a:e], alone)
    assert leaked  # without the mask, later documents see earlier ones
    assert torch.isfinite(packed).all()  # padding rows attend to themselves: no NaN


def test_block_causal_mask_by_hand() -> None:
    m = block_causal_mask([torch.tensor([2, 1])], 4)[0, 0].int().tolist()
    assert m == [[1, 0, 0, 0],
                 [1, 1, 0, 0],
                 [0, 0, 1, 0],
                 [0, 0, 0, 1]]  # last row: padding, attends to itself only
