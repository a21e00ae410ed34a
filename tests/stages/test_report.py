"""stages.report: report.json and report.md of a run, from every stage's result and stats."""

from __future__ import annotations

import json
import re

import numpy as np
from helpers import write_jsonl

import datasculpt


def test_the_report_says_where_each_stage_ran(tmp_path) -> None:
    rng = np.random.default_rng(0)
    write_jsonl(tmp_path / "in.jsonl", [{"docid": f"d{i}", "content": "word " * (20 + i)}
                                        for i in range(60)])
    np.save(tmp_path / "emb.npy", rng.normal(size=(60, 8)).astype(np.float32))
    cfg = datasculpt.default_config(
        input=str(tmp_path / "in.jsonl"), ctx_len=256,
        **{"embed.precomputed": str(tmp_path / "emb.npy"), "report.plots": False,
           "report.progress": False, "backend.name": "cpu", "report.baselines": True})
    report = datasculpt.run(cfg, output_dir=str(tmp_path / "run"))
    rungs = report["run"]["rungs"]
    assert rungs == {"embed": "given vectors", "cluster": "faiss-cpu; rounds on numpy",
                     "pack": "numpy", "pack_concat": "host", "pack_bfd": "host",
                     "pack_iclm": "faiss-cpu"}
    assert report["run"]["warnings"] == []
    assert json.loads((tmp_path / "run" / "report.json").read_text())["run"]["rungs"] == rungs
    md = (tmp_path / "run" / "report.md").read_text()
    assert re.search(r"^\| cluster \| [0-9.]+ \| False \| faiss-cpu; rounds on numpy \|$", md,
                     re.M), md
