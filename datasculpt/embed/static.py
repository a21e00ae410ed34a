"""Static embeddings (``embed=static``): a document's vector from a Model2Vec token table.

A document's vector is a weighted sum of its tokens' vectors (``embed.term_weight``), a table
lookup instead of a transformer pass; the table is distilled from the run's encoder once
(``distill.py``). The lookup is ``torch.nn.functional.embedding_bag`` on the backend's device
rather than ``StaticModel.encode``: on a GPU it is one memory-bound kernel over the whole
batch, the sum is taken in float32 (``encode`` averages in the table's float16), and a token's
count in its document can be damped (``sqrt``, the default, or ``log``; ``count`` is
``encode``'s mean): Model2Vec's mean lets a token repeated a hundred times (an indent, a
brace, a licence line) outweigh everything else in the document. ``model2vec`` (the optional
extra ``static``) is imported only when a table loads, so this module imports without it.
When the table's tokenizer is the run's, the ids come from the token store instead of the
texts (``static_ids.py``): the same ids, so the same vectors, without tokenizing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.embed.batch import vector_batch
from datasculpt.embed.clip import clipped_ids
from datasculpt.embed.distill import static_model_dir
from datasculpt.vectors import l2_normalize

__all__ = ["StaticEncoder", "StaticTable", "load_static_model", "static_model_dir"]

_MODELS: dict[tuple[str, str], Any] = {}
# Texts are tokenized from a clip of this many characters per token of max_length (exact:
# embed.clipped_ids re-tokenizes a clip that falls short). Half the encoder's margin: on the
# dev corpus no clip of 8 fell short, and tokenizing is nearly all of the lookup's time
# (docs/BENCHMARKS.md).
_CHARS_PER_TOKEN = 8


def load_static_model(path: Path) -> Any:
    """The Model2Vec model at ``path`` with the tokenizer the lookup uses: the saved one
    truncates at the source model's 512 tokens, and ``embed.max_length`` is the limit here
    (the ids are cut after tokenizing). The token-store check (``static_ids``) reads this
    same tokenizer, so what it compares is what ``StaticTable.ids`` runs."""
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(str(path), force_download=False)
    model.tokenizer.no_truncation()
    return model


class StaticTable:
    """A loaded static model: its tokenizer and its table on ``device`` (float32)."""

    def __init__(self, path: Path, device: str) -> None:
        import torch

        model = load_static_model(path)
        self.model = model
        self.device = device
        self.dim = int(model.dim)
        self.table = torch.as_tensor(np.asarray(model.embedding, dtype=np.float32), device=device)
        self.mapping = (None if model.token_mapping is None else
                        torch.as_tensor(np.asarray(model.token_mapping), device=device))
        self.weights = (None if model.weights is None else
                        torch.as_tensor(np.asarray(model.weights, np.float32), device=device))

    @classmethod
    def load(cls, path: Path, device: str) -> StaticTable:
        key = (str(path), device)
        if key not in _MODELS:
            _MODELS[key] = cls(path, device)
        return _MODELS[key]

    def embed(self, texts: list[str], max_length: int, term_weight: str = "count") -> Any:
        """Unit-norm ``len(texts) x dim`` float32 torch tensor on the device; a text with no
        known token gets a zero row. ``term_weight`` turns a token's count in its document
        into its weight: ``count`` is Model2Vec's mean, ``sqrt`` and ``log`` (1 + log) damp
        repeats."""
        return self.embed_ids(self.ids(texts, max_length), term_weight)

    def ids(self, texts: list[str], max_length: int) -> list[list[int]]:
        """The static ids the lookup reads from each text: model2vec's ``tokenize`` (no
        special tokens, the unknown token removed) of a clip, cut to ``max_length``."""
        return clipped_ids(self.model.tokenize, texts, max_length, _CHARS_PER_TOKEN)

    def embed_ids(self, ids: Sequence[Sequence[int]], term_weight: str = "count") -> Any:
        """``embed`` from each document's static ids (``ids``, or the token store's through
        ``static_ids``): the same ids give the same bits, whichever way they were had."""
        lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lens.sum()))
        return self.embed_flat(flat, lens, term_weight)

    def embed_flat(self, flat: np.ndarray, lens: np.ndarray, term_weight: str = "count") -> Any:
        """``embed_ids`` from the documents' ids concatenated (``flat``) and their counts
        (``lens``): the token store's rows come this way, with no list per document."""
        import torch

        n = len(lens)
        flat = torch.as_tensor(np.asarray(flat, dtype=np.int64), device=self.device)
        doc = torch.repeat_interleave(torch.arange(n, device=self.device),
                                      torch.as_tensor(np.asarray(lens, dtype=np.int64),
                                                      device=self.device))
        # One bag entry per (document, token) pair with its count; sorted keys keep each
        # document's pairs together, so the bags' offsets are where each document starts.
        vocab = int(self.table.shape[0] if self.mapping is None else self.mapping.shape[0])
        keys, counts = torch.unique(doc * vocab + flat, sorted=True, return_counts=True)
        tokens = keys % vocab
        offsets = torch.searchsorted(keys // vocab, torch.arange(n, device=self.device))
        weights = _TERM_WEIGHTS[term_weight](counts.to(torch.float32))
        if self.weights is not None:
            weights = weights * self.weights[tokens]
        rows = tokens if self.mapping is None else self.mapping[tokens]
        sums = torch.nn.functional.embedding_bag(rows, self.table, offsets, mode="sum",
                                                 per_sample_weights=weights)
        return l2_normalize(sums)


# A token's weight from its count in the document (a float tensor).
_TERM_WEIGHTS = {"count": lambda c: c, "sqrt": lambda c: c.sqrt(), "log": lambda c: 1 + c.log()}


class StaticEncoder:
    """The static model as an executor's batch function (the interface of ``embed.Encoder``):
    ``{"row", "text"}`` (or ``static_ids.stored_static_rows``'s ``{"row", "ids", "text"}``)
    in, ``{"row", "vec", "rung"}`` out; the table loads once per worker."""

    def __init__(self, cfg: dict[str, Any], backend: str, model_dir: str) -> None:
        from datasculpt.backend import resolve_backend

        self.max_length = int(cfg["max_length"])
        self.term_weight = str(cfg["term_weight"])
        self.device = resolve_backend(backend).torch_device
        self.table = StaticTable.load(Path(model_dir), self.device)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = list(batch["text"])
        if "ids" not in batch:
            vec = self.table.embed(texts, self.max_length, self.term_weight)
            return vector_batch(batch["row"], vec, f"static-{self.device}")
        # Rows from the token store (static_ids.stored_static_rows): padded ids, and an empty
        # text except where a document's ids had to come from its text (never empty: every
        # kept document has a token).
        padded = np.asarray(batch["ids"])
        redo = [i for i, t in enumerate(texts) if t]
        if redo:
            ids: list[Any] = [row[row >= 0] for row in padded]
            for i, x in zip(redo, self.table.ids([texts[i] for i in redo], self.max_length),
                            strict=True):
                ids[i] = x
            vec = self.table.embed_ids(ids, self.term_weight)
        else:
            known = padded >= 0
            vec = self.table.embed_flat(padded[known], known.sum(axis=1), self.term_weight)
        return vector_batch(batch["row"], vec, f"static-{self.device}")
