"""Build a real, multi-domain development corpus from text already on this machine.

Why this exists: the embedded sample corpus (``scripts/make_sample_corpus.py``) is synthetic
English prose made from templates. It is right for tests, but it says little about how well
the packer does on what it will really see: a mix of prose, code and reference text whose
document lengths span four orders of magnitude, where near-duplicates abound and a handful
of very long documents dominate the token count. Judging packing quality (padding waste,
truncation, how documents of one domain end up together, how 100K+-token documents are
split) needs such a corpus, and it has to be reproducible without a network so that numbers
from different runs and different branches can be compared.

This script samples one from files that ship with the operating system and its tool chains,
one labelled domain per kind of text:

* ``python``      -- the Python standard library of the running interpreter (no tests);
* ``c_headers``   -- C headers under ``/usr/include``;
* ``javascript``  -- JavaScript of globally installed npm packages (minified files skipped);
* ``manpages``    -- English man pages rendered to plain text with ``man``;
* ``cmake_docs``  -- CMake's reStructuredText help;
* ``changelogs``  -- Debian and upstream changelogs of installed packages;
* ``nodejs_docs`` -- Node.js Markdown documentation and its (very long) release changelogs;
* ``licenses``    -- Debian copyright files and the common licence texts.

A domain whose source is missing is skipped with a warning; the script fails when fewer than
four domains are left. Within a domain the candidate files are enumerated in sorted order,
a seeded random sample is drawn, and the longest files of the pool are always added so that
the long tail (documents of 100K+ tokens) is present. Files that are not valid UTF-8, look
binary or are shorter than ``--min-chars`` are skipped, exact duplicates (by content hash,
across all domains) are dropped, and documents are truncated to ``--max-chars``.

The output is one JSONL file, one ``{"docid", "content", "domain", "source"}`` record per
document, sorted by ``docid``, plus a ``<out>.meta.json`` sidecar with the arguments, the
counts per domain and the sha256 of the JSONL. Two runs with the same arguments on the same
machine write byte-identical JSONL: every listing is sorted, randomness comes from a
``random.Random`` seeded with a string, and no timestamps are written.

Usage::

    python scripts/make_dev_corpus.py [--out PATH] [--seed N] [--per-domain N]
        [--n-longest N] [--min-chars N] [--max-chars N] [--domains a,b,...] [--workers N]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OUT = Path("~/.cache/datasculpt/devcorpus/devcorpus.jsonl")
MIN_DOMAINS = 4
CHARS_PER_TOKEN = 4  # rough, for the printed summary only
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)

MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = ("man1", "man2", "man3", "man5", "man7", "man8")
# ``gcloud`` ships ~16,000 generated man pages that are near-copies of one another; left in,
# they would make up nine in ten man pages of the sample.
MAN_EXCLUDE_PREFIXES = ("gcloud",)
MAN_TIMEOUT_S = 30.0
MAN_WIDTH = "100"

# Node.js ships OpenSSL's generated headers once per target architecture (~2,000 files under
# ``node/openssl/archs``) that differ in a few lines; ``/usr/include/openssl`` has the same API.
C_HEADERS_EXCLUDE_DIRS = frozenset({"archs"})
PYTHON_EXCLUDE_DIRS = frozenset(
    {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
)
MINIFIED_AVG_LINE = 300  # a JavaScript file with longer lines on average is minified
BINARY_CONTROL_FRACTION = 0.01
NODEJS_MIN_OWN_DOMAIN = 50  # fewer Node.js docs than this are folded into ``changelogs``

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_OVERSTRIKE_RE = re.compile(r"[^\x08\n]\x08")
_CONTROL_CHARS = frozenset(chr(c) for c in range(32)) - set("\t\n\r\f\v")


@dataclass(frozen=True)
class Candidate:
    """One file of a domain's pool, named by its path relative to the domain's roots."""

    rel: str
    path: Path
    size: int  # raw size in bytes (uncompressed for ``.gz``): only used to rank by length


@dataclass(frozen=True)
class Domain:
    """A labelled kind of text: where its files are and how to turn one into text.

    ``reject`` is an extra, domain-specific check: it returns why a text is unfit, or None.
    """

    name: str
    enumerate: Callable[[], list[Candidate]]
    load: Callable[[Path], str | None]
    reject: Callable[[str], str | None] | None = None


@dataclass
class Selection:
    """The documents kept for one domain and why the other files looked at were skipped."""

    docs: list[dict[str, str]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    pool: int = 0


# --------------------------------------------------------------------------- enumeration


def raw_size(path: Path) -> int:
    """Size of the file's content; for gzip, the uncompressed size from its trailer."""
    try:
        if path.suffix == ".gz":
            with path.open("rb") as fh:
                fh.seek(-4, os.SEEK_END)
                return int.from_bytes(fh.read(4), "little")
        return path.stat().st_size
    except OSError:
        return 0


def make_candidates(root: Path, paths: Iterable[Path]) -> list[Candidate]:
    """Candidates for the regular files among ``paths``, named relative to ``root``."""
    out = [
        Candidate(rel=p.relative_to(root).as_posix(), path=p, size=raw_size(p))
        for p in paths
        if p.is_file()
    ]
    return sorted(out, key=lambda c: c.rel)


def walk(root: Path, suffix: str, exclude_dirs: frozenset[str] = frozenset()) -> list[Path]:
    """Files under ``root`` ending in ``suffix``, in sorted order, not following dir links."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in exclude_dirs)
        found.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(suffix))
    return found


def globs(root: Path, patterns: Sequence[str]) -> list[Path]:
    """Sorted union of ``root.glob(pattern)`` over ``patterns``."""
    return sorted({p for pattern in patterns for p in root.glob(pattern)})


def python_pool() -> list[Candidate]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return make_candidates(root, walk(root, ".py", PYTHON_EXCLUDE_DIRS)) if root.is_dir() else []


def c_headers_pool() -> list[Candidate]:
    root = Path("/usr/include")
    paths = walk(root, ".h", C_HEADERS_EXCLUDE_DIRS)
    return make_candidates(root, paths) if root.is_dir() else []


def javascript_pool() -> list[Candidate]:
    root = Path("/usr/lib/node_modules")
    return make_candidates(root, walk(root, ".js")) if root.is_dir() else []


def manpages_pool() -> list[Candidate]:
    paths = [
        p
        for p in globs(MAN_ROOT, [f"{section}/*.gz" for section in MAN_SECTIONS])
        if not p.name.startswith(MAN_EXCLUDE_PREFIXES)
    ]
    return make_candidates(MAN_ROOT, paths)


def cmake_docs_pool() -> list[Candidate]:
    root = Path("/usr/share")
    return make_candidates(root, globs(root, ["cmake-*/Help/**/*.rst"]))


def changelogs_pool() -> list[Candidate]:
    root = Path("/usr/share/doc")
    return make_candidates(root, globs(root, ["*/changelog.Debian.gz", "*/changelog.gz"]))


def nodejs_docs_pool() -> list[Candidate]:
    root = Path("/usr/share/doc")
    return make_candidates(root, globs(root, ["nodejs/**/*.md"]))


def licenses_pool() -> list[Candidate]:
    root = Path("/usr/share")
    return make_candidates(root, globs(root, ["doc/*/copyright", "common-licenses/*"]))


# --------------------------------------------------------------------------- loading


def read_text(path: Path) -> str | None:
    """The file's text (gunzipped for ``.gz``), or None if unreadable or not valid UTF-8."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
        return None


def minified(text: str) -> str | None:
    """``"minified"`` if the average line is longer than ``MINIFIED_AVG_LINE``, else None."""
    return "minified" if len(text) / (text.count("\n") + 1) > MINIFIED_AVG_LINE else None


def strip_terminal_formatting(text: str) -> str:
    """Remove ANSI escapes and backspace overstrikes (bold ``X\\bX``, underline ``_\\bX``)."""
    text = _ANSI_RE.sub("", text)
    while "\b" in text:
        stripped = _OVERSTRIKE_RE.sub("", text)
        if stripped == text:
            return text.replace("\b", "")
        text = stripped
    return text


def render_manpage(path: Path) -> str | None:
    """The man page rendered as plain UTF-8 text by ``man``, or None if that fails.

    Justification and hyphenation are turned off so that the text has single spaces and
    whole words, as prose would.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "MANWIDTH": MAN_WIDTH,
        "MANPAGER": "cat",
        "PAGER": "cat",
        "GROFF_NO_SGR": "1",
    }
    try:
        proc = subprocess.run(
            ["man", "--no-justification", "--no-hyphenation", "-l", "-P", "cat", str(path)],
            capture_output=True,
            env=env,
            timeout=MAN_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return strip_terminal_formatting(proc.stdout.decode("utf-8"))
    except (OSError, subprocess.TimeoutExpired, UnicodeDecodeError):
        return None


DOMAINS: tuple[Domain, ...] = (
    Domain("python", python_pool, read_text),
    Domain("c_headers", c_headers_pool, read_text),
    Domain("javascript", javascript_pool, read_text, reject=minified),
    Domain("manpages", manpages_pool, render_manpage),
    Domain("cmake_docs", cmake_docs_pool, read_text),
    Domain("changelogs", changelogs_pool, read_text),
    Domain("nodejs_docs", nodejs_docs_pool, read_text),
    Domain("licenses", licenses_pool, read_text),
)


# --------------------------------------------------------------------------- selection


def looks_binary(text: str) -> bool:
    """True if the text holds NUL bytes or more than 1% other control characters."""
    if "\x00" in text:
        return True
    controls = sum(1 for ch in text if ch in _CONTROL_CHARS)
    return controls > BINARY_CONTROL_FRACTION * len(text)


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to ``max_chars``, at the last line break if one is in the second half."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = head.rfind("\n")
    return head[: cut + 1] if cut >= max_chars // 2 else head


def load_in_order(
    cands: Iterable[Candidate],
    load: Callable[[Path], str | None],
    pool: ThreadPoolExecutor,
    batch_size: int,
) -> Iterator[tuple[Candidate, str | None]]:
    """Yield ``(candidate, text)`` in input order, loading a batch at a time in parallel.

    At most one batch is loaded beyond what the caller consumes, and what is yielded does
    not depend on the number of threads.
    """
    batch: list[Candidate] = []
    for cand in cands:
        batch.append(cand)
        if len(batch) >= batch_size:
            yield from zip(batch, list(pool.map(load, [c.path for c in batch])), strict=True)
            batch = []
    yield from zip(batch, list(pool.map(load, [c.path for c in batch])), strict=True)


def rejection(domain: Domain, text: str | None, min_chars: int, seen: set[str]) -> str | None:
    """Why ``text`` is not kept (None if it is); records its hash in ``seen`` when kept."""
    if text is None:
        return "unreadable_or_not_utf8"
    if len(text.strip()) < min_chars:
        return "too_short"
    if looks_binary(text):
        return "binary"
    if domain.reject is not None and (reason := domain.reject(text)) is not None:
        return reason
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest in seen:
        return "duplicate"
    seen.add(digest)
    return None


def take(
    domain: Domain,
    cands: Iterable[Candidate],
    n: int,
    args: argparse.Namespace,
    seen: set[str],
    sel: Selection,
    pool: ThreadPoolExecutor,
) -> None:
    """Walk ``cands`` in order and add up to ``n`` acceptable, unseen documents to ``sel``."""
    if n <= 0:
        return
    added = 0
    batch_size = 4 * max(1, args.workers)
    for cand, text in load_in_order(cands, domain.load, pool, batch_size):
        reason = rejection(domain, text, args.min_chars, seen)
        if reason is not None or text is None:
            sel.rejected[reason or "unreadable_or_not_utf8"] += 1
            continue
        sel.docs.append(
            {
                "docid": f"{domain.name}/{cand.rel}",
                "content": truncate(text, args.max_chars),
                "domain": domain.name,
                "source": str(cand.path),
            }
        )
        added += 1
        if added >= n:
            return


def select(
    domain: Domain,
    cands: list[Candidate],
    args: argparse.Namespace,
    seen: set[str],
    pool: ThreadPoolExecutor,
) -> Selection:
    """The ``--n-longest`` longest acceptable files plus a seeded sample of ``--per-domain``."""
    sel = Selection(pool=len(cands))
    longest_first = sorted(cands, key=lambda c: (-c.size, c.rel))
    take(domain, longest_first, args.n_longest, args, seen, sel, pool)
    taken = {doc["docid"] for doc in sel.docs}
    rng = random.Random(f"{args.seed}/{domain.name}")
    shuffled = [c for c in rng.sample(cands, k=len(cands)) if f"{domain.name}/{c.rel}" not in taken]
    take(domain, shuffled, args.per_domain, args, seen, sel, pool)
    return sel


def collect_pools(names: Sequence[str]) -> dict[str, list[Candidate]]:
    """Candidate pools of the wanted domains; missing sources are skipped with a warning."""
    pools: dict[str, list[Candidate]] = {}
    for domain in DOMAINS:
        if domain.name not in names:
            continue
        cands = domain.enumerate()
        if cands:
            pools[domain.name] = cands
        else:
            warn(f"domain {domain.name!r} skipped: no source files found")
    nodejs = pools.get("nodejs_docs", [])
    if nodejs and len(nodejs) < NODEJS_MIN_OWN_DOMAIN and "changelogs" in names:
        warn(f"only {len(nodejs)} Node.js docs: folded into the 'changelogs' domain")
        merged = pools.get("changelogs", []) + pools.pop("nodejs_docs")
        pools["changelogs"] = sorted(merged, key=lambda c: c.rel)
    return pools


# --------------------------------------------------------------------------- output


def write_atomic(path: Path, chunks: Iterable[str]) -> str:
    """Write ``chunks`` to ``path`` via a temporary file and ``os.replace``; return sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                data = chunk.encode("utf-8")
                digest.update(data)
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; make it a normal readable file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def jsonl_lines(docs: Iterable[dict[str, str]]) -> Iterator[str]:
    for doc in docs:
        yield json.dumps(doc, ensure_ascii=False) + "\n"


def quantiles(lengths: Sequence[int]) -> list[int]:
    """Nearest-rank quantiles ``QUANTILES`` of ``lengths``."""
    ordered = sorted(lengths)
    return [ordered[round(q * (len(ordered) - 1))] for q in QUANTILES]


def summary_rows(docs: Sequence[dict[str, str]]) -> list[tuple[str, list[int]]]:
    """Per domain and overall: documents, characters and length quantiles."""
    by_domain: dict[str, list[int]] = {}
    for doc in docs:
        by_domain.setdefault(doc["domain"], []).append(len(doc["content"]))
    groups = sorted(by_domain.items()) + [("ALL", [len(d["content"]) for d in docs])]
    return [(name, [len(lens), sum(lens), *quantiles(lens)]) for name, lens in groups]


def print_summary(
    docs: Sequence[dict[str, str]], out: Path, sha: str, pools: dict[str, Selection]
) -> None:
    header = ("domain", "pool", "docs", "chars", "~tokens", "min", "p10", "p50", "p90", "max")
    print("\n" + "".join(f"{h:>12}" if i else f"{h:<12}" for i, h in enumerate(header)))
    for name, (n, chars, *qs) in summary_rows(docs):
        pool = pools[name].pool if name in pools else sum(s.pool for s in pools.values())
        cells = [pool, n, chars, chars // CHARS_PER_TOKEN, *qs]
        print(f"{name:<12}" + "".join(f"{c:>12,}" for c in cells))
    print("\n(lengths in characters; ~tokens = chars / 4)")
    print("\nrejected files per domain:")
    for name, sel in sorted(pools.items()):
        print(f"  {name:<12} {dict(sorted(sel.rejected.items()))}")
    print("\nlongest documents:")
    for doc in sorted(docs, key=lambda d: (-len(d["content"]), d["docid"]))[:12]:
        print(f"  {len(doc['content']):>10,}  {doc['docid']}")
    over = sum(1 for d in docs if len(d["content"]) > 400_000)
    print(f"\ndocuments over 400,000 chars (~100K tokens): {over}")
    print(f"output: {out} ({out.stat().st_size:,} bytes, sha256 {sha})")


def meta_record(
    args: argparse.Namespace, out: Path, sha: str, sels: dict[str, Selection]
) -> dict[str, object]:
    docs = [d for s in sels.values() for d in s.docs]
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())},
        "output": str(out),
        "sha256": sha,
        "documents": len(docs),
        "characters": sum(len(d["content"]) for d in docs),
        "python_stdlib": sysconfig.get_paths()["stdlib"],
        "domains": {
            name: {
                "pool": sel.pool,
                "documents": len(sel.docs),
                "characters": sum(len(d["content"]) for d in sel.docs),
                "rejected": dict(sorted(sel.rejected.items())),
            }
            for name, sel in sorted(sels.items())
        },
    }


# --------------------------------------------------------------------------- main


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL path")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--per-domain", type=int, default=700, help="random docs per domain")
    parser.add_argument(
        "--n-longest", type=int, default=5, help="longest files per domain, always included"
    )
    parser.add_argument("--min-chars", type=int, default=200, help="drop shorter documents")
    parser.add_argument(
        "--max-chars", type=int, default=600_000,
        help="truncate longer documents (600K characters, about 150K tokens: long enough for "
        "the 100K+-token tail, short enough that a few giant changelogs do not hold half the "
        "tokens)",
    )
    parser.add_argument(
        "--domains",
        default=",".join(d.name for d in DOMAINS),
        help="comma-separated domains to build (default: all)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="loader threads"
    )
    args = parser.parse_args(argv)
    args.out = args.out.expanduser().resolve()
    unknown = set(args.domains.split(",")) - {d.name for d in DOMAINS}
    if unknown:
        parser.error(f"unknown domains: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    pools = collect_pools(args.domains.split(","))
    seen: set[str] = set()
    sels: dict[str, Selection] = {}
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for domain in DOMAINS:
            if domain.name not in pools:
                continue
            sel = select(domain, pools[domain.name], args, seen, pool)
            print(f"{domain.name}: {len(sel.docs)} docs from a pool of {sel.pool}", flush=True)
            if sel.docs:
                sels[domain.name] = sel
            else:
                warn(f"domain {domain.name!r} skipped: no acceptable documents")
    if len(sels) < MIN_DOMAINS:
        print(f"error: only {len(sels)} domains available, need {MIN_DOMAINS}", file=sys.stderr)
        return 1
    docs = sorted((d for s in sels.values() for d in s.docs), key=lambda d: d["docid"])
    sha = write_atomic(args.out, jsonl_lines(docs))
    meta = json.dumps(meta_record(args, args.out, sha, sels), indent=2, sort_keys=True)
    write_atomic(args.out.with_name(args.out.name + ".meta.json"), [meta + "\n"])
    print_summary(docs, args.out, sha, sels)
    print(f"elapsed: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
