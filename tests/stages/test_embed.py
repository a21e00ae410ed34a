"""stages.embed: the embed stage's vectors from each source (the encoder, embed=static, an
input field), its key (a setting the chosen kind ignores is not part of it) and the reuse
rules that follow, and its advice on a long encoder pass."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_WORDS, check_contract, write_jsonl

import datasculpt
from datasculpt.stages.embed import suggest_static


def test_static_run_and_its_resume_rules(tiny_encoder: Path, static_cache: Path,
                                         tmp_path: Path) -> None:
    pytest.importorskip("model2vec.distill", reason="embed=static needs the [static] extra")
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
    # the table is the run tokenizer's model's: its ids come from the token store
    assert report["stages"]["embed"]["ids_from"] == "token_store"
    assert report["metrics"]["label_purity_multi"] > 0.9  # topics share no token
    check_contract(Path(out), ctx_len=1024, append_eos=True)
    again = datasculpt.run(datasculpt.default_config(**base, **static), output_dir=out)
    assert [again["stages"][s].get("reused") for s in ("embed", "cluster", "pack")] == [True] * 3
    encoder = datasculpt.run(datasculpt.default_config(**base), output_dir=out)
    # embed=static -> encoder: embed and everything after it recomputed, tokenize reused
    assert encoder["stages"]["tokenize"].get("reused") is True
    assert [encoder["stages"][s].get("reused") for s in ("embed", "cluster", "pack")] == [None] * 3
    assert encoder["stages"]["embed"]["rung"].startswith("torch-cpu")
    # a static-only setting does not touch an encoder run's embeddings
    same = datasculpt.run(datasculpt.default_config(**base, **{"embed.term_weight": "log"}),
                          output_dir=out)
    assert [same["stages"][s].get("reused") for s in ("embed", "cluster", "pack")] == [True] * 3


def test_a_long_encoder_pass_on_the_cpu_names_the_static_option(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="datasculpt"):
        suggest_static(100)
    assert "embed=static" not in caplog.text and "needs about" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datasculpt"):
        suggest_static(1_000_000)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "embed=static" in warned[0].getMessage()


def test_vectors_from_an_input_field_drive_the_packing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 6))
    records = []
    for i in range(40):
        vec = centres[i % 2] + 0.05 * rng.normal(size=6)
        records.append({"docid": f"d{i}", "text": f"document {i} " * (20 + i), "vec": vec.tolist()})
    records.append({"docid": "bad", "text": "no vector here"})
    data = write_jsonl(tmp_path / "v.jsonl", records)
    cfg = datasculpt.default_config(input=str(data), ctx_len=256, **{
        "embed.vector_key": "vec", "report.plots": False, "report.progress": False})
    report = datasculpt.run(cfg, output_dir=str(tmp_path / "out"))
    emb = np.load(tmp_path / "out" / "embeddings.npy", allow_pickle=False)
    given = np.asarray([r["vec"] for r in records[:40]])
    assert np.allclose(emb, given / np.linalg.norm(given, axis=1, keepdims=True), atol=1e-6)
    assert report["input"]["malformed_by_reason"] == {"missing or invalid vector field 'vec'": 1}
    clusters = np.load(tmp_path / "out" / "clusters.npy", allow_pickle=False)
    assert len(set(zip(clusters.tolist(), [i % 2 for i in range(40)], strict=True))) == 2
    # Only the cross-cluster remainder pass may mix the two planted groups in a window.
    assert report["metrics"]["cluster_purity"] >= 0.9
    check_contract(tmp_path / "out", ctx_len=256, append_eos=True)


def test_a_cpu_run_hands_its_embeddings_over_by_rows(tmp_path: Path) -> None:
    # The cluster and datasculpt pack stages of a CPU run read rows from embeddings.npy: the
    # backend's "device" array is the memory map itself, and by_rows() the file (a RowFile).
    from datasculpt.backend import resolve_backend
    from datasculpt.io.row_file import RowFile
    from datasculpt.stages.embed import Embeddings

    path = tmp_path / "embeddings.npy"
    np.save(path, np.eye(4, dtype=np.float32))
    host = np.load(path, mmap_mode="r")
    emb = Embeddings(host, resolve_backend("cpu").asarray(np.asarray(host)), path)
    assert np.shares_memory(emb.device, host)  # no copy on the host
    rows = emb.by_rows()
    assert isinstance(rows, RowFile) and rows.path == str(path.resolve())
    np.testing.assert_array_equal(rows[np.array([2, 0])], np.eye(4)[[2, 0]])
    assert Embeddings(host, emb.device).by_rows() is emb.device  # no file: the array
