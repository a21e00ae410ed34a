"""Plain helpers shared by the test modules: writers and readers of run artifacts, the
command line as a subprocess, the independent reader of the output contract, corpus and
planted-embedding makers. The one place they live: ``tests/conftest.py`` puts this directory on
``sys.path`` (and has pytest rewrite its asserts), test modules ``import helpers`` or
``from helpers import ...``, and never import from one another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


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
    """An independent reader of the output contract (docs/DESIGN.md): uses no datasculpt code.

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


# ------------------------------------------------------------------ planted embeddings


def planted(k: int, per: int, d: int = 32, noise: Any = 0.05, seed: int = 0,
            shuffle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 vectors around ``k`` orthonormal directions, ``per`` of each; returns
    ``(x, true labels)``. ``noise``: one scale, or one per cluster (clusters of different
    spread); ``shuffle``: the labels in random order instead of in blocks."""
    rng = np.random.default_rng(seed)
    dirs = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    lab = np.repeat(np.arange(k), per)
    if shuffle:
        lab = rng.permutation(lab)
    scale = np.asarray(noise, dtype=float)[lab][:, None] if np.ndim(noise) else noise
    x = dirs[lab] + scale * rng.normal(size=(lab.size, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings are the same partition, up to numbering."""
    return np.unique(np.stack([a, b]), axis=1).shape[1] == len(np.unique(a)) == len(np.unique(b))


def purity(pred: np.ndarray, truth: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Token-weighted share of each predicted cluster's majority label."""
    w = np.ones(pred.size) if weight is None else np.asarray(weight, float)
    table = np.zeros((pred.max() + 1, truth.max() + 1))
    np.add.at(table, (pred, truth), w)
    return float(table.max(axis=1).sum() / w.sum())


# ------------------------------------------------------------------ a small text corpus, run

NOTE_TOPICS = ("rivers carry sediment to the delta", "compilers lower code to machine instructions",
               "bakers proof dough before the oven")


def notes_corpus(n: int = 36, seed: int = 0) -> list[dict[str, str]]:
    """Documents of 3 topics (label ``topic``), from a handful of tokens to several windows."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        topic = NOTE_TOPICS[i % 3]
        reps = int(rng.choice([1, 2, 5, 20, 60, 200]))
        words = " ".join(f"{topic} note {i} part {k}." for k in range(reps))
        docs.append({"docid": f"d{i:03d}", "content": words, "topic": str(i % 3)})
    return docs


def small_bpe_tokenizer(docs: list[dict[str, str]], path: Path) -> Path:
    """A 120-token BPE tokenizer trained on ``docs``, with an EOS and no SEP, saved at
    ``path``: a run tokenizer unlike the packaged encoder's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.train_from_iterator([d["content"] for d in docs],
                            trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "</s>"]))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    return path


def run_pipeline(tmp: Path, docs: list[dict[str, str]], **over: Any) -> tuple[Path, dict]:
    """``datasculpt.run`` in this process on ``docs`` (written once to ``tmp/in.jsonl``) into
    ``tmp/run``; ``over``: config overrides by dotted key (``ctx_len`` defaults to 256)."""
    import datasculpt

    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "in.jsonl"
    if not data.exists():  # written once: a rewrite is a new input, and every stage reruns
        write_jsonl(data, docs)
    cfg = datasculpt.default_config(input=str(data), ctx_len=over.pop("ctx_len", 256),
                                    label_key=over.pop("label_key", "topic"),
                                    **{"report.plots": False, "report.progress": False, **over})
    out = tmp / "run"
    return out, datasculpt.run(cfg, output_dir=str(out))


# ------------------------------------------------------------------ packings


def length_corpora() -> Any:
    """A hypothesis strategy: ``(document lengths, ctx_len, eos)``, lengths up to 3,000
    tokens and ctx_len from 8 to 2,048, so that many documents are longer than a window."""
    from hypothesis import strategies as st

    return st.tuples(st.lists(st.integers(1, 3000), min_size=1, max_size=60),
                     st.integers(8, 2048), st.integers(0, 1))


def small_packing_params(max_docs: int) -> Any:
    """A hypothesis strategy: the parameters ``small_packing_input`` builds a corpus from
    (up to ``max_docs`` documents, windows of 8 to 64 tokens, 1 to 5 clusters)."""
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "n_docs": st.integers(1, max_docs),
        "ctx_len": st.integers(8, 64),
        "n_clusters": st.integers(1, 5),
        "dim": st.integers(2, 8),
        "eos": st.integers(0, 1),
        "seed": st.integers(0, 2**31 - 1),
    })


def packing_corpus(n_docs: int, ctx_len: int, n_clusters: int, dim: int, seed: int,
                   median: float = 600.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-normal lengths (heavy tail, clipped to 4 windows), planted-topic unit embeddings;
    returns ``(doc_len, embeddings, labels)``."""
    rng = np.random.default_rng(seed)
    doc_len = np.clip(np.rint(rng.lognormal(np.log(median), 1.3, n_docs)), 1, 4 * ctx_len)
    labels = rng.integers(0, n_clusters, n_docs)
    centres = rng.standard_normal((n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = centres[labels] + rng.standard_normal((n_docs, dim)) / np.sqrt(dim)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    return doc_len.astype(np.int64), emb, labels.astype(np.int64)


def small_packing_input(p: dict) -> tuple[Any, np.ndarray, np.ndarray]:
    """Units, embeddings and clusters from a hypothesis draw (``n_docs``, ``ctx_len``,
    ``n_clusters``, ``dim``, ``eos``, ``seed``): many short documents, some close to a window
    and some longer than one."""
    from datasculpt.tokenize import make_units

    rng = np.random.default_rng(p["seed"])
    ctx_len = p["ctx_len"]
    doc_len = np.where(rng.random(p["n_docs"]) < 0.8,
                       rng.integers(1, max(2, ctx_len // 3), p["n_docs"]),
                       rng.integers(1, 3 * ctx_len, p["n_docs"]))
    emb = rng.standard_normal((p["n_docs"], p["dim"]))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    clusters = rng.integers(0, p["n_clusters"], p["n_docs"]) * 7 - 3  # arbitrary label values
    return make_units(doc_len, ctx_len, p["eos"]), emb, clusters


def check_packing(packing: Any, units: Any, ctx_len: int, emb: np.ndarray) -> dict:
    """Assert the output contract of a Packing and recompute fill, truncation and relevance
    from scratch (an independent reader: no datasculpt code)."""
    import math

    doc_len, eos = units.doc_len, units.eos
    seq = packing.seq
    assert seq.size and seq[0] == 0 and np.all(np.diff(seq) >= 0), "sequences out of order"
    assert np.all(np.diff(seq) <= 1), "gap in sequence numbering"
    assert np.all(packing.end > packing.start), "empty piece"
    tokens = (packing.end - packing.start) + eos * (packing.end == doc_len[packing.doc])
    per_seq = np.bincount(seq, weights=tokens).astype(np.int64)
    assert per_seq.max() <= ctx_len, "overlong sequence"
    assert per_seq.min() > 0, "empty sequence"
    # Every token of every unit exactly once: the pieces of a document tile the units' spans.
    want: dict[int, list[tuple[int, int]]] = {}
    for d, s, e in zip(units.doc.tolist(), units.start.tolist(), units.end.tolist(), strict=True):
        want.setdefault(d, []).append((s, e))
    got: dict[int, list[tuple[int, int]]] = {}
    for d, s, e in zip(packing.doc.tolist(), packing.start.tolist(), packing.end.tolist(),
                       strict=True):
        got.setdefault(d, []).append((s, e))
    assert got.keys() == want.keys(), "documents lost or invented"
    for d, spans in got.items():
        spans.sort()
        covered = sorted(want[d])
        assert spans[0][0] == covered[0][0] and spans[-1][1] == covered[-1][1]
        for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False):
            assert e0 == s1, f"document {d}: tokens lost or duplicated"
    n_seq = int(seq[-1]) + 1
    pieces_per_doc = np.bincount(packing.doc, minlength=doc_len.shape[0])
    fits = doc_len + eos <= ctx_len
    rel = []
    for s in range(n_seq):
        docs = np.unique(packing.doc[seq == s])
        if docs.size >= 2:
            v = emb[docs].astype(np.float64)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            g = v @ v.T
            rel.append((g.sum() - np.trace(g)) / (docs.size * (docs.size - 1)))
    return {
        "n_sequences": n_seq,
        "fill_rate": int(tokens.sum()) / (n_seq * ctx_len),
        "truncation_rate": float((pieces_per_doc[fits] > 1).mean()) if fits.any() else 0.0,
        "relevance": float(np.mean(rel)) if rel else math.nan,
    }


def assert_same_packing(a: Any, b: Any) -> None:
    for field in ("seq", "doc", "start", "end"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


# ------------------------------------------------------------------ models

# The encoder the GPU tests use: the packaged MiniLM, or the fp16 copy the device check
# carries where that package is not installed (scripts/gpu_carry.sh).
GPU_TEST_MODEL = os.environ.get("DATASCULPT_TEST_MODEL", "default")

# The vocabulary of the tiny encoder (conftest's ``tiny_encoder``): four topics sharing no word.
TINY_WORDS = {t: [f"{t}{i}" for i in range(12)] for t in ("astro", "cook", "law", "code")}


def numpy_blas_threads() -> set[int]:
    """The thread limits of the BLAS library NumPy's products run on. Wheels bring their own
    copies (faiss-cpu's OpenMP OpenBLAS, SciPy's), loaded later than NumPy's and computing
    none of our products; a conda environment shares one library, so without a copy inside
    NumPy's own folders every BLAS library counts."""
    from threadpoolctl import threadpool_info

    root = Path(np.__file__).resolve().parent
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    own = [p for p in blas if any(Path(p["filepath"]).resolve().is_relative_to(d)
                                  for d in (root, root.parent / "numpy.libs"))]
    return {p["num_threads"] for p in own or blas}
