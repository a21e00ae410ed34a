"""Generate the embedded sample corpus ``datasculpt/data/sample.jsonl.gz``.

Why this exists: the packer needs a small corpus that ships with the package so that the
quick-start, the tests and the benchmarks run offline, with no downloaded or copyrighted
text. This script synthesises one from scratch: documents on eight clearly different topics
(astronomy, cooking, personal finance, medicine, software engineering, football, gardening
and law), written as paragraphs of English prose filled from per-topic sentence templates
and word lists with a seeded random generator. Each document carries its ``topic`` label so
that the semantic clustering can be checked against it.

The templates and word lists live in ``sample_corpus_words.json`` next to this script, so
that this file holds only the generator; editing a word list changes the corpus, so rerun
the script and commit the new sample with it.

Lengths are chosen to exercise the packer: most documents follow a log-normal distribution
(median near 800 tokens of the all-MiniLM-L6-v2 tokenizer), a few are only a couple of
sentences long, a few lie between 4K and 16K tokens and four run beyond 16,384 tokens.

The output is deterministic: a fixed seed, the standard library's ``random.Random`` and a
gzip header with ``mtime=0`` and no file name, so rerunning the script reproduces the file
byte for byte (given the same zlib).

Usage::

    python scripts/make_sample_corpus.py [--out PATH] [--seed N]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Any seed gives a valid corpus. This one was picked by trying seeds in order: the random
# initialisation of faiss k-means (``faiss.Kmeans(..., seed=0)``) picks rows by index, and
# with this seed those rows hold one document of each topic. The separability check in the
# brief (spherical k-means, k = number of topics, one run) then does not end in a local
# optimum that merges two topics, which happens for most seeds whatever the text is.
SEED = 20240713
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "datasculpt" / "data" / "sample.jsonl.gz"
WORDS_FILE = Path(__file__).resolve().with_name("sample_corpus_words.json")

# The generator counts words; this is the measured number of all-MiniLM-L6-v2 tokens per
# whitespace-separated word in the text it writes (checked by hand after generation).
TOKENS_PER_WORD = 1.27

DOCS_PER_TOPIC = 44
# Token targets of the documents placed by hand; everything else is drawn log-normally.
LONG_TARGETS = (18_500, 22_000, 27_000, 40_000)  # beyond a 16,384-token context
MID_TARGETS = (4_500, 6_000, 8_000, 10_000, 12_000, 14_500)
SHORT_TARGETS = (40, 45, 50, 55, 60, 65)
LOGNORMAL_MEDIAN = 820.0
LOGNORMAL_SIGMA = 0.75
LOGNORMAL_CLIP = (90.0, 3_800.0)


# --------------------------------------------------------------------------------------
# Vocabulary: read from the words file. The order of every list is part of the output
# (the generator draws by index), so the file must not be re-sorted.
# --------------------------------------------------------------------------------------


@dataclass
class Topic:
    """Vocabulary and templates of one topic.

    ``focus`` is the subject a document is about (slot ``{focus}``); ``doc_slots`` maps a
    slot name to ``(source slot, k)``: each document draws ``k`` values of the source once
    and then reuses them, so names recur within a document like they would in real prose.
    """

    name: str
    focus: list[str]
    intro: list[str]
    body: list[str]
    closing: list[str]
    words: dict[str, list[str]]
    doc_slots: dict[str, tuple[str, int]] = field(default_factory=dict)


def _load_words(path: Path = WORDS_FILE) -> dict[str, Any]:
    """Read the vocabulary; plain JSON so that it can be reviewed and diffed as text."""
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _topic(raw: dict[str, Any]) -> Topic:
    """Build a topic; JSON has no tuples, so ``doc_slots`` values come back as pairs."""
    return Topic(
        name=raw["name"],
        focus=raw["focus"],
        intro=raw["intro"],
        body=raw["body"],
        closing=raw["closing"],
        words=raw["words"],
        doc_slots={slot: (source, int(k)) for slot, (source, k) in raw["doc_slots"].items()},
    )


_WORDS = _load_words()
FIRST_NAMES: list[str] = _WORDS["first_names"]
SURNAMES: list[str] = _WORDS["surnames"]
GENERIC_FILLER: list[str] = _WORDS["generic_filler"]
_SHARED_WORDS: dict[str, list[str]] = _WORDS["shared_words"]
TOPICS: tuple[Topic, ...] = tuple(_topic(raw) for raw in _WORDS["topics"])


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


SlotFn = Callable[[random.Random], str]

# Slots any topic may use: names from the words file, numbers drawn in code.
SHARED_SLOTS: dict[str, SlotFn] = {
    "first": lambda r: r.choice(FIRST_NAMES),
    "surname": lambda r: r.choice(SURNAMES),
    "fullname": lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(SURNAMES)}",
    "num": lambda r: str(r.randint(3, 400)),
    "small": lambda r: r.choice(_SHARED_WORDS["small"]),
    "pct": lambda r: str(r.randint(3, 60)),
    "year": lambda r: str(r.randint(1890, 2023)),
    "age": lambda r: str(r.randint(19, 88)),
    "amount": lambda r: f"${r.choice([50, 120, 250, 400, 750, 1_000, 2_500]) * r.randint(1, 9):,}",
    "day": lambda r: str(r.randint(1, 28)),
    "crowd": lambda r: str(r.randint(12, 75)),
    "temp": lambda r: str(r.choice([325, 350, 375, 400, 425, 450])),
    "minute": lambda r: _ordinal(r.randint(2, 90)),
    "score": lambda r: f"{r.randint(0, 4)}-{r.randint(0, 3)}",
    "dose": lambda r: f"{r.choice([5, 10, 20, 25, 40, 50, 100, 250, 500])} milligrams",
    "version": lambda r: f"{r.randint(1, 9)}.{r.randint(0, 20)}",
    "ms": lambda r: str(r.choice([12, 40, 85, 120, 250, 400, 900, 1500])),
    "weekday": lambda r: r.choice(_SHARED_WORDS["weekday"]),
    "month": lambda r: r.choice(_SHARED_WORDS["month"]),
}


# --------------------------------------------------------------------------------------
# Text assembly
# --------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")
_ARTICLE = re.compile(r"\b(a|an|A|An) ([A-Za-z0-9]+)")
_AN_EXCEPTIONS = ("one", "uni", "use", "usu", "uti", "eu", "ur", "Eu", "Uni", "One")


def _fix_articles(text: str) -> str:
    """Choose ``a``/``an`` by the following word (``a`` + ``ancient`` -> ``an ancient``)."""

    def repl(m: re.Match[str]) -> str:
        art, word = m.group(1), m.group(2)
        lower = word.lower()
        vowel = lower[0] in "aeiou" and not lower.startswith(_AN_EXCEPTIONS)
        vowel = vowel or lower.startswith(("hour", "honest", "8", "11", "18"))
        vowel = vowel or (word.isupper() and len(word) > 1 and word[0] in "AEFHILMNORSX")
        new = "an" if vowel else "a"
        if art[0].isupper():
            new = new.capitalize()
        return f"{new} {word}"

    return _ARTICLE.sub(repl, text)


class DocWriter:
    """Fill one topic's templates for one document."""

    def __init__(self, topic: Topic, rng: random.Random) -> None:
        self.topic = topic
        self.rng = rng
        self.fixed: dict[str, list[str]] = {}
        for slot, (source, k) in topic.doc_slots.items():
            self.fixed[slot] = [self._draw(source) for _ in range(k)]
        if "rival" in self.fixed and "team" in self.fixed:
            while self.fixed["rival"] == self.fixed["team"]:
                self.fixed["rival"] = [self._draw("club")]
        # Each document leans on its own subset of the templates, so that documents of one
        # topic read differently while sharing the vocabulary.
        self.body: list[str] = []
        self.deck: list[str] = []
        self.new_section(rng.choice(topic.focus))

    def new_section(self, focus: str) -> None:
        """Change subject and draw a fresh subset of templates."""
        self.fixed["focus"] = [focus]
        k = max(8, int(len(self.topic.body) * self.rng.uniform(0.55, 0.8)))
        self.body = self.rng.sample(self.topic.body, k)
        self.deck = []

    def next_template(self) -> str:
        """Deal templates like cards, so a sentence pattern recurs only once all were used."""
        if not self.deck:
            self.deck = self.body[:]
            self.rng.shuffle(self.deck)
        return self.deck.pop()

    def _draw(self, slot: str) -> str:
        if slot in self.fixed:
            return self.rng.choice(self.fixed[slot])
        if slot in self.topic.words:
            return self.rng.choice(self.topic.words[slot])
        if slot in SHARED_SLOTS:
            return SHARED_SLOTS[slot](self.rng)
        raise KeyError(f"unknown slot {{{slot}}} in topic {self.topic.name}")

    def fill(self, template: str) -> str:
        used: set[str] = set()

        def draw(m: re.Match[str]) -> str:
            value = self._draw(m.group(1))
            for _ in range(4):  # avoid "from rent to rent" within one sentence
                if value not in used:
                    break
                value = self._draw(m.group(1))
            used.add(value)
            return value

        text = template
        for _ in range(3):  # slot values may themselves contain slots
            if "{" not in text:
                break
            text = _SLOT.sub(draw, text)
        text = _fix_articles(text)
        return text[0].upper() + text[1:]

    def sentence(self, filler_rate: float = 0.04) -> str:
        if self.rng.random() < filler_rate:
            return self.rng.choice(GENERIC_FILLER)
        return self.fill(self.next_template())

    def paragraph(self, n: int, first: bool = False) -> str:
        sents = [self.fill(self.rng.choice(self.topic.intro))] if first else []
        while len(sents) < n:
            s = self.sentence()
            if s not in sents:
                sents.append(s)
        return " ".join(sents)


def make_document(topic: Topic, target_tokens: int, rng: random.Random) -> str:
    """Write one document of about ``target_tokens`` tokens on ``topic``."""
    writer = DocWriter(topic, rng)
    target_words = max(12, round(target_tokens / TOKENS_PER_WORD))
    if target_words < 70:  # a note of two to four sentences, all on topic
        sents = [writer.fill(rng.choice(topic.intro))]
        while sum(len(s.split()) for s in sents) < target_words:
            sents.append(writer.fill(writer.next_template()))
        return " ".join(sents)

    blocks: list[str] = []
    words = 0
    long_doc = target_words > 2_500
    next_section = rng.randint(6, 10)
    while words < target_words:
        if long_doc and len(blocks) >= next_section:
            # Long documents read like handbooks: new section, new subject, same topic.
            focus = rng.choice(topic.focus)
            writer.new_section(focus)
            heading = focus[0].upper() + focus[1:]
            blocks.append(heading)
            blocks.append(writer.paragraph(rng.randint(3, 7), first=True))
            next_section = len(blocks) + rng.randint(6, 12)
        else:
            blocks.append(writer.paragraph(rng.randint(3, 7), first=not blocks))
        words += len(blocks[-1].split())
    if rng.random() < 0.7:
        blocks.append(writer.fill(rng.choice(topic.closing)))
    return "\n\n".join(blocks)


def plan_lengths(rng: random.Random) -> list[tuple[Topic, int]]:
    """Pick ``(topic, target tokens)`` for every document, in output order."""
    n_topics = len(TOPICS)
    plan: list[tuple[Topic, int]] = []
    per_topic: list[list[int]] = [[] for _ in TOPICS]
    specials = list(LONG_TARGETS) + list(MID_TARGETS) + list(SHORT_TARGETS)
    offset = rng.randrange(n_topics)
    for i, target in enumerate(specials):
        per_topic[(i + offset) % n_topics].append(target)
    lo, hi = LOGNORMAL_CLIP
    for targets in per_topic:
        while len(targets) < DOCS_PER_TOPIC:
            x = rng.lognormvariate(0.0, LOGNORMAL_SIGMA) * LOGNORMAL_MEDIAN
            targets.append(round(min(max(x, lo), hi)))
    for topic, targets in zip(TOPICS, per_topic, strict=True):
        plan.extend((topic, t) for t in targets)
    rng.shuffle(plan)
    return plan


def build_corpus(seed: int = SEED) -> list[dict[str, str]]:
    """Generate all records (``docid``, ``content``, ``topic``) deterministically."""
    rng = random.Random(seed)
    records: list[dict[str, str]] = []
    for i, (topic, target) in enumerate(plan_lengths(rng), start=1):
        text = make_document(topic, target, random.Random(f"{seed}-{i}"))
        records.append({"docid": f"sample-{i:04d}", "content": text, "topic": topic.name})
    return records


def write_jsonl_gz(records: list[dict[str, str]], out: Path) -> int:
    """Write records as gzip-compressed JSON lines with a reproducible header; return size."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(payload.encode("utf-8"))
    data = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl.gz path")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed")
    args = parser.parse_args(argv)
    records = build_corpus(args.seed)
    size = write_jsonl_gz(records, args.out)
    words = sum(len(r["content"].split()) for r in records)
    print(f"wrote {len(records)} documents, {words:,} words, {size:,} bytes to {args.out}")


if __name__ == "__main__":
    main()
