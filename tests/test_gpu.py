"""Every GPU path, on a real GPU (skipped without one; ``DATASCULPT_REQUIRE_GPU=1`` makes a
missing GPU an error). A rung whose library is not installed skips with the reason; a library
that is installed but fails, fails. The CPU side of each path is tested elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datasculpt.backend import resolve_backend, to_device
from datasculpt.cluster import cluster, kmeans
from datasculpt.config import ClusterConfig, EmbedConfig, PackConfig
from datasculpt.errors import ConfigError
from datasculpt.executors import LocalExecutor

pytestmark = pytest.mark.gpu

CPU = resolve_backend("cpu")
# The encoder under test: the packaged MiniLM, or the fp16 copy the device check carries
# where that package is not installed (scripts/gpu_carry.sh).
MODEL = os.environ.get("DATASCULPT_TEST_MODEL", "default")


@pytest.fixture(scope="module")
def gpu():
    return resolve_backend("gpu")


def _planted(k: int = 8, per: int = 200, d: int = 32, seed: int = 5) -> tuple:
    rng = np.random.default_rng(seed)
    dirs = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    lab = np.repeat(np.arange(k), per)
    x = dirs[lab] + 0.05 * rng.normal(size=(lab.size, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return np.unique(np.stack([a, b]), axis=1).shape[1] == len(np.unique(a)) == len(np.unique(b))


def test_dlpack_hand_off_shares_device_memory(gpu) -> None:
    import cupy
    import torch

    t = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    c = to_device(t)  # torch -> CuPy without a copy
    assert isinstance(c, cupy.ndarray) and c.data.ptr == t.data_ptr()
    back = torch.from_dlpack(c)
    assert back.data_ptr() == t.data_ptr()
    c[0, 0] = 42.0
    assert float(t[0, 0]) == 42.0


def test_embed_bf16_and_oom_halving(gpu, monkeypatch) -> None:
    import cupy
    import torch

    import datasculpt.embed as embed_mod

    texts = [f"document {i} about {'cooking' if i % 2 else 'football'} " * (1 + i % 7)
             for i in range(40)]
    cfg = EmbedConfig(batch_size=8, model=MODEL)
    ref, _ = embed_mod.embed_texts(texts, EmbedConfig(batch_size=8, model=MODEL, dtype="fp32"),
                                   CPU, progress=False)
    emb, stats = embed_mod.embed_texts(texts, cfg, gpu, progress=False)
    assert isinstance(emb, cupy.ndarray) and emb.dtype == cupy.float32
    major = torch.cuda.get_device_capability()[0]
    assert stats["device"] == "cuda"
    assert stats["dtype"] == ("bfloat16" if major >= 8 else "float16")
    assert float((cupy.asnumpy(emb) * ref).sum(axis=1).min()) > 0.99  # bf16/fp16 vs fp32
    fp32, _ = embed_mod.embed_texts(texts, EmbedConfig(batch_size=8, model=MODEL, dtype="fp32"),
                                    gpu, progress=False)
    assert float((cupy.asnumpy(fp32) * ref).sum(axis=1).min()) > 1 - 1e-4
    fp16, stats16 = embed_mod.embed_texts(
        texts, EmbedConfig(batch_size=8, model=MODEL, dtype="fp16"), gpu, progress=False)
    assert stats16["dtype"] == "float16"  # the path auto takes on T4/V100
    assert float((cupy.asnumpy(fp16) * ref).sum(axis=1).min()) > 0.99

    real = embed_mod._encode
    calls: list[int] = []

    def oom_above_two(model, arr, mask, device, pooling, retry):  # a real OOM, injected
        calls.append(arr.shape[0])
        if arr.shape[0] > 2:
            try:
                raise torch.OutOfMemoryError("injected")
            except torch.OutOfMemoryError:
                if retry:
                    return None
                raise
        return real(model, arr, mask, device, pooling, retry)

    monkeypatch.setattr(embed_mod, "_encode", oom_above_two)
    halved, stats = embed_mod.embed_texts(texts, cfg, gpu, progress=False)
    assert stats["batch_size"] == 2 and calls[:3] == [8, 4, 2]
    np.testing.assert_allclose(cupy.asnumpy(halved), cupy.asnumpy(emb), atol=2e-2)


@pytest.mark.parametrize("rung", ["cuml", "faiss-gpu", "torch"])
def test_each_kmeans_rung_on_the_gpu(gpu, rung: str) -> None:
    import cupy

    x, lab = _planted()
    try:
        cent, labels, impl = kmeans(cupy.asarray(x), 8, 20, 0, gpu, rung=rung)
    except ConfigError as exc:
        if "not available" in str(exc):
            pytest.skip(f"{rung}: {exc}")
        raise
    assert impl == ("torch-cuda" if rung == "torch" else rung)
    assert isinstance(cent, cupy.ndarray) and isinstance(labels, cupy.ndarray)
    assert _same_partition(cupy.asnumpy(labels), lab)


def test_cluster_stage_on_the_gpu_matches_the_cpu(gpu) -> None:
    import cupy

    x, lab = _planted()
    tokens = np.full(x.shape[0], 100)
    cfg = ClusterConfig(k=8, split_threshold=0.9, task_docs=300)  # several block passes
    res = cluster(cupy.asarray(x), tokens, 1000, cfg, gpu, 0, LocalExecutor())
    cpu = cluster(x, tokens, 1000, cfg, CPU, 0, LocalExecutor())
    assert res.stats["xp"] == "cupy" and res.stats["assign"] == "exact"
    np.testing.assert_array_equal(res.labels, cpu.labels)  # canonical numbering
    assert _same_partition(res.labels, lab)


@pytest.mark.parametrize(("rung", "k"), [("faiss-gpu", 16), ("torch-cuda", 16),
                                         ("torch-cuda", 2100)])
def test_each_knn_rung_on_the_gpu(gpu, rung: str, k: int, monkeypatch) -> None:
    import cupy

    import datasculpt.knn as knn_mod

    if rung == "faiss-gpu" and knn_mod._faiss_gpu() is None:
        pytest.skip("FAISS-GPU is not installed")
    if rung == "torch-cuda" and k <= 2048:
        monkeypatch.setattr(knn_mod, "_faiss_gpu", lambda: None)  # force the torch rung
    x, _ = _planted(k=8, per=300)
    assert knn_mod.knn_impl(gpu, k) == rung
    s_g, i_g = knn_mod.knn(cupy.asarray(x), k, gpu)
    s_c, i_c = knn_mod.knn(x, k, CPU)
    assert isinstance(i_g, np.ndarray) and i_g.shape == (x.shape[0], k)
    np.testing.assert_allclose(s_g, s_c, atol=1e-4)
    assert (i_g == i_c).mean() > 0.99  # float summation order may swap near-ties


@pytest.mark.parametrize("strategy", ["window", "unit"])
def test_packing_kernel_on_cupy_gives_the_numpy_packing(strategy: str) -> None:
    # Integer embeddings keep every score exact on both devices: identical packings.
    import cupy

    from datasculpt.pack.datasculpt import pack_datasculpt
    from datasculpt.tokenize import make_units

    rng = np.random.default_rng(11)
    doc_len = np.clip(np.rint(rng.lognormal(np.log(300), 1.0, 3000)), 1, 3 * 2048)
    units = make_units(doc_len.astype(np.int64), 2048, 1)
    emb = rng.integers(-2, 3, (3000, 16)).astype(np.float32)
    clusters = rng.integers(0, 6, 3000)
    cfg = PackConfig(method="datasculpt", strategy=strategy, max_group=64,
                     remainder_group=256)
    local = LocalExecutor()
    cpu, cpu_stats = pack_datasculpt(units, emb, clusters, 2048, cfg, executor=local)
    dev, dev_stats = pack_datasculpt(units, cupy.asarray(emb), clusters, 2048, cfg,
                                     executor=local)
    for field in ("seq", "doc", "start", "end"):
        np.testing.assert_array_equal(getattr(cpu, field), getattr(dev, field), err_msg=field)


def test_end_to_end_run_on_the_gpu(tmp_path: Path) -> None:
    from helpers import check_contract, run_cli

    proc = run_cli("backend=gpu", "ctx_len=4096", f"output_dir={tmp_path / 'run'}",
                   f"embed.model={MODEL}", f"tokenizer={MODEL}", "report.plots=false",
                   "report.baselines=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["run"]["backend"] == "gpu"
    assert report["run"]["rungs"]["embed"].startswith("torch-cuda/")
    assert report["run"]["rungs"]["pack"] == "cupy"
    assert "rounds on cupy" in report["run"]["rungs"]["cluster"]
    assert not [w for w in report["run"]["warnings"] if not w.startswith("pack_iclm")]
    m = report["metrics"]
    assert m["lost_tokens"] == m["duplicated_tokens"] == m["overlong_sequences"] == 0
    check_contract(tmp_path / "run", ctx_len=4096, append_eos=True)


def test_static_lookup_on_the_gpu_equals_the_cpu(tmp_path: Path) -> None:
    model2vec = pytest.importorskip("model2vec", reason="embed=static needs the [static] extra")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from datasculpt.embed.static import StaticTable

    vocab = {w: i for i, w in enumerate(["[UNK]", *[f"w{i}" for i in range(500)]])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    rng = np.random.default_rng(0)
    weights = rng.random(len(vocab)).astype(np.float32)
    model = model2vec.StaticModel(rng.normal(size=(len(vocab), 64)).astype(np.float32), tok,
                                  weights=weights, normalize=True)
    model.save_pretrained(str(tmp_path / "m2v"))
    texts = [" ".join(f"w{int(i)}" for i in rng.integers(0, 500, int(n)))
             for n in rng.integers(1, 3000, 300)] + ["nothing known here"]
    for term_weight in ("count", "sqrt", "log"):  # torch.unique on the device for the last two
        cpu = StaticTable(tmp_path / "m2v", "cpu").embed(texts, 1024, term_weight).numpy()
        dev = StaticTable(tmp_path / "m2v", "cuda").embed(texts, 1024, term_weight)
        assert dev.is_cuda
        np.testing.assert_allclose(dev.cpu().numpy(), cpu, atol=1e-5)
        assert np.all(cpu[-1] == 0)


def test_judge_on_the_gpu_in_bf16_agrees_with_the_cpu(gpu) -> None:
    """The judge's forward passes on CUDA in bf16 (its GPU default) give the CPU's fp32
    context gain within 0.01 nats per token on real text of the embedded sample."""
    import gzip
    import json

    from datasculpt.data import SAMPLE_PATH
    from datasculpt.judge.gain import GainSettings, build_window, score_windows
    from datasculpt.judge.lm import load_judge

    try:
        cpu_lm = load_judge("smollm2", "cpu", "fp32")
    except ConfigError as exc:
        pytest.skip(f"no judge model here: {exc}")
    gpu_lm = load_judge("smollm2", "cuda", "auto")
    assert gpu_lm.dtype == "bfloat16" and gpu_lm.device == "cuda"
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["content"][:1500] for line in fh][:12]
    settings = GainSettings(max_tokens=2048)
    gains = []
    for lm in (cpu_lm, gpu_lm):
        windows = [build_window(i, [(i, 0, 1), (i + 1, 0, 1), (i + 2, 0, 1)],
                                texts[i : i + 3], [True] * 3, lm, settings)
                   for i in range(0, 9, 3)]
        recs = score_windows(windows, lm, settings)
        gains.append(np.asarray([r["saved"] / r["tokens"] for r in recs]))
    np.testing.assert_allclose(gains[1], gains[0], atol=0.01)
