"""knn: exact inner-product neighbours without the row itself, on every rung of the ladder."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import planted

import datasculpt.knn as knn_mod
from datasculpt.backend import gpu_problem, resolve_backend
from datasculpt.errors import ConfigError
from datasculpt.knn import drop_self, knn, knn_impl, search_torch

CPU = resolve_backend("cpu")


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, axis=1), idx


def test_cpu_ladder_picks_faiss_cpu_and_gpu_backend_is_refused() -> None:
    assert knn_impl(CPU) == "faiss-cpu"
    if gpu_problem() is not None:
        with pytest.raises(ConfigError, match="no usable GPU"):
            resolve_backend("gpu")


def test_faiss_cpu_matches_brute_force_and_excludes_self() -> None:
    x = _unit(300, 24)
    sims, idx = knn(x, 7, CPU)
    ref_s, ref_i = _brute(x, 7)
    assert sims.shape == idx.shape == (300, 7)
    assert idx.dtype == np.int64 and sims.dtype == np.float32
    assert not (idx == np.arange(300)[:, None]).any()
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_torch_rung_agrees_with_faiss() -> None:
    """The GPU fallback rung is plain torch, so its logic is checked here on the CPU."""
    x = _unit(257, 16, seed=1)
    s_t, i_t = drop_self(*search_torch(x, 6, "cpu"))
    s_f, i_f = knn(x, 5, CPU)
    np.testing.assert_array_equal(i_t, i_f)
    np.testing.assert_allclose(s_t, s_f, atol=1e-5)


def test_duplicates_small_n_and_large_k() -> None:
    x = np.repeat(_unit(3, 8), 4, axis=0)  # 12 rows, each with 3 exact copies
    sims, idx = knn(x, 5, CPU)
    assert idx.shape == (12, 5)
    assert (idx >= 0).all() and (idx < 12).all()
    for r in range(12):
        assert len(set(idx[r].tolist())) == 5
    # the three copies are the top hits (self excluded where faiss listed it)
    top3 = idx[:, :3] // 4
    assert (top3 == (np.arange(12) // 4)[:, None]).sum() >= 12 * 2

    s, i = knn(_unit(4, 8), 10, CPU)
    assert i.shape == (4, 3)
    assert all(sorted(i[r].tolist()) == [j for j in range(4) if j != r] for r in range(4))
    s, i = knn(_unit(1, 8), 10, CPU)
    assert i.shape == (1, 0) and s.shape == (1, 0)


@pytest.mark.gpu
def test_gpu_knn_agrees_with_cpu(gpu_backend) -> None:
    import cupy

    gpu = gpu_backend
    x = _unit(2000, 64, seed=3)
    s_g, i_g = knn(cupy.asarray(x), 8, gpu)
    s_c, i_c = knn(x, 8, CPU)
    assert knn_impl(gpu) in ("faiss-gpu", "torch-cuda")
    assert isinstance(i_g, np.ndarray)
    assert (i_g == i_c).mean() > 0.99  # float summation order may swap near-ties
    np.testing.assert_allclose(s_g, s_c, atol=1e-4)
    s_t, i_t = drop_self(*search_torch(cupy.asarray(x), 9, "cuda"))
    assert (i_t == i_c).mean() > 0.99


def test_knn_torch_rung_is_exact_beyond_faiss_gpu_k_limit(monkeypatch) -> None:
    # FAISS-GPU selects at most 2048 neighbours; larger k goes to the torch rung, which must
    # give the same neighbours as faiss. Small chunks: several matmuls write into one output.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(knn_mod, "_TORCH_CHUNK_BYTES", 4 * 2300 * 97)  # 97-row chunks
    s_t, i_t = drop_self(*search_torch(x, 2101, "cpu"))
    s_f, i_f = knn(x, 2100, CPU)
    np.testing.assert_allclose(s_t, s_f, atol=1e-5)
    assert (i_t == i_f).mean() > 0.999  # float ties may swap


@pytest.mark.gpu
@pytest.mark.parametrize(("rung", "k"), [("faiss-gpu", 16), ("torch-cuda", 16),
                                         ("torch-cuda", 2100)])
def test_each_knn_rung_on_the_gpu(gpu_backend, rung: str, k: int, monkeypatch) -> None:
    import cupy

    if rung == "faiss-gpu" and knn_mod._faiss_gpu() is None:
        pytest.skip("FAISS-GPU is not installed")
    if rung == "torch-cuda" and k <= 2048:
        monkeypatch.setattr(knn_mod, "_faiss_gpu", lambda: None)  # force the torch rung
    x, _ = planted(8, 300, seed=5)
    assert knn_mod.knn_impl(gpu_backend, k) == rung
    s_g, i_g = knn_mod.knn(cupy.asarray(x), k, gpu_backend)
    s_c, i_c = knn_mod.knn(x, k, CPU)
    assert isinstance(i_g, np.ndarray) and i_g.shape == (x.shape[0], k)
    np.testing.assert_allclose(s_g, s_c, atol=1e-4)
    assert (i_g == i_c).mean() > 0.99  # float summation order may swap near-ties
