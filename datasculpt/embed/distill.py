"""The Model2Vec model behind ``embed=static``: given, or distilled once from the encoder.

Distillation (``model2vec.distill``) runs every vocabulary token through the encoder once and
keeps one vector per token. It runs the first time only: the result is cached under
``$XDG_CACHE_HOME/datasculpt/static/<key>`` (``~/.cache`` without XDG), keyed by the content
of the source model's files, the distillation parameters and model2vec's version, and written
atomically with a manifest of its files' SHA-256 that is checked on every load (a damaged
entry is distilled again, never trusted). Two distillations of the same model give the same
vectors (checked: the tables are bit-identical), so the cache saves time, not
reproducibility. Nothing is downloaded: the source is a local directory, or a hub name
already in the local Hugging Face cache. ``model2vec`` (the optional extra ``static``) is
imported only when a model is distilled.
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

from datasculpt.errors import ConfigError
from datasculpt.manifest import stable_hash
from datasculpt.models import user_cache

log = logging.getLogger(__name__)

MARKER = "datasculpt-static.json"


def cache_root() -> Path:
    return user_cache("static")


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
