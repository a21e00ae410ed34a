"""The run manifest: which stage produced which artifact from which config and input.

A stage is reused when its key (a hash of the config it depends on and of the keys of the
stages it reads) matches the manifest and its artifacts exist; otherwise it runs again, and
so does everything downstream, since their keys include its key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from datasculpt.io.write import write_json

log = logging.getLogger(__name__)


def stable_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(paths: list[Path]) -> list[dict[str, Any]]:
    """Identity of the input shards: path, size and modification time."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


class Manifest:
    def __init__(self, run_dir: Path, fresh: bool) -> None:
        self.path = run_dir / "manifest.json"
        self.run_dir = run_dir
        self.stages: dict[str, dict[str, Any]] = {}
        if not fresh and self.path.exists():
            try:
                self.stages = json.loads(self.path.read_text())["stages"]
            except (ValueError, KeyError, OSError):
                log.warning("manifest.json is unreadable; recomputing every stage")

    def reusable(self, stage: str, key: str) -> bool:
        entry = self.stages.get(stage)
        if not entry or entry.get("key") != key or entry.get("status") != "done":
            return False
        if not all((self.run_dir / f).exists() for f in entry.get("outputs", [])):
            return False
        log.info("stage %s: reused (config and input unchanged)", stage)
        return True

    def begin(self, stage: str) -> None:
        """Log the start; a stage killed from here on is simply recomputed by the next run."""
        log.info("stage %s: start", stage)

    def stats(self, stage: str) -> dict[str, Any]:
        return dict(self.stages.get(stage, {}).get("stats", {}))

    def record(self, stage: str, key: str, outputs: list[str], stats: dict[str, Any]) -> None:
        self.stages[stage] = {"key": key, "status": "done", "outputs": outputs, "stats": stats}
        write_json(self.path, {"stages": self.stages})

    def update_stats(self, stage: str, extra: dict[str, Any]) -> None:
        """Add figures known only after the stage's result was loaded (the driver's memory)."""
        self.stages[stage].setdefault("stats", {}).update(extra)
        write_json(self.path, {"stages": self.stages})

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            write_json(self.path, {"stages": self.stages})
