"""Shared fixtures: real components (the packaged tokenizer and encoder), small real inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from datasculpt.backend import gpu_problem

    problem = gpu_problem()
    if problem is None:
        return
    if os.environ.get("DATASCULPT_REQUIRE_GPU") == "1":
        # The device check: a GPU machine whose GPU is unusable must fail, not skip everything.
        gpu_items = [item for item in items if "gpu" in item.keywords]
        if gpu_items:
            raise pytest.UsageError(f"DATASCULPT_REQUIRE_GPU=1 but the GPU is not usable: "
                                    f"{problem} ({len(gpu_items)} GPU tests)")
    skip = pytest.mark.skip(reason=f"needs a GPU: {problem}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from datasculpt.tokenize import load_tokenizer

    return load_tokenizer("default")


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """Write records (dicts, or raw strings written verbatim as lines) as JSONL."""
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec if isinstance(rec, str) else json.dumps(rec))
            fh.write("\n")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m datasculpt.main`` as a user would, from a directory outside the repo."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "datasculpt.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def read_sequences(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def check_contract(run_dir: Path, ctx_len: int, append_eos: bool) -> dict[str, int]:
    """An independent reader of the output contract (DESIGN §6): uses no datasculpt code.

    Returns the totals it saw; asserts every token of every document is placed exactly once,
    no sequence is over ctx_len and every n_tokens matches its spans (+ separators).
    """
    import pyarrow.parquet as pq

    docs = pq.read_table(run_dir / "documents.parquet").to_pydict()
    length = dict(zip(docs["docid"], docs["n_tokens"], strict=True))
    assert len(length) == len(docs["docid"]), "docids in documents.parquet are not unique"
    covered: dict[str, list[tuple[int, int]]] = {d: [] for d in length}
    n_seq = 0
    for i, seq in enumerate(read_sequences(run_dir / "sequences.jsonl")):
        assert seq["seq_id"] == i
        n = 0
        for piece in seq["docs"]:
            doc, start, end = piece["docid"], piece["start"], piece["end"]
            assert 0 <= start < end <= length[doc], piece
            covered[doc].append((start, end))
            n += end - start + (1 if append_eos and end == length[doc] else 0)
        assert n == seq["n_tokens"], seq
        assert n <= ctx_len, seq
        n_seq += 1
    lost = dup = 0
    for doc, spans in covered.items():
        marks = [0] * length[doc]
        for start, end in spans:
            for t in range(start, end):
                marks[t] += 1
        lost += sum(1 for m in marks if m == 0)
        dup += sum(m - 1 for m in marks if m > 1)
    assert lost == 0 and dup == 0, (lost, dup)
    shards = sorted((run_dir / "tokens").glob("part-*.parquet"))
    if shards:  # the training shards: every sequence once, with its n_tokens ids
        n_tokens = {s["seq_id"]: s["n_tokens"] for s in read_sequences(run_dir / "sequences.jsonl")}
        seen: dict[int, int] = {}
        for f in shards:
            table = pq.read_table(f, columns=["seq_id", "input_ids", "cu_seqlens"]).to_pydict()
            for sid, ids, cu in zip(table["seq_id"], table["input_ids"], table["cu_seqlens"],
                                    strict=True):
                assert sid not in seen, f"seq_id {sid} twice in the shards"
                seen[sid] = len(ids)
                assert cu[0] == 0 and cu[-1] == len(ids)
        assert seen == n_tokens, "shards and sequences.jsonl disagree"
    return {"sequences": n_seq, "documents": len(length), "tokens": sum(length.values())}


@pytest.fixture(scope="session")
def sample_semantics(tokenizer: Any) -> dict[str, Any]:
    """The embedded sample read, tokenized and embedded once with the real default model."""
    import numpy as np

    from datasculpt.backend import resolve_backend, to_numpy
    from datasculpt.config import EmbedConfig
    from datasculpt.data import SAMPLE_LABEL_KEY, SAMPLE_PATH
    from datasculpt.embed import embed_texts
    from datasculpt.io.read import ReadOptions, read_corpus
    from datasculpt.tokenize import count_tokens

    corpus, _ = read_corpus(str(SAMPLE_PATH), ReadOptions(label_key=SAMPLE_LABEL_KEY),
                            progress=False)
    doc_len, _ = count_tokens(corpus.texts, tokenizer, 256, progress=False)
    backend = resolve_backend("cpu")
    emb, _ = embed_texts(corpus.texts, EmbedConfig(), backend, progress=False)
    return {"doc_len": doc_len, "embeddings": to_numpy(emb), "labels": np.asarray(corpus.labels),
            "backend": backend}
