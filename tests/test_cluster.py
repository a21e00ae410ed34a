"""cluster: k-means ladder and the ISODATA rules, on constructed vectors and a real corpus."""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

import numpy as np
import pytest
import torch
from helpers import numpy_blas_threads, packing_corpus, planted, purity, same_partition

import datasculpt.cluster as cluster_mod
from datasculpt.backend import resolve_backend
from datasculpt.cluster import (
    _assign_among,
    _candidates,
    _kmeans_torch,
    _merge,
    _Passes,
    _rung_unavailable,
    _RungMissing,
    _split,
    _state,
    auto_k,
    cluster,
    kmeans,
)
from datasculpt.config import ClusterConfig, EmbedConfig
from datasculpt.errors import ConfigError
from datasculpt.executors import LocalExecutor
from datasculpt.io.row_file import RowFile
from datasculpt.vectors import l2_normalize, nearest, spherical_lloyd

CPU = resolve_backend("cpu")
LOCAL = LocalExecutor()
CTX = 1000

TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    # subjects, verbs, objects: each topic has its own vocabulary, templates are shared.
    "astronomy": (
        ["the telescope", "the astronomer", "a distant galaxy", "the comet", "the space probe",
         "the nebula", "a red dwarf star", "the observatory"],
        ["observed", "orbited", "photographed", "emitted", "detected", "measured"],
        ["a supernova explosion", "the rings of Saturn", "infrared light from exoplanets",
         "a black hole accretion disk", "the cosmic microwave background", "lunar craters"],
    ),
    "cooking": (
        ["the chef", "my grandmother", "the baker", "the line cook", "the pastry student",
         "the home cook"],
        ["simmered", "whisked", "roasted", "kneaded", "seasoned", "caramelised"],
        ["the garlic and onions", "a pot of tomato sauce", "sourdough bread dough",
         "the chicken thighs with rosemary", "butter and sugar for the cake", "fresh pasta"],
    ),
    "football": (
        ["the striker", "the goalkeeper", "the referee", "the midfielder", "the coach",
         "the home team"],
        ["scored", "defended", "tackled", "celebrated", "passed", "blocked"],
        ["a penalty kick in extra time", "the league championship", "a header from a corner",
         "the offside decision", "the derby match", "a free kick into the top corner"],
    ),
    "law": (
        ["the judge", "the defence attorney", "the appellate court", "the prosecutor",
         "the jury", "the legislature"],
        ["ruled on", "appealed", "interpreted", "overturned", "drafted", "cited"],
        ["the breach of contract claim", "the constitutional amendment", "a criminal statute",
         "the plaintiff's motion to dismiss", "the precedent on liability", "the verdict"],
    ),
    "medicine": (
        ["the surgeon", "the nurse", "the cardiologist", "the clinical trial", "the patient",
         "the hospital pharmacist"],
        ["diagnosed", "prescribed", "treated", "monitored", "vaccinated against", "operated on"],
        ["a bacterial infection with antibiotics", "high blood pressure", "the tumour biopsy",
         "the fractured femur", "symptoms of diabetes", "an irregular heartbeat"],
    ),
    "software": (
        ["the compiler", "the developer", "the database server", "the unit test",
         "the python script", "the kernel module"],
        ["compiled", "refactored", "debugged", "deployed", "crashed on", "cached"],
        ["the memory leak in the parser", "a null pointer exception", "the REST API endpoint",
         "the git merge conflict", "a race condition between threads", "the SQL query plan"],
    ),
}


def topic_corpus(per_topic: int = 25, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Short paragraphs, 3-5 sentences each, drawn from one topic's vocabulary."""
    rng = random.Random(seed)
    texts, labels = [], []
    for t, (subj, verb, obj) in enumerate(TOPICS.values()):
        for _ in range(per_topic):
            sents = [f"{rng.choice(subj).capitalize()} {rng.choice(verb)} {rng.choice(obj)}."
                     for _ in range(rng.randint(3, 5))]
            texts.append(" ".join(sents))
            labels.append(t)
    order = rng.sample(range(len(texts)), len(texts))
    return [texts[i] for i in order], np.asarray(labels)[order]


def cfg(**kw: Any) -> ClusterConfig:
    return ClusterConfig(**{"split_threshold": 0.9, "min_cluster_windows": 1.0, **kw})


def test_kmeans_ladder_on_cpu_is_faiss() -> None:
    x, lab = planted(4, 100)
    cent, labels, impl = kmeans(x, 4, 20, 0, CPU)
    assert impl == "faiss-cpu"
    assert cent.shape == (4, 32) and np.allclose(np.linalg.norm(cent, axis=1), 1, atol=1e-5)
    assert purity(labels, lab) == 1.0
    np.testing.assert_array_equal(labels, nearest(x, cent))


def test_torch_kmeans_rung_recovers_planted_clusters() -> None:
    """The GPU's last rung is torch; the same code runs on the CPU here. Seed 2: from FAISS's
    random start for seeds 0 and 1, two centroids share a planted cluster, which no Lloyd
    iteration undoes (FAISS can, when a centroid empties and it re-seeds it: see below)."""
    x, lab = planted(5, 80, seed=2)
    cent = _kmeans_torch(x, 5, 20, 2, "cpu", 256).numpy()
    assert purity(nearest(x, cent), lab) >= 0.95


def test_the_torch_rung_is_faiss_lloyd_from_the_same_start() -> None:
    import faiss

    x, _ = planted(5, 80, seed=2)
    agreed = 0
    for seed in range(6):
        km = faiss.Kmeans(32, 5, niter=20, seed=seed, spherical=True, min_points_per_centroid=1,
                          max_points_per_centroid=256, verbose=False)
        km.train(x)
        if sum(it["nsplit"] for it in km.iteration_stats):
            continue  # FAISS re-seeded an emptied centroid; the torch rung leaves it in place
        agreed += 1
        np.testing.assert_allclose(_kmeans_torch(x, 5, 20, seed, "cpu", 256).numpy(),
                                   km.centroids, rtol=0, atol=1e-6)
    assert agreed >= 3


@pytest.mark.parametrize(("n", "count", "seed"), [
    (1, 1, 0), (2, 1, 7), (10, 10, 0), (10, 9, 5), (37, 37, 12), (1000, 64, 1234),
    (100_000, 6400, 1), (5, 3, 2**32 + 7)])
def test_the_seeding_permutation_is_faiss_own(n: int, count: int, seed: int) -> None:
    import faiss

    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed)
    np.testing.assert_array_equal(cluster_mod._faiss_perm_head(n, count, seed), perm[:count])


@pytest.mark.parametrize(("k", "max_points"), [(6, 256), (6, 16), (50, 4)])
def test_every_rung_starts_where_faiss_cpu_starts(k: int, max_points: int) -> None:
    """Both cases: all 600 rows train (6 x 256), or FAISS's subsample of them."""
    import faiss

    x, _ = planted(6, 100, seed=3)
    params = {"niter": 0, "seed": 7, "spherical": True, "max_points_per_centroid": max_points,
              "min_points_per_centroid": 1, "verbose": False}
    km = faiss.Kmeans(32, k, **params)
    km.train(x)  # no iterations: the normalised initial centroids
    train = cluster_mod._torch_sample(x, k, 7, "cpu", max_points)
    assert train.shape[0] == min(600, k * max_points)
    np.testing.assert_allclose(l2_normalize(cluster_mod._torch_init(train, k, 7).numpy()),
                               km.centroids, rtol=0, atol=1e-7)
    # What the FAISS-GPU rung does with device rows: train on that sample alone. FAISS then
    # draws no sample of its own, and ends with faiss-cpu's bits.
    own = faiss.Kmeans(32, k, **{**params, "niter": 10})
    own.train(train.numpy())
    np.testing.assert_array_equal(own.centroids,
                                  cluster_mod._kmeans_faiss(x, k, 10, 7, False, max_points))


def test_candidate_assignment_equals_exact_near_a_partition() -> None:
    x, lab = planted(20, 30, seed=4)
    cent, labels, _ = kmeans(x, 20, 10, 0, CPU)
    rng = np.random.default_rng(0)
    start = labels.copy()
    flip = rng.random(start.size) < 0.05  # some documents start at a wrong cluster
    start[flip] = rng.integers(0, 20, int(flip.sum()))
    np.testing.assert_array_equal(_assign_among(x, cent, start, _candidates(cent, 20)), labels)


def test_near_identical_centroids_are_merged() -> None:
    x, lab = planted(2, 200, noise=0.02)
    tokens = np.full(x.shape[0], 100)
    _, labels, _ = kmeans(x, 4, 20, 0, CPU)  # two centroids in each planted cluster
    merged, n_merged = _merge(_state(x, tokens, labels, 4), 0.9, 64 * CTX)
    assert n_merged == 2 and purity(merged, lab) == 1.0 and np.unique(merged).size == 2
    # pairs heavier than max_cluster_tokens stay apart (the split rule would undo them)
    assert _merge(_state(x, tokens, labels, 4), 0.9, 15_000)[1] == 0

    res = cluster(x, tokens, CTX, cfg(k=4, merge_threshold=0.9), CPU, 0, LOCAL)
    assert res.stats["k_initial"] == 4 and res.stats["k"] == 2
    assert res.stats["rounds"][0]["merged"] >= 1
    assert purity(res.labels, lab) == 1.0


def test_bimodal_cluster_is_split() -> None:
    x, lab = planted(2, 150, noise=0.05)
    c = cfg(k=1, split_threshold=0.2)
    res = cluster(x, np.full(x.shape[0], 100), CTX, c, CPU, 0, LOCAL)
    assert res.stats["rounds"][0]["split"] == 1
    assert res.stats["k"] == 2 and purity(res.labels, lab) == 1.0
    assert max(res.stats["spread"]) < 0.2
    # the same data with the default threshold stays one cluster: 1 - |mean| is ~0.29
    res = cluster(x, np.full(x.shape[0], 100), CTX, cfg(k=1, split_threshold=0.55), CPU, 0, LOCAL)
    assert res.stats["k"] == 1


def test_a_spread_cluster_too_light_to_halve_is_not_tried_and_the_others_split_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # cluster 0: two modes of 60 documents, 1,200 tokens (< 2 windows: no two halves of it
    # can each fill one); cluster 1: two modes of 150 documents, 30,000 tokens
    x, lab = planted(4, 150, noise=0.05)
    keep = (lab >= 2) | (np.arange(lab.size) % 150 < 60)
    x, lab = x[keep], lab[keep]
    tokens = np.where(lab < 2, 10, 100)
    labels = (lab >= 2).astype(np.int64)
    tried: list[int] = []
    rowdot = cluster_mod._rowdot
    monkeypatch.setattr(cluster_mod, "_rowdot",
                        lambda xs, c, seg: tried.append(xs.shape[0]) or rowdot(xs, c, seg))
    st = _state(x, tokens, labels, 2)
    assert (st.spread > 0.2).all() and st.mass[0] < 2 * CTX <= st.mass[1]
    out, n_split = _split(x, st, 0.2, 64 * CTX, CTX, 0.9, tokens)
    assert n_split == 1 and set(tried) == {300}  # only cluster 1's members were tried
    np.testing.assert_array_equal(out[labels == 0], 0)
    assert purity(out[labels == 1], lab[labels == 1]) == 1.0
    # cluster 1 splits into the same halves when it is the only cluster
    alone, _ = _split(x[labels == 1], _state(x[labels == 1], tokens[labels == 1],
                                             np.zeros(300, np.int64), 1),
                      0.2, 64 * CTX, CTX, 0.9, tokens[labels == 1])
    np.testing.assert_array_equal(alone == 1, out[labels == 1] == 2)


def test_cluster_heavier_than_max_tokens_is_split() -> None:
    x, _ = planted(1, 400, noise=0.3)
    res = cluster(x, np.full(400, 100), CTX, cfg(k=1, max_cluster_tokens=12_000), CPU, 0, LOCAL)
    assert res.stats["k"] >= 4
    assert max(res.stats["tokens"]) <= 12_000
    assert sum(res.stats["tokens"]) == 40_000


def test_cluster_below_one_window_is_folded() -> None:
    x, lab = planted(3, 60, noise=0.05)
    tokens = np.where(lab == 2, 5, 100)  # cluster 2 holds 300 tokens < one 1000-token window
    res = cluster(x, tokens, CTX, cfg(k=3), CPU, 0, LOCAL)
    assert res.stats["rounds"][0]["folded"] == 1
    assert res.stats["k"] == 2
    assert min(res.stats["tokens"]) >= CTX
    assert purity(res.labels[lab != 2], lab[lab != 2]) == 1.0


def test_stops_on_epsilon_and_runs_to_max_iter_without_it() -> None:
    x, _ = planted(4, 100, noise=0.05)
    tokens = np.full(x.shape[0], 100)
    res = cluster(x, tokens, CTX, cfg(k=4, epsilon=1e-3, max_iter=10), CPU, 0, LOCAL)
    assert res.stats["converged"] and res.stats["iterations"] == 1
    assert res.stats["final_shift"] < 1e-3
    res = cluster(x, tokens, CTX, cfg(k=4, epsilon=-1.0, max_iter=3), CPU, 0, LOCAL)
    assert not res.stats["converged"] and res.stats["iterations"] == 3


def test_same_seed_same_labels_in_canonical_order() -> None:
    x, _ = planted(6, 50, noise=0.2, seed=7)
    tokens = np.random.default_rng(0).integers(10, 400, x.shape[0])
    a = cluster(x, tokens, CTX, cfg(k=6), CPU, seed=3, executor=LOCAL)
    b = cluster(x.copy(), tokens.copy(), CTX, cfg(k=6), CPU, seed=3, executor=LOCAL)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.labels.dtype == np.int32 and a.centroids.dtype == np.float32
    _, first = np.unique(a.labels, return_index=True)
    assert (np.diff(first) > 0).all() and a.labels[0] == 0
    assert a.centroids.shape == (a.stats["k"], 32)
    assert len(a.stats["sizes"]) == a.stats["k"] and sum(a.stats["sizes"]) == x.shape[0]


def test_round_passes_in_blocks_reduce_to_one_pass() -> None:
    x, lab = planted(6, 70, noise=0.05, seed=9)
    w = np.random.default_rng(1).integers(10, 900, x.shape[0]).astype(np.float64)
    means = np.stack([x[lab == j].mean(axis=0) for j in range(6)])
    extra = -x.mean(axis=0, keepdims=True)  # a centroid no document is nearest to
    cent = np.concatenate([means, extra]).astype(np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    ref = _state(x, w, nearest(x, cent), 7)  # one pass; drops the empty 7th cluster
    one, kept_one = _Passes(x, w, CPU, LOCAL, 10**6).state(7, cent=cent)
    many, kept = _Passes(x, w, CPU, LOCAL, 61).state(7, cent=cent)  # 7 blocks
    np.testing.assert_array_equal(kept, np.arange(6))
    np.testing.assert_array_equal(kept_one, kept)
    for st in (one, many):
        np.testing.assert_array_equal(st.labels, lab)
        np.testing.assert_array_equal(st.count, ref.count)
        np.testing.assert_array_equal(st.mass, ref.mass)  # integer token counts: exact
    np.testing.assert_array_equal(one.sums, ref.sums)  # one block is the single pass, bit for bit
    np.testing.assert_allclose(many.sums, ref.sums, rtol=1e-5, atol=1e-5)
    # candidate assignment inside the blocks agrees with exact assignment here
    cand, _ = _Passes(x, w, CPU, LOCAL, 61).state(
        7, labels=lab, cent=cent, nbr=cluster_mod._candidates(cent, 3))
    np.testing.assert_array_equal(cand.labels, lab)


def test_fixed_point_sums_have_the_same_bits_in_any_order() -> None:
    # What the GPU's atomics need (run here on NumPy): the same rows in another order, and in
    # other blocks, give the same fixed-point sums; float32 sums of these rows do not.
    rng = np.random.default_rng(3)
    x, _ = planted(5, 400, noise=0.5, seed=3)
    lab = rng.integers(0, 5, x.shape[0])
    perm = rng.permutation(x.shape[0])
    fixed = cluster_mod._fixed_point_sum(x, lab, 5)
    assert fixed.dtype == np.float32 and fixed.shape == (5, 32)
    np.testing.assert_array_equal(
        cluster_mod._fixed_point_sum(x[perm], lab[perm], 5, block=37), fixed)
    floats = cluster_mod._segment_sum(x, lab, 5)
    assert not np.array_equal(cluster_mod._segment_sum(x[perm], lab[perm], 5), floats)
    # within one float32 spacing of the exact sum (one rounding at the end)
    exact = np.zeros((5, 32))
    np.add.at(exact, lab, x.astype(np.float64))
    assert (np.abs(fixed - exact) <= np.spacing(np.abs(exact).astype(np.float32))).all()
    # entries at the bound of the scale (every row +-1 on one axis) do not overflow
    n = 2**12 - 1
    edge = np.zeros((n, 2), np.float32)
    edge[:, 0] = np.where(np.arange(n) % 3 == 0, -1.0, 1.0)
    assert cluster_mod._fixed_point_sum(edge, np.zeros(n, np.int64), 1).tolist() == [
        [float(edge[:, 0].sum()), 0.0]]
    ones = np.ones((n, 1), np.float32)
    assert cluster_mod._fixed_point_sum(ones, np.zeros(n, np.int64), 1).tolist() == [[n]]


def test_blocked_rounds_do_not_depend_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = planted(8, 60, noise=0.25, seed=11)
    tokens = np.random.default_rng(2).integers(10, 600, x.shape[0])
    c = cfg(k=8, task_docs=50, max_iter=4, epsilon=-1.0)
    monkeypatch.setattr(cluster_mod, "host_threads", lambda: 1)
    serial = cluster(x, tokens, CTX, c, CPU, 0, LOCAL)
    monkeypatch.setattr(cluster_mod, "host_threads", lambda: 4)
    threaded = cluster(x, tokens, CTX, c, CPU, 0, LOCAL)
    assert serial.stats["iterations"] == 4
    np.testing.assert_array_equal(serial.labels, threaded.labels)
    np.testing.assert_array_equal(serial.centroids, threaded.centroids)


def test_the_rounds_hold_blas_at_one_thread_whatever_the_caller_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The candidate products are small, where OpenBLAS rounds differently with another
    thread count (at 1M static vectors the labels differed between 1 and 2 threads), so
    the stage's tasks run them on one thread, whatever the caller's limit."""
    from threadpoolctl import threadpool_limits

    x, _ = planted(40, 30, d=64, noise=0.3, seed=5)
    tokens = np.random.default_rng(4).integers(10, 600, x.shape[0])
    c = cfg(k=40, assign_candidates=8, task_docs=300, max_iter=3, epsilon=-1.0)
    seen: list[set[int]] = []
    among = cluster_mod._assign_among

    def counted(*args: Any) -> Any:
        seen.append(numpy_blas_threads())
        return among(*args)

    monkeypatch.setattr(cluster_mod, "_assign_among", counted)
    monkeypatch.setattr(cluster_mod, "host_threads", lambda: 2)
    with threadpool_limits(4, user_api="blas"):
        four = cluster(x, tokens, CTX, c, CPU, 0, LOCAL)
        outside = numpy_blas_threads()
    assert seen and all(s == {1} for s in seen) and outside == {4}  # restored after
    with threadpool_limits(1, user_api="blas"):
        one = cluster(x, tokens, CTX, c, CPU, 0, LOCAL)
    assert four.stats["rounds"][0]["assign"] == "candidates-8"
    np.testing.assert_array_equal(four.labels, one.labels)
    np.testing.assert_array_equal(four.centroids, one.centroids)


@pytest.mark.parametrize(
    ("n", "k"), [(1, None), (1, 5), (2, None), (3, 10), (7, 7)]
)
def test_tiny_inputs(n: int, k: int | None) -> None:
    x, _ = planted(3, 5, seed=1)
    res = cluster(x[:n], np.full(n, 2000), CTX, cfg(k=k), CPU, 0, LOCAL)
    assert res.labels.shape == (n,) and res.labels.min() == 0
    assert res.centroids.shape == (res.stats["k"], 32) and res.stats["k"] <= n


def test_identical_vectors_and_empty_input() -> None:
    x = np.tile(np.float32([[0.6, 0.8, 0.0]]), (40, 1))
    res = cluster(x, np.full(40, 500), CTX, cfg(k=5), CPU, 0, LOCAL)
    assert res.stats["k"] == 1 and (res.labels == 0).all()
    empty = cluster(np.zeros((0, 3), np.float32), np.zeros(0), CTX, cfg(), CPU, 0, LOCAL)
    assert empty.labels.shape == (0,) and empty.stats["k"] == 0


def test_auto_k() -> None:
    assert auto_k(1, 10, 1000, 8) == 1
    assert auto_k(1_000_000, 1e9, 16384, 8) == 1000  # capped at sqrt(N)
    assert auto_k(10_000, 2e6, 1000, 8) == 100  # below the cap: token mass decides
    assert auto_k(10, 1e9, 1000, 8) == 4  # sqrt(10) -> 4 and N // 2 = 5


@pytest.fixture(scope="module")
def topic_embeddings() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from datasculpt.embed import embed_texts
    from datasculpt.tokenize import load_tokenizer

    texts, labels = topic_corpus(per_topic=25)
    emb, _ = embed_texts(texts, EmbedConfig(), CPU, progress=False)
    tok = load_tokenizer("default")
    n_tokens = np.asarray([len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]])
    return emb, n_tokens, labels


def test_topic_corpus_clusters_by_topic(topic_embeddings: tuple) -> None:
    emb, n_tokens, labels = topic_embeddings
    ctx_len = 256
    c = dataclasses.replace(ClusterConfig(), windows_per_cluster=2.0)
    res = cluster(emb, n_tokens, ctx_len, c, CPU, seed=0, executor=LOCAL)
    assert res.stats["kmeans"] == "faiss-cpu"
    assert purity(res.labels, labels, n_tokens) >= 0.85, res.stats
    assert min(res.stats["tokens"]) >= ctx_len  # folded up to one window


@pytest.mark.slow  # ISODATA on the whole sample at 4096 (the embedding is shared, session-wide)
def test_embedded_sample_clusters_by_topic(sample_semantics: dict[str, Any]) -> None:
    s = sample_semantics
    _, truth = np.unique(s["labels"], return_inverse=True)
    res = cluster(s["embeddings"], s["doc_len"], 4096, ClusterConfig(), CPU, seed=0,
                  executor=LOCAL)
    assert purity(res.labels, truth, s["doc_len"]) >= 0.85, res.stats


@pytest.mark.gpu
def test_gpu_kmeans_ladder_and_cluster() -> None:
    import cupy

    gpu = resolve_backend("gpu")
    x, lab = planted(8, 200, seed=5)
    cent, labels, impl = kmeans(cupy.asarray(x), 8, 20, 0, gpu)
    assert impl in ("cuml", "faiss-gpu", "torch-cuda")
    assert isinstance(cent, cupy.ndarray) and isinstance(labels, cupy.ndarray)
    assert purity(cupy.asnumpy(labels), lab) >= 0.95
    torch_cent = cupy.asarray(_kmeans_torch(cupy.asarray(x), 8, 20, 0, "cuda", 256))
    assert purity(cupy.asnumpy(nearest(cupy.asarray(x), torch_cent)), lab) >= 0.95
    c = cfg(k=8, max_points_per_centroid=256)  # see test_planted_stage_on_the_cpu
    res = cluster(cupy.asarray(x), np.full(x.shape[0], 100), CTX, c, gpu, 0, LOCAL)
    cpu = cluster(x, np.full(x.shape[0], 100), CTX, c, CPU, 0, LOCAL)
    assert isinstance(res.labels, np.ndarray) and res.stats["k"] == cpu.stats["k"] == 8
    np.testing.assert_array_equal(res.labels, cpu.labels)  # canonical numbering


def _uneven() -> tuple[np.ndarray, np.ndarray]:
    # Clusters of different spread: Euclidean k-means on unit vectors favours the tight ones.
    return planted(6, 120, d=24, noise=np.linspace(0.02, 0.12, 6), seed=1)


def test_spherical_polish_turns_euclidean_centroids_into_a_spherical_fixed_point() -> None:
    # What the cuML rung does after cuML's Euclidean k-means, here from faiss's Euclidean one.
    import faiss

    x, truth = _uneven()
    km = faiss.Kmeans(x.shape[1], 6, niter=20, seed=0, spherical=False, verbose=False)
    km.train(x)
    t = torch.from_numpy(x)
    cent = torch.nn.functional.normalize(torch.from_numpy(km.centroids), dim=1)
    polished, stats = cluster_mod._spherical_polish(t, cent, 25)
    assert stats["kmeans_polish_converged"] and 1 <= stats["kmeans_polish_iterations"] < 25
    lab = torch.argmax(t @ polished.T, dim=1)
    again = spherical_lloyd(t, polished, 1)
    assert torch.equal(again, polished)  # a fixed point: one more iteration moves nothing
    assert torch.equal(polished, spherical_lloyd(t, cent, stats["kmeans_polish_iterations"]))
    assert torch.allclose(polished.norm(dim=1), torch.ones(6))
    _, ref, _ = kmeans(x, 6, 20, 0, CPU)  # the faiss spherical rung
    for labels in (lab.numpy(), ref):  # both: the planted partition, up to numbering
        assert np.unique(np.stack([labels, truth]), axis=1).shape[1] == 6


def test_a_polish_out_of_iterations_says_so(caplog) -> None:
    x, _ = planted(6, 60, noise=0.3, seed=4)
    t = torch.from_numpy(x)
    start = t[:6].clone()  # six rows of the first planted cluster: far from any fixed point
    with caplog.at_level(logging.WARNING, logger="datasculpt.cluster"):
        cent, stats = cluster_mod._spherical_polish(t, start, 1)
    assert stats == {"kmeans_polish_iterations": 1, "kmeans_polish_converged": False}
    assert "not a fixed point" in caplog.text
    assert not torch.equal(spherical_lloyd(t, cent, 1), cent)  # indeed not one


def test_a_named_kmeans_rung_runs_or_is_an_error() -> None:
    x, _ = _uneven()
    _, _, impl = kmeans(x, 6, 10, 0, CPU, rung="torch")
    assert impl == "torch-cpu"
    with pytest.raises(ConfigError, match="not a rung of the cpu backend"):
        kmeans(x, 6, 10, 0, CPU, rung="cuml")


def test_a_broken_library_is_told_apart_from_a_missing_one(caplog) -> None:
    missing = ModuleNotFoundError("No module named 'cuml'", name="cuml")
    broken = ImportError("libcudart.so.12: cannot open shared object file")
    with caplog.at_level(logging.WARNING, logger="datasculpt.cluster"):
        _rung_unavailable("cuml", broken, forced=False)
    assert "installed but failing" in caplog.text and "libcudart" in caplog.text
    for exc, state in ((missing, "not available"), (broken, "installed but failing"),
                       (_RungMissing("no GPU support"), "not available")):
        with pytest.raises(ConfigError, match=state):
            _rung_unavailable("cuml", exc, forced=True)


@pytest.mark.gpu
@pytest.mark.parametrize("rung", ["cuml", "faiss-gpu", "torch"])
def test_each_kmeans_rung_on_the_gpu(gpu_backend, rung: str) -> None:
    import cupy

    x, lab = planted(8, 200, seed=5)
    try:
        cent, labels, impl = kmeans(cupy.asarray(x), 8, 20, 0, gpu_backend, rung=rung)
    except ConfigError as exc:
        if "not available" in str(exc):
            pytest.skip(f"{rung}: {exc}")
        raise
    assert impl == ("torch-cuda" if rung == "torch" else rung)
    assert isinstance(cent, cupy.ndarray) and isinstance(labels, cupy.ndarray)
    assert same_partition(cupy.asnumpy(labels), lab)


def _planted_stage() -> tuple[np.ndarray, np.ndarray, np.ndarray, ClusterConfig]:
    """Well-separated clusters that the CPU recovers (checked below on every run). All 1600
    rows train k-means (8 x 256): from the 512-row sample of the default 64 per centroid,
    FAISS's random start ends with two planted clusters in one, for seed 0."""
    x, lab = planted(8, 200, seed=5)
    c = ClusterConfig(k=8, split_threshold=0.9, task_docs=300,  # several block passes
                      max_points_per_centroid=256)
    return x, lab, np.full(x.shape[0], 100), c


@pytest.mark.parametrize("rung", ["faiss-cpu", "torch"])
def test_planted_stage_on_the_cpu(rung: str) -> None:
    x, lab, tokens, c = _planted_stage()
    res = cluster(x, tokens, 1000, dataclasses.replace(c, kmeans=rung), CPU, 0, LOCAL)
    assert res.stats["kmeans"] in (rung, f"{rung}-cpu") and same_partition(res.labels, lab)


@pytest.mark.gpu
def test_cluster_stage_on_the_gpu_matches_the_cpu(gpu_backend) -> None:
    import cupy

    x, lab, tokens, c = _planted_stage()
    res = cluster(cupy.asarray(x), tokens, 1000, c, gpu_backend, 0, LOCAL)
    cpu = cluster(x, tokens, 1000, c, CPU, 0, LOCAL)
    assert res.stats["xp"] == "cupy" and res.stats["assign"] == "exact"
    np.testing.assert_array_equal(res.labels, cpu.labels)  # canonical numbering
    assert same_partition(res.labels, lab)


@pytest.mark.gpu
def test_gpu_clusters_real_text_as_purely_as_the_cpu(gpu_backend, topic_embeddings) -> None:
    # Real embeddings: no equal labels asserted, the bar test_topic_corpus_clusters_by_topic
    # sets for the CPU.
    import cupy

    emb, n_tokens, labels = topic_embeddings
    c = dataclasses.replace(ClusterConfig(), windows_per_cluster=2.0)
    res = cluster(cupy.asarray(emb), n_tokens, 256, c, gpu_backend, seed=0, executor=LOCAL)
    assert res.stats["xp"] == "cupy"
    assert purity(res.labels, labels, n_tokens) >= 0.85, res.stats
    assert min(res.stats["tokens"]) >= 256


# --------------------------------------------------------------------------- two levels

# The labels today's flat clustering gave the corpus of ``_flat_corpus`` before the two
# levels existed (commit 52165b2, faiss-cpu): a change to the single-cell path breaks this.
FLAT_LABELS_SHA256 = "a1982ffdd001b1aebe0fd5426a685774590b126cbf5e544a57d392296975d415"


def _flat_corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray, ClusterConfig]:
    x, lab = planted(10, 120, noise=0.25, seed=4, shuffle=True)
    tokens = np.random.default_rng(5).integers(10, 900, x.shape[0])
    return x, lab, tokens, ClusterConfig(split_threshold=0.9, task_docs=250)


@pytest.mark.parametrize("cell_docs", [1200, 10**6])  # N itself (the bound) and the default
def test_one_cell_is_todays_flat_clustering_bit_for_bit(cell_docs: int) -> None:
    import hashlib

    x, _, tokens, c = _flat_corpus()
    assert x.shape[0] == 1200
    res = cluster(x, tokens, 2000, dataclasses.replace(c, cell_docs=cell_docs), CPU, 0, LOCAL)
    flat = cluster_mod._cluster_flat(x, tokens, 2000, c, CPU, 0, LOCAL)
    assert "cells" not in res.stats and res.stats["k"] == 35
    assert hashlib.sha256(res.labels.tobytes()).hexdigest() == FLAT_LABELS_SHA256
    np.testing.assert_array_equal(res.labels, flat.labels)
    np.testing.assert_array_equal(res.centroids, flat.centroids)
    # the centroids are their members' normalised means (up to float32 sums in blocks)
    means = np.stack([x[res.labels == j].mean(axis=0) for j in range(res.stats["k"])])
    np.testing.assert_allclose(res.centroids, l2_normalize(means), atol=1e-6)
    # one document more than the bound: two levels
    more = cluster(x, tokens, 2000, dataclasses.replace(c, cell_docs=1199), CPU, 0, LOCAL)
    assert more.stats["cells"] == 2


def _cells_corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray, ClusterConfig]:
    doc_len, x, lab = packing_corpus(3000, 2048, 12, 32, seed=3)
    return x, lab, doc_len, ClusterConfig(split_threshold=0.9, task_docs=200, cell_docs=500)


def test_cells_label_every_document_deterministically_and_keep_quality(
        monkeypatch: pytest.MonkeyPatch) -> None:
    x, lab, tokens, c = _cells_corpus()
    monkeypatch.setattr(cluster_mod, "host_threads", lambda: 1)
    serial = cluster(x, tokens, 2048, c, CPU, 0, LOCAL)
    monkeypatch.setattr(cluster_mod, "host_threads", lambda: 4)
    threaded = cluster(x, tokens, 2048, c, CPU, 0, LOCAL)
    np.testing.assert_array_equal(serial.labels, threaded.labels)
    np.testing.assert_array_equal(serial.centroids, threaded.centroids)
    res, k = serial, serial.stats["k"]
    assert res.stats["cells"] == 6 and sum(res.stats["cell_sizes"]) == x.shape[0]
    assert res.labels.dtype == np.int32 and res.centroids.shape == (k, 32)
    assert (np.bincount(res.labels, minlength=k) > 0).all() and res.labels.max() == k - 1
    assert sum(res.stats["sizes"]) == x.shape[0] and len(res.stats["sizes"]) == k
    # Each cell is today's clustering of its own documents, its labels after the cells before
    # it: a cell's clusters are consecutive labels, and cells are numbered by first document.
    unit = l2_normalize(x)
    offset, seen = 0, np.zeros(x.shape[0], bool)
    for size, cell_k in zip(res.stats["cell_sizes"], res.stats["cell_k"], strict=True):
        rest = np.nonzero(~seen)[0]
        idx = np.nonzero((res.labels >= offset) & (res.labels < offset + cell_k))[0]
        assert idx.shape[0] == size and idx[0] == rest[0]
        alone = cluster_mod._cluster_flat(unit[idx], tokens[idx], 2048, c, CPU, 0, LOCAL)
        np.testing.assert_array_equal(res.labels[idx] - offset, alone.labels)
        np.testing.assert_array_equal(res.centroids[offset:offset + cell_k], alone.centroids)
        seen[idx] = True
        offset += cell_k
    assert seen.all() and offset == k
    flat = cluster(x, tokens, 2048, dataclasses.replace(c, cell_docs=10**6), CPU, 0, LOCAL)
    assert "cells" not in flat.stats
    # Six cells for twelve noisy topics: the coarse borders cut a few topics, and the
    # fragments share clusters inside their cells (0.983 against 0.996 flat, seed 0).
    p_cells, p_flat = purity(res.labels, lab, tokens), purity(flat.labels, lab, tokens)
    assert p_cells >= p_flat - 0.02, (p_cells, p_flat)


# --------------------------------------------------------------------------- rows from a file


def _as_row_file(x: np.ndarray, path: Any) -> RowFile:
    np.save(path, np.asarray(x, dtype=np.float32))
    return RowFile(path)


def _without_times(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if "seconds" not in k and k != "rounds"}


def test_cells_read_from_the_file_are_the_cells_of_the_matrix_in_memory(tmp_path) -> None:
    # The cluster stage hands a CPU run's embeddings.npy over as a RowFile: the coarse
    # k-means trains on its sample only (k1 * max_points = 384 of 3000 rows), blocks of
    # task_docs rows are assigned and each cell reads its own rows. The bits must be those of
    # the matrix in memory (a memmap too), and raw rows must give those of normalised ones.
    x, _, tokens, c = _cells_corpus()
    raw = (x * np.random.default_rng(1).uniform(0.5, 3.0, (x.shape[0], 1))).astype(np.float32)
    rows = _as_row_file(raw, tmp_path / "embeddings.npy")
    in_memory = cluster(raw, tokens, 2048, c, CPU, 0, LOCAL)
    assert in_memory.stats["cells"] == 6
    for given in (rows, np.load(tmp_path / "embeddings.npy", mmap_mode="r")):
        res = cluster(given, tokens, 2048, c, CPU, 0, LOCAL)
        np.testing.assert_array_equal(res.labels, in_memory.labels)
        assert res.centroids.tobytes() == in_memory.centroids.tobytes()
        assert _without_times(res.stats) == _without_times(in_memory.stats)
    # one cell: the flat path maps the whole file, with the bits of the array
    flat = dataclasses.replace(c, cell_docs=10**6)
    a, b = (cluster(v, tokens, 2048, flat, CPU, 0, LOCAL) for v in (rows, raw))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.centroids.tobytes() == b.centroids.tobytes()


@pytest.mark.parametrize(("cell_docs", "max_points", "task_docs"), [
    (500, 64, 200),  # a sample of 384 rows, 15 blocks
    (700, 1000, 3000),  # the sample is every row, one block
    (500, 1, 128),  # a sample of k rows: trained on all rows, as FAISS then does
    (1, 64, 200),  # a cell per document: k-means' trivial case
])
def test_the_coarse_pass_by_rows_is_the_pass_over_the_normalised_matrix(
        tmp_path, cell_docs: int, max_points: int, task_docs: int) -> None:
    # _coarse_on_device is the two levels' coarse pass as it has always run (the normalised
    # matrix, the k-means on all of it, _Passes); it runs on NumPy too.
    x, _, tokens, _ = _cells_corpus()
    x = x[:1500]
    c = ClusterConfig(cell_docs=cell_docs, max_points_per_centroid=max_points,
                      task_docs=task_docs)
    k1 = -(-x.shape[0] // cell_docs)
    rows = _as_row_file(x, tmp_path / "embeddings.npy")
    w = tokens[:1500].astype(np.float64)
    want, impl_want, unit, _ = cluster_mod._coarse_on_device(x, w, k1, c, CPU, 3, LOCAL)
    got, impl = cluster_mod._coarse_by_rows(rows, rows, k1, c, CPU, 3, LOCAL)
    np.testing.assert_array_equal(got, want)
    assert impl == impl_want
    # and a cell's task reading its rows gives the clustering of the normalised rows
    idx = np.flatnonzero(want == want[0])
    cfg = ClusterConfig(split_threshold=0.9, task_docs=200)
    by_rows, normalised = (
        cluster_mod._cell_task(idx, x=v, w=w, unit=u, ctx_len=2048, cfg=cfg, backend="cpu",
                               seed=0) for v, u in ((rows, False), (unit, True)))
    np.testing.assert_array_equal(by_rows.labels, normalised.labels)
    assert by_rows.centroids.tobytes() == normalised.centroids.tobytes()


def test_a_row_normalised_in_any_block_has_the_same_bits() -> None:
    # What reading by rows rests on: l2_normalize is per row, whatever the rows around it.
    rng = np.random.default_rng(2)
    for dim in (1, 7, 32, 384, 1000):
        x = (rng.standard_normal((600, dim)) * rng.uniform(1e-3, 1e3, (600, 1))).astype(
            np.float32)
        whole = l2_normalize(x)
        for a, b in ((0, 1), (5, 77), (64, 600), (599, 600)):
            assert l2_normalize(x[a:b]).tobytes() == whole[a:b].tobytes()
        idx = np.sort(rng.choice(600, 50, replace=False))
        assert l2_normalize(x[idx]).tobytes() == whole[idx].tobytes()
