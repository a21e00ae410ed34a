"""Which pieces of a window are near-copies of what precedes them in it.

A model predicts a copy almost for free once it has seen the original, so a near-duplicate
piece saves many nats per token (1.4 to 2.1 in the measurement that motivated the judge)
while teaching little: counted with the rest, it inflates the context gain of any packer that
puts copies together. A piece is a near-duplicate when more than ``threshold`` of its word
``n``-grams already occur earlier in its window, the shingle test of near-duplicate detection
(Broder 1997) applied inside one window. A piece too short for one ``n``-gram is a single
shingle of all its words, so only an exact copy of it counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int) -> set[int]:
    """Hashes of the word ``n``-grams of ``text`` (lower-cased ``\\w+`` words)."""
    words = _WORD.findall(text.lower())
    if not words:
        return set()
    if len(words) < n:
        return {hash(tuple(words))}
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


def near_duplicates(texts: Sequence[str], n: int = 8, threshold: float = 0.5) -> list[bool]:
    """For each piece of a window (in order), whether it is a near-copy of the ones before it.

    The first piece has nothing before it and is never one.
    """
    seen: set[int] = set()
    flags: list[bool] = []
    for text in texts:
        mine = shingles(text, n)
        flags.append(bool(mine) and len(mine & seen) > threshold * len(mine))
        seen |= mine
    return flags
