"""scripts/bench_scale.py: its corpus (N documents of 20-60 single-token words, aligned 64-d
embeddings, cached by size and seed) and one end-to-end run at 2,000 documents whose JSON
holds figures that were measured, not defaulted. The runner's own memory stats:
tests/test_runner.py."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_scale.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_corpus_is_n_short_documents_with_aligned_vectors_and_is_reused(tmp_path) -> None:
    bench = _script()
    corpus, emb, reused = bench.make_corpus(tmp_path, 1000, seed=3)
    assert not reused
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert [r["docid"] for r in rows] == [f"doc{i}" for i in range(1000)]
    words = np.asarray([len(r["content"].split(" ")) for r in rows])
    assert words.min() >= 20 and words.max() <= 60 and words.min() < 25 and words.max() > 55
    vectors = np.load(emb)
    assert vectors.shape == (1000, 64) and vectors.dtype == np.float32
    # the planted structure: a document is nearer its topic's mean than another topic's
    topic = np.asarray([r["topic"] for r in rows])
    a, b = (vectors[topic == t].mean(axis=0) for t in np.unique(topic)[:2])
    first = vectors[topic == np.unique(topic)[0]]
    assert (np.linalg.norm(first - a, axis=1) < np.linalg.norm(first - b, axis=1)).mean() > 0.9
    before = corpus.read_bytes()
    assert bench.make_corpus(tmp_path, 1000, seed=3)[2]  # cached: reused, not regenerated
    again = tmp_path / "again"
    again.mkdir()
    assert bench.make_corpus(again, 1000, seed=3)[0].read_bytes() == before  # seeded


def test_longer_documents_are_their_own_cached_corpus(tmp_path) -> None:
    bench = _script()
    short, _, _ = bench.make_corpus(tmp_path, 300, seed=3)
    long_, emb, reused = bench.make_corpus(tmp_path, 300, seed=3, words=(200, 400))
    assert not reused and long_ != short and long_.name == "corpus_n300_s3_w200-400.jsonl"
    words = np.asarray([len(json.loads(line)["content"].split(" "))
                        for line in long_.read_text(encoding="utf-8").splitlines()])
    assert words.size == 300 and words.min() >= 200 and words.max() <= 400
    assert words.min() < 220 and words.max() > 380
    assert np.load(emb).shape == (300, 64)
    assert bench.make_corpus(tmp_path, 300, seed=3, words=(200, 400))[2]


def test_a_tiny_run_end_to_end_reports_measured_figures(tmp_path) -> None:
    out = tmp_path / "scale.json"
    n = 2000
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--docs", str(n), "--work", str(tmp_path / "work"),
         "--json", str(out), "--args", "report.plots=false"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio run / bare" in proc.stdout
    res = json.loads(out.read_text())
    run, bare = res["run"], res["bare_tokenizer"]
    assert list(run["stages"])[:4] == ["tokenize", "embed", "cluster", "pack"]
    for name, st in run["stages"].items():
        assert st["seconds"] > 0 and st["cpu_seconds"] >= 0, name
        if sys.platform.startswith("linux"):
            assert 0 < st["driver_rss_anon_bytes"] <= st["driver_peak_rss_bytes"], name
    assert run["wall_seconds"] > sum(st["seconds"] for st in run["stages"].values())
    assert run["peak_rss_tree_bytes"] > 0 and run["max_rss_single_bytes"] > 0
    # the child's CPU: at least its tokenize stage's, at most every core for its wall time
    assert run["stages"]["tokenize"]["cpu_seconds"] <= run["cpu_seconds"]
    assert run["cpu_seconds"] <= run["wall_seconds"] * (os.cpu_count() or 1) * 1.05
    assert bare["seconds"] > 0 and bare["documents"] == n
    assert bare["tokens"] >= 20 * n  # one token per word at least
    assert res["ratio"] == pytest.approx(run["wall_seconds"] / bare["seconds"])
    assert run["documents_parquet_rows"] == n
    docs = pq.read_table(tmp_path / "work" / "run_n2000_s0_precomputed" / "documents.parquet")
    assert docs.num_rows == n and int(np.sum(docs["n_tokens"])) == bare["tokens"]
    if sys.platform.startswith("linux"):
        baseline = run["driver_heap_baseline_bytes"]
        assert 0 < baseline < run["driver_heap_max_bytes"]
        assert run["driver_heap_per_doc_bytes"] == pytest.approx(
            (run["driver_heap_max_bytes"] - baseline) / n)
        # the heap of the stages that run alone (before the writers and the report beside)
        assert run["driver_heap_alone_stage"] in ("tokenize", "embed", "cluster", "pack")
        assert run["driver_heap_alone_per_doc_bytes"] <= run["driver_heap_per_doc_bytes"]
