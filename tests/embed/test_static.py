"""embed.static: the embedding-bag lookup of a Model2Vec table (``embed=static``) equals
model2vec's own encode, weighs repeated tokens down, runs the same on a GPU, and imports
without the optional extra. The tables come from a real (tiny, random-weight) encoder,
distilled as ``embed.distill`` does (tests/embed/test_distill.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import datasculpt
from datasculpt.config import EmbedConfig, validate
from datasculpt.embed.static import StaticTable, static_model_dir
from datasculpt.errors import ConfigError
from datasculpt.extras import installed

needs_model2vec = pytest.mark.skipif(not installed("model2vec"),
                                     reason="embed=static needs the [static] extra")


def _cfg(model: Path, **kw) -> EmbedConfig:
    return EmbedConfig(model=str(model), kind="static", pca_dims=16, max_length=512, **kw)


@needs_model2vec
def test_lookup_equals_model2vec_encode(tiny_encoder: Path, static_cache: Path) -> None:
    from model2vec import StaticModel

    path = static_model_dir(_cfg(tiny_encoder))
    texts = ["astro1 astro2 astro3", "cook4 " * 50, "zzz qqq", "law1 code2 law3 code4"]
    ours = StaticTable(path, "cpu").embed(texts, 512).numpy()
    ref = StaticModel.from_pretrained(str(path), force_download=False).encode(
        texts, max_length=512, use_multiprocessing=False).astype(np.float32)
    known = np.linalg.norm(ref, axis=1) > 0
    # "zzz qqq" has no token in the vocabulary: a zero row
    assert known.tolist() == [True, True, False, True]
    cos = (ours[known] * ref[known]).sum(axis=1) / np.linalg.norm(ref[known], axis=1)
    assert cos.min() > 0.999  # model2vec averages in float16, the lookup in float32
    assert np.allclose(np.linalg.norm(ours[known], axis=1), 1, atol=1e-5)
    assert np.all(ours[~known] == 0)


@needs_model2vec
@pytest.mark.parametrize("term_weight", ["sqrt", "log"])
def test_term_weights_damp_repeated_tokens(tiny_encoder: Path, static_cache: Path,
                                           term_weight: str) -> None:
    """Each document's vector is the normalised sum of its distinct tokens' rows, weighted by
    sqrt(count) or 1 + log(count): recomputed here from the table token by token."""
    from model2vec import StaticModel

    path = static_model_dir(_cfg(tiny_encoder))
    # The last text's first 40 tokens lie past the clip (a long unbroken run comes first):
    # only re-tokenizing the full text gets them.
    texts = ["astro1 " * 9 + "cook4 law3", "code2 code2 code2 code2 astro5", "zzz", "law1",
             "law2 " + "q" * 900 + " cook1" * 30 + " astro3" * 30]
    ours = StaticTable(path, "cpu").embed(texts, 40, term_weight).numpy()
    model = StaticModel.from_pretrained(str(path), force_download=False)
    model.tokenizer.no_truncation()
    table = np.asarray(model.embedding, np.float64)
    damp = {"sqrt": np.sqrt, "log": lambda c: 1 + np.log(c)}[term_weight]
    for text, row in zip(texts, ours, strict=True):
        ids, counts = np.unique(np.asarray(model.tokenize([text])[0][:40], dtype=np.int64),
                                return_counts=True)
        want = (table[ids] * damp(counts)[:, None]).sum(axis=0)
        norm = np.linalg.norm(want)
        assert np.allclose(row, want / norm if norm > 0 else want, atol=1e-5), text
    plain = StaticTable(path, "cpu").embed(texts[:1], 40, "count").numpy()
    assert not np.allclose(plain, ours[:1], atol=1e-3)  # the repeats really weigh less
    with pytest.raises(ConfigError, match="embed.term_weight must be"):
        validate(datasculpt.default_config(**{"embed.term_weight": "tfidf"}))


@pytest.mark.gpu
@needs_model2vec
def test_static_lookup_on_the_gpu_equals_the_cpu(tmp_path: Path) -> None:
    import model2vec
    from tokenizers import Tokenizer, models, pre_tokenizers

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


def test_the_static_embedder_imports_without_model2vec() -> None:
    # model2vec is the optional extra "static": importing the embedders must not need it.
    code = ("import sys; sys.modules['model2vec'] = None; "
            "import datasculpt.embed.static, datasculpt.embed.distill; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
