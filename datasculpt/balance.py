"""Rows ordered so that data-parallel ranks carry the same attention work in every step.

With document-masked attention a window's cost is not its length: attention is quadratic in
each document, so a window holding one 64K document costs far more than one holding sixteen
4K documents, and in a synchronous step every rank waits for the most loaded one.

**Cost model.** A decoder layer of width ``d`` (a Llama-style block: attention projections
4d^2 and a SwiGLU MLP 8d^2, 12d^2 weights) spends ``24 d^2`` FLOPs per token in its matrix
products and ``2 d l^2`` FLOPs on causal attention over a document of ``l`` tokens (QK^T and
AV, each ``l^2 d`` halved by the mask, times 2 FLOPs). Per layer a row therefore costs
``2 d (sum(l_i^2) + 12 d n)`` FLOPs: ``cost = sum(l_i^2) + 12 * hidden * n`` in units of
``2 * hidden`` FLOPs per layer (the same for the forward and backward pass, which scale it
alike). ``output.balance.hidden`` is ``d`` (4096: a 7-8B model); against a row of 1K-token
documents, a row holding one document costs 1.3x at 16K and 2.3x at 64K.

**Order.** Rows are first in the seeded shuffle (``rows.row_order``). Balancing cuts it into
pools of ``window`` global batches (a global batch: ``ranks x micro_batch`` rows, one step of
every rank); inside a pool rows are sorted by cost, dealt into the pool's steps in that order
(so a step's rows have similar costs), assigned to the step's ranks largest first to the
least loaded rank with room, and the pool's steps are shuffled again by the seed. A row moves
at most ``window`` steps from its shuffled place; the last pool holds the full steps that are
left, and the rows after the last full step stay where they were. ``layout`` says which rows
of a step a rank reads: ``contiguous`` (rank ``r`` reads rows ``r*mb .. r*mb + mb - 1`` of
each step: Megatron's pretraining sampler) or ``strided`` (rank ``r`` reads rows ``r, r + R,
...``: torch's DistributedSampler without shuffle).

**Imbalance** of an order: per full step, the most loaded rank's cost over the mean rank's;
averaged over the steps. The simulated step time is the most loaded rank's cost converted to
seconds for a stated machine (``STEP_MODEL``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datasculpt.types import Packing

LAYOUTS = ("contiguous", "strided")
# The simulated machine of report.json's step times: H100 SXM bf16 dense peak at 40% MFU,
# the 32 layers of a 7-8B model, forward + backward = 3x the forward FLOPs.
STEP_MODEL = {"peak_flops": 989e12, "mfu": 0.4, "layers": 32, "fwd_bwd": 3.0}


def sequence_costs(packing: Packing, doc_len: np.ndarray, eos: int, hidden: int) -> np.ndarray:
    """``sum(l_i^2) + 12 * hidden * n`` of every sequence (int64; see the module docstring)."""
    plen = packing.piece_tokens(doc_len, eos).astype(np.int64)
    n = packing.n_sequences
    sq = np.bincount(packing.seq, weights=plen * plen, minlength=n)
    tokens = np.bincount(packing.seq, weights=plen, minlength=n)
    return (sq + 12.0 * hidden * tokens).astype(np.int64)


def _rank_of_slot(ranks: int, micro_batch: int, layout: str) -> np.ndarray:
    """The rank reading each row position of a step."""
    slots = np.arange(ranks * micro_batch)
    return slots // micro_batch if layout == "contiguous" else slots % ranks


def rank_loads(order: np.ndarray, cost: np.ndarray, ranks: int, micro_batch: int,
               layout: str) -> np.ndarray:
    """``[steps, ranks]``: every full step's cost per rank when rows are read in ``order``."""
    g = ranks * micro_batch
    steps = order.shape[0] // g
    c = cost[order[: steps * g]].reshape(steps, g).astype(np.float64)
    owner = _rank_of_slot(ranks, micro_batch, layout)
    loads = np.zeros((steps, ranks))
    for r in range(ranks):
        loads[:, r] = c[:, owner == r].sum(axis=1)
    return loads


def imbalance(order: np.ndarray, cost: np.ndarray, ranks: int, micro_batch: int,
              layout: str) -> float | None:
    """Mean over full steps of max-rank cost / mean-rank cost (None: not one full step)."""
    loads = rank_loads(order, cost, ranks, micro_batch, layout)
    if not loads.shape[0]:
        return None
    return float(np.mean(loads.max(axis=1) / np.maximum(loads.mean(axis=1), 1e-12)))


def step_seconds(order: np.ndarray, cost: np.ndarray, ranks: int, micro_batch: int,
                 layout: str, hidden: int) -> float:
    """Simulated time of all full steps: each takes its most loaded rank's time."""
    loads = rank_loads(order, cost, ranks, micro_batch, layout)
    m = STEP_MODEL
    flops = loads.max(axis=1).sum() * 2 * hidden * m["layers"] * m["fwd_bwd"]
    return float(flops / (m["peak_flops"] * m["mfu"]))


def balanced_order(order: np.ndarray, cost: np.ndarray, ranks: int, micro_batch: int,
                   window: int, layout: str, seed: int) -> np.ndarray:
    """``order`` rearranged pool by pool so every step's ranks carry similar costs.

    Steps do not interact, so the greedy deals the ``i``-th costliest row of every step at
    once: ``ranks * micro_batch`` vectorised rounds, not a Python step per row.
    """
    g = ranks * micro_batch
    n_steps = order.shape[0] // g
    out = order.copy()
    if not n_steps:
        return out
    owner = _rank_of_slot(ranks, micro_batch, layout)
    slot_of = np.stack([np.flatnonzero(owner == r) for r in range(ranks)])  # [ranks, mb]
    firsts = list(range(0, n_steps, window))
    # Every pool's rows by cost, dealt into its steps (the last pool: the full steps left).
    steps = np.concatenate([
        (rows := order[f * g : min(f + window, n_steps) * g])[
            np.argsort(-cost[rows], kind="stable")].reshape(-1, g) for f in firsts])
    at = np.arange(n_steps)
    load = np.zeros((n_steps, ranks))
    room = np.full((n_steps, ranks), micro_batch)
    placed = np.empty_like(steps)
    for i in range(g):  # largest first, to the least loaded rank with room
        row = steps[:, i]
        r = np.argmin(np.where(room > 0, load, np.inf), axis=1)
        placed[at, slot_of[r, micro_batch - room[at, r]]] = row
        load[at, r] += cost[row]
        room[at, r] -= 1
    rng = np.random.default_rng([seed, 0xBA1])
    for f in firsts:
        w = min(window, n_steps - f)
        out[f * g : (f + w) * g] = placed[f : f + w][rng.permutation(w)].reshape(-1)
    return out


def output_order(packing: Packing, doc_len: np.ndarray, eos: int, out_cfg: Any,
                 seed: int) -> np.ndarray:
    """The order of the rows in every output format: the seeded shuffle (or pack order),
    balanced when ``output.balance.ranks`` is set."""
    from datasculpt.io.rows import row_order

    order = row_order(packing.n_sequences, bool(out_cfg.shuffle), seed)
    bal = out_cfg.balance
    if int(bal.ranks) > 0:
        cost = sequence_costs(packing, doc_len, eos, int(bal.hidden))
        order = balanced_order(order, cost, int(bal.ranks), int(bal.micro_batch),
                               int(bal.window), str(bal.layout), seed)
    return order


def balance_report(packing: Packing, doc_len: np.ndarray, eos: int, out_cfg: Any,
                   seed: int) -> dict[str, Any] | None:
    """report.json's ``balance``: the cost model and, with ``ranks`` set, the imbalance and
    simulated step time of the shuffled order and of the balanced one."""
    bal = out_cfg.balance
    ranks, mb, layout, hidden = (int(bal.ranks), int(bal.micro_batch), str(bal.layout),
                                 int(bal.hidden))
    if ranks <= 0:
        return None
    from datasculpt.io.rows import row_order

    cost = sequence_costs(packing, doc_len, eos, hidden)
    plain = row_order(packing.n_sequences, bool(out_cfg.shuffle), seed)
    done = balanced_order(plain, cost, ranks, mb, int(bal.window), layout, seed)
    steps = packing.n_sequences // (ranks * mb)
    return {
        "cost": f"sum(piece_len^2) + 12 * {hidden} * tokens (units of 2 * hidden FLOPs/layer)",
        "ranks": ranks, "micro_batch": mb, "window": int(bal.window), "layout": layout,
        "steps": steps,
        "imbalance": {"unbalanced": imbalance(plain, cost, ranks, mb, layout),
                      "balanced": imbalance(done, cost, ranks, mb, layout)},
        "step_seconds": {"unbalanced": step_seconds(plain, cost, ranks, mb, layout, hidden),
                         "balanced": step_seconds(done, cost, ranks, mb, layout, hidden)},
        "step_model": dict(STEP_MODEL, hidden=hidden),
    }
