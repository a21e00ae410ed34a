"""The static table's token ids read from the run's token store instead of tokenizing again.

``embed=static`` distils its table from the encoder whose tokenizer is, by default, the run's
own: the tokenize stage has already written every document's ids (``io/token_store.py``), so
tokenizing each text again for the lookup would pay the tokenizer twice for the same ids. This
module decides, from the two tokenizers' definitions, whether the store's ids can stand for the
static tokenizer's, and turns them into exactly the ids ``StaticTable.ids`` gives a text.

When the store stands in (checked once, ``store_id_map``):

* both tokenizers normalise and pre-tokenize alike (their ``normalizer``, ``pre_tokenizer`` and
  model settings other than the vocabulary are equal as serialised), neither adds special
  tokens (the store has none; model2vec's ``tokenize`` passes ``add_special_tokens=False``),
  neither truncates or pads, and both match special tokens' strings in a text alike;
* every static token is a run token (the map goes by token string: model2vec renumbers the
  vocabulary when it drops tokens), and every static added token is a run added token with
  the same matching flags;
* the run tokens the static tokenizer lacks (model2vec drops ``[unusedN]`` and the ``[CLS]``,
  ``[SEP]``, ``[MASK]`` added tokens from MiniLM's) are inert: a WordPiece vocabulary behind
  ``BertPreTokenizer``, where a multi-character token holding ASCII punctuation never matches
  any piece of a word (the pre-tokenizer isolates each punctuation character), so dropping it
  changes no greedy match; and a dropped added token begins with punctuation, so the static
  tokenizer starts a new word where the run tokenizer cut the text before it.

A document whose stored window holds a dropped token's id (a literal ``[CLS]`` in its text)
is tokenized from its text instead: the static tokenizer spells that string out as several
tokens. Model2vec removes the unknown token's id from every text's ids (``StaticModel.tokenize``)
before the first ``max_length`` are kept; so does this module, reading further into a document
when its window held unknown tokens.

One difference stays, and it is the text path's: ``clip.clipped_ids`` tokenizes a clip of
``8 * max_length`` characters cut at a space or newline, and cuts inside a word when the clip
holds neither; when that cut word's pieces fall among the first ``max_length`` ids, the text
path's ids are the clip's, not the full text's that the store holds. No document differs on
the embedded sample (tests/embed/test_static_ids.py) nor on the dev corpus (4769 documents,
MiniLM's table, max_length 512: one read from its text for a literal special token).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.errors import InputError
from datasculpt.io.ingest import document_texts
from datasculpt.io.read import ReadOptions
from datasculpt.io.token_store import TokenStore

# The values of the id map that are not static ids: the static unknown token, which
# model2vec's tokenize removes; and a run token the static tokenizer would spell otherwise.
DROP = -1
FLAG = -2
_PUNCT = frozenset(string.punctuation)  # every one is split off alone by BertPreTokenizer


def _inert_vocab_token(tok: str, prefix: str) -> bool:
    """A WordPiece token that can match no piece of any word BertPreTokenizer gives: a word
    is one punctuation character or a run without punctuation, so a token longer than one
    character holding punctuation never matches as a first piece, and a continuation
    (``prefix`` + rest) whose rest holds punctuation never follows one."""
    first = len(tok) > 1 and any(c in _PUNCT for c in tok)
    if not tok.startswith(prefix):
        return first
    rest = tok[len(prefix):]
    return first and (not rest or any(c in _PUNCT for c in rest))


def _added(tok: Any) -> dict[str, dict[str, Any]]:
    """The added tokens by content, with the flags that decide where they match a text."""
    return {a["content"]: {k: v for k, v in a.items() if k != "id"}
            for a in json.loads(tok.to_str())["added_tokens"]}


def store_id_map(run: Any, static: Any, unk: int | None) -> np.ndarray | str:
    """The run id -> static id map (``DROP``, ``FLAG`` as above) when the token store can
    stand for the static tokenizer (the module's rules), else the reason it cannot. ``run``
    is the Rust tokenizer that wrote the store (``plain_ids``'s, specials not as text),
    ``static`` the static table's as ``StaticTable`` loads it, ``unk`` its unknown id."""
    rj, sj = json.loads(run.to_str()), json.loads(static.to_str())
    if static.encode_special_tokens or run.encode_special_tokens:
        return "special tokens' strings are tokenized as text"
    if static.truncation is not None:
        return "the static tokenizer truncates"
    pad = static.padding
    if pad is not None and (pad.get("length") != 0 or pad.get("pad_to_multiple_of")):
        return "the static tokenizer pads"
    for key in ("normalizer", "pre_tokenizer"):
        if rj[key] != sj[key]:
            return f"the tokenizers' {key} differ"
    rm, sm = dict(rj["model"]), dict(sj["model"])
    rvocab, svocab = rm.pop("vocab"), sm.pop("vocab")
    if rm != sm:
        return "the tokenizers' models differ"
    if not isinstance(rvocab, dict):  # Unigram: a scored list, where any change moves ids
        if rvocab != svocab:
            return "the tokenizers' vocabularies differ"
        rvocab = {t: i for i, (t, _) in enumerate(rvocab)}
    run_ids, static_ids = run.get_vocab(with_added_tokens=True), static.get_vocab(
        with_added_tokens=True)
    radded, sadded = _added(run), _added(static)
    if any(radded.get(t) != flags for t, flags in sadded.items()):
        return "the static tokenizer matches special tokens the run tokenizer does not"
    if any(t not in run_ids for t in static_ids):
        return "the static vocabulary has tokens the run tokenizer lacks"
    dropped_vocab = [t for t in run_ids if t not in static_ids and t not in radded]
    dropped_added = [t for t in radded if t not in sadded]
    if dropped_vocab or dropped_added:
        bert = (rm.get("type") == "WordPiece" and rj["pre_tokenizer"] == {
            "type": "BertPreTokenizer"} and (rj["normalizer"] or {}).get(
            "type", "BertNormalizer") == "BertNormalizer")
        prefix = str(rm.get("continuing_subword_prefix") or "##")
        if not (bert and all(_inert_vocab_token(t, prefix) for t in dropped_vocab)
                and all(t[:1] in _PUNCT for t in dropped_added)):
            return "the static vocabulary lacks run tokens that a text can produce"
    out = np.full(max(run_ids.values()) + 1, FLAG, dtype=np.int32)
    for t, i in run_ids.items():
        if t in static_ids and not (t in radded and t not in sadded):
            out[i] = static_ids[t]
    out[out == (DROP if unk is None else unk)] = DROP
    return out


def _window(ids: np.ndarray, id_map: np.ndarray, max_length: int) -> np.ndarray | None:
    """One document's static ids from its run ids (all of them), or ``None`` when they hold
    a flagged token."""
    mapped = id_map[ids]
    if (mapped == FLAG).any():
        return None
    return mapped[mapped != DROP][:max_length]


def _chunk_ids(store: TokenStore, doc: np.ndarray, id_map: np.ndarray, max_length: int,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The static ids of documents ``doc`` padded to ``max_length`` with -1, and which of
    them hold a flagged token (their rows left empty)."""
    count = len(doc)
    lens = store.doc_len[doc]
    # The first max_length run ids of each document are its static ids once mapped, but for
    # the unknown tokens model2vec drops (then read further) and the flagged ones.
    take = np.minimum(lens, max_length)
    mapped = id_map[store.gather(doc, np.zeros_like(take), take)]
    owner = np.repeat(np.arange(count), take)
    flagged = np.bincount(owner[mapped == FLAG], minlength=count) > 0
    keep = mapped != DROP
    kept = np.bincount(owner[keep], minlength=count)
    out = np.full((count, max_length), -1, dtype=np.int32)
    # Each kept id's place in its document's row: its rank among the document's kept ids.
    rank = np.cumsum(keep) - 1 - np.repeat(np.concatenate(([0], np.cumsum(kept)[:-1])), take)
    sel = keep & ~flagged[owner]
    out[owner[sel], rank[sel]] = mapped[sel]
    # A window that lost unknown tokens holds fewer than max_length ids though the document
    # has more: the rest come from reading the whole document (rare: unknown tokens).
    for k in np.flatnonzero(~flagged & (kept < take) & (lens > take)).tolist():
        ids = _window(store.span(int(doc[k]), 0, int(lens[k])), id_map, max_length)
        flagged[k] = ids is None
        if ids is not None:
            out[k, : len(ids)] = ids
    return out, flagged


def stored_static_rows(block: tuple[int, int, int], *, paths: list[Path], opts: ReadOptions,
                       run_dir: str, id_map: np.ndarray, max_length: int, chunk: int = 8192,
                       ) -> Iterator[dict[str, Any]]:
    """``{"row", "ids", "text"}`` for every document of one input shard (an executor reader,
    like ``document_texts``): ``ids`` the static ids from the token store padded to
    ``max_length`` with -1 and ``text`` empty, or, for a document whose window holds a
    flagged token, no ids and its text (never empty: a kept document has a token). The
    shard's file is read only when such a document comes, once, up to the last; memory holds
    ``chunk`` documents' ids."""
    _, first, count = block
    store = TokenStore(Path(run_dir))
    texts: Iterator[dict[str, Any]] | None = None

    def text_of(row: int) -> str:
        nonlocal texts
        if texts is None:
            texts = document_texts(block, paths=paths, opts=opts, run_dir=run_dir)
        for rec in texts:  # rows come in order: one pass over the file
            if rec["row"] == row:
                return str(rec["text"])
        raise InputError(f"{paths[block[0]]}: document row {row} not found again")

    for lo in range(first, first + count, chunk):
        doc = np.arange(lo, min(lo + chunk, first + count))
        out, flagged = _chunk_ids(store, doc, id_map, max_length)
        for k, row in enumerate(doc.tolist()):
            yield {"row": row, "ids": out[k], "text": text_of(row) if flagged[k] else ""}
