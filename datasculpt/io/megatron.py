"""Megatron's indexed dataset: the training rows as ``megatron/data.bin`` + ``data.idx``, laid
out so that megatron-core's ``GPTDataset`` yields exactly our windows.

The layout is megatron-core 0.16's (``megatron/core/datasets/indexed_dataset.py``; its
``IndexedDatasetBuilder`` writes the same bytes, which the tests check): ``data.bin`` holds the
ids as int32 (dtype code 4); ``data.idx`` is the header ``MMIDIDX\\x00\\x00``, version 1
(``<Q``), the dtype code (``<B``), the sequence and document counts (``<Q``), then each
sequence's length (int32), its byte offset in ``data.bin`` (int64) and the document boundaries
(int64, ``0, 1, ..., rows``). Every row is one Megatron sequence and one document of exactly
``ctx_len`` ids: the row, then our separator repeated as padding.

Why (``gpt_dataset.py``, ``helpers.cpp``'s ``build_sample_idx``): GPTDataset concatenates its
documents, in an order it shuffles itself, and cuts samples of ``seq_length`` tokens out of
that stream, reading one token ahead when ``add_extra_token_to_sequence``. Documents of exactly
``seq_length`` tokens and no token read ahead make every sample one whole row: no window is
re-cut, nothing of one row reaches another. Megatron sees document boundaries only at its EOD
token (``_get_ltor_masks_and_position_ids``), so the EOD must be our separator, which ends every
document's last piece; a run without separators (``append_eos=false``) is refused. The padding
is the separator too because ``eod_mask_loss`` masks an EOD input whatever the tokenizer, while
a pad id is masked only if it equals the pad Megatron takes from its tokenizer (often none).

The Megatron side (``GPTDatasetConfig`` fields; Megatron-LM flags in brackets; the same values
in ``megatron/datasculpt.json``):

* ``sequence_length = ctx_len`` (``--seq-length``); ``--data-path <run>/megatron/data``;
* ``add_extra_token_to_sequence = False``. Megatron-LM's ``pretrain_gpt.py`` has no flag for
  it: add ``"add_extra_token_to_sequence": False`` to the config its
  ``core_gpt_dataset_config_from_args`` builds. Megatron then writes its tokenizer's pad as the
  last label, so that tokenizer needs a ``pad`` (an id, or an attribute that raises: Megatron
  uses -1); a Hugging Face tokenizer without a pad token gives None, and ``__getitem__`` fails.
  Left at True, every sample's tokens are still one row, but its last label is the first token
  of the next sample and an epoch has one sample fewer than rows. Megatron's index cache is not
  keyed by this field: use a fresh ``--data-cache-path`` after changing it;
* the tokenizer's ``eod`` = our separator (``sep_id`` in the stats);
* ``reset_position_ids`` (``--reset-position-ids``): positions restart after every separator,
  so on the real tokens they are the Parquet ``position_ids``;
* ``reset_attention_mask`` (``--reset-attention-mask``): no attention across a separator. It
  acts through the dense mask the dataloader builds (``create_attention_mask``, Megatron-LM's
  default: ``ctx_len**2`` per sample); without that mask attention spans the window;
* ``eod_mask_loss`` (``--eod-mask-loss``): no loss where the input is an EOD: the padding, and
  the separator's prediction of the next document (which ``datasculpt.loader`` masks too);
* ``--data-cache-path`` outside ``megatron/`` (Megatron otherwise writes its index caches under
  ``megatron/data/``, which the next write replaces). Not ``--per-dataset-sequences-path``: it
  takes the dtype from the vocabulary size (uint16 up to 65,536 ids), not from ``data.idx``.

Order: the sequences are in ``order``, the Parquet rows' order (a seeded shuffle, or pack order
with ``output.shuffle=false``); ``megatron/seq_ids.npy`` maps each to its line of
``sequences.jsonl``. GPTDataset shuffles documents and samples again with its ``--seed``, so
training order is Megatron's; the file order decides only what ``--split`` puts in train, valid
and test (contiguous ranges of rows).

What Megatron cannot tell, counted in the stats: two pieces of one document side by side, cut
at a unit boundary (``pack.method=concat``), have no separator between them and read as one
piece (``joined_pieces``); a separator id inside a document's own text resets positions there
(``eod_in_documents``); a row ending inside a document and shorter than ``ctx_len`` trains its
last token to predict the padding's EOD (``cut_rows_padded``; rare: packers cut documents to
fill windows).

Rows are assembled a group at a time (``datasculpt.io.rows``; ``GROUP_TOKENS`` padded ids in
memory at most) into a temporary directory that replaces ``megatron/`` only when complete.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.errors import ConfigError
from datasculpt.io.rows import assemble, sequence_heads
from datasculpt.io.token_store import TokenStore
from datasculpt.io.write import atomic_dir
from datasculpt.progress import progress_bar
from datasculpt.types import Packing

MEGATRON_DIR = "megatron"
PREFIX = "data"  # Megatron's path prefix: <run>/megatron/data (.bin, .idx)
GROUP_TOKENS = 1 << 22  # padded tokens assembled at once: bounds the writer's memory
INDEX_HEADER = b"MMIDIDX\x00\x00"  # indexed_dataset._INDEX_HEADER
INDEX_VERSION = 1
DTYPE_INT32 = 4  # indexed_dataset.DType.int32
INDEX_CHUNK = 1 << 20  # sequences per slice of each .idx array

log = logging.getLogger("datasculpt")


def _boundaries(packing: Packing, doc_len: np.ndarray) -> tuple[int, int]:
    """Piece boundaries inside rows that no separator marks: ``(joined, lost)``.

    ``joined``: the next piece continues the same document where this one stops (Megatron
    reads the two as one piece). ``lost``: the next piece is another document or another
    span, a boundary Megatron would not see.
    """
    ends_doc = packing.end == doc_len[packing.doc]
    inner = packing.seq[:-1] == packing.seq[1:]  # piece i is followed in its row
    unmarked = inner & ~ends_doc[:-1]
    joined = unmarked & (packing.doc[:-1] == packing.doc[1:]) \
        & (packing.end[:-1] == packing.start[1:])
    return int(joined.sum()), int((unmarked & ~joined).sum())


def _write_index(path: Path, n_rows: int, ctx_len: int) -> None:
    """``data.idx`` in ``indexed_dataset._IndexWriter``'s layout, a slice at a time."""
    with open(path, "wb") as fh:
        fh.write(INDEX_HEADER)
        fh.write(struct.pack("<Q", INDEX_VERSION))
        fh.write(struct.pack("<B", DTYPE_INT32))
        fh.write(struct.pack("<Q", n_rows))  # sequences
        fh.write(struct.pack("<Q", n_rows + 1))  # document boundaries, 0 included
        for a in range(0, n_rows, INDEX_CHUNK):
            fh.write(np.full(min(INDEX_CHUNK, n_rows - a), ctx_len, dtype=np.int32).tobytes())
        for a in range(0, n_rows, INDEX_CHUNK):
            ptr = np.arange(a, min(a + INDEX_CHUNK, n_rows), dtype=np.int64) * (ctx_len * 4)
            fh.write(ptr.tobytes())
        for a in range(0, n_rows + 1, INDEX_CHUNK):
            fh.write(np.arange(a, min(a + INDEX_CHUNK, n_rows + 1), dtype=np.int64).tobytes())


def write(run_dir: Path, packing: Packing, store: TokenStore, eos: int, sep_id: int | None,
          order: np.ndarray, *, ctx_len: int, progress: bool) -> dict[str, Any]:
    """Write ``run_dir/megatron/`` (replacing what was there) from the rows in ``order``;
    returns stats.

    Refuses what Megatron would silently get wrong: no separators (``ConfigError``), a
    boundary between documents without one, or a row over ``ctx_len`` (``ValueError``); the
    smaller differences (module docstring) are counted and logged.
    """
    t0 = time.perf_counter()
    if not eos or sep_id is None:
        raise ConfigError("output.formats=megatron needs append_eos=true: Megatron finds "
                          "document boundaries only at its EOD token (our separator)")
    doc_len = store.doc_len
    joined, lost = _boundaries(packing, doc_len)
    if lost:
        raise ValueError(f"{lost} piece boundaries inside rows have no separator; Megatron "
                         "would merge those documents")
    n_rows = packing.n_sequences
    heads = sequence_heads(packing)
    seq_tokens = packing.seq_tokens(doc_len, eos)
    if n_rows and int(seq_tokens.max()) > ctx_len:
        raise ValueError(f"a row of {int(seq_tokens.max())} tokens is over ctx_len={ctx_len}")
    last = packing.end[heads[1:] - 1] == doc_len[packing.doc[heads[1:] - 1]]
    cut_rows_padded = int((~last & (seq_tokens < ctx_len)).sum())
    n_separators = int((packing.end == doc_len[packing.doc]).sum())

    per_group = max(1, GROUP_TOKENS // ctx_len)
    eod_tokens = 0
    with atomic_dir(run_dir / MEGATRON_DIR) as tmp:
        bar = progress_bar(progress, total=n_rows, desc="megatron", unit="seq", leave=False)
        with open(tmp / f"{PREFIX}.bin", "wb") as fh:
            for lo in range(0, n_rows, per_group):
                seqs = order[lo : lo + per_group]
                r = assemble(packing, heads, seqs, store, eos, sep_id)
                n_tok = np.diff(r.row_off)
                block = np.full((seqs.shape[0], ctx_len), sep_id, dtype=np.int32)
                row = np.repeat(np.arange(seqs.shape[0]), n_tok)
                block[row, np.arange(r.ids.shape[0]) - np.repeat(r.row_off[:-1], n_tok)] = r.ids
                fh.write(block.tobytes())
                eod_tokens += int(np.count_nonzero(r.ids == sep_id))
                bar.update(seqs.shape[0])
        bar.close()
        _write_index(tmp / f"{PREFIX}.idx", n_rows, ctx_len)
        np.save(tmp / "seq_ids.npy", np.asarray(order, dtype=np.int64), allow_pickle=False)
        meta = {"path_prefix": PREFIX, "rows": n_rows, "seq_length": ctx_len,
                "dtype": "int32", "eod": int(sep_id), "pad": int(sep_id),
                "add_extra_token_to_sequence": False, "reset_position_ids": True,
                "reset_attention_mask": True, "eod_mask_loss": True}
        (tmp / "datasculpt.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    seconds = time.perf_counter() - t0
    tokens = int(seq_tokens.sum())
    eod_in_documents = eod_tokens - n_separators
    for count, what in ((joined, "pieces continue their document in the same row without a "
                         "separator: Megatron reads each pair as one piece"),
                        (eod_in_documents, "separator ids inside documents: Megatron resets "
                         "positions there"),
                        (cut_rows_padded, "rows end inside a document before ctx_len: their "
                         "last token is trained to predict the padding's EOD")):
        if count:
            log.warning("megatron: %d %s", count, what)
    return {"rows": n_rows, "tokens": tokens, "padding_tokens": n_rows * ctx_len - tokens,
            "seconds": seconds, "tokens_per_s": tokens / seconds if seconds > 0 else None,
            "path_prefix": str(Path(MEGATRON_DIR) / PREFIX), "files": sorted(
                str(Path(MEGATRON_DIR) / p.name) for p in (run_dir / MEGATRON_DIR).iterdir()),
            "seq_length": ctx_len, "sep_id": int(sep_id), "joined_pieces": joined,
            "eod_in_documents": eod_in_documents, "cut_rows_padded": cut_rows_padded}
