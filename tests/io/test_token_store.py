"""The token store read across its parts: the same ids as the one merged file it replaced,
whatever the parts, the dropped candidates in them and the spans asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasculpt.io.ingest import _Skips
from datasculpt.io.token_store import PARTS_DIR, TokenStore, write_offsets, write_parts


def _store(tmp: Path, rng: np.random.Generator, n_parts: int) -> tuple[TokenStore, list]:
    """Random parts (some candidates dropped, some parts wholly, some documents empty) built
    as the merge builds them; returns the store and the kept documents' ids."""
    store_dir = tmp / PARTS_DIR
    store_dir.mkdir(parents=True)
    skips, listed, kept, lengths = _Skips(), [], [], []
    for p in range(n_parts):
        n = int(rng.integers(0, 6))
        docs = [rng.integers(0, 1000, size=int(rng.integers(0, 5))).astype(np.int32)
                for _ in range(n)]
        n_tokens = np.asarray([d.size for d in docs], dtype=np.int64)
        keep = rng.random(n) < (0.0 if p % 7 == 3 else 0.7)
        name = f"part-{p:06d}.bin"
        if not keep.any():
            continue  # the merge deletes such a part
        (store_dir / name).write_bytes(b"".join(d.tobytes() for d in docs))
        skips.add(len(kept), n_tokens, keep)
        listed.append((name, int(n_tokens.sum())))
        kept += [d for d, k in zip(docs, keep, strict=True) if k]
        lengths.append(n_tokens[keep])
    write_parts(store_dir, listed, skips.array())
    write_offsets(tmp, np.concatenate(lengths) if lengths else np.zeros(0, np.int64))
    return TokenStore(tmp), kept


@pytest.mark.parametrize("seed", range(8))
def test_gather_reads_across_parts_as_one_file(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store, kept = _store(tmp_path, rng, 20)
    flat = np.concatenate([np.zeros(0, np.int32), *kept])
    assert store.doc_len.tolist() == [d.size for d in kept]
    total = int(store.offsets[-1])
    assert store.tokens(0, total).tolist() == flat.tolist()
    for _ in range(50):
        lo = int(rng.integers(0, total + 1))
        hi = int(rng.integers(lo, total + 1))
        assert store.tokens(lo, hi).tolist() == flat[lo:hi].tolist()
    if not kept:
        return
    doc = rng.integers(0, len(kept), size=200)
    lens = store.doc_len[doc]
    start = (rng.random(200) * (lens + 1)).astype(np.int64)
    end = start + (rng.random(200) * (lens - start + 1)).astype(np.int64)
    want = [t for d, a, b in zip(doc, start, end, strict=True) for t in kept[d][a:b].tolist()]
    assert store.gather(doc, start, end).tolist() == want
    for d, a, b in zip(doc.tolist(), start.tolist(), end.tolist(), strict=True):
        assert store.span(d, a, b).tolist() == kept[d][a:b].tolist()


def test_skips_have_a_row_where_a_drop_moves_the_documents() -> None:
    skips = _Skips()
    skips.add(0, np.asarray([3, 4]), np.asarray([True, True]))
    skips.add(2, np.asarray([5]), np.asarray([True]))
    assert skips.array().shape == (0, 2)
    skips.add(3, np.asarray([2, 7, 1]), np.asarray([True, False, True]))
    skips.add(5, np.asarray([6, 1]), np.asarray([False, True]))
    skips.add(6, np.asarray([2]), np.asarray([True]))  # the same skip: no row
    assert skips.array().tolist() == [[4, 7], [5, 13]]


def test_a_short_part_is_an_error(tmp_path: Path) -> None:
    (tmp_path / PARTS_DIR).mkdir()
    (tmp_path / PARTS_DIR / "part-000000.bin").write_bytes(np.arange(3, dtype=np.int32).tobytes())
    write_parts(tmp_path / PARTS_DIR, [("part-000000.bin", 5)], np.zeros((0, 2)))
    write_offsets(tmp_path, np.asarray([5]))
    with pytest.raises(OSError, match="shorter"):
        TokenStore(tmp_path).span(0, 0, 5)


def test_token_writer_encodes_ahead_and_writes_in_input_order(tmp_path: Path) -> None:
    """Batches are encoded on the writer's thread while the next one fills: the file holds
    every text's ids in input order, the counts match, and an encoding error reaches the
    caller."""
    from datasculpt.io.token_store import TokenWriter
    from datasculpt.tokenize import load_tokenizer, plain_ids

    tok = load_tokenizer("default")
    texts = [f"document {i} says {'word ' * (i % 7)}" for i in range(23)]
    path = tmp_path / "part.bin"
    with open(path, "wb") as fh:
        writer = TokenWriter(fh, tok, batch_size=4)
        for text in texts:
            writer.add(text)
        counts = writer.lengths()
    expected = plain_ids(tok)(texts)
    assert counts.tolist() == [len(x) for x in expected]
    assert np.fromfile(path, dtype=np.int32).tolist() == [t for ids in expected for t in ids]

    calls = []

    def failing(batch: list[str]) -> list[list[int]]:
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("encoder broke")
        return [[1] for _ in batch]

    with open(tmp_path / "bad.bin", "wb") as fh:
        writer = TokenWriter(fh, tok, batch_size=2)
        writer.encode = failing
        with pytest.raises(RuntimeError, match="encoder broke"):
            for text in texts:
                writer.add(text)
            writer.lengths()
        writer.close()
