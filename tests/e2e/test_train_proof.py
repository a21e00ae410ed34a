"""End to end: scripts/train_proof.py at toy size (two arms, three seeds, held-out windows)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow
def test_train_proof_runs_end_to_end_at_toy_size(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/train_proof.py: both arms trained on exactly the same tokens for every seed,
    evaluated on the same held-out windows, differences with intervals over three seeds."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import train_proof

    report = train_proof.main(["--preset", "toy", "--input", "sample", "--holdout", "0.2",
                               "--work-dir", str(tmp_path), "--device", "cpu"])
    runs = report["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [
        (arm, s) for arm in ("concat", "datasculpt") for s in range(3)]
    assert {r["tokens"] for r in runs} == {report["budget_tokens"]} == {16_000}
    assert len({r["eval_windows"] for r in runs}) == 1 and runs[0]["eval_windows"] > 0
    for r in runs:
        assert math.isfinite(r["context_gain"]) and math.isfinite(r["long_doc_loss"])
        assert r["long_docs"] > 0
    for m in ("context_gain", "long_doc_loss_second_half"):
        d = report["summary"][m]["difference"]
        assert d["n"] == 3 and d["lo"] <= d["mean"] <= d["hi"]
    saved = json.loads((tmp_path / "train_proof.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"]))
    # the held-out documents were never trained on
    held = {json.loads(x)["docid"] for x in (tmp_path / "heldout.jsonl").read_text().splitlines()}
    train = {json.loads(x)["docid"] for x in (tmp_path / "train.jsonl").read_text().splitlines()}
    assert held and train and not held & train and len(held | train) == 352
