"""embed.static_ids: with ``embed=static`` and a table distilled from the run tokenizer's
model, the embed stage reads the static ids from the token store instead of tokenizing every
text again: the same ids for every document as the static tokenizer's own (unknown tokens
dropped, the first max_length kept, a literal special token's document read from its text),
the same embeddings.npy bytes as the text path, under both executors. A static model of
another tokenizer keeps the text path. The tables come from the tiny encoder of conftest.py
(its 120-token WordPiece vocabulary leaves most of the sample's words unknown: the store path
must read past its window there); the default model's MiniLM table is the slow test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import notes_corpus, run_pipeline, small_bpe_tokenizer, write_jsonl
from tokenizers import Tokenizer

from datasculpt.data import SAMPLE_PATH
from datasculpt.embed import static_ids
from datasculpt.embed.static import StaticTable, load_static_model
from datasculpt.embed.static_ids import FLAG, store_id_map, stored_static_rows
from datasculpt.io.ingest import document_blocks, document_texts
from datasculpt.io.read import ReadOptions
from datasculpt.stages.embed import _center
from datasculpt.tokenize import load_tokenizer, untruncated_backend

pytest.importorskip("model2vec.distill", reason="embed=static needs the [static] extra")

MAX_LENGTH = 512


def _sample_plus(tmp_path: Path) -> Path:
    """The embedded sample and documents made to meet each rule: literal special tokens
    (in the window and past it), unknown tokens filling a window, a document of nothing
    known, a long unbroken run before the clip."""
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    odd = ["[CLS] law1 code2 [SEP] astro3", "law1 " * 600 + "[MASK] cook4",
           "é" * 3 + " ⊕⊗ " * 700 + " astro1 law2", "⊕ ⊗ ⊘", "[UNK] [PAD] cook1",
           "q" * 5000 + " law3 code4", "code2" + "§" * 80 + " law1" * 900]
    recs += [{"docid": f"odd{i}", "content": t, "topic": "odd"} for i, t in enumerate(odd)]
    return write_jsonl(tmp_path / "in.jsonl", recs)


def _run(tmp: Path, data: Path, model: str, tokenizer: str, **over: Any) -> tuple[Path, dict]:
    import datasculpt

    cfg = datasculpt.default_config(input=str(data), ctx_len=4096, label_key="topic", **{
        "tokenizer": tokenizer, "embed.model": model, "embed.kind": "static",
        "embed.max_length": MAX_LENGTH, "embed.pca_dims": 16, "backend.name": "cpu",
        "report.plots": False, "report.progress": False, **over})
    return tmp, datasculpt.run(cfg, output_dir=str(tmp))


def _ids_equal_the_static_tokenizers(run_dir: Path, data: Path, tokenizer: str) -> int:
    """Every stored row's ids are ``StaticTable.ids`` of its text; returns how many rows
    came with their text instead (a flagged token in the window)."""
    import pyarrow.parquet as pq

    model_dir = json.loads((run_dir / "report.json").read_text())["stages"]["embed"][
        "static_dir"]
    static = load_static_model(Path(model_dir))
    id_map = store_id_map(untruncated_backend(load_tokenizer(tokenizer)), static.tokenizer,
                          static.unk_token_id)
    assert not isinstance(id_map, str), id_map
    table = StaticTable.load(Path(model_dir), "cpu")
    sources = pq.read_table(run_dir / "documents.parquet").column("source").to_pylist()
    opts, from_text = ReadOptions(label_key="topic"), 0
    for block in document_blocks(sources, [str(data)]):
        rows = list(stored_static_rows(block, paths=[data], opts=opts, run_dir=str(run_dir),
                                       id_map=id_map, max_length=MAX_LENGTH))
        texts = [r["text"] for r in document_texts(block, paths=[data], opts=opts,
                                                   run_dir=str(run_dir))]
        for row, text, want in zip(rows, texts, table.ids(texts, MAX_LENGTH), strict=True):
            if row["text"]:
                assert row["text"] == text and np.all(row["ids"] == -1)
                from_text += 1
            else:
                assert row["ids"][row["ids"] >= 0].tolist() == list(want), text[:80]
    return from_text


def _same_as_the_text_path(tmp_path: Path, data: Path, model: str, tokenizer: str,
                           monkeypatch: pytest.MonkeyPatch, **over: Any) -> dict:
    store_dir, store = _run(tmp_path / "store", data, model, tokenizer, **over)
    assert store["stages"]["embed"]["ids_from"] == "token_store"
    with monkeypatch.context() as mp:  # the check says no: every text tokenized again
        mp.setattr(static_ids, "store_id_map", lambda *a: "forced")
        text_dir, text = _run(tmp_path / "text", data, model, tokenizer, **over)
    assert text["stages"]["embed"]["ids_from"] == "text"
    assert text["stages"]["embed"]["ids_why"] == "forced"
    for name in ("embeddings.npy", "clusters.npy"):
        assert (store_dir / name).read_bytes() == (text_dir / name).read_bytes(), name
    return store


def test_store_ids_are_the_static_tokenizers_and_give_the_same_bytes(
        tiny_encoder: Path, static_cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = _sample_plus(tmp_path)
    _same_as_the_text_path(tmp_path, data, str(tiny_encoder), str(tiny_encoder), monkeypatch)
    # the one document with [CLS] and [SEP] in its window; [MASK] past the window is not
    assert _ids_equal_the_static_tokenizers(tmp_path / "store", data, str(tiny_encoder)) == 1


def test_the_id_map_goes_by_token_string_and_flags_what_the_table_lacks(
        tiny_encoder: Path, static_cache: Path) -> None:
    from datasculpt.config import EmbedConfig
    from datasculpt.embed.static import static_model_dir

    path = static_model_dir(EmbedConfig(model=str(tiny_encoder), kind="static", pca_dims=16))
    static = load_static_model(path)
    run = untruncated_backend(load_tokenizer(str(tiny_encoder)))
    id_map = store_id_map(run, static.tokenizer, static.unk_token_id)
    assert not isinstance(id_map, str)
    svocab = static.tokenizer.get_vocab()
    for tok, i in run.get_vocab().items():
        if tok in ("[CLS]", "[SEP]", "[MASK]"):  # dropped by model2vec's distillation
            assert tok not in svocab and id_map[i] == FLAG
        elif tok == "[UNK]":
            assert id_map[i] == static_ids.DROP  # model2vec's tokenize removes it
        else:
            assert id_map[i] == svocab[tok]
    # the packaged MiniLM tokenizer is another vocabulary: no map
    minilm = untruncated_backend(load_tokenizer("default"))
    assert "tokens the run tokenizer lacks" in store_id_map(minilm, static.tokenizer, 1)
    # a table without a word the run tokenizer makes from text would spell it otherwise
    spec = json.loads(static.tokenizer.to_str())
    del spec["model"]["vocab"]["astro3"]
    lacking = Tokenizer.from_str(json.dumps(spec))
    assert "can produce" in store_id_map(run, lacking, static.unk_token_id)
    # another normalisation: no map
    spec = json.loads(static.tokenizer.to_str())
    spec["normalizer"]["lowercase"] = False
    assert "normalizer differ" in store_id_map(run, Tokenizer.from_str(json.dumps(spec)), 1)


def test_a_static_model_of_another_tokenizer_tokenizes_the_texts(
        tiny_encoder: Path, static_cache: Path, tmp_path: Path) -> None:
    """The run tokenizer a small BPE (helpers.small_bpe_tokenizer), the table the tiny
    WordPiece encoder's: the store's ids are not the table's, so the texts are read."""
    docs = notes_corpus(24)
    bpe = small_bpe_tokenizer(docs, tmp_path / "bpe")
    out, report = run_pipeline(tmp_path, docs, tokenizer=str(bpe), **{
        "embed.model": str(tiny_encoder), "embed.kind": "static", "embed.pca_dims": 16,
        "embed.max_length": MAX_LENGTH, "backend.name": "cpu"})
    embed = report["stages"]["embed"]
    assert embed["ids_from"] == "text" and "differ" in embed["ids_why"]
    table = StaticTable.load(Path(embed["static_dir"]), "cpu")
    want = table.embed([d["content"] for d in docs], MAX_LENGTH, "sqrt").numpy().copy()
    _center(want)  # the stage removes the corpus mean
    assert np.load(out / "embeddings.npy").tobytes() == want.tobytes()


@pytest.mark.slow
def test_the_default_models_table_reads_the_store_under_both_executors(
        static_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM distilled for real (a minute): model2vec renumbers its vocabulary (drops the
    [unusedN] and [CLS]/[SEP]/[MASK] tokens), the map follows; executor=ray gives the
    same bytes as executor=local."""
    pytest.importorskip("ray", reason="executor=ray needs the [ray] extra")
    data = _sample_plus(tmp_path)
    _same_as_the_text_path(tmp_path, data, "default", "default", monkeypatch)
    assert _ids_equal_the_static_tokenizers(tmp_path / "store", data, "default") == 1
    ray_dir, ray = _run(tmp_path / "ray", data, "default", "default", **{
        "executor.name": "ray", "executor.num_cpus": 2})
    assert ray["stages"]["embed"]["ids_from"] == "token_store"
    assert (ray_dir / "embeddings.npy").read_bytes() == (
        tmp_path / "store" / "embeddings.npy").read_bytes()
