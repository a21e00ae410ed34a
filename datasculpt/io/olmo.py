"""Training data for OLMo-core (``output.formats=[..., olmo]``): token files its
``NumpyFSLDataset`` reads as exactly our windows, one instance per row of the Parquet shards,
in the same order.

Why this dataset class (OLMo-core 3.0, ``olmo_core/data/numpy_dataset.py``):
``NumpyFSLDataset`` concatenates its files and cuts instances at every ``sequence_length``
tokens, nothing else; ``NumpyPaddedFSLDataset`` makes one instance per EOS-delimited document
and ``NumpyPackedFSLDataset`` re-packs documents itself, so both would undo our packing. Each row
is therefore written padded to ``ctx_len`` tokens: every cut falls on a row boundary, and the
instance is the row.

Layout of ``<run>/olmo/`` (replaced as a whole, like ``tokens/``):

- ``tokens-NNNNN.npy``: raw token ids, no header (OLMo-core's and Dolma's ``.npy`` token
  files), ``ctx_len`` per row: the row's ``input_ids`` then ``pad_token_id`` up to ``ctx_len``;
  ``dtype`` is the smallest of uint8/16/32 that holds every id written (OLMo-core's own rule,
  which it applies to ``vocab_size - 1``). At most ``FILE_TOKENS`` tokens a file, whole rows.
- ``label-mask-NNNNN.npy``: raw ``np.bool_``, one per token, false on padding: OLMo-core's
  ``label_mask`` (``get_labels`` turns those labels into the ignore index), the only way it
  masks padding it did not add itself.
- ``seq_ids.npy`` (a real ``.npy``): instance ``i`` is line ``seq_ids[i]`` of
  ``sequences.jsonl`` (the Parquet rows' ``seq_id``).
- ``olmo.json``: dtype, ids, counts and file names, for the config below.

Document boundaries: with ``generate_doc_lengths=True`` OLMo-core splits an instance after
every ``eos_token_id`` (``get_document_lengths``), so ``eos_token_id`` must be our separator
(``sep_id``: the tokenizer's EOS, or SEP when it has none) and ``bos_token_id`` must be unset
(with a BOS it splits only at EOS followed by BOS, which our rows never hold). ``doc_lens`` is
then our pieces' lengths (Parquet ``seq_lengths``) plus the padding: one more, masked, segment
after a row whose last piece ends its document, or added to the last piece when that piece
continues in the next row (only a cut long document's piece, which fills the row but a token).
Padding always comes after the row's tokens, so under causal attention no real token sees
it. Without separators (``append_eos=false``) OLMo-core has no way to see where documents
end; the config check refuses that combination. A document whose own text tokenizes to the
separator id (a literal ``<|endoftext|>``) is split there too: ``separators_in_text`` counts
them.

The OLMo-core config (``meta`` is ``olmo.json``)::

    from olmo_core.data import NumpyDatasetDType, NumpyFSLDatasetConfig, TokenizerConfig

    dataset = NumpyFSLDatasetConfig.glob(
        "<run>/olmo/tokens-*.npy",
        label_mask_paths=["<run>/olmo/label-mask-*.npy"],
        sequence_length=meta["sequence_length"],  # = ctx_len; max_target_sequence_length unset
        generate_doc_lengths=True,
        dtype=NumpyDatasetDType(meta["dtype"]),  # explicit: see the dtype rule above
        tokenizer=TokenizerConfig(vocab_size=<the run tokenizer's>,
                                  eos_token_id=meta["eos_token_id"],
                                  pad_token_id=meta["pad_token_id"], bos_token_id=None),
    ).build()

Its data loader then shuffles whole instances by its own seed; it never re-cuts them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.errors import ConfigError
from datasculpt.io.rows import assemble, sequence_heads
from datasculpt.io.token_store import TokenStore
from datasculpt.io.write import atomic_dir, write_json, write_npy
from datasculpt.progress import progress_bar
from datasculpt.types import Packing

log = logging.getLogger("datasculpt")

FOLDER = "olmo"
TOKEN_FILES = "tokens-{:05d}.npy"
MASK_FILES = "label-mask-{:05d}.npy"
SEQ_IDS = "seq_ids.npy"
META = "olmo.json"
LAYOUT = 1  # olmo.json's "layout": bump when the files change meaning
GROUP_TOKENS = 1 << 22  # padded tokens assembled at a time: bounds the writer's memory
FILE_TOKENS = 1 << 30  # padded tokens per token file (1-4 GiB, as Dolma's files)
_SCAN = 1 << 24  # token-store ids read at a time when looking for the largest id
# OLMo-core's candidates (NumpyDatasetConfig.get_dtype), smallest first.
_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)

NEEDS_SEPARATOR = ("output.formats=olmo needs append_eos=true: OLMo-core finds document "
                   "boundaries (doc_lens) only at the separator (its eos_token_id)")


def pad_id(sep_id: int) -> int:
    """The id padding is written with: 0 (a valid id in every vocabulary), 1 when 0 is the
    separator, since a padding id equal to EOS would make every padding token a document."""
    return 1 if sep_id == 0 else 0


def token_dtype(max_id: int) -> np.dtype:
    """OLMo-core's rule (the smallest unsigned type holding the largest id), on the ids
    actually written: ``write`` is not given the vocabulary size."""
    for dtype in _DTYPES:
        if max_id <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"token id {max_id} does not fit uint64")


def _store_max_id(store: TokenStore) -> int:
    """The largest id of the documents in the token store, read in chunks (memory holds one
    chunk); not of dropped records, whose ids stay in the part files."""
    total, best = int(store.offsets[-1]), 0
    for lo in range(0, total, _SCAN):
        chunk = store.tokens(lo, min(lo + _SCAN, total))
        if chunk.size:
            best = max(best, int(chunk.max()))
    return best


def _padded(rows_ids: np.ndarray, row_off: np.ndarray, ctx_len: int, pad: int,
            dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The rows padded to ``ctx_len`` (flat, row after row) and their label mask."""
    lens = np.diff(row_off)
    if lens.size and int(lens.max()) > ctx_len:
        raise ValueError(f"a row of {int(lens.max())} tokens is over ctx_len={ctx_len}")
    n = lens.shape[0]
    pos = np.repeat(np.arange(n, dtype=np.int64) * ctx_len - row_off[:-1], lens) \
        + np.arange(rows_ids.shape[0], dtype=np.int64)
    tokens = np.full(n * ctx_len, pad, dtype=dtype)
    tokens[pos] = rows_ids
    mask = np.zeros(n * ctx_len, dtype=np.bool_)
    mask[pos] = True
    return tokens, mask


def write(run_dir: Path, packing: Packing, store: TokenStore, eos: int, sep_id: int | None,
          order: np.ndarray, *, ctx_len: int, progress: bool) -> dict[str, Any]:
    """Write ``run_dir/olmo/`` (replacing what was there); returns stats.

    Rows are assembled ``GROUP_TOKENS // ctx_len`` at a time (``rows.assemble``, the Parquet
    shards' rows) and appended to the open files, so memory holds one group, never a file.
    """
    if not eos or sep_id is None:
        raise ConfigError(NEEDS_SEPARATOR)
    t0 = time.perf_counter()
    heads = sequence_heads(packing)
    order = np.asarray(order, dtype=np.int64)
    n_rows = int(order.shape[0])
    pad = pad_id(int(sep_id))
    dtype = token_dtype(max(_store_max_id(store), int(sep_id), pad))
    per_file = max(1, FILE_TOKENS // ctx_len)
    per_group = max(1, min(per_file, GROUP_TOKENS // ctx_len))
    n_files = -(-n_rows // per_file)
    tokens = padding = in_text = 0
    with atomic_dir(run_dir / FOLDER) as tmp:
        bar = progress_bar(progress, total=n_rows, desc=FOLDER, unit="seq", leave=False)
        for k in range(n_files):
            with open(tmp / TOKEN_FILES.format(k), "wb") as tf, \
                    open(tmp / MASK_FILES.format(k), "wb") as mf:
                for lo in range(k * per_file, min((k + 1) * per_file, n_rows), per_group):
                    hi = min(lo + per_group, (k + 1) * per_file, n_rows)
                    r = assemble(packing, heads, order[lo:hi], store, eos, sep_id)
                    ids, mask = _padded(r.ids, r.row_off, ctx_len, pad, dtype)
                    tf.write(ids.tobytes())
                    mf.write(mask.tobytes())
                    # Separators not at a piece's end come from the documents' own text.
                    last = np.cumsum(r.plen) - 1
                    in_text += int((r.ids == sep_id).sum() - (r.ids[last] == sep_id).sum())
                    tokens += int(r.ids.shape[0])
                    padding += (hi - lo) * ctx_len - int(r.ids.shape[0])
                    bar.update(hi - lo)
        bar.close()
        write_npy(tmp / SEQ_IDS, order)
        token_files = [TOKEN_FILES.format(k) for k in range(n_files)]
        mask_files = [MASK_FILES.format(k) for k in range(n_files)]
        meta = {"layout": LAYOUT, "dataset": "NumpyFSLDatasetConfig",
                "sequence_length": ctx_len, "dtype": dtype.name, "eos_token_id": int(sep_id),
                "pad_token_id": pad, "bos_token_id": None, "generate_doc_lengths": True,
                "rows": n_rows, "tokens": tokens, "padding": padding,
                "rows_per_file": per_file, "token_files": token_files,
                "label_mask_files": mask_files, "seq_ids": SEQ_IDS,
                "separators_in_text": in_text}
        write_json(tmp / META, meta)
    if in_text:
        log.warning("olmo: %d separator ids inside documents' own text; OLMo-core's doc_lens "
                    "splits those documents there", in_text)
    seconds = time.perf_counter() - t0
    return {**{k: v for k, v in meta.items() if k != "layout"}, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else None}
