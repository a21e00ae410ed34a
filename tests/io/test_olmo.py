"""OLMo-core's token files (issue 20), read by OLMo-core itself.

Nothing here re-implements OLMo-core's reading: its own ``NumpyFSLDatasetConfig`` is built over
``olmo/`` with the config ``datasculpt/io/olmo.py`` documents, and every instance it yields is
compared token by token with the same row of the Parquet shards (same order), its ``doc_lens``
with the row's pieces (``seq_lengths``) and its ``label_mask``/labels with the padding.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import notes_corpus, read_sequences, run_pipeline, small_bpe_tokenizer

from datasculpt.config import default_config, validate
from datasculpt.errors import ConfigError
from datasculpt.io import olmo
from datasculpt.tokenize import load_tokenizer

olmo_data = pytest.importorskip("olmo_core.data")
olmo_utils = pytest.importorskip("olmo_core.data.utils")

BOTH = {"output.formats": ["parquet", "olmo"]}


def shard_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for f in sorted(glob.glob(str(out / "tokens" / "part-*.parquet"))):
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def olmo_dataset(out: Path, vocab_size: int, work_dir: Path, dtype: bool = True) -> Any:
    """OLMo-core's dataset over ``out/olmo`` with the documented config (``dtype=False``:
    OLMo-core's vocab-size rule instead of olmo.json's dtype)."""
    meta = json.loads((out / "olmo" / "olmo.json").read_text())
    return olmo_data.NumpyFSLDatasetConfig.glob(
        str(out / "olmo" / "tokens-*.npy"),
        label_mask_paths=[str(out / "olmo" / "label-mask-*.npy")],
        sequence_length=meta["sequence_length"],
        generate_doc_lengths=True,
        dtype=olmo_data.NumpyDatasetDType(meta["dtype"]) if dtype else None,
        tokenizer=olmo_data.TokenizerConfig(vocab_size=vocab_size,
                                            eos_token_id=meta["eos_token_id"],
                                            pad_token_id=meta["pad_token_id"],
                                            bos_token_id=None),
        work_dir=str(work_dir),
    )


def expected_doc_lens(ids: list[int], lengths: list[int], sep: int, ctx_len: int) -> list[int]:
    """Our pieces, a piece that does not end its document joined to what follows, then the
    padding: a segment of its own, or added to such an unfinished last piece."""
    segments, acc, pos = [], 0, 0
    for n in lengths:
        acc, pos = acc + n, pos + n
        if ids[pos - 1] == sep:
            segments.append(acc)
            acc = 0
    acc += ctx_len - pos
    return segments + ([acc] if acc else [])


def check_olmo(out: Path, vocab_size: int, ctx_len: int, work_dir: Path) -> dict[str, int]:
    """Every OLMo-core instance against the Parquet row of the same position and
    ``sequences.jsonl``; returns counts of what was compared."""
    meta = json.loads((out / "olmo" / "olmo.json").read_text())
    sep, pad = meta["eos_token_id"], meta["pad_token_id"]
    ds = olmo_dataset(out, vocab_size, work_dir).build()
    ds.prepare()
    rows = shard_rows(out)
    seqs = {s["seq_id"]: s for s in read_sequences(out / "sequences.jsonl")}
    assert len(ds) == len(rows) == meta["rows"] == len(seqs)
    assert np.load(out / "olmo" / "seq_ids.npy").tolist() == [r["seq_id"] for r in rows]
    collate = olmo_data.DataCollator(pad_token_id=pad, vocab_size=vocab_size)
    padded = joined = 0
    for i, row in enumerate(rows):
        item = ds[i]
        ids, n = row["input_ids"], len(row["input_ids"])
        lengths = row["seq_lengths"]
        seq = seqs[row["seq_id"]]
        assert n == seq["n_tokens"] <= ctx_len
        assert [p["end"] - p["start"] for p in seq["docs"]] == [
            n_piece - (ids[end - 1] == sep)
            for n_piece, end in zip(lengths, np.cumsum(lengths), strict=True)]
        got = item["input_ids"].tolist()
        assert len(got) == ctx_len
        assert got[:n] == ids, f"instance {i}"
        assert got[n:] == [pad] * (ctx_len - n)
        assert item["label_mask"].tolist() == [True] * n + [False] * (ctx_len - n)
        doc_lens = item["doc_lens"].tolist()
        assert doc_lens == expected_doc_lens(ids, lengths, sep, ctx_len), f"instance {i}"
        ends = [ids[e - 1] == sep for e in np.cumsum(lengths)]
        if all(ends[:-1]) and (ends[-1] or n == ctx_len):  # doc_lens is seq_lengths + padding
            assert doc_lens == lengths + ([ctx_len - n] if n < ctx_len else [])
        else:  # the padding joined to a piece that continues in the next row
            joined += 1
        padded += n < ctx_len
        # The labels OLMo-core trains on: the next token, ignored from the last real one on.
        labels = olmo_utils.get_labels(collate([item]))[0].tolist()
        assert labels[: n - 1] == ids[1:]
        assert labels[n - 1 :] == [-100] * (ctx_len - n + 1)
    return {"instances": len(rows), "padded": padded, "joined": joined}


def test_olmo_core_reads_every_row_of_the_parquet_shards(tmp_path: Path, tokenizer: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Small files and groups: instances spread over several files, groups cut inside files.
    monkeypatch.setattr(olmo, "FILE_TOKENS", 256 * 25)
    monkeypatch.setattr(olmo, "GROUP_TOKENS", 256 * 7)
    out, report = run_pipeline(tmp_path, notes_corpus(), **BOTH)
    seen = check_olmo(out, len(tokenizer), 256, tmp_path / "work")
    stats = report["stages"]["olmo"]
    rows = shard_rows(out)
    assert stats["rows"] == seen["instances"] == report["metrics"]["n_sequences"]
    assert stats["tokens"] == report["stages"]["shards"]["tokens"]
    assert stats["padding"] == 256 * stats["rows"] - stats["tokens"]
    assert seen["padded"] > 0 and stats["padding"] > 0
    assert stats["eos_token_id"] == tokenizer.sep_token_id  # MiniLM: SEP is the separator
    assert stats["pad_token_id"] == 0 and stats["dtype"] == "uint16"
    assert stats["separators_in_text"] == 0
    files = sorted(p.name for p in (out / "olmo").glob("tokens-*.npy"))
    assert files == stats["token_files"] and len(files) == -(-len(rows) // 25) > 1
    assert [r["seq_id"] for r in rows] != sorted(r["seq_id"] for r in rows)  # shuffled
    # OLMo-core's own dtype rule (from the vocabulary size) agrees here.
    cfg = olmo_dataset(out, len(tokenizer), tmp_path / "work", dtype=False)
    assert np.dtype(cfg.get_dtype()).name == stats["dtype"]


def test_an_eos_tokenizer_and_a_window_its_cut_document_continues(tmp_path: Path) -> None:
    docs = notes_corpus(18, seed=1)
    path = small_bpe_tokenizer(docs, tmp_path / "bpe")
    mine = load_tokenizer(str(path))
    # Exactly two windows of tokens: with its EOS the last cut moves a token earlier, so a
    # 127-token piece continues into the next window and is padded by one.
    long_doc = " ".join(["note"] * 256)
    assert len(mine(long_doc, add_special_tokens=False)["input_ids"]) == 256
    docs.append({"docid": "exact", "content": long_doc, "topic": "0"})
    out, report = run_pipeline(tmp_path, docs, tokenizer=str(path), ctx_len=128,
                               **{**BOTH, "output.shuffle": False})
    seen = check_olmo(out, len(mine), 128, tmp_path / "work")
    assert seen["joined"] >= 1
    stats = report["stages"]["olmo"]
    assert stats["eos_token_id"] == mine.eos_token_id == 1
    assert stats["dtype"] == "uint8"  # a 120-id vocabulary: OLMo-core's rule gives uint8 too
    assert np.load(out / "olmo" / "seq_ids.npy").tolist() == list(range(stats["rows"]))


def test_olmo_output_is_idempotent_and_removed_when_not_asked(tmp_path: Path) -> None:
    docs = notes_corpus(15)
    out, _ = run_pipeline(tmp_path, docs, **BOTH)
    first = {p.name: p.read_bytes() for p in (out / "olmo").iterdir()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "olmo").iterdir()}
    _, again = run_pipeline(tmp_path, docs, **BOTH)
    assert again["stages"]["olmo"]["reused"] is True
    assert {p.name: p.stat().st_mtime_ns for p in (out / "olmo").iterdir()} == mtimes
    _, redone = run_pipeline(tmp_path, docs, overwrite=True, **BOTH)
    assert "reused" not in redone["stages"]["olmo"]
    assert {p.name: p.read_bytes() for p in (out / "olmo").iterdir()} == first
    run_pipeline(tmp_path, docs, **{"output.formats": ["parquet"]})
    assert not (out / "olmo").exists()
    assert (out / "tokens").is_dir()
    assert not list(out.glob(".olmo*"))  # no temporary directory left behind


def test_olmo_without_separators_is_refused_at_the_config_check(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="output.formats=olmo needs append_eos=true"):
        validate(default_config(append_eos=False, **BOTH))
    validate(default_config(append_eos=False))  # Parquet keeps seq_lengths without separators
    validate(default_config(append_eos=False, **{**BOTH, "output.tokens": False}))
    with pytest.raises(ConfigError, match="needs append_eos=true"):  # the writer says it too
        olmo.write(tmp_path, None, None, 0, None, np.arange(0), ctx_len=8,  # type: ignore[arg-type]
                   progress=False)
