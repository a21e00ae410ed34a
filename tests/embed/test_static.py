"""embed=static: distilled once with model2vec from a real (tiny, random-weight) encoder,
cached and checked, embedded by an embedding-bag lookup equal to model2vec's own encode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_WORDS, check_contract, write_jsonl

pytest.importorskip("model2vec.distill", reason="embed=static needs the [static] extra")

import datasculpt  # noqa: E402
from datasculpt.config import EmbedConfig, validate  # noqa: E402
from datasculpt.embed.distill import MARKER, cache_root  # noqa: E402
from datasculpt.embed.static import StaticTable, static_model_dir  # noqa: E402
from datasculpt.errors import ConfigError  # noqa: E402


def _cfg(model: Path, **kw) -> EmbedConfig:
    return EmbedConfig(model=str(model), kind="static", pca_dims=16, max_length=512, **kw)


def test_distilled_once_then_reused(tiny_encoder: Path, static_cache: Path, caplog) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="datasculpt.embed.distill"):
        first = static_model_dir(_cfg(tiny_encoder))
    assert first.parent == cache_root() and str(static_cache) in str(first)
    assert "distilling" in caplog.text
    mtime = (first / MARKER).stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datasculpt.embed.distill"):
        again = static_model_dir(_cfg(tiny_encoder))
    assert again == first and "distilling" not in caplog.text
    assert (first / MARKER).stat().st_mtime_ns == mtime
    # other distillation parameters are another entry
    assert static_model_dir(EmbedConfig(model=str(tiny_encoder), kind="static",
                                        pca_dims=8)) != first


def test_a_damaged_cache_entry_is_distilled_again(tiny_encoder: Path, static_cache: Path) -> None:
    path = static_model_dir(_cfg(tiny_encoder))
    good = StaticTable(path, "cpu").table.numpy().copy()
    listed = json.loads((path / MARKER).read_text())["files"]
    weights = next(name for name in listed if name.endswith(".safetensors"))
    data = bytearray((path / weights).read_bytes())
    data[-8:] = b"\x00" * 8  # flipped bytes in the table
    (path / weights).write_bytes(bytes(data))
    rebuilt = static_model_dir(_cfg(tiny_encoder))
    assert rebuilt == path
    np.testing.assert_array_equal(StaticTable(rebuilt, "cpu").table.numpy(), good)
    (path / MARKER).unlink()  # an entry cut short before its manifest: also rebuilt
    assert (static_model_dir(_cfg(tiny_encoder)) / MARKER).exists()


def test_lookup_equals_model2vec_encode(tiny_encoder: Path, static_cache: Path) -> None:
    from model2vec import StaticModel

    path = static_model_dir(_cfg(tiny_encoder))
    texts = ["astro1 astro2 astro3", "cook4 " * 50, "zzz qqq", "law1 code2 law3 code4"]
    ours = StaticTable(path, "cpu").embed(texts, 512).numpy()
    ref = StaticModel.from_pretrained(str(path), force_download=False).encode(
        texts, max_length=512, use_multiprocessing=False).astype(np.float32)
    known = np.linalg.norm(ref, axis=1) > 0
    assert not known.all()  # "zzz qqq" has no token in the vocabulary: a zero row
    cos = (ours[known] * ref[known]).sum(axis=1) / np.linalg.norm(ref[known], axis=1)
    assert cos.min() > 0.999  # model2vec averages in float16, the lookup in float32
    assert np.allclose(np.linalg.norm(ours[known], axis=1), 1, atol=1e-5)
    assert np.all(ours[~known] == 0)


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


def test_a_missing_static_dir_or_hub_model_is_a_config_error(static_cache: Path) -> None:
    with pytest.raises(ConfigError, match="not a Model2Vec model"):
        static_model_dir(EmbedConfig(kind="static", static_dir=str(static_cache / "nope")))
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        static_model_dir(EmbedConfig(kind="static", model="no-such-org/no-such-model"))


def test_static_run_and_its_resume_rules(tiny_encoder: Path, static_cache: Path,
                                         tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    topics = list(TINY_WORDS)
    recs = [{"docid": f"d{i}", "topic": topics[i % 4],
             "content": " ".join(rng.choice(TINY_WORDS[topics[i % 4]], int(rng.integers(20, 400))))}
            for i in range(120)]
    write_jsonl(tmp_path / "in.jsonl", recs)
    base = {"input": str(tmp_path / "in.jsonl"), "ctx_len": 1024, "label_key": "topic",
            "tokenizer": str(tiny_encoder), "embed.model": str(tiny_encoder),
            "report.plots": False, "report.progress": False, "backend.name": "cpu"}
    static = {"embed.kind": "static", "embed.pca_dims": 16, "embed.max_length": 512}
    out = str(tmp_path / "run")
    report = datasculpt.run(datasculpt.default_config(**base, **static), output_dir=out)
    assert report["stages"]["embed"]["rung"] == "static-cpu"
    assert report["metrics"]["label_purity_multi"] > 0.9  # topics share no token
    check_contract(Path(out), ctx_len=1024, append_eos=True)
    again = datasculpt.run(datasculpt.default_config(**base, **static), output_dir=out)
    assert all(again["stages"][s].get("reused") for s in ("embed", "cluster", "pack"))
    encoder = datasculpt.run(datasculpt.default_config(**base), output_dir=out)
    # embed=static -> encoder: embed and everything after it recomputed, tokenize reused
    assert encoder["stages"]["tokenize"].get("reused")
    assert not any(encoder["stages"][s].get("reused") for s in ("embed", "cluster", "pack"))
    assert encoder["stages"]["embed"]["rung"].startswith("torch-cpu")
    # a static-only setting does not touch an encoder run's embeddings
    same = datasculpt.run(datasculpt.default_config(**base, **{"embed.term_weight": "log"}),
                          output_dir=out)
    assert all(same["stages"][s].get("reused") for s in ("embed", "cluster", "pack"))


def test_a_long_encoder_pass_on_the_cpu_names_the_static_option(caplog) -> None:
    import logging

    from datasculpt.stages.embed import suggest_static

    with caplog.at_level(logging.INFO, logger="datasculpt"):
        suggest_static(100)
    assert "embed=static" not in caplog.text and "needs about" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datasculpt"):
        suggest_static(1_000_000)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "embed=static" in warned[0].getMessage()
