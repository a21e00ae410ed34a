"""The run's tokenizer without importing transformers on every run.

``import transformers`` takes ~2.5 s on a 2-core machine (it pulls scikit-learn and half of
its own package in through ``transformers.utils``), yet tokenizing, the token store, the static
ids and the shards need only the Rust tokenizer that ``AutoTokenizer`` builds and the EOS and
SEP tokens it names. So the first run with a tokenizer loads it through transformers as always
(``tokenize.load_tokenizer``: every check and fix-up ``AutoTokenizer`` applies) and keeps what
it built under ``$XDG_CACHE_HOME/datasculpt/tokenizers/<key>.json`` (``~/.cache`` without
XDG): the Rust tokenizer serialised (``to_str``) and the special tokens. Later runs read that
file. The key covers the tokenizer directory's files (contents of those under 64 MiB, the
tokenizer's own among them; name and size of larger ones, the weights) and the versions of
transformers and tokenizers, so an edited ``tokenizer_config.json`` or an upgrade builds a new
entry. An entry that does not parse, or whose key differs, is rebuilt, never trusted; writes
are atomic.

Anything else asked of the tokenizer (``batch_decode`` for ``output.text``, the judge's
decoding) loads the transformers tokenizer then, once. A hub name, not a local directory, is
always loaded through transformers: its files are not known before ``from_pretrained``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from datasculpt.io.write import atomic_open
from datasculpt.models import user_cache

log = logging.getLogger(__name__)

FORMAT = 1
_HASHED_BYTES = 64 << 20  # files up to this size are hashed by content (tokenizer files)
_SPECIAL = ("eos_token", "eos_token_id", "sep_token", "sep_token_id")


def cache_root() -> Path:
    return user_cache("tokenizers")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def tokenizer_key(directory: Path) -> str:
    """SHA-256 over what ``AutoTokenizer.from_pretrained(directory)`` may read and the code
    that reads it: the top-level files (content up to 64 MiB, else name and size) and the
    transformers and tokenizers versions."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "transformers": _version("transformers"),
                                   "tokenizers": _version("tokenizers")}).encode())
    for p in sorted(directory.iterdir()):
        if not p.is_file():
            continue
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        if size <= _HASHED_BYTES:
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


class RunTokenizer:
    """The Rust tokenizer (``backend_tokenizer``) and special tokens of a transformers fast
    tokenizer; any other attribute comes from the transformers tokenizer, loaded on first use."""

    def __init__(self, name: str, backend: Any, special: dict[str, Any], size: int) -> None:
        self.name = name
        self.backend_tokenizer = backend
        self.size = size
        for attr in _SPECIAL:
            setattr(self, attr, special.get(attr))

    def __len__(self) -> int:
        """The vocabulary with its added tokens, as ``len()`` of the transformers tokenizer."""
        return self.size

    @functools.cached_property
    def full(self) -> Any:
        from datasculpt.tokenize import load_tokenizer

        return load_tokenizer(self.name)

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes not set above; private ones are not forwarded, so
        # pickling and copying (which probe __setstate__ and friends) never load the model.
        if attr.startswith("_") or "name" not in self.__dict__:
            raise AttributeError(attr)
        return getattr(self.full, attr)


def _read_entry(path: Path, key: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("format") != FORMAT:
        return None
    if not isinstance(entry.get("backend"), str) or not isinstance(entry.get("special"), dict):
        return None
    if not isinstance(entry.get("len"), int):
        return None
    return entry


@functools.lru_cache(maxsize=4)
def load_run_tokenizer(name: str) -> Any:
    """The tokenizer ``name`` as the run uses it: a :class:`RunTokenizer` read from the cache
    when ``name`` is a local directory (built through transformers the first time), else the
    transformers tokenizer itself (``tokenize.load_tokenizer``, same errors)."""
    from datasculpt.models import resolve_model_path
    from datasculpt.tokenize import load_tokenizer

    path = resolve_model_path(name, "tokenizer")
    if not os.path.isdir(path):
        return load_tokenizer(name)
    from tokenizers import Tokenizer

    key = tokenizer_key(Path(path))
    entry_path = cache_root() / f"{key}.json"
    entry = _read_entry(entry_path, key)
    tok = None
    if entry is None:
        tok = load_tokenizer(name)
        entry = {"format": FORMAT, "key": key, "source": str(path),
                 "backend": tok.backend_tokenizer.to_str(), "len": len(tok),
                 "special": {attr: getattr(tok, attr) for attr in _SPECIAL}}
        try:
            entry_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(entry_path, "w") as fh:
                json.dump(entry, fh)
        except OSError as exc:  # a read-only home still runs, at the import's cost
            log.warning("tokenizer cache not written (%s): %s", entry_path, exc)
    run = RunTokenizer(name, Tokenizer.from_str(entry["backend"]), entry["special"],
                       entry["len"])
    if tok is not None:
        run.__dict__["full"] = tok
    return run
