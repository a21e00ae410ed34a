"""Data files shipped inside the package.

``SAMPLE_PATH`` is the embedded sample corpus: a gzip-compressed JSON-lines file of a few
hundred synthetic English documents (``docid``, ``content``, ``topic``) on eight clearly
different topics, with lengths from a few dozen to over 16K tokens. It is generated, not
downloaded, by ``scripts/make_sample_corpus.py``; ``SAMPLE_LABEL_KEY`` names the field that
holds each document's topic label.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SAMPLE_LABEL_KEY", "SAMPLE_PATH"]

SAMPLE_PATH: Path = Path(str(files(__name__).joinpath("sample.jsonl.gz")))
SAMPLE_LABEL_KEY = "topic"
