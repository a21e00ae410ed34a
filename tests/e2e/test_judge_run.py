"""End to end: a command-line run with judge=enabled on the embedded sample reports the
context gain of every packing and of a random grouping, and a rerun reuses the judge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow
def test_run_with_the_judge_reports_context_gain_and_reuses_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("ctx_len=1024", "judge=enabled", "judge.sequences=6", "judge.max_tokens=640",
            "report.baselines=true", f"output_dir={out}")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    gain = report["context_gain"]
    assert gain["judge"]["model"] == "smollm2" and gain["judge"]["max_tokens"] == 640
    for name in ("datasculpt", "concat", "bfd", "iclm", "random"):
        entry = gain[name]
        assert entry["sequences"] == 6
        for key in ("context_gain", "context_gain_se", "context_gain_no_near_dup",
                    "context_gain_no_near_dup_se", "near_dup_share"):
            assert entry[key] is not None and math.isfinite(entry[key]), (name, key)
        assert entry["context_gain_no_near_dup"] <= entry["context_gain"] + 1e-12
    records = [json.loads(line) for line in
               (out / "context_gain.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in records}) == ["bfd", "concat", "datasculpt", "iclm",
                                                      "random"]
    assert all(r["tokens"] <= 640 for r in records)
    # Every later piece of two or more tokens is scored (a one-token piece has nothing left
    # once its first token is set aside).
    assert all(r["scored_pieces"] == sum(n >= 2 for n in r["piece_tokens"][1:])
               and len(r["piece_tokens"]) + r["dropped_pieces"] == r["pieces"] >= 2
               for r in records)
    assert sum(r["scored_pieces"] >= 1 for r in records) >= 0.9 * len(records)
    # On the sample's topics the method's windows help the model more than random ones.
    assert gain["datasculpt"]["context_gain"] > gain["random"]["context_gain"]
    md = (out / "report.md").read_text()
    assert "| context gain (nats saved / window token) |" in md
    assert "| context gain, near-duplicates left out |" in md
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["stages"]["judge"]["reused"] is True
