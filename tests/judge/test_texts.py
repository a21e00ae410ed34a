"""judge.texts: the judge reads the original text of each placed piece, never a decode of the
run tokenizer's ids: a whole document is its text, the pieces of a cut document partition its
text at its tokens' character offsets, and a document's text is read back from its input
shard (only the shards that hold the rows asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from helpers import write_jsonl

import datasculpt
from datasculpt.io.doc_table import DocTable
from datasculpt.io.ingest import document_blocks
from datasculpt.io.read import source_of
from datasculpt.judge.texts import char_bounds, document_texts_of, piece_texts
from datasculpt.tokenize import untruncated_backend

TEXT = ("Naïve CAFÉ owners   proofed sourdough\novernight; the crust's colour deepened "
        "in a wood-fired oven at 260°C. ") * 6


def test_cut_pieces_partition_their_documents_text(tokenizer: Any) -> None:
    backend = untruncated_backend(tokenizer)
    enc = backend.encode(TEXT, add_special_tokens=False)
    n = len(enc.ids)
    assert n > 40  # whole: not cut at the tokenizer.json's truncation
    cuts = [0, 7, 19, n // 2, n - 1, n]
    bounds = char_bounds(TEXT, backend, cuts)
    assert bounds == [0, *(enc.offsets[c][0] for c in cuts[1:-1]), len(TEXT)]
    doc_len = np.array([n, 3])
    pieces = [(0, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)] + [(1, 0, 3)]
    texts = piece_texts(pieces, {0: TEXT, 1: "an uncut document"}, doc_len, tokenizer)
    assert "".join(texts[:-1]) == TEXT  # nothing lost, nothing twice, case and accents kept
    assert texts[-1] == "an uncut document"
    for (_, a, b), piece in zip(pieces[:-1], texts[:-1], strict=True):
        start = enc.offsets[a][0]
        assert piece == TEXT[start:start + len(piece)]
        assert len(piece) >= enc.offsets[b - 1][1] - enc.offsets[a][0]  # its tokens' chars


def test_documents_are_read_back_from_the_shards_that_hold_them(tmp_path: Path) -> None:
    shards = tmp_path / "in"
    shards.mkdir()
    recs = [[{"docid": f"s{s}d{i}", "content": f"shard {s} document {i} " * (i + 1)}
             for i in range(4)] for s in range(3)]
    write_jsonl(shards / "part-0.jsonl", recs[0])
    write_jsonl(shards / "part-1.jsonl", [recs[1][0], "{broken", *recs[1][1:]])
    write_jsonl(shards / "part-2.jsonl", recs[2])
    cfg = datasculpt.default_config(input=str(shards), ctx_len=64, **{
        "pack.method": "bfd", "report.semantic_metrics": False, "report.plots": False,
        "report.progress": False})
    out = tmp_path / "run"
    datasculpt.run(cfg, output_dir=str(out))
    import pyarrow.parquet as pq

    sources = pq.read_table(out / "documents.parquet").column("source").to_pylist()
    src = source_of(cfg)
    blocks = DocTable(out).file_rows()  # the run's own table says where each shard's rows are
    assert blocks == document_blocks(sources, [str(p) for p in src.paths])
    want = [r["content"] for shard in recs for r in shard]
    got = document_texts_of({1, 4, 6, 7}, blocks, src.paths, src.opts, out)
    assert got == {r: want[r] for r in (1, 4, 6, 7)}
    (shards / "part-2.jsonl").unlink()  # rows of the first two shards do not read the third
    assert document_texts_of({0, 5}, blocks, src.paths, src.opts, out) == {0: want[0],
                                                                              5: want[5]}
