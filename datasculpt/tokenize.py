"""Token counts with a Hugging Face fast tokenizer, and the cut of over-long documents.

Only counts are kept: a span ``[start, end)`` of a document's token sequence is enough to
describe any placement, and the writer re-tokenizes when ``text``/``input_ids`` are asked for.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from datasculpt.errors import ConfigError
from datasculpt.models import resolve_model_path
from datasculpt.progress import progress_bar
from datasculpt.types import Units

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """A fast tokenizer, without the max-length warning: we count tokens, we do not truncate."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(path, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load tokenizer {name!r}: {str(exc).splitlines()[0]}") from exc
    if not tok.is_fast:
        raise ConfigError(f"tokenizer {name!r} has no fast (Rust) implementation")
    tok.model_max_length = 1 << 40
    return tok


def untruncated_backend(tok: Any) -> Any:
    """A copy of ``tok``'s Rust backend with truncation and padding off (``tok`` unchanged)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def plain_ids(tok: Any, specials_as_text: bool = False) -> Callable[[list[str]], list[list[int]]]:
    """The token ids of a batch of texts, no special tokens, no truncation or padding.

    The Rust tokenizer's ``encode_batch_fast`` gives the ids ``tok(texts)`` gives without
    computing the character offsets nobody here reads: 1.62x the tokens per second on the
    dev corpus (docs/BENCHMARKS.md). It runs on a copy of the tokenizer's backend with
    truncation and padding off, so the settings a ``tokenizer.json`` carries (MiniLM's
    truncates at 128) can neither cut a document nor change the caller's tokenizer.

    With ``specials_as_text`` a special token's string in a text (``<|endoftext|>``) is
    tokenized as the text it is, not turned into the special token.
    """
    backend = untruncated_backend(tok)
    backend.encode_special_tokens = specials_as_text

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]

    return encode


def separator(tok: Any) -> tuple[int, str]:
    """The token appended after each document: EOS when the tokenizer has one, else SEP."""
    for tid, text in ((tok.eos_token_id, tok.eos_token), (tok.sep_token_id, tok.sep_token)):
        if tid is not None:
            return int(tid), str(text)
    raise ConfigError("append_eos=true but the tokenizer has neither an EOS nor a SEP token")


def count_tokens(
    texts: Iterable[str], tok: Any, batch_size: int, total: int | None = None, progress: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """Token count of every text (no special tokens), in input order."""
    t0 = time.perf_counter()
    counts: list[int] = []
    batch: list[str] = []
    bar = progress_bar(progress, total=total, desc="tokenize", unit="doc", leave=False)
    encode = plain_ids(tok)

    def flush() -> None:
        counts.extend(len(ids) for ids in encode(batch))
        bar.update(len(batch))
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    bar.close()
    n_tokens = np.asarray(counts, dtype=np.int64)
    seconds = time.perf_counter() - t0
    stats = {
        "documents": int(n_tokens.size),
        "tokens": int(n_tokens.sum()),
        "seconds": seconds,
        "tokens_per_s": float(n_tokens.sum() / seconds) if seconds > 0 else None,
    }
    return n_tokens, stats


def _whole_documents(doc_len: np.ndarray, eos: int) -> Units:
    """The units when no document is cut: each document from 0 to its end.

    ``start`` is one zero broadcast over the documents and ``end`` is ``doc_len`` itself, both
    read-only: the driver holds 8 bytes per document for the units, not 24 (0.16 GB at 10M
    documents). The values are those of the general construction."""
    end = doc_len.view()
    end.flags.writeable = False
    start = np.broadcast_to(np.int64(0), doc_len.shape)
    return Units(doc=np.arange(doc_len.size, dtype=np.int64), start=start, end=end,
                 doc_len=doc_len, eos=int(eos))


def make_units(doc_len: np.ndarray, ctx_len: int, eos: int) -> Units:
    """Cut every document into ``ctx_len``-token pieces up front; short ones stay whole.

    A document occupies ``doc_len + eos`` tokens. Pieces are cut at multiples of ``ctx_len``;
    when that would leave the separator alone in a last piece (``doc_len`` a multiple of
    ``ctx_len``), the last cut moves one token earlier so every piece holds document tokens.
    """
    doc_len = np.asarray(doc_len, dtype=np.int64)
    if np.any(doc_len <= 0):
        raise ValueError("documents must have at least one token")
    n_pieces = -(-(doc_len + eos) // ctx_len)
    if doc_len.size and int(n_pieces.max()) == 1:
        return _whole_documents(doc_len, eos)
    doc = np.repeat(np.arange(doc_len.size, dtype=np.int64), n_pieces)
    first = np.concatenate(([0], np.cumsum(n_pieces)[:-1]))
    k = np.arange(doc.size, dtype=np.int64) - np.repeat(first, n_pieces)
    start = k * ctx_len
    end = np.minimum(start + ctx_len, doc_len[doc])
    last = k == n_pieces[doc] - 1
    lone_sep = last & (start >= doc_len[doc])  # only possible when eos == 1
    if lone_sep.any():
        idx = np.flatnonzero(lone_sep)
        start[idx] = doc_len[doc[idx]] - 1
        end[idx - 1] -= 1
        end[idx] = doc_len[doc[idx]]
    return Units(doc=doc, start=start, end=end, doc_len=doc_len, eos=int(eos))
