"""Token ids of a long text, computed from a clip of its start.

An embedder reads at most ``max_length`` tokens of a document, but a tokenizer given the whole
document tokenizes all of it: a long document would cost its every page. Both embedders
(``encoder.py``, ``static.py``) tokenize a clip instead, and re-tokenize in full the rare clip
that falls short, so the ids are always the full text's.
"""

from __future__ import annotations

from collections.abc import Callable

# A WordPiece/BPE token covers at least one character and rarely more than a dozen, so a text
# clipped at a whitespace after this many characters per token of max_length still saturates
# max_length with the same tokens as the full text; unsaturated clips are re-tokenized in full.
CHARS_PER_TOKEN = 16


def _clip(text: str, n_chars: int) -> str:
    """Cut a long text at a whitespace near ``n_chars``, where no token can straddle the cut."""
    if len(text) <= n_chars:
        return text
    cut = max(text.rfind(" ", 0, n_chars), text.rfind("\n", 0, n_chars))
    return text[: cut if cut > 0 else n_chars]


def clipped_ids(encode: Callable[[list[str]], list[list[int]]], texts: list[str],
                max_length: int, chars_per_token: int = CHARS_PER_TOKEN) -> list[list[int]]:
    """The first ``max_length`` ids ``encode`` gives each text, computed on texts clipped at a
    whitespace after ``chars_per_token * max_length`` characters: a long document costs the
    tokenizer its first pages, not all of it. A clip that falls short of ``max_length`` ids is
    encoded again in full, so the ids are always the full text's."""
    clipped = [_clip(t, max_length * chars_per_token) for t in texts]
    ids = [x[:max_length] for x in encode(clipped)]
    redo = [i for i, (t, c, x) in enumerate(zip(texts, clipped, ids, strict=True))
            if len(c) < len(t) and len(x) < max_length]
    if redo:
        for i, x in zip(redo, encode([texts[i] for i in redo]), strict=True):
            ids[i] = x[:max_length]
    return ids

