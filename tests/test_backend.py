"""The GPU review's findings, exercised on the CPU through the same code: what a GPU run would
trip over first (dtype choice, int64 scatter, the k-means ladder, kNN limits, rung reporting)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from datasculpt.backend import gpu_problem, resolve_backend, scatter_add
from datasculpt.cluster import _rung_unavailable, _RungMissing, kmeans
from datasculpt.config import EmbedConfig
from datasculpt.embed import auto_cuda_dtype, embed_texts
from datasculpt.errors import ConfigError
from datasculpt.knn import drop_self, knn, search_torch
from datasculpt.rungs import gpu_warnings
from datasculpt.vectors import spherical_lloyd

CPU = resolve_backend("cpu")


def test_int64_scatter_add_is_refused_everywhere() -> None:
    # cupyx.scatter_add has no int64 before CuPy 14.1: the CPU path refuses it too, so the
    # CPU tests of the packing kernel catch such a call before a GPU run does.
    with pytest.raises(TypeError, match="int64"):
        scatter_add(np.zeros(4, np.int64), np.array([0, 1, 1]), 1)
    counts = np.zeros(4, np.int32)
    scatter_add(counts, np.array([0, 1, 1, 3]), 1)
    assert counts.tolist() == [1, 2, 0, 1]


@pytest.mark.parametrize(("capability", "dtype"), [
    ((6, 0), torch.float16), ((7, 0), torch.float16), ((7, 5), torch.float16),
    ((8, 0), torch.bfloat16), ((8, 9), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_dtype_uses_bf16_only_where_it_is_native(capability, dtype) -> None:
    # T4 (7.5) and V100 (7.0) emulate bf16, which is_bf16_supported() counts as support.
    assert auto_cuda_dtype(capability) == dtype


def test_embed_reports_the_models_real_dtype() -> None:
    texts = ["a short text", "another one about cooking"]
    _, stats = embed_texts(texts, EmbedConfig(dtype="bf16"), CPU, progress=False)
    assert stats["dtype"] == "bfloat16"
    _, stats = embed_texts(texts, EmbedConfig(), CPU, progress=False)
    assert stats["dtype"] == "float32"


def test_knn_torch_rung_is_exact_beyond_faiss_gpu_k_limit(monkeypatch) -> None:
    # FAISS-GPU selects at most 2048 neighbours; larger k goes to the torch rung, which must
    # give the same neighbours as faiss. Small chunks: several matmuls write into one output.
    import datasculpt.knn as knn_mod

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(knn_mod, "_TORCH_CHUNK_BYTES", 4 * 2300 * 97)  # 97-row chunks
    s_t, i_t = drop_self(*search_torch(x, 2101, "cpu"))
    s_f, i_f = knn(x, 2100, CPU)
    np.testing.assert_allclose(s_t, s_f, atol=1e-5)
    assert (i_t == i_f).mean() > 0.999  # float ties may swap


def _planted(k: int = 6, per: int = 120, d: int = 24, seed: int = 1) -> tuple:
    rng = np.random.default_rng(seed)
    dirs = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    lab = np.repeat(np.arange(k), per)
    # Clusters of different spread: Euclidean k-means on unit vectors favours the tight ones.
    noise = np.repeat(np.linspace(0.02, 0.12, k), per)[:, None]
    x = dirs[lab] + noise * rng.normal(size=(lab.size, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab


def test_spherical_polish_turns_euclidean_centroids_into_a_spherical_fixed_point() -> None:
    # What the cuML rung does after cuML's Euclidean k-means, here from faiss's Euclidean one.
    import faiss

    x, truth = _planted()
    km = faiss.Kmeans(x.shape[1], 6, niter=20, seed=0, spherical=False, verbose=False)
    km.train(x)
    t = torch.from_numpy(x)
    cent = torch.nn.functional.normalize(torch.from_numpy(km.centroids), dim=1)
    polished = spherical_lloyd(t, cent, 5)
    lab = torch.argmax(t @ polished.T, dim=1)
    again = spherical_lloyd(t, polished, 1)
    assert torch.equal(torch.argmax(t @ again.T, dim=1), lab)  # a fixed point
    assert torch.allclose(polished.norm(dim=1), torch.ones(6))
    _, ref, _ = kmeans(x, 6, 20, 0, CPU)  # the faiss spherical rung
    for labels in (lab.numpy(), ref):  # both: the planted partition, up to numbering
        assert np.unique(np.stack([labels, truth]), axis=1).shape[1] == 6


def test_a_named_kmeans_rung_runs_or_is_an_error() -> None:
    x, _ = _planted()
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


def test_gpu_problem_names_the_reason_here() -> None:
    problem = gpu_problem()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert problem is not None
    assert ("CPU-only build" in problem) == (torch.version.cuda is None)


def test_host_rungs_of_a_gpu_run_are_warnings() -> None:
    from datasculpt.stages.cluster import CLUSTER
    from datasculpt.stages.embed import embed_stage
    from datasculpt.stages.pack import pack_stage

    stats = {"embed": {"rung": "torch-cuda/bfloat16"},
             "cluster": {"kmeans": "faiss-cpu", "xp": "cupy"},
             "pack": {"rung": "cupy"}, "pack_bfd": {"rung": "host"},
             "pack_iclm": {"rung": "torch-cpu"}}
    stages = [embed_stage("encoder"), CLUSTER, pack_stage("datasculpt", "datasculpt", "window"),
              pack_stage("bfd", "datasculpt", "window"),
              pack_stage("iclm", "datasculpt", "window")]
    rungs = {s.name: s.rung(stats[s.name]) for s in stages if s.rung}
    assert rungs["embed"] == "torch-cuda/bfloat16" and rungs["pack"] == "cupy"
    assert rungs["cluster"] == "faiss-cpu; rounds on cupy"
    warnings = gpu_warnings(rungs, "gpu")
    assert sorted(w.split()[0] for w in warnings) == ["cluster", "pack_iclm"]
    assert gpu_warnings(rungs, "cpu") == []


def test_the_report_says_where_each_stage_ran(tmp_path) -> None:
    import json

    from helpers import write_jsonl

    import datasculpt

    rng = np.random.default_rng(0)
    write_jsonl(tmp_path / "in.jsonl", [{"docid": f"d{i}", "content": "word " * (20 + i)}
                                        for i in range(60)])
    np.save(tmp_path / "emb.npy", rng.normal(size=(60, 8)).astype(np.float32))
    cfg = datasculpt.default_config(
        input=str(tmp_path / "in.jsonl"), ctx_len=256,
        **{"embed.precomputed": str(tmp_path / "emb.npy"), "report.plots": False,
           "report.progress": False, "backend.name": "cpu", "report.baselines": True})
    report = datasculpt.run(cfg, output_dir=str(tmp_path / "run"))
    rungs = report["run"]["rungs"]
    assert rungs == {"embed": "given vectors", "cluster": "faiss-cpu; rounds on numpy",
                     "pack": "numpy", "pack_concat": "host", "pack_bfd": "host",
                     "pack_iclm": "faiss-cpu"}
    assert report["run"]["warnings"] == []
    assert json.loads((tmp_path / "run" / "report.json").read_text())["run"]["rungs"] == rungs
    assert "| cluster |" in (tmp_path / "run" / "report.md").read_text()
