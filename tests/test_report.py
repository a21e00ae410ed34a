"""report: report.md rendered from a report's values (the metrics table with the random
grouping's column, context gain with its standard error, stages, warnings, malformed records)
and the PNG plots of every packing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.report import plot, render_markdown, write_report
from datasculpt.types import Packing


def _report(**extra: Any) -> dict[str, Any]:
    metrics = {"n_sequences": 12, "fill_rate": 0.98765, "seq_ratio": 1.0123,
               "truncation_rate": 0.0, "pieces_per_seq": 3.456, "relevance": 0.61234,
               "cluster_purity": 0.9, "cluster_purity_multi": 0.85, "label_purity": None,
               "label_purity_multi": None, "lost_tokens": 0, "duplicated_tokens": 0,
               "overlong_sequences": 0, "total_doc_tokens": 4000}
    malformed = [{"file": "in.jsonl", "line": 3 + i, "reason": "bad JSON: a|b"}
                 for i in range(52)]
    return {
        "run": {"method": "datasculpt", "ctx_len": 4096, "seed": 0, "backend": "cpu",
                "n_documents": 40, "total_tokens": 4040, "forced_cut_documents": 2,
                "rungs": {"pack": "numpy"}, "warnings": ["cluster ran on the host (faiss-cpu)"]},
        "input": {"files": ["in.jsonl"], "records": 92, "documents": 40, "malformed": 52,
                  "malformed_records": malformed},
        "metrics": metrics,
        "methods": {"datasculpt": metrics, "bfd": {**metrics, "relevance": 0.2}},
        "reference": {"relevance": 0.1, "cluster_purity_multi": 0.5},
        # the driver's memory, which the runner adds to every stage's stats, is no column
        "stages": {"tokenize": {"seconds": 1.5, "reused": True},
                   "pack": {"seconds": 0.25, "driver_rss_anon_bytes": 7 << 20,
                            "driver_rss_anon_start_bytes": 5 << 20,
                            "driver_peak_rss_bytes": 9 << 20}},
        **extra,
    }


def test_the_markdown_report_holds_every_figure_in_its_row() -> None:
    md = render_markdown(_report())
    lines = md.splitlines()
    assert lines[0] == "# datasculpt run report"
    assert "- input: 1 file(s), 92 records, **40 documents**, 52 malformed" in lines
    assert "| metric | datasculpt | bfd | random grouping |" in lines
    assert "| fill rate | 0.9877 | 0.9877 |  |" in lines
    assert "| relevance (mean pairwise cos) | 0.6123 | 0.2000 | 0.1000 |" in lines
    assert "| label purity | n/a | n/a |  |" in lines
    assert "| sequences | 12 | 12 |  |" in lines
    assert ("- **datasculpt**: relevance 0.612 vs 0.100 (+0.512); cluster purity (>= 2 docs) "
            "0.850 vs 0.500 (+0.350)") in lines
    assert "| tokenize | 1.50 | True |  |" in lines and "| pack | 0.25 | False | numpy |" in lines
    assert "- cluster ran on the host (faiss-cpu)" in lines
    rows = [ln for ln in lines if ln.startswith("| in.jsonl |")]
    assert len(rows) == 50 and rows[0] == "| in.jsonl | 3 | bad JSON: a/b |"  # no stray column
    assert "2 more in report.json." in md
    assert "context gain" not in md  # no judge in this run


def test_context_gain_rows_carry_the_standard_error_and_the_random_column() -> None:
    entry = {"context_gain": 0.123456, "context_gain_se": 0.0123, "sequences": 6,
             "context_gain_no_near_dup": 0.1, "context_gain_no_near_dup_se": None,
             "near_dup_share": 0.25, "capped_sequences": 2}
    gain = {"judge": {"model": "smollm2", "dtype": "float32", "device": "cpu", "sequences": 6,
                      "max_tokens": 640, "near_dup_threshold": 0.5, "ngram": 8},
            "datasculpt": entry, "bfd": {**entry, "context_gain_no_near_dup": 0.05},
            "random": {**entry, "context_gain_no_near_dup": 0.02}}
    lines = render_markdown(_report(context_gain=gain)).splitlines()
    assert ("| context gain (nats saved / window token) | 0.1235 ± 0.0123 | 0.1235 ± 0.0123 | "
            "0.1235 ± 0.0123 |") in lines
    assert "| context gain, near-duplicates left out | 0.1000 | 0.0500 | 0.0200 |" in lines
    assert "| judged sequences | 6 | 6 | 6 |" in lines
    assert "| nats saved / scored token | n/a | n/a | n/a |" in lines
    assert ("- **datasculpt**: 0.1000 nats/token without near-duplicates, +0.0800 over the "
            "random grouping's 0.0200") in lines
    assert any(ln.startswith("  (2 of its 6 judged windows were longer than 640") for ln in lines)


def test_plots_and_the_written_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    doc_len = rng.integers(5, 60, 30)
    one = Packing.from_lists([[(d, 0, int(doc_len[d])) for d in range(s, 30, 5)]
                              for s in range(5)])
    two = Packing.from_lists([[(d, 0, int(doc_len[d]))] for d in range(30)])
    emb = rng.normal(size=(30, 4))
    written = plot(tmp_path / "plots", {"a": one, "b": two}, doc_len, 512, 1, emb)
    assert written == ["plots/fill.png", "plots/pieces.png", "plots/similarity.png"]
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot(tmp_path / "p2", {"a": one}, doc_len, 512, 1, None) == ["plots/fill.png",
                                                                      "plots/pieces.png"]
    report = _report(plots=written)
    write_report(tmp_path, report)
    md = (tmp_path / "report.md").read_text()
    assert md == render_markdown(report) and "![plots/fill.png](plots/fill.png)" in md
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert not list(tmp_path.glob(".*.tmp"))
