"""Stages as units: a name, the key its artifacts depend on, the artifacts, the work.

The manifest rules live here and nowhere else: a stage whose key matches the manifest and
whose artifacts exist is reused; otherwise its work runs and the manifest records the new
key, artifacts and stats. A key names the config a stage reads and the keys of the stages it
reads from, so a change recomputes that stage and everything after it. What runs a stage's
independent pieces (``datasculpt.executors``) is no part of any key: local and Ray give the
same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasculpt.manifest import Manifest, stable_hash

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    key: dict[str, Any]  # what the artifacts depend on (config values, upstream stage keys)
    artifacts: Callable[[], list[str]]  # run-directory paths, known once the work has run
    work: Callable[[], dict[str, Any]]  # writes the artifacts (atomically); returns stats
    inputs: list[str] = field(default_factory=list)  # upstream stages, for the log

    @property
    def digest(self) -> str:
        return stable_hash(self.key)


def execute(stage: Stage, manifest: Manifest) -> dict[str, Any]:
    """Run ``stage`` unless its artifacts are current; returns its stats (``reused`` when so)."""
    if manifest.reusable(stage.name, stage.digest):
        return {**manifest.stats(stage.name), "reused": True}
    manifest.begin(stage.name)
    stats = stage.work()
    manifest.record(stage.name, stage.digest, stage.artifacts(), dict(stats))
    return stats
