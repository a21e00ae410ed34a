"""Context gain: how many nats a causal LM saves on each piece of a window by seeing the
pieces before it.

Relevance and purity say whether a window's documents look alike; context gain says whether
they help a model predict one another, which is what long-context training learns from
(ProLong's long-dependency score, arXiv 2405.17915; LongPPL, arXiv 2410.23771). For a seeded
sample of sequences with two or more pieces, every piece after the first is scored twice by
the judge model: in its window (full causal attention across the window, the run's separator
after a document's last piece) and alone. A piece's first token has no context when alone,
so it is left out of both. The figure is

    context gain = sum over scored pieces of (NLL alone - NLL in window)
                   / all tokens of the sampled windows.

The denominator is every token of the window, not the scored ones: the order of the pieces
inside a window then barely moves it (a good model's log-likelihood of a window hardly
depends on the order of its parts, and the total it saves is that difference), while a
per-scored-token figure changes with which piece happens to come first. Both are reported.

The standard error is the ratio estimator's over the sampled sequences (delta method, with
the finite-population correction of sampling without replacement). Near-duplicate pieces
(``near_dup``) are summed apart, so the gain without them is the same ratio with their nats
left out.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasculpt.errors import ConfigError, InputError
from datasculpt.judge.lm import JudgeLM
from datasculpt.judge.near_dup import near_duplicates
from datasculpt.judge.texts import piece_texts
from datasculpt.progress import progress_bar
from datasculpt.types import Packing

log = logging.getLogger(__name__)

Piece = tuple[int, int, int]  # (document row, start, end) in the run tokenizer's ids


@dataclass
class Window:
    """One sampled sequence in the judge's tokens: ``ids`` and, per kept piece, its span
    ``[a, b)`` in ``ids`` (its own tokens, separator excluded)."""

    seq_id: int
    pieces: list[Piece]
    ids: np.ndarray
    spans: list[tuple[int, int]]
    near_dup: list[bool]
    dropped: int = 0  # pieces the token cap left no token of
    capped: bool = False


@dataclass
class GainSettings:
    sequences: int = 64
    max_tokens: int = 4096
    batch_tokens: int = 8192
    ngram: int = 8
    near_dup_threshold: float = 0.5


def _eligible(packing: Packing) -> np.ndarray:
    """Sequences of two or more pieces once consecutive spans of one document are joined
    (``sequence_pieces``): the ones with something to score."""
    joined = np.zeros(packing.seq.shape[0], dtype=bool)
    joined[1:] = ((packing.seq[1:] == packing.seq[:-1]) & (packing.doc[1:] == packing.doc[:-1])
                  & (packing.start[1:] == packing.end[:-1]))
    counts = np.bincount(packing.seq[~joined], minlength=packing.n_sequences)
    return np.flatnonzero(counts >= 2)


def sample_sequences(packing: Packing, n: int, seed: int, name: str) -> np.ndarray:
    """Up to ``n`` sequence ids with two or more pieces, sorted: the first ``n`` of a
    permutation seeded per method name, so a method's sample does not depend on which other
    methods are judged beside it, and a larger sample contains the smaller one."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return np.sort(rng.permutation(_eligible(packing))[:n])


def eligible_sequences(packing: Packing) -> int:
    return int(_eligible(packing).shape[0])


def eligible_token_share(packing: Packing, doc_len: np.ndarray, eos: bool) -> float | None:
    """The share of the packing's tokens in sequences of two or more pieces, the population
    context gain is measured on: the rest are one-document windows, with no context from
    another document (and with long in-document context instead)."""
    tokens = packing.seq_tokens(doc_len, int(bool(eos))).astype(np.float64)
    total = tokens.sum()
    return float(tokens[_eligible(packing)].sum() / total) if total else None


def sequence_pieces(packing: Packing, seq_ids: np.ndarray) -> list[list[Piece]]:
    """The pieces of each sequence in ``seq_ids``, in window order, consecutive spans of one
    document joined into one piece.

    Packers that cut (``concat``, ``iclm``) place a long document's ``ctx_len`` units one
    after the other, so a window often holds the end of one unit and the start of the next:
    one stretch of one document, which the training row holds as continuous text. Scored as
    two pieces, the second would "gain" from its own document's preceding text, which is no
    context the packing chose (and a third of those packers' pieces are such joins)."""
    heads = np.searchsorted(packing.seq, seq_ids, side="left")
    tails = np.searchsorted(packing.seq, seq_ids, side="right")
    out: list[list[Piece]] = []
    for lo, hi in zip(heads.tolist(), tails.tolist(), strict=True):
        pieces: list[Piece] = []
        for i in range(lo, hi):
            doc, start, end = int(packing.doc[i]), int(packing.start[i]), int(packing.end[i])
            if pieces and pieces[-1][0] == doc and pieces[-1][2] == start:
                pieces[-1] = (doc, pieces[-1][1], end)
            else:
                pieces.append((doc, start, end))
        out.append(pieces)
    return out


def build_window(seq_id: int, pieces: list[Piece], texts: list[str], ends_doc: list[bool],
                 lm: JudgeLM, settings: GainSettings) -> Window:
    """Tokenize the pieces with the judge's tokenizer and lay them out as the run does: the
    separator after a piece that ends its document.

    A window longer than ``settings.max_tokens`` keeps every piece, each cut to its first
    ``L`` tokens for the largest ``L`` that fits (pieces shorter than ``L`` stay whole): the
    window's composition is what is judged, and a cut that kept only the first pieces would
    leave nothing to score in the long windows of a 16K-128K run, whose first piece is often
    longer than the cap. An equal share of each piece instead would leave a short piece one
    token or none, nothing to score. A piece left with no token (more pieces than the cap
    holds) is dropped with its separator (and counted)."""
    piece_ids = lm.encode(texts)
    body = sum(len(p) for p in piece_ids)
    n_sep = sum(bool(e) for e in ends_doc)
    keep = [len(p) for p in piece_ids]
    capped = body + n_sep > settings.max_tokens
    if capped:
        keep = _level_cut(keep, max(settings.max_tokens - n_sep, 0))
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    kept_pieces: list[Piece] = []
    kept_texts: list[str] = []
    for piece, p_ids, k, text, sep in zip(pieces, piece_ids, keep, texts, ends_doc,
                                          strict=True):
        if k == 0:
            continue
        a = len(ids)
        ids.extend(p_ids[:k])
        spans.append((a, len(ids)))
        kept_pieces.append(piece)
        kept_texts.append(text if k == len(p_ids) else _prefix_text(text, p_ids, k))
        if sep:
            ids.append(lm.separator)
    arr = np.asarray(ids, dtype=np.int64)
    if arr.size and int(arr.max()) >= lm.vocab_size:
        raise InputError(f"the judge tokenizer gave id {int(arr.max())}, beyond the model's "
                         f"{lm.vocab_size} embeddings: tokenizer and model do not match")
    flags = near_duplicates(kept_texts, settings.ngram, settings.near_dup_threshold)
    return Window(seq_id, kept_pieces, arr, spans, flags, len(pieces) - len(kept_pieces),
                  capped)


def _level_cut(lengths: list[int], room: int) -> list[int]:
    """Each length cut to a common level, the largest whose total fits ``room``; the tokens
    left under the next level go one each to the first pieces that are longer (so the total
    is exactly ``room``)."""
    level = 0
    rest = len(lengths)
    used = 0
    for n in sorted(lengths):
        # Raising the level to n costs (n - level) for every piece still longer than level.
        if used + (n - level) * rest > room:
            break
        used += (n - level) * rest
        level = n
        rest -= 1
    if rest:
        level += (room - used) // rest
        used += ((room - used) // rest) * rest
    keep = [min(n, level) for n in lengths]
    extra = room - sum(keep)
    for i, n in enumerate(lengths):
        if extra <= 0:
            break
        if n > keep[i]:
            keep[i] += 1
            extra -= 1
    return keep


def _prefix_text(text: str, ids: list[int], keep: int) -> str:
    """The share of ``text`` its first ``keep`` of ``ids`` cover, for the near-duplicate test
    (character-proportional: exact enough for shingles)."""
    return text[: int(len(text) * keep / max(len(ids), 1))]


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom)


def token_nll(lm: JudgeLM, rows: Sequence[np.ndarray], batch_tokens: int,
              bar: Any = None, skip: Sequence[int] | None = None) -> list[np.ndarray]:
    """For each id row, the negative log-likelihood (nats) of tokens ``1..n-1`` given the ones
    before them (entry ``t - 1`` for token ``t``). Rows are batched longest first,
    right-padded (a causal model's real positions never see the padding), at most
    ``batch_tokens`` padded tokens a batch; on a GPU an out-of-memory batch is split in two
    and retried.

    ``skip[i]``: the first entries of row ``i`` nobody reads (a window's first piece is never
    scored). The output layer and the softmax over the vocabulary, a third of a small model's
    time, then run only from the batch's smallest ``skip`` on; skipped entries are NaN."""
    import torch
    import torch.nn.functional as F

    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out: list[np.ndarray] = [np.zeros(0, dtype=np.float64)] * len(rows)
    batches: list[list[int]] = []
    for i in order:
        if len(rows[i]) < 2:
            continue
        if batches and (len(batches[-1]) + 1) * len(rows[batches[-1][0]]) <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])

    def run(batch: list[int]) -> None:
        width = len(rows[batch[0]])
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for r, i in enumerate(batch):
            ids[r, : len(rows[i])] = rows[i]
            mask[r, : len(rows[i])] = 1
        first = min(min(int(skip[i]), len(rows[i]) - 1) for i in batch) if skip else 0
        try:
            with torch.inference_mode():
                t_ids = torch.from_numpy(ids).to(lm.device)
                # logits of positions first .. width-1 (the last width - first)
                kw = {"logits_to_keep": width - first} if lm.keeps_logits else {}
                logits = lm.model(input_ids=t_ids,
                                  attention_mask=torch.from_numpy(mask).to(lm.device),
                                  **kw).logits
                if not lm.keeps_logits:
                    logits = logits[:, first:]
                for r, i in enumerate(batch):
                    n = len(rows[i])
                    nll = np.full(n - 1, np.nan)
                    nll[first:] = F.cross_entropy(
                        logits[r, : n - 1 - first].float(), t_ids[r, first + 1 : n],
                        reduction="none").double().cpu().numpy()
                    out[i] = nll
        except Exception as exc:
            if _is_oom(exc) and len(batch) > 1:
                del exc
                torch.cuda.empty_cache()
                run(batch[: len(batch) // 2])
                run(batch[len(batch) // 2 :])
                return
            if _is_oom(exc):
                raise ConfigError(f"judge: one window of {width} tokens does not fit in the "
                                  "GPU's memory; lower judge.max_tokens") from None
            raise
        if bar is not None:
            bar.update(int(sum(len(rows[i]) for i in batch)))

    for batch in batches:
        run(batch)
    return out


def score_windows(windows: list[Window], lm: JudgeLM, settings: GainSettings,
                  alone_cache: dict[tuple[Piece, int], float] | None = None,
                  progress: bool = False, desc: str = "judge") -> list[dict[str, Any]]:
    """One record per window: tokens, scored tokens, nats saved, and the same for its
    near-duplicate pieces. ``alone_cache`` keeps a piece's NLL alone across calls (the same
    piece sampled for two methods is scored alone once)."""
    cache = {} if alone_cache is None else alone_cache
    alone: dict[tuple[Piece, int], np.ndarray] = {}
    for w in windows:
        for k in range(1, len(w.spans)):
            a, b = w.spans[k]
            key = (w.pieces[k], b - a)
            if b - a >= 2 and key not in cache:
                alone[key] = w.ids[a:b]
    alone_keys, alone_rows = list(alone), list(alone.values())
    total = sum(len(w.ids) for w in windows) + sum(len(r) for r in alone_rows)
    bar = progress_bar(progress, total=total, desc=desc, unit="tok", leave=False)
    in_window = token_nll(lm, [w.ids for w in windows], settings.batch_tokens, bar,
                          skip=[w.spans[1][0] if len(w.spans) > 1 else len(w.ids)
                                for w in windows])
    for key, nll in zip(alone_keys, token_nll(lm, alone_rows, settings.batch_tokens, bar),
                        strict=True):
        cache[key] = float(nll.sum())
    bar.close()
    records = []
    for w, nll in zip(windows, in_window, strict=True):
        rec = {"seq_id": w.seq_id, "pieces": len(w.pieces) + w.dropped, "tokens": len(w.ids),
               "scored_pieces": 0, "scored_tokens": 0, "saved": 0.0, "near_dup_pieces": 0,
               "near_dup_tokens": 0, "near_dup_saved": 0.0, "dropped_pieces": w.dropped,
               "capped": w.capped, "piece_tokens": [b - a for a, b in w.spans]}
        for k in range(1, len(w.spans)):
            a, b = w.spans[k]
            if b - a < 2:
                continue
            saved = cache[(w.pieces[k], b - a)] - float(nll[a : b - 1].sum())
            rec["scored_pieces"] += 1
            rec["scored_tokens"] += b - a - 1
            rec["saved"] += saved
            if w.near_dup[k]:
                rec["near_dup_pieces"] += 1
                rec["near_dup_tokens"] += b - a - 1
                rec["near_dup_saved"] += saved
        records.append(rec)
    return records


def _ratio(num: np.ndarray, den: np.ndarray, population: int) -> tuple[float | None,
                                                                         float | None]:
    """``sum(num) / sum(den)`` and its standard error over the sampled units (delta method,
    finite-population corrected)."""
    n = num.size
    if n == 0 or den.sum() <= 0:
        return None, None
    r = float(num.sum() / den.sum())
    if n < 2:
        return r, None
    resid = num - r * den
    fpc = max(0.0, 1.0 - n / population) if population > 0 else 1.0
    se = math.sqrt(fpc * float((resid ** 2).sum()) / (n * (n - 1))) / float(den.mean())
    return r, se


def summarize(records: list[dict[str, Any]], population: int) -> dict[str, Any]:
    """The context gain of one packing from its sampled windows' records."""
    col = {k: np.asarray([r[k] for r in records], dtype=np.float64)
           for k in ("tokens", "scored_tokens", "saved", "near_dup_saved", "scored_pieces",
                     "near_dup_pieces", "near_dup_tokens")}
    gain, gain_se = _ratio(col["saved"], col["tokens"], population)
    clean, clean_se = _ratio(col["saved"] - col["near_dup_saved"], col["tokens"], population)
    scored = col["scored_tokens"].sum()
    clean_scored = scored - col["near_dup_tokens"].sum()
    pieces = col["scored_pieces"].sum()
    return {
        "context_gain": gain,
        "context_gain_se": gain_se,
        "context_gain_no_near_dup": clean,
        "context_gain_no_near_dup_se": clean_se,
        "gain_per_scored_token": float(col["saved"].sum() / scored) if scored else None,
        "gain_per_scored_token_no_near_dup":
            float((col["saved"].sum() - col["near_dup_saved"].sum()) / clean_scored)
            if clean_scored else None,
        "near_dup_share": float(col["near_dup_pieces"].sum() / pieces) if pieces else None,
        "near_dup_token_share": float(col["near_dup_tokens"].sum() / scored) if scored else None,
        "sequences": len(records),
        "eligible_sequences": population,
        "scored_pieces": int(pieces),
        "tokens": int(col["tokens"].sum()),
        "capped_sequences": int(sum(bool(r["capped"]) for r in records)),
    }


@dataclass
class Judged:
    """What the judge found for each packing: its summary and its windows' records."""

    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


def judge_packings(packings: dict[str, Packing], lm: JudgeLM, doc_len: np.ndarray, eos: bool,
                   texts_of: Callable[[set[int]], dict[int, str]], run_tokenizer: Any,
                   settings: GainSettings, seed: int, progress: bool = False,
                   chosen: dict[str, np.ndarray] | None = None) -> Judged:
    """Context gain of every packing in ``packings`` (name -> packing), each on its own seeded
    sample (or on the sequence ids ``chosen`` gives it). ``texts_of`` gives the texts of a
    set of document rows; the pieces' texts are cut from them with the run's tokenizer
    (``datasculpt.judge.texts``)."""
    result = Judged()
    cache: dict[tuple[Piece, int], float] = {}
    samples = {}
    for name, packing in packings.items():
        seq_ids = (chosen or {}).get(name)
        if seq_ids is None:
            seq_ids = sample_sequences(packing, settings.sequences, seed, name)
        samples[name] = (seq_ids, sequence_pieces(packing, seq_ids))
    texts = texts_of({doc for _, per_seq in samples.values() for pieces in per_seq
                      for doc, _, _ in pieces})
    for name, packing in packings.items():
        t0 = time.perf_counter()
        seq_ids, per_seq = samples[name]
        windows = []
        for sid, pieces in zip(seq_ids.tolist(), per_seq, strict=True):
            ends = [bool(eos) and end == int(doc_len[doc]) for doc, _, end in pieces]
            windows.append(build_window(sid, pieces, piece_texts(pieces, texts, doc_len,
                                                                 run_tokenizer),
                                        ends, lm, settings))
        records = score_windows(windows, lm, settings, cache, progress, f"judge {name}")
        summary = summarize(records, eligible_sequences(packing))
        summary["eligible_token_share"] = eligible_token_share(packing, doc_len, eos)
        summary["seconds"] = time.perf_counter() - t0
        result.summaries[name] = summary
        result.records.extend({"method": name, **r} for r in records)
        log.info("judge %s: context gain %s nats/token (%s without near-duplicates) over %d "
                 "sequences, %.1f s", name, _fmt(summary["context_gain"]),
                 _fmt(summary["context_gain_no_near_dup"]), summary["sequences"],
                 summary["seconds"])
    return result


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
