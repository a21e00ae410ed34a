"""pack: issue 4's bar, every packer through ``datasculpt.pack.pack`` on the same corpus at three
ctx_lens, DataSculpt against every baseline.

Real components throughout: the embedded sample embedded by the packaged model, the real
ISODATA clustering, the real kNN for iclm; and a labelled synthetic corpus with planted topics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from datasculpt.backend import resolve_backend
from datasculpt.cluster import cluster
from datasculpt.config import ClusterConfig, PackConfig
from datasculpt.executors import LocalExecutor
from datasculpt.metrics import compute_metrics
from datasculpt.pack import pack
from datasculpt.tokenize import make_units

CTX_LENS = (2048, 4096, 16384)


def _compare(doc_len: np.ndarray, emb: np.ndarray, labels: np.ndarray, ctx_len: int,
             backend: Any) -> dict[str, dict[str, Any]]:
    local = LocalExecutor()
    clusters = cluster(emb, doc_len, ctx_len, ClusterConfig(), backend, seed=0,
                       executor=local).labels
    units = make_units(doc_len, ctx_len, 1)
    out = {}
    for method in ("datasculpt", "concat", "bfd", "iclm"):
        packing, _ = pack(method, units, ctx_len, PackConfig(method=method), 0, backend,
                          embeddings=emb, clusters=clusters, executor=local)
        out[method] = compute_metrics(packing, doc_len, ctx_len, 1, emb, clusters, labels)
    unit, _ = pack("datasculpt", units, ctx_len, PackConfig(method="datasculpt", strategy="unit"),
                   0, backend, embeddings=emb, clusters=clusters, executor=local)
    out["unit"] = compute_metrics(unit, doc_len, ctx_len, 1, emb, clusters, labels)
    fill, _ = pack("datasculpt", units, ctx_len, PackConfig(method="datasculpt", mode="fill"), 0,
                   backend, embeddings=emb, clusters=clusters, executor=local)
    out["fill"] = compute_metrics(fill, doc_len, ctx_len, 1, emb, clusters, labels)
    return out


def _assert_bar(r: dict[str, dict[str, Any]], fill_target: float, max_ratio: float) -> None:
    ds, unit = r["datasculpt"], r["unit"]
    for m in r.values():
        assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    for m in (ds, unit):
        assert m["truncation_rate"] <= 0.005
    assert unit["seq_ratio"] <= 1.02
    lower = ds["n_sequences"] / ds["seq_ratio"]
    assert ds["n_sequences"] <= math.ceil(max_ratio * lower)
    # Issue 8's bar: the default is ahead of the paper's unit-centric greedy on relevance and
    # on purity of the sequences that mix documents.
    assert ds["relevance"] > unit["relevance"]
    assert ds["label_purity_multi"] >= unit["label_purity_multi"]
    assert ds["relevance"] >= 2 * r["concat"]["relevance"]
    assert ds["relevance"] >= 2 * r["bfd"]["relevance"]
    assert ds["relevance"] >= 0.8 * r["iclm"]["relevance"]
    assert ds["label_purity"] >= r["bfd"]["label_purity"]
    assert r["fill"]["fill_rate"] >= fill_target
    assert r["fill"]["truncation_rate"] <= 0.02


@pytest.mark.slow  # the whole sample through the encoder first: half a minute on 2 busy cores
@pytest.mark.parametrize("ctx_len", CTX_LENS)
def test_datasculpt_beats_the_baselines_on_the_embedded_sample(sample_semantics: dict,
                                                               ctx_len: int) -> None:
    s = sample_semantics
    r = _compare(s["doc_len"], s["embeddings"], s["labels"], ctx_len, s["backend"])
    # The sample holds ~34 windows at 16K: even a perfect packing leaves the last sequence
    # part-empty, so fill mode is held to the optimum (every sequence but one full), which
    # here is below 0.999.
    total = r["fill"]["total_tokens"]
    optimum = total / (math.ceil(total / ctx_len) * ctx_len)
    assert r["fill"]["n_sequences"] == math.ceil(total / ctx_len)
    # The default (window-centric) strategy leaves a gap where a cluster runs out of units
    # that fit; on this 272/136/34-window sample one window more is 0.4/0.7/2.9% of the lower
    # bound, so it is held to 3% here and to issue 8's 1% on the larger corpus below (and on
    # the real dev corpus, docs/BENCHMARKS.md).
    _assert_bar(r, fill_target=optimum - 1e-9, max_ratio=1.03)


@pytest.mark.parametrize("ctx_len", [2048, 4096, pytest.param(16384, marks=pytest.mark.slow)])
def test_datasculpt_beats_the_baselines_on_a_labelled_synthetic_corpus(ctx_len: int) -> None:
    rng = np.random.default_rng(ctx_len)
    n_docs, n_topics, dim = 30_000 if ctx_len == 16384 else 8_000, 8, 64
    doc_len = np.clip(np.rint(rng.lognormal(np.log(600), 1.0, n_docs)), 16, 3 * ctx_len)
    labels = rng.integers(0, n_topics, n_docs)
    centres = rng.standard_normal((n_topics, dim))
    emb = centres[labels] / np.sqrt(dim) * 3 + rng.standard_normal((n_docs, dim)) / np.sqrt(dim)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    r = _compare(doc_len.astype(np.int64), emb, labels, ctx_len, resolve_backend("cpu"))
    _assert_bar(r, fill_target=0.999, max_ratio=1.01)
