"""Static embeddings (``embed=static``): a Model2Vec model distilled from the run's encoder.

Distillation (``model2vec.distill``) runs every vocabulary token through the encoder once and
keeps one vector per token; a document's vector is then a weighted sum of its tokens'
vectors (``embed.term_weight``), a table lookup instead of a transformer pass. It runs the
first time only: the result is cached under ``$XDG_CACHE_HOME/datasculpt/static/<key>``
(``~/.cache`` without XDG), keyed by the content of the source model's files, the
distillation parameters and model2vec's version, and written atomically with a manifest of
its files' SHA-256 that is checked on every load (a damaged entry is distilled again, never
trusted). Two distillations of the same model give the same vectors (checked: the tables are
bit-identical), so the cache saves time, not reproducibility. Nothing is downloaded: the
source is a local directory, or a hub name already in the local Hugging Face cache.

The lookup itself is ``torch.nn.functional.embedding_bag`` on the backend's device rather than
``StaticModel.encode``: on a GPU it is one memory-bound kernel over the whole batch, the sum
is taken in float32 (``encode`` averages in the table's float16), and a token's count in its
document can be damped (``sqrt``, the default, or ``log``; ``count`` is ``encode``'s mean):
Model2Vec's mean lets a token repeated a hundred times (an indent, a brace, a licence line)
outweigh everything else in the document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.embed import clipped_ids
from datasculpt.errors import ConfigError
from datasculpt.manifest import stable_hash
from datasculpt.vectors import l2_normalize

log = logging.getLogger(__name__)

MARKER = "datasculpt-static.json"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datasculpt" / "static"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def dir_digest(root: Path) -> str:
    """SHA-256 over a directory's files (relative names and contents)."""
    h = hashlib.sha256()
    for p in _files(root):
        h.update(str(p.relative_to(root)).encode())
        h.update(_sha256(p).encode())
    return h.hexdigest()


def source_dir(model: str) -> Path:
    """The encoder's files on this machine: ``default`` (the packaged MiniLM), a local
    directory, or a hub name found in the local Hugging Face cache (never fetched)."""
    from datasculpt.models import resolve_model_path

    path = resolve_model_path(model)
    if os.path.isdir(path):
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception as exc:
        raise ConfigError(f"embed=static distils from a local model, and {model!r} is not in "
                          f"the local Hugging Face cache ({exc.__class__.__name__}); give "
                          "embed.model=/path/to/model or embed.static_dir=/path/to/model2vec"
                          ) from None


def _valid(path: Path) -> bool:
    """A cache entry whose manifest lists every file with its hash, all still matching."""
    try:
        listed = json.loads((path / MARKER).read_text())["files"]
        return bool(listed) and all(_sha256(path / name) == digest
                                    for name, digest in listed.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def static_model_dir(cfg: Any) -> Path:
    """The Model2Vec model for ``cfg`` (the ``embed`` node): ``static_dir`` when given, else
    the cached distillation of ``cfg.model``, distilled now when missing or damaged."""
    if cfg.static_dir:
        path = Path(os.path.expanduser(str(cfg.static_dir)))
        if not (path / "config.json").is_file():
            raise ConfigError(f"embed.static_dir {cfg.static_dir} is not a Model2Vec model "
                              "directory (no config.json)")
        return path
    import model2vec

    src = source_dir(str(cfg.model))
    key = stable_hash({"source": dir_digest(src), "pca_dims": cfg.pca_dims,
                       "model2vec": ".".join(model2vec.__version__.split(".")[:2])})
    target = cache_root() / key
    if _valid(target):
        return target
    if target.exists():
        log.warning("embed=static: the cached model %s is damaged; distilling it again", target)
    return _distill(src, target, int(cfg.pca_dims) if cfg.pca_dims else None)


def _distill(src: Path, target: Path, pca_dims: int | None) -> Path:
    from model2vec.distill import distill

    log.info("embed=static: distilling %s into a static model (once; cached at %s)", src, target)
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".distill.", dir=target.parent))
    try:
        model = distill(model_name=str(src), pca_dims=pca_dims)
        model.save_pretrained(str(tmp))
        files = {str(p.relative_to(tmp)): _sha256(p) for p in _files(tmp)}
        (tmp / MARKER).write_text(json.dumps({"source": str(src), "files": files}, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same entry first
            if not _valid(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("embed=static: distilled in %.1fs", time.perf_counter() - t0)
    return target


_MODELS: dict[tuple[str, str], Any] = {}
# Texts are tokenized from a clip of this many characters per token of max_length (exact:
# embed.clipped_ids re-tokenizes a clip that falls short). Half the encoder's margin: on the
# dev corpus no clip of 8 fell short, and tokenizing is nearly all of the lookup's time
# (docs/BENCHMARKS.md).
_CHARS_PER_TOKEN = 8


class StaticTable:
    """A loaded static model: its tokenizer and its table on ``device`` (float32)."""

    def __init__(self, path: Path, device: str) -> None:
        import torch
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(str(path), force_download=False)
        # The saved tokenizer truncates at the source model's 512 tokens; embed.max_length
        # is the limit here (the ids are cut after tokenizing).
        model.tokenizer.no_truncation()
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
        import torch

        ids = clipped_ids(self.model.tokenize, texts, max_length, _CHARS_PER_TOKEN)
        lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = torch.as_tensor(np.fromiter((t for x in ids for t in x), dtype=np.int64,
                                           count=int(lens.sum())), device=self.device)
        doc = torch.repeat_interleave(torch.arange(len(ids), device=self.device),
                                      torch.as_tensor(lens, device=self.device))
        # One bag entry per (document, token) pair with its count; sorted keys keep each
        # document's pairs together, so the bags' offsets are where each document starts.
        vocab = int(self.table.shape[0] if self.mapping is None else self.mapping.shape[0])
        keys, counts = torch.unique(doc * vocab + flat, sorted=True, return_counts=True)
        tokens = keys % vocab
        offsets = torch.searchsorted(keys // vocab, torch.arange(len(ids), device=self.device))
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
    ``{"row", "text"}`` in, ``{"row", "vec", "rung"}`` out; the table loads once per worker."""

    def __init__(self, cfg: dict[str, Any], backend: str, model_dir: str) -> None:
        from datasculpt.backend import resolve_backend

        self.max_length = int(cfg["max_length"])
        self.term_weight = str(cfg["term_weight"])
        self.device = resolve_backend(backend).torch_device
        self.table = StaticTable.load(Path(model_dir), self.device)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        vec = self.table.embed(list(batch["text"]), self.max_length, self.term_weight)
        n = len(batch["row"])
        return {"row": np.asarray(batch["row"], dtype=np.int64),
                "vec": vec.cpu().numpy().astype(np.float32, copy=False),
                "rung": np.full(n, f"static-{self.device}")}
