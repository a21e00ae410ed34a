"""sequences.jsonl: each line is exactly what ``json.dumps(line, ensure_ascii=False)`` writes
(the writer formats lines itself for speed, so the bytes are checked against the encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasculpt.io.write import write_sequences
from datasculpt.types import Packing

IDS = ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "ünï cödé", "emoji 🙂", "ctrl\x01",
       "", "sep:7"]


def _reference(packing: Packing, ids: list, doc_len: np.ndarray, eos: int,
               clusters: np.ndarray | None) -> str:
    seq_tokens = packing.seq_tokens(doc_len, eos)
    lines = []
    for s in range(packing.n_sequences):
        sel = np.flatnonzero(packing.seq == s)
        docs = [{"docid": ids[int(packing.doc[j])], "start": int(packing.start[j]),
                 "end": int(packing.end[j]),
                 "cluster": None if clusters is None else int(clusters[packing.doc[j]])}
                for j in sel]
        lines.append(json.dumps({"seq_id": s, "n_tokens": int(seq_tokens[s]), "docs": docs},
                                ensure_ascii=False) + "\n")
    return "".join(lines)


@pytest.mark.parametrize("with_clusters", [True, False])
@pytest.mark.parametrize("ids", [IDS, list(range(100, 109))])
def test_lines_are_json_dumps(tmp_path: Path, with_clusters: bool, ids: list) -> None:
    rng = np.random.default_rng(3)
    doc_len = rng.integers(1, 50, size=len(ids)).astype(np.int64)
    order = rng.permutation(len(ids))
    seq = np.sort(rng.integers(0, 4, size=len(ids)))
    seq = np.unique(seq, return_inverse=True)[1].astype(np.int64)  # no gaps
    start = np.zeros(len(ids), np.int64)
    packing = Packing(seq=seq, doc=order.astype(np.int64), start=start,
                      end=doc_len[order].copy())
    clusters = rng.integers(-1, 5, size=len(ids)) if with_clusters else None
    path = tmp_path / "sequences.jsonl"
    n = write_sequences(path, packing, ids, doc_len, 1, clusters, progress=False)
    assert n == packing.n_sequences
    assert path.read_text(encoding="utf-8") == _reference(packing, ids, doc_len, 1, clusters)
