"""Megatron's indexed dataset (issue 20): read back by megatron-core itself.

``IndexedDataset`` reads ``megatron/data`` and ``GPTDataset``, built as Megatron-LM's
``pretrain_gpt.py`` builds it with the flags ``datasculpt.io.megatron`` documents, must yield
every Parquet row as one sample, token by token, with positions restarting at every document,
attention kept inside it and the loss on exactly the next-token targets inside a document.
The expected rows are rebuilt from ``sequences.jsonl`` and a fresh tokenization, as
``test_shards.py`` does for the Parquet shards.
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import notes_corpus, read_sequences, run_pipeline

with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed"
    warnings.simplefilter("ignore")
    pytest.importorskip("megatron.core.datasets.gpt_dataset",
                        reason="megatron-core is not installed (the test extra on Linux)")
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from datasculpt.errors import ConfigError
from datasculpt.io import megatron
from datasculpt.io.token_store import PARTS_DIR, TokenStore, write_offsets, write_parts
from datasculpt.types import Packing

CTX = 256  # run_pipeline's ctx_len


class MegatronTokenizer:
    """What GPTDatasetConfig reads of a tokenizer: ``eod``, ``vocab_size``, ``pad`` (a tokenizer
    without one raises, as Megatron-LM's legacy ones do, and Megatron pads with -1) and the
    ``unique_identifiers`` its index cache is keyed by."""

    def __init__(self, eod: int, vocab_size: int, pad: int | None = None) -> None:
        self.eod, self.vocab_size, self._pad = eod, vocab_size, pad
        self.unique_identifiers = {"class": "MegatronTokenizer", "eod": eod, "pad": pad}

    @property
    def pad(self) -> int:
        if self._pad is None:
            raise NotImplementedError("no pad token")
        return self._pad


def gpt_dataset(out: Path, cache: Path, tok: MegatronTokenizer, samples: int | None, *,
                extra_token: bool = False, attention_mask: bool = True) -> GPTDataset:
    """The training split as ``pretrain_gpt.py`` builds it (one blend, ``--split 1,0,0``)."""
    meta = (out / "megatron" / "datasculpt.json").read_text()
    assert f'"seq_length": {CTX}' in meta and f'"eod": {tok.eod}' in meta
    config = GPTDatasetConfig(
        random_seed=1234, sequence_length=CTX, blend=([str(out / "megatron" / "data")], None),
        split="1,0,0", path_to_cache=str(cache), tokenizer=tok, reset_position_ids=True,
        reset_attention_mask=True, eod_mask_loss=True, create_attention_mask=attention_mask,
        add_extra_token_to_sequence=extra_token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [samples, None, None],
                                                    lambda: True, config).build()
    assert isinstance(train, GPTDataset)
    return train


def megatron_sequence(ds: GPTDataset, s: int) -> int:
    """The sequence (of ``data.idx``) sample ``s`` ends in: the last of the document ids
    GPTDataset reads it from (the one before is the previous sample's, read for 0 tokens)."""
    return int(ds._query_document_sample_shuffle_indices(s)[1][-1])


def expected_rows(out: Path, docs: list[dict[str, str]], tok: Any) -> dict[int, dict[str, Any]]:
    """Every sequence's ids and the segments Megatron can see (a new one after every piece
    that ends its document, i.e. after every separator), from ``sequences.jsonl``."""
    ids_of = {d["docid"]: tok(d["content"], add_special_tokens=False)["input_ids"] for d in docs}
    rows = {}
    for seq in read_sequences(out / "sequences.jsonl"):
        ids: list[int] = []
        pieces, segments, open_seg = [], [], 0
        for piece in seq["docs"]:
            full = ids_of[piece["docid"]]
            span = full[piece["start"] : piece["end"]]
            ends = piece["end"] == len(full)
            span = [*span, tok.sep_token_id] if ends else span
            ids.extend(span)
            pieces.append(len(span))
            open_seg += len(span)
            if ends:
                segments.append(open_seg)
                open_seg = 0
        if open_seg:
            segments.append(open_seg)
        rows[seq["seq_id"]] = {"ids": ids, "pieces": pieces, "segments": segments}
    return rows


def parquet_rows(out: Path) -> dict[int, dict[str, Any]]:
    rows = {}
    for f in sorted(glob.glob(str(out / "tokens" / "part-*.parquet"))):
        for r in pq.read_table(f).to_pylist():
            rows[r["seq_id"]] = r
    return rows


def check_sample(sample: dict[str, Any], want: dict[str, Any], row: dict[str, Any],
                 sep: int) -> None:
    """One GPTDataset sample against its row: tokens, labels, positions, loss and attention."""
    ids, n = want["ids"], len(want["ids"])
    tokens = sample["tokens"].numpy()
    assert tokens.tolist() == ids + [sep] * (CTX - n)  # the row, then the separator as padding
    assert row["input_ids"] == ids
    assert sample["labels"].numpy()[: n - 1].tolist() == ids[1:]
    seg_pos = [i for length in want["segments"] for i in range(length)]
    assert sample["position_ids"].numpy()[:n].tolist() == seg_pos
    if want["segments"] == want["pieces"]:  # no piece joined to the next: the Parquet positions
        assert row["position_ids"] == seg_pos
    # The loss: every next-token target inside a segment, nothing across one, none on padding.
    last = np.cumsum(want["segments"]) - 1
    loss = np.zeros(CTX)
    loss[: n - 1] = 1
    loss[last] = 0
    np.testing.assert_array_equal(sample["loss_mask"].numpy(), loss)
    if "attention_mask" in sample:  # True = masked: causal, inside each segment
        seg = np.repeat(np.arange(len(want["segments"])), want["segments"])
        allowed = (seg[:, None] == seg[None, :]) & np.tri(n, dtype=bool)
        np.testing.assert_array_equal(~sample["attention_mask"].numpy()[0, :n, :n], allowed)


@pytest.fixture(scope="module", params=["datasculpt", "concat"])
def megatron_run(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list, str]:
    """One run writing both formats: the default packer, and concat (pieces of one document
    side by side, which Megatron cannot tell apart)."""
    docs = notes_corpus()
    over = {} if request.param == "datasculpt" else {"report.semantic_metrics": False}
    out, report = run_pipeline(tmp_path_factory.mktemp(request.param), docs,
                               **{"output.formats": ["parquet", "megatron"],
                                  "pack.method": request.param, **over})
    return out, report, docs, request.param


def test_indexed_dataset_reads_every_row_padded_to_ctx_len(megatron_run: tuple,
                                                           tokenizer: Any) -> None:
    out, report, docs, method = megatron_run
    stats = report["stages"]["megatron"]
    want, rows = expected_rows(out, docs, tokenizer), parquet_rows(out)
    ds = IndexedDataset(str(out / "megatron" / "data"))
    seq_ids = np.load(out / "megatron" / "seq_ids.npy")
    assert len(ds) == stats["rows"] == len(rows) == len(want) == report["metrics"]["n_sequences"]
    assert ds.index.dtype == np.int32
    assert ds.sequence_lengths.tolist() == [CTX] * len(ds)
    assert ds.document_indices.tolist() == list(range(len(ds) + 1))
    order = [r["seq_id"] for f in sorted(glob.glob(str(out / "tokens" / "part-*.parquet")))
             for r in pq.read_table(f, columns=["seq_id"]).to_pylist()]
    assert seq_ids.tolist() == order  # the Parquet rows' order
    sep = tokenizer.sep_token_id
    for i, sid in enumerate(seq_ids.tolist()):
        ids = want[sid]["ids"]
        assert ds[i].tolist() == rows[sid]["input_ids"] + [sep] * (CTX - len(ids))
        assert rows[sid]["input_ids"] == ids
    assert stats["tokens"] == sum(len(w["ids"]) for w in want.values())
    assert stats["padding_tokens"] == len(ds) * CTX - stats["tokens"]
    assert stats["sep_id"] == sep and stats["eod_in_documents"] == 0
    assert stats["cut_rows_padded"] == 0
    joined = sum(len(w["pieces"]) - len(w["segments"]) for w in want.values())
    assert stats["joined_pieces"] == joined
    assert (joined > 0) == (method == "concat")
    assert (out / "megatron" / "data.bin").stat().st_size == len(ds) * CTX * 4


def test_gpt_dataset_yields_exactly_the_rows(megatron_run: tuple, tokenizer: Any,
                                             tmp_path: Path) -> None:
    out, _, docs, _ = megatron_run
    want, rows = expected_rows(out, docs, tokenizer), parquet_rows(out)
    seq_ids = np.load(out / "megatron" / "seq_ids.npy")
    sep, n = tokenizer.sep_token_id, len(want)
    # Megatron's pad: -1 when its tokenizer has none, else the tokenizer's (BERT's [PAD]).
    for k, tok in enumerate((MegatronTokenizer(sep, len(tokenizer)),
                             MegatronTokenizer(sep, len(tokenizer), tokenizer.pad_token_id))):
        ds = gpt_dataset(out, tmp_path / f"cache{k}", tok, n)
        assert len(ds) == n  # one sample per row: an epoch, nothing cut or left over
        seen = []
        for s in range(n):
            sid = int(seq_ids[megatron_sequence(ds, s)])
            check_sample(ds[s], want[sid], rows[sid], sep)
            seen.append(sid)
        assert sorted(seen) == sorted(want)  # every row exactly once
    # Two epochs: every row exactly twice, every sample still one whole row.
    ds = gpt_dataset(out, tmp_path / "cache2", MegatronTokenizer(sep, len(tokenizer)), 2 * n,
                     attention_mask=False)
    assert len(ds) == 2 * n
    counts: dict[int, int] = {}
    for s in range(2 * n):
        sid = int(seq_ids[megatron_sequence(ds, s)])
        check_sample(ds[s], want[sid], rows[sid], sep)
        counts[sid] = counts.get(sid, 0) + 1
    assert set(counts.values()) == {2} and len(counts) == n


def test_pretrain_gpt_default_extra_token_keeps_the_tokens(megatron_run: tuple, tokenizer: Any,
                                                           tmp_path: Path) -> None:
    """What the module docstring says of ``add_extra_token_to_sequence=True`` (Megatron-LM's
    fixed choice): each sample's tokens are still one row, one row short per epoch."""
    out, _, docs, _ = megatron_run
    want = expected_rows(out, docs, tokenizer)
    sep = tokenizer.sep_token_id
    padded = {tuple(w["ids"] + [sep] * (CTX - len(w["ids"]))) for w in want.values()}
    ds = gpt_dataset(out, tmp_path / "cache", MegatronTokenizer(sep, len(tokenizer)), None,
                     extra_token=True, attention_mask=False)
    assert len(ds) == len(want) - 1
    assert all(tuple(ds[s]["tokens"].tolist()) in padded for s in range(len(ds)))


def test_rerun_rewrites_the_same_bytes_and_parquet_only_removes_the_folder(
        tmp_path: Path) -> None:
    docs = notes_corpus(15)
    fast = {"pack.method": "bfd", "report.semantic_metrics": False}
    both = {"output.formats": ["parquet", "megatron"], **fast}
    out, first = run_pipeline(tmp_path, docs, **both)
    files = sorted(p.name for p in (out / "megatron").iterdir())
    assert files == ["data.bin", "data.idx", "datasculpt.json", "seq_ids.npy"]
    assert first["stages"]["megatron"]["files"] == [f"megatron/{f}" for f in files]
    before = {f: (out / "megatron" / f).read_bytes() for f in files}
    stamps = {f: (out / "megatron" / f).stat().st_mtime_ns for f in files}
    _, again = run_pipeline(tmp_path, docs, **both)
    assert again["stages"]["megatron"]["reused"] is True
    assert {f: (out / "megatron" / f).stat().st_mtime_ns for f in files} == stamps
    _, parquet = run_pipeline(tmp_path, docs, **{"output.formats": ["parquet"], **fast})
    assert parquet["stages"]["megatron"]["written"] is False
    assert not (out / "megatron").exists() and (out / "tokens").exists()
    _, back = run_pipeline(tmp_path, docs, **both)
    assert "reused" not in back["stages"]["megatron"]
    assert {f: (out / "megatron" / f).read_bytes() for f in files} == before
    _, ordered = run_pipeline(tmp_path, docs, **{**both, "output.shuffle": False})
    seq_ids = np.load(out / "megatron" / "seq_ids.npy")
    assert seq_ids.tolist() == list(range(ordered["stages"]["megatron"]["rows"]))
    assert not [p for p in os.listdir(out) if p.startswith(".megatron")]


def test_a_run_without_separators_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="append_eos=true"):
        run_pipeline(tmp_path, notes_corpus(9), append_eos=False,
                     **{"output.formats": ["megatron"], "pack.method": "bfd",
                        "report.semantic_metrics": False})


# ------------------------------------------------------------------ the writer alone

SEP = 99


def small_store(tmp: Path, docs: list[list[int]]) -> TokenStore:
    (tmp / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    ids = np.asarray([t for d in docs for t in d], np.int32)
    (tmp / PARTS_DIR / "part-000000.bin").write_bytes(ids.tobytes())
    write_parts(tmp / PARTS_DIR, [("part-000000.bin", ids.size)], np.zeros((0, 2)))
    write_offsets(tmp, np.asarray([len(d) for d in docs], np.int64))
    return TokenStore(tmp)


DOCS = [[1, 2, 3, 4, 5], [11, SEP, 13], [21, 22, 23, 24, 25, 26, 27, 28, 29], [31, 32]]
# Windows of 8: a short row ending inside a document, a full one, one joined nowhere.
ROWS = [[(0, 0, 5), (3, 0, 1)], [(3, 1, 2), (1, 0, 3)], [(2, 0, 8)], [(2, 8, 9)]]
WANT = [[1, 2, 3, 4, 5, SEP, 31, SEP], [32, SEP, 11, SEP, 13, SEP, SEP, SEP],
        [21, 22, 23, 24, 25, 26, 27, 28], [29, SEP, SEP, SEP, SEP, SEP, SEP, SEP]]


def test_writer_matches_megatron_s_own_builder_byte_for_byte(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    store = small_store(tmp_path / "run", DOCS)
    order = np.asarray([2, 0, 3, 1])
    (tmp_path / "run" / "megatron").mkdir()
    (tmp_path / "run" / "megatron" / "stale.bin").write_bytes(b"x")  # replaced, not merged
    stats = megatron.write(tmp_path / "run", Packing.from_lists(ROWS), store, 1, SEP, order,
                           ctx_len=8, progress=False)
    assert stats["rows"] == 4 and stats["tokens"] == 7 + 6 + 8 + 2
    assert stats["padding_tokens"] == 4 * 8 - 23
    assert stats["cut_rows_padded"] == 1  # row 0: it ends inside document 3, 7 tokens
    assert stats["eod_in_documents"] == 1  # document 1 holds the separator's id
    assert stats["joined_pieces"] == 0
    folder = tmp_path / "run" / "megatron"
    assert sorted(p.name for p in folder.iterdir()) == [
        "data.bin", "data.idx", "datasculpt.json", "seq_ids.npy"]
    # megatron-core's own writer, given the same padded rows, writes the same two files.
    ref = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.int32)
    for r in order.tolist():
        ref.add_document(np.asarray(WANT[r], np.int32), [8])
    ref.finalize(str(tmp_path / "ref.idx"))
    assert (folder / "data.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert (folder / "data.idx").read_bytes() == (tmp_path / "ref.idx").read_bytes()
    ds = IndexedDataset(str(folder / "data"))
    assert [ds[i].tolist() for i in range(len(ds))] == [WANT[r] for r in order.tolist()]
    assert np.load(folder / "seq_ids.npy").tolist() == order.tolist()
    # Again, one row per group: the same bytes, and no temporary directory left.
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(megatron, "GROUP_TOKENS", 8)
    megatron.write(tmp_path / "run", Packing.from_lists(ROWS), store, 1, SEP, order, ctx_len=8,
                   progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(os.listdir(tmp_path / "run")) == ["megatron", "offsets.npy", PARTS_DIR]


def test_writer_counts_joined_pieces_and_refuses_lost_boundaries(tmp_path: Path) -> None:
    store = small_store(tmp_path / "run", DOCS)
    lost = Packing.from_lists([[(2, 0, 9)], [(1, 0, 2), (0, 0, 5)], [(1, 2, 3), (3, 0, 2)]])
    with pytest.raises(ValueError, match="1 piece boundaries"):  # document 0 after 1's middle
        megatron.write(tmp_path / "run", lost, store, 1, SEP, np.arange(3), ctx_len=16,
                       progress=False)
    ok = Packing.from_lists([[(2, 0, 4), (2, 4, 9)], [(0, 0, 5), (1, 0, 3)], [(3, 0, 2)]])
    stats = megatron.write(tmp_path / "run", ok, store, 1, SEP, np.arange(3), ctx_len=16,
                           progress=False)
    assert stats["joined_pieces"] == 1
    with pytest.raises(ConfigError):
        megatron.write(tmp_path / "run", ok, store, 0, None, np.arange(3), ctx_len=16,
                       progress=False)
    with pytest.raises(ValueError, match="over ctx_len"):
        megatron.write(tmp_path / "run", ok, store, 1, SEP, np.arange(3), ctx_len=8,
                       progress=False)
    # Kept in a name: IndexedDataset unmaps its file when collected, under the arrays it gave.
    ds = IndexedDataset(str(tmp_path / "run" / "megatron" / "data"))
    assert ds[0].tolist() == [21, 22, 23, 24, 25, 26, 27, 28, 29, SEP, SEP, SEP, SEP, SEP, SEP,
                              SEP]
