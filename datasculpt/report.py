"""The run report: ``report.json`` for machines, ``report.md`` for people, PNG plots for both."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from datasculpt.io.write import atomic_open, atomic_path, write_json
from datasculpt.metrics import relevance_per_sequence
from datasculpt.types import Packing

log = logging.getLogger(__name__)

METRIC_ROWS = (
    ("n_sequences", "sequences", "{:d}"),
    ("fill_rate", "fill rate", "{:.4f}"),
    ("seq_ratio", "sequences / lower bound", "{:.4f}"),
    ("truncation_rate", "truncation rate", "{:.4f}"),
    ("pieces_per_seq", "pieces per sequence", "{:.2f}"),
    ("relevance", "relevance (mean pairwise cos)", "{:.4f}"),
    ("cluster_purity", "cluster purity", "{:.4f}"),
    ("cluster_purity_multi", "cluster purity, sequences of >= 2 docs", "{:.4f}"),
    ("label_purity", "label purity", "{:.4f}"),
    ("label_purity_multi", "label purity, sequences of >= 2 docs", "{:.4f}"),
    ("lost_tokens", "lost tokens", "{:d}"),
    ("duplicated_tokens", "duplicated tokens", "{:d}"),
    ("overlong_sequences", "sequences over ctx_len", "{:d}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """One page a data engineer can read: what went in, what came out, how it compares."""
    run, reading, methods = report["run"], report["input"], report["methods"]
    reference = report.get("reference") or {}
    names = list(methods)
    columns = [*names, "random grouping"] if reference else names
    lines = [
        "# datasculpt run report",
        "",
        f"- method: **{run['method']}**, ctx_len **{run['ctx_len']}**, seed {run['seed']}, "
        f"backend {run['backend']}",
        f"- input: {len(reading['files'])} file(s), {reading['records']} records, "
        f"**{reading['documents']} documents**, {reading['malformed']} malformed",
        f"- tokens: {report['metrics']['total_doc_tokens']} in {run['n_documents']} documents, "
        f"{run['total_tokens']} with separators ({run['forced_cut_documents']} documents "
        "longer than ctx_len, cut up front)",
        "",
        "## Metrics",
        "",
        "| metric | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, label, spec in METRIC_ROWS:
        cells = [_fmt(methods[n].get(key), spec) for n in names]
        if reference:
            cells.append(_fmt(reference.get(key), spec) if key in reference else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    gain = report.get("context_gain")
    if gain:
        lines += _gain_rows(gain, names, bool(reference))
    if reference:
        lines += ["", *_against_random(methods, reference)]
    if gain:
        lines += ["", *_gain_notes(gain, names)]
    if report.get("balance"):
        lines += ["", *_balance_lines(report["balance"])]
    rungs = run.get("rungs") or {}
    lines += ["", "## Stages", "", "| stage | seconds | reused | ran on |", "|---|---|---|---|"]
    for name, st in report["stages"].items():
        seconds = _fmt(st.get("seconds"), "{:.2f}")
        lines.append(f"| {name} | {seconds} | {st.get('reused', False)} | "
                     f"{rungs.get(name, '')} |")
    if run.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {w}" for w in run["warnings"]]]
    if reading["malformed"]:
        lines += ["", "## Malformed records", "", "| file | line | reason |", "|---|---|---|"]
        for m in reading["malformed_records"][:50]:
            lines.append(f"| {m['file']} | {m['line']} | {m['reason'].replace('|', '/')} |")
        if reading["malformed"] > 50:
            lines.append(f"\n{reading['malformed'] - 50} more in report.json.")
    if report.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


def _balance_lines(bal: dict[str, Any]) -> list[str]:
    """The load balance of the data-parallel ranks, before and after ordering the rows."""
    imb, sec = bal["imbalance"], bal["step_seconds"]
    m = bal["step_model"]
    return [
        "## Balance across data-parallel ranks", "",
        f"{bal['ranks']} ranks, {bal['micro_batch']} row(s) per rank per step "
        f"({bal['layout']}), "
        f"{bal['steps']} full steps, rows pooled over {bal['window']} steps; cost per row "
        f"{bal['cost']}.", "",
        "| rows | imbalance (max / mean rank cost, mean over steps) | simulated step time |",
        "|---|---|---|",
        f"| shuffled | {_fmt(imb['unbalanced'], '{:.4f}')} | {sec['unbalanced']:.1f} s |",
        f"| balanced (written) | {_fmt(imb['balanced'], '{:.4f}')} | {sec['balanced']:.1f} s |",
        "",
        f"Step time: each step lasts as long as its most loaded rank, for a {m['layers']}-layer "
        f"model of width {m['hidden']} at {m['mfu']:.0%} of {m['peak_flops'] / 1e12:.0f} "
        "TFLOP/s, forward and backward.",
    ]


GAIN_ROWS = (
    ("context_gain", "context_gain_se", "context gain (nats saved / window token)"),
    ("context_gain_no_near_dup", "context_gain_no_near_dup_se",
     "context gain, near-duplicates left out"),
    ("gain_per_scored_token", None, "nats saved / scored token"),
    ("near_dup_share", None, "near-duplicate share of scored pieces"),
    ("sequences", None, "judged sequences"),
    ("eligible_token_share", None, "share of tokens in sequences of >= 2 pieces"),
)


def _gain_cell(entry: dict[str, Any] | None, key: str, se_key: str | None) -> str:
    if not entry or entry.get(key) is None:
        return "n/a"
    value = entry[key]
    if isinstance(value, int):
        return str(value)
    if se_key and entry.get(se_key) is not None:
        return f"{value:.4f} ± {entry[se_key]:.4f}"
    return f"{value:.4f}"


def _gain_rows(gain: dict[str, Any], names: list[str], with_random: bool) -> list[str]:
    """Context-gain rows of the metrics table; the random grouping's in its column."""
    lines = []
    for key, se_key, label in GAIN_ROWS:
        cells = [_gain_cell(gain.get(n), key, se_key) for n in names]
        if with_random:
            cells.append(_gain_cell(gain.get("random"), key, se_key))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _gain_notes(gain: dict[str, Any], names: list[str]) -> list[str]:
    """How context gain was measured, and each method's gain over the random grouping."""
    judge = gain["judge"]
    lines = [f"Context gain: nats a causal LM ({judge['model']}, {judge['dtype']} on "
             f"{judge['device']}) saves on every piece after the first of a window by reading "
             "the pieces before it, against the piece alone (first token of each piece left "
             f"out of both), divided by all tokens of the window; {judge['sequences']} sampled "
             f"sequences of two or more pieces per packing, each cut at {judge['max_tokens']} "
             "tokens; ± one standard error. A near-duplicate is a piece more than "
             f"{judge['near_dup_threshold']:.0%} of whose word {judge['ngram']}-grams occur "
             "earlier in its window: copying, which teaches little, so it is also shown apart.",
             ""]
    base = (gain.get("random") or {}).get("context_gain_no_near_dup")
    for name in names:
        entry = gain.get(name) or {}
        got = entry.get("context_gain_no_near_dup")
        if got is not None and base is not None:
            lines.append(f"- **{name}**: {got:.4f} nats/token without near-duplicates, "
                         f"{got - base:+.4f} over the random grouping's {base:.4f}")
        if entry.get("capped_sequences"):
            lines.append(f"  ({entry['capped_sequences']} of its {entry['sequences']} judged "
                         f"windows were longer than {judge['max_tokens']} judge tokens: each "
                         "piece kept its beginning, up to a common length)")
    return lines


def _against_random(methods: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """What the semantics bought: each method's relevance and purity over a random grouping."""
    lines = ["Against a random grouping of the same units (relevance: the mean cosine of all "
             "document pairs; purity: units in a seeded random order, next fit):", ""]
    for name, m in methods.items():
        parts = []
        rel, ref = m.get("relevance"), reference.get("relevance")
        if rel is not None and ref is not None:
            parts.append(f"relevance {rel:.3f} vs {ref:.3f} ({rel - ref:+.3f})")
        for key, label in (("label_purity_multi", "label purity"),
                           ("cluster_purity_multi", "cluster purity")):
            got, base = m.get(key), reference.get(key)
            if got is not None and base is not None:
                parts.append(f"{label} (>= 2 docs) {got:.3f} vs {base:.3f} ({got - base:+.3f})")
                break
        if parts:
            lines.append(f"- **{name}**: " + "; ".join(parts))
    return lines


def plot(
    out_dir: Path,
    packings: dict[str, Packing],
    doc_len: np.ndarray,
    ctx_len: int,
    eos: int,
    embeddings: Any | None,
    relevance: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """Fill histogram, pieces per sequence and (with embeddings) relevance, one line per method.

    ``relevance`` holds each method's ``relevance_per_sequence`` when the caller has it (the
    report computes it for the metrics): it reads every embedding row, seconds at 10M."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    panels: list[tuple[str, str, dict[str, np.ndarray]]] = [
        ("fill.png", "sequence fill (n_tokens / ctx_len)",
         {m: p.seq_tokens(doc_len, eos) / ctx_len for m, p in packings.items()}),
        ("pieces.png", "pieces per sequence",
         {m: np.bincount(p.seq, minlength=p.n_sequences) for m, p in packings.items()}),
    ]
    if embeddings is not None:
        sims = {m: relevance_per_sequence(p, embeddings) if relevance is None else relevance[m]
                for m, p in packings.items()}
        panels.append(("similarity.png", "mean pairwise cosine within a sequence",
                       {m: s[np.isfinite(s)] for m, s in sims.items()}))
    for filename, title, series in panels:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        pooled = np.concatenate([v for v in series.values() if v.size] or [np.zeros(1)])
        edges = np.histogram_bin_edges(pooled, bins=40)  # one grid, so methods compare
        for method, values in series.items():
            if values.size:
                ax.hist(values, bins=edges, histtype="step", linewidth=1.5, label=method)
        ax.set_title(title)
        ax.set_ylabel("sequences")
        ax.legend()
        fig.tight_layout()
        with atomic_path(out_dir / filename) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(f"plots/{filename}")
    return written


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    write_json(out_dir / "report.json", report)
    with atomic_open(out_dir / "report.md") as fh:
        fh.write(render_markdown(report))
