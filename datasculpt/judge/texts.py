"""The text of placed pieces, for a judge whose tokenizer is not the run's.

A piece is a span of the run tokenizer's ids. The judge reads the original text instead of
decoding those ids: a decode of an uncased WordPiece vocabulary (the packaged MiniLM's) loses
case, accents and whitespace, which would score a different text than the one trained on. A
whole document is its text; a cut piece is the characters its tokens cover, from the start of
its first token to the start of the token after its last (the end of the text for the last
piece), so the pieces of one document partition its text exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.io.ingest import document_texts
from datasculpt.io.read import ReadOptions
from datasculpt.tokenize import untruncated_backend


def document_texts_of(rows: set[int], blocks: list[tuple[int, int, int]], paths: list[Path],
                      opts: ReadOptions, run_dir: Path) -> dict[int, str]:
    """The texts of the documents at ``rows`` of ``documents.parquet``, reading only the input
    shards that hold them (``blocks``: ``(file_no, first row, rows)`` per shard, as
    ``DocTable.file_rows`` or ``document_blocks`` give them)."""
    wanted = sorted(rows)
    out: dict[int, str] = {}
    for block in blocks:
        _, first, count = block
        lo = int(np.searchsorted(wanted, first))
        if lo == len(wanted) or wanted[lo] >= first + count:
            continue
        need = {r for r in wanted[lo:] if r < first + count}
        for item in document_texts(block, paths=paths, opts=opts, run_dir=str(run_dir)):
            if item["row"] in need:
                out[item["row"]] = item["text"]
                if len(out) == len(rows):
                    return out
    return out


def char_bounds(text: str, backend: Any, cuts: list[int]) -> list[int]:
    """The character position of each token index in ``cuts`` under ``backend`` (the run
    tokenizer as the token store was written: no special tokens, no truncation); a token
    index equal to the token count maps to the end of the text."""
    offsets = backend.encode(text, add_special_tokens=False).offsets
    return [0 if c == 0 else len(text) if c >= len(offsets) else offsets[c][0] for c in cuts]


def piece_texts(pieces: list[tuple[int, int, int]], texts: dict[int, str], doc_len: np.ndarray,
                tokenizer: Any) -> list[str]:
    """The text of each ``(doc, start, end)`` piece (run-tokenizer spans)."""
    cuts: dict[int, set[int]] = {}
    for doc, start, end in pieces:
        if start > 0 or end < doc_len[doc]:
            cuts.setdefault(doc, set()).update((start, end))
    where: dict[tuple[int, int], int] = {}
    backend = untruncated_backend(tokenizer) if cuts else None
    for doc, points in cuts.items():
        ordered = sorted(points)
        where.update({(doc, c): pos for c, pos in zip(
            ordered, char_bounds(texts[doc], backend, ordered), strict=True)})
    out = []
    for doc, start, end in pieces:
        text = texts[doc]
        if doc not in cuts:
            out.append(text)
        else:
            lo = where[(doc, start)]
            hi = len(text) if end >= doc_len[doc] else where[(doc, end)]
            out.append(text[lo:hi])
    return out
