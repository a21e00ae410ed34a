"""The reader: every shape of input users send, and every record accounted for."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from helpers import write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasculpt.errors import InputError
from datasculpt.io.read import ReadOptions, read_corpus, resolve_inputs


def _records(n: int, start: int = 0) -> list[dict]:
    return [{"docid": f"d{i}", "content": f"document number {i} about things"}
            for i in range(start, start + n)]


def test_jsonl_gz_zst_parquet_directory_and_glob(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", _records(3))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in _records(2, 3))
    blob = "".join(json.dumps(r) + "\n" for r in _records(2, 5)).encode()
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(blob))
    pq.write_table(pa.Table.from_pylist(_records(2, 7)), tmp_path / "d.parquet")
    (tmp_path / "notes.txt").write_text("not a shard")

    corpus, stats = read_corpus(str(tmp_path), ReadOptions(), progress=False)
    assert corpus.docids == [f"d{i}" for i in range(9)]
    assert stats.records == 9 and stats.documents == 9 and not stats.malformed
    assert [Path(f).name for f in stats.files] == ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst",
                                                   "d.parquet"]
    assert len(resolve_inputs(str(tmp_path / "*.jsonl*"))) == 3


def test_text_fallback_generated_ids_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"text": "only a text field", "domain": "law"},
        {"content": "content wins", "text": "ignored", "docid": 7},
    ])
    corpus, _ = read_corpus(str(path), ReadOptions(label_key="domain"), progress=False)
    assert corpus.texts == ["only a text field", "content wins"]
    assert corpus.docids == [f"{path}:1", "7"]
    assert corpus.labels == ["law", ""]


def test_every_malformed_record_is_listed_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "messy.jsonl"
    lines = [
        json.dumps({"docid": "a", "content": "fine"}).encode(),
        b"{not json",
        b"[1, 2]",
        json.dumps({"docid": "b"}).encode(),
        json.dumps({"docid": "c", "content": "   \n\t"}).encode(),
        b'{"docid": "d", "content": "bad \xff byte"}',
        json.dumps({"docid": "a", "content": "same id again"}).encode(),
        json.dumps({"docid": "e", "content": 42}).encode(),
        b"",
        json.dumps({"docid": "f", "content": "also fine"}).encode(),
    ]
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    corpus, stats = read_corpus(str(path), ReadOptions(), progress=False)
    assert corpus.docids == ["a", "f"]
    assert corpus.lines == [1, 10]
    reasons = {m["line"]: m["reason"] for m in stats.malformed}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert reasons[2].startswith("bad JSON")
    assert reasons[3].startswith("not an object")
    assert reasons[4].startswith("missing text field")
    assert reasons[5] == "empty text"
    assert reasons[6].startswith("invalid UTF-8")
    assert reasons[7].startswith("duplicate id 'a'") and f"{path}:1" in reasons[7]
    assert "not a string" in reasons[8]
    assert reasons[9] == "blank line"
    assert stats.records == stats.documents + len(stats.malformed)

    with pytest.raises(InputError, match=r"messy.jsonl:2"):
        read_corpus(str(path), ReadOptions(strict=True), progress=False)


def test_merge_conflict_markers_like_the_refinedweb_sample(tmp_path: Path) -> None:
    recs = [json.dumps({"docid": f"r{i}", "content": f"web page {i}"}) for i in range(149)]
    conflict = json.dumps({"docid": "r149", "content": "edited on both sides"})
    path = write_jsonl(tmp_path / "rw.jsonl", [*recs, "<<<<<<< HEAD", conflict, "=======",
                                                conflict.replace("both", "the other"),
                                                ">>>>>>> 75c05ce"])
    corpus, stats = read_corpus(str(path), ReadOptions(), progress=False)
    bad = [(m["line"], m["reason"].split(":")[0]) for m in stats.malformed]
    assert bad == [(150, "bad JSON"), (152, "bad JSON"), (153, "duplicate id 'r149' (first at "
                                                               f"{path}"), (154, "bad JSON")]
    assert stats.malformed[2]["reason"] == f"duplicate id 'r149' (first at {path}:151)"
    assert len(corpus) == 150


def test_cut_short_compressed_stream_keeps_what_was_read(tmp_path: Path) -> None:
    blob = "".join(json.dumps(r) + "\n" for r in _records(20000)).encode()
    packed = gzip.compress(blob)
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    packed = zstandard.ZstdCompressor().compress(blob)
    (tmp_path / "cut.jsonl.zst").write_bytes(packed[: len(packed) // 2])
    for name in ("cut.jsonl.gz", "cut.jsonl.zst"):
        corpus, stats = read_corpus(str(tmp_path / name), ReadOptions(), progress=False)
        assert 0 < len(corpus) < 20000
        assert stats.malformed[-1]["reason"].startswith("unreadable after this point")
        assert stats.malformed[-1]["line"] == len(corpus) + 1


def test_bom_and_missing_inputs(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"docid": "x", "content": "hi"}).encode() + b"\n")
    corpus, stats = read_corpus(str(path), ReadOptions(), progress=False)
    assert corpus.docids == ["x"] and not stats.malformed
    with pytest.raises(InputError, match="input not found"):
        resolve_inputs(str(tmp_path / "nope.jsonl"))
    with pytest.raises(InputError, match="no input shards"):
        resolve_inputs(str(tmp_path / "*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no input shards"):
        resolve_inputs(str(tmp_path / "empty"))
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(InputError, match="unsupported input format"):
        resolve_inputs(str(tmp_path / "data.csv"))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                     max_size=4),
                 max_leaves=10).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"content": st.text(max_size=60), "docid": st.text(max_size=5)})
      .map(lambda v: json.dumps(v).encode()),
), max_size=30))
def test_hostile_bytes_never_crash_and_every_line_is_accounted_for(tmp_path: Path,
                                                                  lines: list[bytes]) -> None:
    lines = [ln.replace(b"\n", b" ").replace(b"\r", b" ") for ln in lines]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    corpus, stats = read_corpus(str(path), ReadOptions(), progress=False)
    assert stats.records == len(lines)
    assert stats.documents + len(stats.malformed) == len(lines)
    seen = sorted(corpus.lines + [m["line"] for m in stats.malformed])
    assert seen == list(range(1, len(lines) + 1))
    assert len(set(corpus.docids)) == len(corpus.docids)
    assert all(t.strip() for t in corpus.texts)


def test_long_lines_nul_bytes_empty_files(tmp_path: Path) -> None:
    big_text = "token " * 600_000  # a 3.6 MB document on one line
    lines = [
        json.dumps({"docid": "big", "content": big_text}).encode(),
        b'{"docid": "raw-nul", "content": "a\x00b"}',  # a raw control byte: not JSON
        json.dumps({"docid": "escaped-nul", "content": "a\u0000b"}).encode(),  # valid JSON
        b"x" * 5_000_000,  # 5 MB of garbage
    ]
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines))  # no newline at the end
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with gzip.open(tmp_path / "empty.jsonl.gz", "wb"):
        pass
    corpus, stats = read_corpus(str(tmp_path), ReadOptions(), progress=False)
    assert corpus.docids == ["big", "escaped-nul"]
    assert len(corpus.texts[0]) == len(big_text) and corpus.texts[1] == "a\x00b"
    assert [(m["line"], m["reason"].split(":")[0]) for m in stats.malformed] == [
        (2, "bad JSON"), (4, "bad JSON")]
    assert stats.records == 4
