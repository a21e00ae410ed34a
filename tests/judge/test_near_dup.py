"""judge.near_dup: a piece is a near-duplicate when most of its word n-grams occur earlier
in its window."""

from __future__ import annotations

from datasculpt.judge.near_dup import near_duplicates


def test_near_duplicates_by_word_ngrams() -> None:
    base = ("the quick brown fox jumps over the lazy dog while the cat sleeps on the warm "
            "mat near the door of the old house")
    other = ("stars form in cold molecular clouds that collapse under gravity and heat "
             "until fusion begins in the dense core of the new star")
    edited = base.replace("lazy", "sleepy")
    assert near_duplicates([base, edited]) == [False, True]
    assert near_duplicates([base, other]) == [False, False]
    assert near_duplicates([other, base, base.upper()]) == [False, False, True]
    # fewer words than one n-gram: only an exact copy counts
    assert near_duplicates(["to be or not", "To be, or not!", "to be or"]) == [False, True,
                                                                               False]
    assert near_duplicates([base, edited], threshold=0.9) == [False, False]
