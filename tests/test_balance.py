"""``datasculpt.balance``: the cost model, the balanced order, and the imbalance as the
trainers' own samplers would see it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import notes_corpus, packing_corpus, run_pipeline
from torch.utils.data import DistributedSampler

from datasculpt.balance import (
    balanced_order,
    imbalance,
    rank_loads,
    sequence_costs,
    step_seconds,
)
from datasculpt.io.rows import row_order
from datasculpt.pack.bfd import pack_bfd
from datasculpt.tokenize import make_units
from datasculpt.types import Packing


def test_cost_is_squares_of_the_pieces_plus_the_linear_term() -> None:
    doc_len = np.array([10, 5, 7])
    # Sequence 0: document 0 cut at 6 (no separator on that piece) and document 1 whole
    # (+1 separator); sequence 1: the rest of document 0 and document 2, both ending.
    packing = Packing.from_lists([[(0, 0, 6), (1, 0, 5)], [(0, 6, 10), (2, 0, 7)]])
    cost = sequence_costs(packing, doc_len, eos=1, hidden=2)
    assert cost.tolist() == [6 * 6 + 6 * 6 + 12 * 2 * 12, 5 * 5 + 8 * 8 + 12 * 2 * 13]


def _costs(n_docs: int = 40000, ctx_len: int = 16384, seed: int = 0) -> np.ndarray:
    """Costs of a real packing of heavy-tailed documents (median ~600 tokens, up to 4
    windows), so some rows hold one long document and others dozens of short ones."""
    doc_len, _, _ = packing_corpus(n_docs, ctx_len, 4, 8, seed)
    packing = pack_bfd(make_units(doc_len, ctx_len, 1), ctx_len)
    return sequence_costs(packing, doc_len, 1, 4096)


def _loads_by_sampler(order: np.ndarray, cost: np.ndarray, ranks: int, mb: int,
                      layout: str) -> np.ndarray:
    """Per step and rank, the cost of the rows each rank reads: contiguous as Megatron's
    pretraining sampler slices a step, strided as torch's DistributedSampler deals rows."""
    g = ranks * mb
    steps = order.shape[0] // g
    loads = np.zeros((steps, ranks))
    if layout == "contiguous":
        for s in range(steps):
            for r in range(ranks):
                loads[s, r] = cost[order[s * g + r * mb : s * g + (r + 1) * mb]].sum()
        return loads
    rows = order[: steps * g]
    for r in range(ranks):
        mine = list(DistributedSampler(range(rows.shape[0]), num_replicas=ranks, rank=r,
                                       shuffle=False))
        # The sampler deals row i to rank i % ranks; a step is micro_batch of each rank's rows.
        per = cost[rows[mine]].reshape(steps, mb).sum(axis=1)
        loads[:, r] = per
    return loads


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize(("ranks", "mb"), [(8, 1), (8, 4), (64, 1)])
def test_balanced_rows_load_every_rank_alike(layout: str, ranks: int, mb: int) -> None:
    cost = _costs()
    order = row_order(cost.shape[0], True, 0)
    done = balanced_order(order, cost, ranks, mb, 16, layout, seed=0)
    assert sorted(done.tolist()) == list(range(cost.shape[0]))  # a permutation: nothing lost
    for o in (order, done):  # the loads as the trainer's sampler reads the rows
        np.testing.assert_allclose(rank_loads(o, cost, ranks, mb, layout),
                                   _loads_by_sampler(o, cost, ranks, mb, layout))
    before = imbalance(order, cost, ranks, mb, layout)
    after = imbalance(done, cost, ranks, mb, layout)
    assert before > 1.05  # shuffled rows leave ranks unequal (1.07-1.21 here)...
    assert after < 1.02  # ...balanced ones within a few percent of the mean
    assert (step_seconds(done, cost, ranks, mb, layout, 4096)
            < step_seconds(order, cost, ranks, mb, layout, 4096))


def test_rows_stay_near_their_shuffled_place_and_the_tail_is_untouched() -> None:
    cost = _costs(3000)
    ranks, mb, window = 8, 2, 4
    order = row_order(cost.shape[0], True, 1)
    done = balanced_order(order, cost, ranks, mb, window, "contiguous", seed=1)
    pool = ranks * mb * window
    full = (order.shape[0] // (ranks * mb)) * ranks * mb  # rows of full steps
    pos = np.empty_like(order)
    pos[order] = np.arange(order.shape[0])
    new = np.empty_like(done)
    new[done] = np.arange(done.shape[0])
    stepped = pos < full
    assert np.all(pos[stepped] // pool == new[stepped] // pool)  # no row leaves its pool
    assert np.array_equal(done[full:], order[full:])
    assert np.array_equal(done, balanced_order(order, cost, ranks, mb, window, "contiguous",
                                               seed=1))  # deterministic


def test_the_run_writes_balanced_shards_and_reports_the_imbalance(tmp_path: Path) -> None:
    over = {"output.balance.ranks": 4, "output.balance.micro_batch": 1,
            "output.balance.window": 2, "output.shard_tokens": 10**9}
    out, report = run_pipeline(tmp_path, notes_corpus(60), **over)
    bal = report["balance"]
    assert bal["ranks"] == 4 and bal["steps"] == report["metrics"]["n_sequences"] // 4
    imb = bal["imbalance"]
    assert 1.0 <= imb["balanced"] <= imb["unbalanced"]
    rows = pq.read_table(out / "tokens").to_pylist()
    # The shards' rows are the balanced order, each with its cost.
    cost = np.array([r["cost"] for r in rows])
    lens = [r["seq_lengths"] for r in rows]
    assert cost.tolist() == [sum(n * n for n in x) + 12 * 4096 * sum(x) for x in lens]
    by_seq = np.empty(len(rows), dtype=np.int64)
    by_seq[[r["seq_id"] for r in rows]] = cost
    shown = imbalance(np.array([r["seq_id"] for r in rows]), by_seq, 4, 1, "contiguous")
    assert shown == pytest.approx(imb["balanced"])
    assert "Balance across data-parallel ranks" in (out / "report.md").read_text()
