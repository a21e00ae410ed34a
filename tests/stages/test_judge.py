"""stages.judge: the judge inside a run, in this process, with a tiny random-weight causal LM
(``tiny_causal_lm``): it reads every packing of the run and a random grouping, scores the
texts of the sampled sequences' documents read back from the input, writes its records and
summaries, and is reused or rerun by its key. Context gain as a measure, on the real SmolLM2:
tests/judge/; a command-line run with the real model: tests/e2e/test_judge_run.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import read_sequences, run_pipeline

from datasculpt.judge.lm import load_judge

METHODS = ["bfd", "concat", "datasculpt", "iclm", "random"]


def _docs() -> list[dict[str, str]]:
    """Short documents of three topics: none is cut at ctx_len 256, so each piece's text is
    its document's whole content."""
    rng = np.random.default_rng(4)
    vocab = [["river", "delta", "sediment", "flood"], ["compiler", "code", "register", "loop"],
             ["dough", "oven", "flour", "crust"]]
    return [{"docid": f"d{i}", "topic": str(i % 3),
             "content": " ".join(rng.choice(vocab[i % 3], int(rng.integers(8, 60))))}
            for i in range(45)]


@pytest.fixture
def judged(tmp_path: Path, tiny_causal_lm: Path) -> tuple[Path, dict[str, Any], dict]:
    docs = _docs()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    emb = centres[[int(d["topic"]) for d in docs]] + 0.2 * rng.normal(size=(len(docs), 8))
    np.save(tmp_path / "emb.npy", emb.astype(np.float32))
    over = {"embed.precomputed": str(tmp_path / "emb.npy"), "report.baselines": True,
            "judge.enabled": True, "judge.model": str(tiny_causal_lm), "judge.sequences": 4,
            "judge.max_tokens": 2048}
    out, report = run_pipeline(tmp_path, docs, **over)
    return out, report, over


def test_the_judge_scores_the_texts_of_every_packings_sampled_sequences(
        judged: tuple, tiny_causal_lm: Path) -> None:
    out, report, _ = judged
    lm = load_judge(str(tiny_causal_lm), "cpu", "fp32")
    gain = report["context_gain"]
    assert gain["judge"] == {"model": str(tiny_causal_lm), "source": str(tiny_causal_lm),
                             "device": "cpu", "dtype": "float32", "separator": lm.separator,
                             "sequences": 4, "max_tokens": 2048, "ngram": 8,
                             "near_dup_threshold": 0.5}
    assert sorted(set(gain) - {"judge"}) == METHODS
    assert json.loads((out / "context_gain.json").read_text()) == gain
    records = [json.loads(line) for line in (out / "context_gain.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in records}) == METHODS
    for name in METHODS:
        mine = [r for r in records if r["method"] == name]
        s = gain[name]
        assert s["sequences"] == len(mine) == 4
        assert s["tokens"] == sum(r["tokens"] for r in mine)
        assert s["context_gain"] == pytest.approx(sum(r["saved"] for r in mine) / s["tokens"])
        assert np.isfinite(s["context_gain_se"])
    # The method's windows, rebuilt from sequences.jsonl and the input's texts: no document is
    # cut, so each piece is one whole document followed by the judge's separator.
    docs = pq.read_table(out / "documents.parquet").to_pydict()
    assert max(docs["n_tokens"]) < 256
    text = {d["docid"]: d["content"] for d in _docs()}
    seqs = {s["seq_id"]: s for s in read_sequences(out / "sequences.jsonl")}
    for r in (r for r in records if r["method"] == "datasculpt"):
        ids = lm.encode([text[p["docid"]] for p in seqs[r["seq_id"]]["docs"]])
        assert r["pieces"] == len(ids) >= 2 and not r["capped"]
        assert r["piece_tokens"] == [len(x) for x in ids]
        assert r["tokens"] == sum(len(x) + 1 for x in ids)
        assert r["scored_pieces"] == sum(len(x) >= 2 for x in ids[1:])
    md = (out / "report.md").read_text()
    assert "| context gain (nats saved / window token) |" in md
    assert f"judged sequences | {' | '.join(['4'] * 5)} |" in md


def test_the_judge_is_reused_or_rerun_by_its_key(judged: tuple, tmp_path: Path) -> None:
    _, first, over = judged
    docs = _docs()
    _, again = run_pipeline(tmp_path, docs, **over)
    assert again["stages"]["judge"]["reused"] is True
    assert again["context_gain"] == first["context_gain"]
    _, fewer = run_pipeline(tmp_path, docs, **{**over, "judge.sequences": 2})
    assert "reused" not in fewer["stages"]["judge"]
    assert fewer["stages"]["pack"]["reused"] is True
    assert {fewer["context_gain"][m]["sequences"] for m in METHODS} == {2}
