"""Admission by 64-bit id hashes: the same documents and duplicate reports as an exact set of
ids, whatever the hash (a weak one only forces the exact recheck), in 16 bytes a document."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasculpt.executors import LocalExecutor
from datasculpt.io import admission as adm
from datasculpt.io.admission import Admission, HashIndex, hash_ids
from datasculpt.io.ingest import read_and_tokenize
from datasculpt.io.read import ReadOptions, ReadStats, iter_documents

# candidate: (docid, vector problem, vector dimension); a block: candidates of one source
Cand = tuple[str, str | None, int | None]


def _weak_hash(docids: list[str]) -> np.ndarray:
    """Only the length: most different ids of a corpus collide."""
    return np.asarray([len(d) for d in docids], dtype=np.uint64)


def _constant_hash(docids: list[str]) -> np.ndarray:
    return np.full(len(docids), 7, dtype=np.uint64)


HASHES = {"blake2b": hash_ids, "length": _weak_hash, "constant": _constant_hash}


def _reference(blocks: list[list[Cand]]) -> list[list[str | None]]:
    """What the dict of ids did before: sequential, exact."""
    first: dict[str, str] = {}
    dim = None
    out = []
    for b, block in enumerate(blocks):
        got: list[str | None] = []
        for line, (docid, vp, vd) in enumerate(block, 1):
            if docid in first:
                got.append(f"duplicate id {docid!r} (first at {first[docid]})")
                continue
            if vp is not None:
                got.append(vp)
                continue
            if vd is not None:
                if dim is not None and vd != dim:
                    got.append(f"vector has dimension {vd}, earlier ones {dim}")
                    continue
                dim = vd
            first[docid] = f"f{b // 2}:{line + 100 * b}"
            got.append(None)
        out.append(got)
    return out


def _admit(blocks: list[list[Cand]]) -> list[list[str | None]]:
    """The blocks through ``Admission``, the admitted kept in order as the corpus keeps them."""
    kept: list[tuple[str, str, int]] = []
    admission = Admission(kept.__getitem__)
    out = []
    for b, block in enumerate(blocks):
        source, lines = f"f{b // 2}", [line + 100 * b for line in range(1, len(block) + 1)]
        got = admission.admit_block(source, lines, [c[0] for c in block],
                                    [c[1] for c in block], [c[2] for c in block])
        kept += [(c[0], source, line) for c, p, line in zip(block, got, lines, strict=True)
                 if p is None]
        out.append(got)
    assert admission.admitted == len(kept) == len(admission.index)
    return out


_ids = st.sampled_from(["a", "b", "c", "ab", "ba", "abc", "é", "a\ud800", "x" * 9, "y" * 9])
_plain = st.lists(st.lists(st.tuples(_ids, st.none(), st.none()), max_size=12), max_size=12)
_vector = st.lists(st.lists(st.tuples(
    _ids, st.sampled_from([None, None, None, "missing or invalid vector field 'v'"]),
    st.sampled_from([None, 3, 3, 3, 4])), max_size=12), max_size=12)


@pytest.mark.parametrize("hash_name", sorted(HASHES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.one_of(_plain, _vector))
def test_admits_like_a_set_of_ids_whatever_the_hash(hash_name: str,
                                                    blocks: list[list[Cand]]) -> None:
    # Duplicates within a block, across blocks and shards, ids freed by a vector problem:
    # the answers are those of the dict, with blake2b and with hashes that collide for most
    # (length) or all (constant) different ids, where only the recheck tells them apart.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adm, "hash_ids", HASHES[hash_name])
        assert _admit(blocks) == _reference(blocks)


def test_a_hash_collision_admits_both_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adm, "hash_ids", _constant_hash)
    kept: list[tuple[str, str, int]] = []
    admission = Admission(kept.__getitem__)
    got = admission.admit_block("a.jsonl", [1, 2, 3], ["x", "y", "x"], [None] * 3, [None] * 3)
    assert got == [None, None, "duplicate id 'x' (first at a.jsonl:1)"]
    kept += [("x", "a.jsonl", 1), ("y", "a.jsonl", 2)]
    got = admission.admit_block("b.jsonl", [4, 5, 6], ["z", "y", "z"], [None] * 3, [None] * 3)
    assert got == [None, "duplicate id 'y' (first at a.jsonl:2)",
                   "duplicate id 'z' (first at b.jsonl:4)"]
    assert admission.admitted == 3


def _shards(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Three shards drawing ids from a small pool: most records repeat an id, within their
    shard and across shards; some have no id, some are not JSON."""
    paths = []
    for s in range(3):
        recs: list = []
        for i in range(120):
            r = rng.random()
            if r < 0.05:
                recs.append("{not json")
            elif r < 0.1:
                recs.append({"content": f"no id {s} {i}"})
            else:
                recs.append({"docid": f"id{int(rng.integers(0, 90))}",
                             "content": f"text {s} {i} " * int(rng.integers(1, 20))})
        paths.append(write_jsonl(tmp_path / f"s{s}.jsonl", recs))
    return paths


def _expected(paths: list[Path]) -> tuple[list[str], list[tuple[str, int, str]]]:
    """The admitted ids and the duplicate reports, from the records by a dict."""
    first: dict[str, str] = {}
    docids, dups = [], []
    for path in paths:
        for line, raw in enumerate(path.read_text().splitlines(), 1):
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                continue
            docid = rec.get("docid") or f"{path}:{line}"
            if docid in first:
                dups.append((str(path), line, f"duplicate id {docid!r} (first at {first[docid]})"))
            else:
                first[docid] = f"{path}:{line}"
                docids.append(docid)
    return docids, dups


@pytest.mark.parametrize("hash_name", ["blake2b", "constant"])
def test_read_and_ingest_admit_like_a_dict(tmp_path: Path, hash_name: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The single pass (its own id log) and the block merge of ingest (the ids of its parts),
    # at block sizes that cut shards into many blocks: the dict's documents and reports.
    monkeypatch.setattr(adm, "hash_ids", HASHES[hash_name])
    paths = _shards(tmp_path, np.random.default_rng(21))
    want_ids, want_dups = _expected(paths)
    assert len(want_dups) > 150
    opts = ReadOptions()
    stats = ReadStats()
    assert [d.docid for d in iter_documents(paths, opts, stats, progress=False)] == want_ids
    dups = [(m["file"], m["line"], m["reason"]) for m in stats.malformed
            if m["reason"].startswith("duplicate")]
    assert dups == want_dups
    for block_bytes in (300, 1 << 30):
        out = tmp_path / f"out{block_bytes}"
        out.mkdir()
        table, _, istats, _ = read_and_tokenize(paths, opts, "default", 16, out,
                                                LocalExecutor(), progress=False,
                                                block_bytes=block_bytes)
        assert table.column("docid").to_pylist() == want_ids
        assert istats.malformed == stats.malformed


def test_sixteen_bytes_a_document_at_one_million() -> None:
    n, block = 1_000_000, 65_536
    ids = [f"doc-{i:09d}" for i in range(n)]
    kept = ids.__getitem__
    admission = Admission(lambda k: (kept(k), "f", k))
    t0 = time.perf_counter()
    for a in range(0, n, block):
        got = admission.admit_block("f", range(a, a + block), ids[a:a + block],
                                    [None] * len(ids[a:a + block]),
                                    [None] * len(ids[a:a + block]))
        assert not any(got)
    seconds = time.perf_counter() - t0
    per_doc = admission.index.nbytes / n
    print(f"admitted 1M ids in {seconds:.2f} s, {per_doc:.1f} bytes/doc, "
          f"{admission.index.runs} runs")
    assert admission.admitted == n
    assert per_doc <= 24
    # and they are found again: every one a duplicate now, in one block
    again = admission.admit_block("g", range(1000), ids[::1000], [None] * 1000, [None] * 1000)
    assert again == [f"duplicate id {d!r} (first at f:{i * 1000})"
                     for i, d in enumerate(ids[::1000])]


def test_hash_is_stable_and_the_index_merges_runs() -> None:
    # Fixed values: blake2b does not depend on PYTHONHASHSEED or the process.
    assert hash_ids(["a", "doc-1"]).tolist() == [
        int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
        for s in ("a", "doc-1")]
    index = HashIndex()
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**64, size=5000, dtype=np.uint64)
    for a in range(0, 5000, 100):
        order = np.argsort(h[a:a + 100])
        index.add(h[a:a + 100][order], np.arange(a, a + 100)[order])
    assert len(index) == 5000 and index.runs <= 16 * 8
    q = np.sort(h)
    pos, idx = index.matches(q)
    assert np.array_equal(np.sort(idx), np.arange(5000))
    assert np.array_equal(h[idx], q[pos])
