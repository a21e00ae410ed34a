"""Tests of the unit-centric DataSculpt kernel (``datasculpt.pack.unit``, ``strategy=unit``) and
of the finishing phases (``datasculpt.pack.finish``).

Two independent readers keep the kernel honest: ``check_packing`` (tests/helpers.py)
recomputes the token accounting and the report's packing metrics from the Packing alone, and
``sequential_reference`` is the plain one-unit-at-a-time greedy (phase 1 per cluster, then
best fit of the remainder) against which the batched kernel with ``B = 1`` must agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from helpers import (
    assert_same_packing,
    check_packing,
    packing_corpus,
    small_packing_input,
    small_packing_params,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasculpt.config import PackConfig
from datasculpt.pack.datasculpt import pack_datasculpt
from datasculpt.tokenize import make_units
from datasculpt.types import Packing, Units

try:  # the lead's metrics module; the checker below stays as an independent reader
    from datasculpt.metrics import compute_metrics
except ImportError:  # pragma: no cover
    compute_metrics = None


def cfg_for(score: str = "paper", mode: str = "strict", batch_size: int = 1,
            strategy: str = "unit") -> PackConfig:
    """The unit-centric (paper's) strategy unless asked: this file tests that kernel."""
    return PackConfig(method="datasculpt", strategy=strategy, score=score, mode=mode,
                      batch_size=batch_size)


def assert_matches_lead_metrics(packing, units, ctx_len, emb, mine) -> None:
    if compute_metrics is None:
        return
    m = compute_metrics(packing, units.doc_len, ctx_len, units.eos, emb)
    assert m["lost_tokens"] == 0 and m["duplicated_tokens"] == 0
    assert m["overlong_sequences"] == 0
    assert m["fill_rate"] == pytest.approx(mine["fill_rate"])
    assert m["truncation_rate"] == pytest.approx(mine["truncation_rate"])
    if not math.isnan(mine["relevance"]):
        assert m["relevance"] == pytest.approx(mine["relevance"], rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------- sequential reference


def sequential_reference(
    units: Units, emb: np.ndarray, clusters: np.ndarray, ctx_len: int, cfg: PackConfig
) -> Packing:
    """The greedy one unit at a time, in float64, strict mode, straight from the definition."""
    length = units.length
    e64 = emb.astype(np.float64)
    labels = np.unique(clusters[units.doc])
    windows: list[dict] = []  # cap, sum, used, pieces, in output order
    remainder = []

    def score(sim: float, cap: int, n: int) -> float:
        if cfg.score == "paper":
            return sim * cap
        return cfg.w_rel * sim + cfg.w_fit * (1.0 - (cap - n) / ctx_len)

    def sim_of(w: dict, v: np.ndarray) -> float:
        if not w["used"]:
            return 1.0
        norm = np.linalg.norm(w["sum"])
        return float(w["sum"] @ v / norm) if norm > 0 else 0.0

    for c in labels.tolist():
        mine = np.flatnonzero(clusters[units.doc] == c)
        mine = mine[np.lexsort((units.start[mine], units.doc[mine], -length[mine]))]
        k = max(1, int(length[mine].sum()) // ctx_len)
        own = [{"cap": ctx_len, "sum": np.zeros(emb.shape[1]), "used": False, "pieces": []}
               for _ in range(k)]
        windows.extend(own)
        for u in mine.tolist():
            n, v = int(length[u]), e64[units.doc[u]]
            best, best_score = None, -math.inf
            for w in own:  # first maximum wins ties, as argmax does
                if w["cap"] >= n and score(sim_of(w, v), w["cap"], n) > best_score:
                    best, best_score = w, score(sim_of(w, v), w["cap"], n)
            if best is None:
                remainder.append(u)
                continue
            best["cap"] -= n
            best["sum"] = best["sum"] + v
            best["used"] = True
            best["pieces"].append(u)

    # Remainder across clusters: longest first, best fit, similarity among equal gaps.
    sorted_pos = {u: i for i, u in enumerate(
        np.lexsort((units.start, units.doc, -length, np.searchsorted(labels, clusters[units.doc])))
        .tolist())}
    remainder.sort(key=lambda u: (-int(length[u]), sorted_pos[u]))
    for u in remainder:
        n, v = int(length[u]), e64[units.doc[u]]
        fitting = [i for i, w in enumerate(windows) if w["cap"] >= n and w["cap"] > 0]
        if not fitting:
            windows.append({"cap": ctx_len, "sum": np.zeros(emb.shape[1]), "used": False,
                            "pieces": []})
            fitting = [len(windows) - 1]
        tight = min(windows[i]["cap"] for i in fitting)
        ties = [i for i in fitting if windows[i]["cap"] == tight][:64]
        i = max(ties, key=lambda j: (sim_of(windows[j], v), -j))
        w = windows[i]
        w["cap"] -= n
        w["sum"] = w["sum"] + v
        w["used"] = True
        w["pieces"].append(u)
    seqs = [[(int(units.doc[u]), int(units.start[u]), int(units.end[u])) for u in w["pieces"]]
            for w in windows if w["pieces"]]
    return Packing.from_lists(seqs)


# ---------------------------------------------------------------- properties

small_corpora = small_packing_params(40)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=small_corpora, score=st.sampled_from(["paper", "weighted"]),
       mode=st.sampled_from(["strict", "fill"]), batch_size=st.sampled_from([1, 2, 3, 8, 256]))
def test_every_token_once_and_no_overlong(p, score, mode, batch_size):
    units, emb, clusters = small_packing_input(p)
    cfg = cfg_for(score, mode, batch_size)
    packing, stats = pack_datasculpt(units, emb, clusters, p["ctx_len"], cfg)
    mine = check_packing(packing, units, p["ctx_len"], emb)
    assert_matches_lead_metrics(packing, units, p["ctx_len"], emb, mine)
    assert stats["sequences"] == mine["n_sequences"]
    if mode == "strict":
        # Strict never splits a unit: the placed pieces are exactly the units.
        placed = sorted(zip(packing.doc.tolist(), packing.start.tolist(), packing.end.tolist(),
                            strict=True))
        given_units = sorted(zip(units.doc.tolist(), units.start.tolist(), units.end.tolist(),
                                 strict=True))
        assert placed == given_units
    # Deterministic: the same input gives the same arrays.
    assert_same_packing(packing, pack_datasculpt(units, emb, clusters, p["ctx_len"], cfg)[0])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=small_corpora, score=st.sampled_from(["paper", "weighted"]))
def test_batch_size_one_is_the_sequential_greedy(p, score):
    units, emb, clusters = small_packing_input(p)
    cfg = cfg_for(score, "strict", 1)
    packing, _ = pack_datasculpt(units, emb, clusters, p["ctx_len"], cfg)
    assert_same_packing(packing, sequential_reference(units, emb, clusters, p["ctx_len"], cfg))


def test_batch_size_one_matches_reference_on_a_topic_corpus():
    doc_len, emb, labels = packing_corpus(1500, 2048, 6, 16, seed=3, median=300)
    units = make_units(doc_len, 2048, 1)
    for score in ("paper", "weighted"):
        cfg = cfg_for(score, "strict", 1)
        packing, _ = pack_datasculpt(units, emb, labels, 2048, cfg)
        assert_same_packing(packing, sequential_reference(units, emb, labels, 2048, cfg))


def test_long_documents_take_consecutive_sequences():
    doc_len = np.array([5 * 100 + 7, 30, 40, 20])
    emb = np.eye(4, dtype=np.float32)
    units = make_units(doc_len, 100, 1)
    packing, _ = pack_datasculpt(units, emb, np.zeros(4, np.int64), 100, cfg_for(batch_size=4))
    full = packing.seq[(packing.doc == 0) & (packing.end - packing.start == 100)]
    assert np.array_equal(np.diff(np.sort(full)), np.ones(full.size - 1))


def test_fill_mode_fills_windows_with_few_truncations():
    ctx_len = 4096
    doc_len, emb, labels = packing_corpus(8000, ctx_len, 20, 32, seed=11)
    units = make_units(doc_len, ctx_len, 1)
    packing, stats = pack_datasculpt(units, emb, labels, ctx_len, cfg_for("paper", "fill", 32))
    mine = check_packing(packing, units, ctx_len, emb)
    assert_matches_lead_metrics(packing, units, ctx_len, emb, mine)
    assert mine["fill_rate"] >= 0.999, stats
    assert mine["truncation_rate"] <= 0.02, stats


@pytest.mark.parametrize("score", ["paper", "weighted"])
@pytest.mark.parametrize("batch_size", [PackConfig().batch_size, 32])
def test_batched_metrics_within_one_percent_of_sequential(score, batch_size):
    ctx_len = 16384
    doc_len, emb, labels = packing_corpus(12000, ctx_len, 12, 64, seed=5)
    units = make_units(doc_len, ctx_len, 1)
    ref, _ = pack_datasculpt(units, emb, labels, ctx_len, cfg_for(score, "strict", 1))
    got, _ = pack_datasculpt(units, emb, labels, ctx_len, cfg_for(score, "strict", batch_size))
    a = check_packing(ref, units, ctx_len, emb)
    b = check_packing(got, units, ctx_len, emb)
    for key in ("fill_rate", "n_sequences"):
        assert b[key] == pytest.approx(a[key], rel=0.01), key
    assert b["truncation_rate"] == a["truncation_rate"] == 0.0
    # On this corpus (1,000 units per cluster) batching measured +1.9% relevance over the
    # sequential greedy in both forms: batch members that share a window end up a little
    # more alike. What must not happen is a loss of more than 1%.
    assert b["relevance"] >= a["relevance"] * 0.99


def test_rejects_units_longer_than_a_window():
    units = Units(doc=np.array([0]), start=np.array([0]), end=np.array([10]),
                  doc_len=np.array([10]), eos=1)
    with pytest.raises(ValueError, match="longer than ctx_len"):
        pack_datasculpt(units, np.ones((1, 2), np.float32), np.zeros(1), 10, cfg_for())


def test_stats_and_config_fields():
    doc_len, emb, labels = packing_corpus(300, 1024, 3, 8, seed=1, median=200)
    units = make_units(doc_len, 1024, 0)
    cfg = replace(cfg_for("weighted", "strict", 16), w_rel=2.0, w_fit=0.5)
    packing, stats = pack_datasculpt(units, emb, labels, 1024, cfg)
    check_packing(packing, units, 1024, emb)
    assert {k: stats[k] for k in ("clusters", "strategy", "batch_size", "score", "mode",
                                  "fill_cuts")} == {
        "clusters": 3, "strategy": "unit", "batch_size": 16, "score": "weighted",
        "mode": "strict", "fill_cuts": 0}
    assert stats["sequences"] == packing.n_sequences <= stats["windows_opened"]
    assert stats["cluster_windows"] <= stats["windows_opened"]
    assert 0 <= stats["remainder_units"] <= len(units) and stats["rounds"] >= 1
    assert 0 < stats["kernel_seconds"] <= stats["seconds"]
    assert stats["docs_per_s"] == pytest.approx(300 / stats["seconds"])
