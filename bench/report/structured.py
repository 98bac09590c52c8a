"""Report sections on structured pruning: removal against the FLOP limit, data-aware importance and recovery
side by side, and the iso-quality frontier (``prunebench frontier``). Pure functions of the records' DataFrame
(and the frontier's points, read by the caller)."""

from __future__ import annotations

import pandas as pd

from .cells import ci_cell, fmt, is_num
from .quality import table_figures

__all__ = ["frontier_section", "recovery_section", "structured_section"]


def structured_section(df: pd.DataFrame) -> list[str]:
    """Structured methods (heads/FFN removed) and peers side by side, against the FLOP limit."""
    if "pattern" not in df:
        return []
    g = df[df["pattern"].isin(["heads", "ffn", "heads+ffn"])]
    if not len(g):
        return []
    rows, lines = [], ["## Structured pruning against the FLOP limit", ""]
    for r in g.sort_values(["model", "sparsity_target", "recipe", "runtime"], kind="stable").to_dict("records"):
        rows.append({"model": r.get("model"), "variant": r.get("recipe"), "runtime": r.get("runtime"),
                     "status": r.get("status") if r.get("status") == "ok" else f"**{r.get('status')}**",
                     "params (M)": fmt((r.get("params") or float("nan")) / 1e6), "latency ratio [95% CI]": ci_cell(r),
                     "FLOP ratio": fmt(r.get("flops_ratio")), "efficiency": fmt(r.get("efficiency")),
                     "cosine to dense": fmt(r.get("quality_cosine"), ".3f"), "note": "" if r.get("status") == "ok" else str(r.get("reason") or r.get("error") or "")})
        if r.get("method") == "heads+ffn" and r.get("status") == "ok" and is_num(r.get("efficiency")) and r.get("runtime") != "torch-masked":
            eff = r["efficiency"]
            lines.append(f"- **{r['recipe']}** on {r['runtime']} ({r['model']}): latency {r['latency_ratio']:.2f}x dense at a FLOP ratio "
                         f"of {r['flops_ratio']:.2f}, so efficiency (FLOP ratio / latency ratio) is **{eff:.2f}**: "
                         + ("within 10% of the FLOP limit." if eff >= 0.9 else "further than 10% from the FLOP limit."))
    lines += ["", "The `torch-pruning` peer is given the per-layer head and neuron counts that `heads+ffn` (uniform) keeps at "
              "the same sparsity, so their shrunk parameter counts match and they differ only in which heads and neurons go. "
              "torch-masked rows keep the masked heads/neurons (full size) and show what masking alone buys.", "",
              pd.DataFrame(rows).to_markdown(index=False), ""]
    return lines


_SHORT = {"quality_r1": "recall@1"}  # the recovery table's names of the task figures (else TASK_FIGURES' label)
_ORDER = ("quality_probe_acc", "quality_r1", "quality_spearman")  # its column order (every table_figures field)


def frontier_section(df: pd.DataFrame, data: dict | None, plot: str | None = None) -> list[str]:
    """'What pruning buys at equal quality': per method (``data``: a run's frontier.json), the frontier sparsity
    and its speed per runtime; ``plot`` links the frontier figure (a path relative to the run directory)."""
    if not data:
        return []
    lines = ["## What pruning buys at equal quality", "",
             f"Floor: `{', '.join(data['floor'])}` (task metrics: change vs dense on the same held-out items; "
             "fidelity: absolute). Per method, the highest achieved sparsity among the levels it reaches that meets the "
             f"floor on quality alone (judged on: {data.get('judged_on') or 'the held-out split'}), then timed "
             "(latency ratio to dense in the same runtime, 95% CI; speedup = 1 / ratio).", "",
             "| method | frontier sparsity | quality at it | runtime | latency ratio [95% CI] | speedup |",
             "| --- | --- | --- | --- | --- | --- |"]
    ok = df[df["status"] == "ok"] if len(df) else df
    for p in data["points"]:
        if p["sparsity"] is None:
            tried = min((t["sparsity"] for t in p["trail"]), default=None)
            lines.append(f"| {p['method']} | none (fails at {fmt(tried)}) | – | – | – | – |")
            continue
        passing = [t for t in p["trail"] if t["passes"] and t["sparsity"] == p["sparsity"]]
        q = ", ".join(f"{k}: {fmt(v, '.3f')}" for k, v in (passing[0]["figures"] if passing else {}).items())
        rows = ok[ok["recipe"] == p["label"]] if len(ok) else ok
        if not len(rows):
            lines.append(f"| {p['method']} | {p['sparsity']:.2f} | {q} | – | not timed | – |")
        for r in rows.itertuples():
            ratio = getattr(r, "latency_ratio", None)
            ci = f"{fmt(ratio)} [{fmt(getattr(r, 'latency_ratio_lo', None))}, {fmt(getattr(r, 'latency_ratio_hi', None))}]"
            lines.append(f"| {p['method']} | {p['sparsity']:.2f} | {q} | {r.runtime} | {ci} | {fmt(1 / ratio if ratio else None)}x |")
    lines += ["", f"![speedup vs quality at the floor]({plot})", ""] if plot else [""]
    return lines


def recovery_section(df: pd.DataFrame, distill_plot: str | None = None) -> list[str]:
    """Before / after recovery side by side: per structured recipe, importance, recovery, latency ratio,
    held-out cosine, the run's task figures with their paired change (probe accuracy and title -> body recall@1 on
    BBC News; an --eval file's own: ``quality.table_figures``), recovery seconds."""
    if not len(df) or "recovery_method" not in df or "importance" not in df:
        return []
    g = df[(df["status"] == "ok") & df["pattern"].isin(["heads", "ffn", "heads+ffn", "layers"])]
    if not len(g) or g["importance"].nunique(dropna=True) + g["recovery_method"].nunique(dropna=True) <= 2:
        return []
    figures = sorted(table_figures(df.to_dict("records")), key=lambda f: _ORDER.index(f[0]))
    lines = ["## Data-aware importance and recovery, side by side", "",
             "Same structures removed, chosen by weight norm (magnitude) or on calibration text (activation, "
             "Fisher), then repaired (lstsq: each layer's output projections re-fitted so the pre-LayerNorm sums "
             "match dense; distill: a timed distillation to the dense embeddings) or not. Recovery changes no "
             "shape, so the latency ratio should not move.", "",
             "| recipe | runtime | latency ratio [95% CI] | cosine | "
             + "".join(f"{_SHORT.get(v, label)} (Δ) | " for v, _, label in figures) + "recovery s | calibration |",
             "| --- " * (6 + len(figures)) + "|"]
    for r in g.sort_values(["sparsity_target", "recipe", "runtime"], kind="stable").to_dict("records"):
        def delta(v, d):
            return f"{fmt(r.get(v), '.3f')} ({fmt(-r[d] if r.get(d) is not None else None, '+.3f')})"
        lines.append(f"| {r['recipe']} | {r['runtime']} | {fmt(r.get('latency_ratio'))} [{fmt(r.get('latency_ratio_lo'))}, "
                     f"{fmt(r.get('latency_ratio_hi'))}] | {fmt(r.get('quality_cosine'), '.3f')} | "
                     + "".join(f"{delta(v, d)} | " for v, d, _ in figures) +
                     f"{fmt(r.get('recovery_seconds'), '.0f')} | {fmt(r.get('calibration_size'), '.0f')} |")
    if distill_plot:
        lines += ["", f"![distillation loss]({distill_plot})"]
    return lines + [""]
