"""Records -> pandas -> markdown report: the verdict on the tutorial's claim, plots, a table per
model and a verdict per variant.

A pure function of the records: ``prunebench report RUN_DIR`` regenerates it at any time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .plots import write_plots
from .quality_report import quality_columns, quality_verdict
from .records import read_records

__all__ = ["frame", "latency_verdict", "mem_band", "render", "summary_table", "time_spent", "weight_group", "write_report"]

# A memory ratio within the run's own A/A noise counts as unchanged: each dense baseline is measured twice in
# fresh processes (``mem_aa_ratio``), and the band is twice the largest A/A deviation, at least MEM_FLOOR.
# Sizes are exact.
MEM_FLOOR = 0.01


def mem_band(df: pd.DataFrame) -> float:
    """The +- band within which a memory ratio is 'unchanged': 2 x the run's largest A/A deviation, >= 1%."""
    aa = df["mem_aa_ratio"].dropna() if "mem_aa_ratio" in df else []
    return max(MEM_FLOOR, 2 * float((aa - 1).abs().max())) if len(aa) else MEM_FLOOR


def frame(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(records)
    if "env" in df:
        df = df.drop(columns=["env"])
    return df


def _num(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def latency_verdict(ratio, lo, hi) -> str:
    """Say what the latency ratio's 95% CI shows: faster, slower, or no measurable change."""
    if not all(_num(v) for v in (ratio, lo, hi)):
        return "not measured"
    ci = f"{ratio:.2f}x [{lo:.2f}, {hi:.2f}]"
    if hi < 1.0:
        return f"faster: {ci}"
    if lo > 1.0:
        return f"slower: {ci}"
    return f"no measurable change: {ci}"


def _ratio_word(r, noise: float = 0.0) -> str:
    if not _num(r):
        return "n/a"
    if abs(r - 1) <= noise:
        return f"unchanged ({r:.2f}x)"
    return f"{'smaller' if r < 1 else 'larger'} ({r:.2f}x)"


def _fmt(x, spec: str = ".2f", suffix: str = "") -> str:
    return f"{x:{spec}}{suffix}" if _num(x) else "–"


def _ci(row) -> str:
    if not _num(row.get("latency_ratio")):
        return "–"
    flag = " ⚠" if row.get("unstable") else ""
    return f"{row['latency_ratio']:.2f} [{row['latency_ratio_lo']:.2f}, {row['latency_ratio_hi']:.2f}]{flag}"


def _table(df: pd.DataFrame, band: float = MEM_FLOOR) -> str:
    rows = []
    for _, r in df.iterrows():
        r = r.to_dict()
        rows.append({
            "variant": r.get("recipe"),
            "runtime": r.get("runtime"),
            "status": r.get("status") if r.get("status") == "ok" else f"**{r.get('status')}**",
            "sparsity": _fmt(r.get("sparsity_actual"), ".3f"),
            "latency ratio [95% CI]": _ci(r),
            "ms (variant / base)": f"{_fmt(r.get('latency_ms'), '.1f')} / {_fmt(r.get('baseline_latency_ms'), '.1f')}",
            "FLOP ratio": _fmt(r.get("flops_ratio")),
            "efficiency": _fmt(r.get("efficiency")),
            "peak MB (model)": f"{_fmt(r.get('peak_mem_mb'), '.0f')} ({_fmt(r.get('peak_mem_model_mb'), '.0f')})",
            "mem ratio": _fmt(r.get("mem_ratio")),
            "size MB": _fmt((r.get("size_bytes") or float("nan")) / 1e6, ".1f"),
            "size ratio": _fmt(r.get("size_ratio")),
            "gzip ratio": _fmt(r.get("size_compressed_ratio")),
            **quality_columns(r),
            "verdict": _verdict(r, band),
        })
    return pd.DataFrame(rows).to_markdown(index=False)


def _masked_vs_baked(df: pd.DataFrame) -> list[str]:
    """One row per variant: as `prune` leaves it (masks on) beside after `prune.remove` (baked)."""
    if not {"model", "device", "batch", "seq_len", "recipe", "runtime", "method", "status"} <= set(df.columns):
        return []
    ok = df[(df["status"] == "ok") & (df["method"] != "dense")]
    m = ok[ok["runtime"] == "torch-masked"].set_index(["model", "device", "batch", "seq_len", "recipe"])
    b = ok[ok["runtime"] == "torch-dense"].set_index(["model", "device", "batch", "seq_len", "recipe"])
    both = m.index.intersection(b.index)
    if not len(both):
        return []
    rows = []
    for key in both:
        x, y = m.loc[key].to_dict(), b.loc[key].to_dict()
        rows.append({"model": key[0], "shape": f"{key[1]} b{key[2]} s{key[3]}", "variant": key[4],
                     "latency masked": _ci(x), "latency baked": _ci(y),
                     "size masked / baked": f"{_fmt(x.get('size_ratio'))} / {_fmt(y.get('size_ratio'))}",
                     "gzip masked / baked": f"{_fmt(x.get('size_compressed_ratio'))} / {_fmt(y.get('size_compressed_ratio'))}",
                     "mem masked / baked": f"{_fmt(x.get('mem_ratio'))} / {_fmt(y.get('mem_ratio'))}",
                     "params masked / baked (M)": f"{_fmt((x.get('params') or float('nan')) / 1e6)} / {_fmt((y.get('params') or float('nan')) / 1e6)}"})
    return ["## Masked (as `prune` leaves it) vs baked (after `prune.remove`)", "",
            "Ratios to the dense model in the same runtime; latency with its 95% CI.", "",
            pd.DataFrame(rows).to_markdown(index=False), ""]


def time_spent(records: list[dict]) -> str:
    """One line: where a run's time went, summed over its cases' phases (``phase_s``)."""
    total: dict[str, float] = {}
    for r in records:
        for k, v in (r.get("phase_s") or {}).items():
            total[k] = total.get(k, 0.0) + v
    wall = sum(r.get("duration_s") or 0.0 for r in records)
    if not total:
        return ""
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))
    return (f"Time: {wall:.0f} s in {len(records)} cases; by phase {parts} (size, memory and quality run side by "
            "side after the timing, so phases can add up to more than the wall time).")


def _verdict(r: dict, band: float = MEM_FLOOR) -> str:
    if r.get("status") != "ok":
        return str(r.get("error") or r.get("reason") or r.get("status"))
    parts = [f"speed {latency_verdict(r.get('latency_ratio'), r.get('latency_ratio_lo'), r.get('latency_ratio_hi'))}",
             f"size {_ratio_word(r.get('size_ratio'))}",
             f"memory {_ratio_word(r.get('mem_ratio'), band)}"]
    quality = quality_verdict(r)
    return "; ".join(parts + ([quality] if quality else []))


# "Barely decreased": a variant counts as faster (or smaller) only when it is at least 10% below dense.
BARELY = 0.10
CLAIM = ("A widely read tutorial pruned DistilBERT with `torch.nn.utils.prune` and found that "
         "\"inference speed and size barely decreased\".")


def _speed_answer(g: pd.DataFrame) -> str:
    g = g[g["latency_ratio"].notna()] if "latency_ratio" in g else g.iloc[0:0]
    if g.empty:
        return "speed not measured"
    n = len(g)
    faster = g[g["latency_ratio_hi"] < 1.0]
    slower = g[g["latency_ratio_lo"] > 1.0]
    much = faster[faster["latency_ratio"] <= 1 - BARELY]
    best = g.loc[g["latency_ratio"].idxmin()]
    best_txt = f"{best['recipe']} at {latency_verdict(best['latency_ratio'], best['latency_ratio_lo'], best['latency_ratio_hi']).split(': ', 1)[-1]}"
    if len(much):
        return (f"speed: **the claim fails** — {len(much)} of {n} variants are at least {BARELY:.0%} faster; "
                f"best {best_txt}")
    if len(faster):
        return (f"speed: **the claim holds** — at most {1 - best['latency_ratio']:.0%} faster ({best_txt}); "
                f"{len(faster)} of {n} measurably faster, {len(slower)} slower")
    slow = f"{len(slower)} of {n} measurably slower" if len(slower) else "none measurably slower either"
    return (f"speed: **the claim holds** — no variant is measurably faster (no 95% CI below 1.0), {slow} "
            f"(latency {_span(g['latency_ratio'])} dense)")


def _span(values: pd.Series) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.2f}x" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}x"


def _size_answer(g: pd.DataFrame) -> str:
    size = g[g["size_ratio"].notna()] if "size_ratio" in g else g.iloc[0:0]
    if size.empty:
        return "size not measured"
    lo, hi = size["size_ratio"].min(), size["size_ratio"].max()
    small = size.loc[size["size_ratio"].idxmin()]
    if lo <= 1 - BARELY:
        out = (f"size: **the claim fails** — {small['recipe']} is {lo:.2f}x dense on disk "
               f"(range {lo:.2f}–{hi:.2f}x)")
    else:
        out = f"size: **the claim holds** — {_span(size['size_ratio'])} dense on disk" + (" (larger than dense)" if lo > 1 + 1e-9 else "")
    gz = size[size["size_compressed_ratio"].notna()] if "size_compressed_ratio" in size else size.iloc[0:0]
    if len(gz):
        z = gz.loc[gz["size_compressed_ratio"].idxmin()]
        out += f"; gzip-compressed down to {z['size_compressed_ratio']:.2f}x ({z['recipe']})"
    return out


# What a variant does to the weights decides what the tutorial's claim is about (bench.report.weight_group).
GROUPS = {
    "zeros": "(a) zeros in the weights: the tutorial's recipe and the other zero-only methods (unstructured, N:M, "
             "rows), masked and after `prune.remove`",
    "removed": "(b) weights removed: heads, FFN neurons or layers cut out, so the shapes shrink",
    "compressed": "(c) other compressions: the dense model in another runtime or dtype (int8, bf16, a compiler, ...)",
}
_REMOVING = {"heads", "ffn", "heads+ffn", "layers"}


def weight_group(r: dict) -> str:
    """``zeros`` (a method that only zeroes weights), ``removed`` (one that removes them) or ``compressed``
    (the dense model measured against a baseline in another runtime or dtype)."""
    if r.get("method") == "dense":
        return "compressed"
    pattern = r.get("pattern")
    if not isinstance(pattern, str):
        try:
            from pruning import method_spec

            pattern = method_spec(str(r.get("method"))).pattern
        except Exception:  # an unknown method in old records: judge it by its zeros
            pattern = "unstructured"
    return "removed" if pattern in _REMOVING or "+" in pattern and set(pattern.split("+")) <= _REMOVING else "zeros"


def _own_baseline(r: dict) -> bool:
    """A dense case measured against itself (its ratio is 1 by construction): no verdict to give."""
    base = r.get("baseline")
    return r.get("method") == "dense" and (not isinstance(base, str) or base == r.get("case_id"))


def _claim_lines(g: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Per-runtime verdict lines of one group, and the runtimes where the claim holds / fails."""
    out, holds, fails = [], [], []
    for runtime, gr in g.groupby("runtime", sort=False):
        parts = [_speed_answer(gr), _size_answer(gr)]
        mem = gr["mem_ratio"].dropna() if "mem_ratio" in gr else []
        if len(mem):
            parts.append(f"peak memory (model part) {_span(mem)} dense")
        out.append(f"- **{runtime}** ({len(gr)} variants): " + "; ".join(parts) + ".")
        (fails if any("claim fails" in p for p in parts) else holds).append(runtime)
    return out, holds, fails


def _claim(df: pd.DataFrame) -> list[str]:
    """The tutorial's claim ('speed and size barely decreased'), answered per group of what a variant does to
    the weights, and within a group per runtime, from the records: a 0.5x structured variant says nothing
    about what zeroing weights did."""
    recs = [r for r in df.to_dict("records") if r.get("status") == "ok" and not _own_baseline(r)]
    if not recs:
        return []
    ok = pd.DataFrame(recs)
    groups = pd.Series([weight_group(r) for r in recs], index=ok.index)
    out, answers = [], []
    for key, title in GROUPS.items():
        g = ok[groups == key]
        if g.empty:
            continue
        lines, holds, fails = _claim_lines(g)
        out += [f"**{title}**", "", *lines, ""]
        summary = ([f"the claim holds on {', '.join(holds)}"] if holds else []) + \
                  ([f"it does not hold on {', '.join(fails)}"] if fails else [])
        answers.append(f"- {title.split(':')[0]}: " + "; ".join(summary) + ".")
    out += ["**Answer**, per group (\"barely\" = less than " f"{BARELY:.0%} below dense, speed judged on the 95% CI "
            "of the paired latency ratio):", "", *answers]
    return out


def _structured_section(df: pd.DataFrame) -> list[str]:
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
                     "params (M)": _fmt((r.get("params") or float("nan")) / 1e6), "latency ratio [95% CI]": _ci(r),
                     "FLOP ratio": _fmt(r.get("flops_ratio")), "efficiency": _fmt(r.get("efficiency")),
                     "cosine to dense": _fmt(r.get("quality_cosine"), ".3f"), "note": "" if r.get("status") == "ok" else str(r.get("reason") or r.get("error") or "")})
        if r.get("method") == "heads+ffn" and r.get("status") == "ok" and _num(r.get("efficiency")) and r.get("runtime") != "torch-masked":
            eff = r["efficiency"]
            lines.append(f"- **{r['recipe']}** on {r['runtime']} ({r['model']}): latency {r['latency_ratio']:.2f}x dense at a FLOP ratio "
                         f"of {r['flops_ratio']:.2f}, so efficiency (FLOP ratio / latency ratio) is **{eff:.2f}**: "
                         + ("within 10% of the FLOP limit." if eff >= 0.9 else "further than 10% from the FLOP limit."))
    lines += ["", "The `torch-pruning` peer is given the per-layer head and neuron counts that `heads+ffn` (uniform) keeps at "
              "the same sparsity, so their shrunk parameter counts match and they differ only in which heads and neurons go. "
              "torch-masked rows keep the masked heads/neurons (full size) and show what masking alone buys.", "",
              pd.DataFrame(rows).to_markdown(index=False), ""]
    return lines


def render(records: list[dict], run_dir: Path | None = None, command: str | None = None,
           plots: list[tuple[str, str]] | None = None) -> str:
    """The markdown report: the verdict first, then plots (``(title, relative path)`` pairs), then tables."""
    df = frame(records)
    env = records[0].get("env", {}) if records else {}
    lines = ["# prunebench report", ""]
    if run_dir is not None:
        lines += [f"Run `{Path(run_dir).name}`.", ""]
    lines += ["## Verdict: the tutorial's claim", "", CLAIM + " Answered per group of what a variant does to the weights, and per runtime, from this run's own numbers"
              + (f", produced by `{command}`:" if command else " (the command that produced them was not recorded):"), ""]
    lines += (_claim(df) if len(df) else []) or ["- no successful pruned cases in this run."]
    lines += ["", f"Machine: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores), torch {env.get('torch', '?')}, "
              f"transformers {env.get('transformers', '?')}" + (f", GPU {env['gpu']}" if env.get("gpu") else "") + ".", ""]
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    unstable = int(df["unstable"].fillna(False).astype(bool).sum()) if "unstable" in df else 0
    lines += ["Cases: " + (", ".join(f"{v} {k}" for k, v in counts.items()) or "none recorded")
              + (f"; {unstable} with an unstable latency figure (⚠)" if unstable else "") + ".", ""]
    spent = time_spent(records)
    lines += [spent, ""] if spent else []
    if not len(df):
        return "\n".join(lines)
    lines += [
              "Latency ratio = variant / dense baseline in the same runtime and device, median of per-round pairs "
              "timed interleaved in one process, with a 95% bootstrap CI (⚠ = CI wider than the target or CV ≥ 10%). "
              "Size ratio = bytes of what the runtime keeps on disk / dense safetensors. "
              "Memory: peak RSS while serving, in a fresh process that loads the runtime's artifact; the ratio compares "
              "the part above the process's floor (libraries and the model's code imported, no weights held); within "
              f"±{mem_band(df):.0%} counts as unchanged (twice the largest A/A deviation of this run's dense baselines, "
              "each measured twice, and at least 1%). Quality (held-out text, 95% bootstrap CIs over its items; Δ = "
              "variant − dense on the same items, measurable when its CI excludes 0): title → body recall@1 and "
              "linear-probe accuracy on BBC News (or the run's --eval file), and the mean cosine of each text's "
              "embedding to dense; efficiency = FLOP ratio / latency ratio.", ""]
    if plots:
        lines += ["## Plots", ""]
        for title, path in plots:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    lines += _masked_vs_baked(df)
    lines += _structured_section(df)
    from .frontier import frontier_section, recovery_section

    lines += recovery_section(df, run_dir)
    lines += frontier_section(df, run_dir)
    for model, g in df.groupby("model", sort=False):
        w = g["weights"].dropna().unique() if "weights" in g else []
        note = " (random-init weights: quality figures are not meaningful)" if "random-init" in list(w) else ""
        for (dev, b, s), gg in g.groupby(["device", "batch", "seq_len"], sort=False, dropna=False):
            lines += [f"## {model} — {dev}, batch {b}, seq {s}{note}", "", _table(gg.sort_values(["recipe", "runtime"], kind="stable"), mem_band(df)), ""]
    lines += _breakeven_section(df, run_dir)
    lines += _alternatives_section(df, run_dir)
    bad = df[df["status"].isin(["failed", "oom", "crashed", "timeout"])] if len(df) else df
    if len(bad):
        lines += ["## Cases that did not succeed", ""]
        lines += [f"- `{r.case_id}`: {r.status}: {r.error}" for r in bad.itertuples()]
        lines.append("")
    return "\n".join(lines)


def write_report(run_dir: Path, command: str | None = None) -> Path:
    """Regenerate RUN_DIR/report.md and RUN_DIR/plots/*.png from the run's records (and command.txt)."""
    run_dir = Path(run_dir)
    records = read_records(run_dir / "records.jsonl")
    if command is None and (run_dir / "command.txt").is_file():
        command = (run_dir / "command.txt").read_text().strip()
    written = write_plots(frame(records), run_dir / "plots")
    from .frontier import write_distill_plot, write_frontier_plot

    write_frontier_plot(frame(records), run_dir)  # linked from the frontier section, when the run is a frontier
    write_distill_plot(frame(records), run_dir)  # linked from the recovery section, when a variant was distilled
    plots = [(title, path.relative_to(run_dir).as_posix()) for title, path in written]
    out = run_dir / "report.md"
    out.write_text(render(records, run_dir, command, plots), encoding="utf-8")
    return out


def summary_table(records: list[dict]) -> str:
    """A compact table for the terminal."""
    rows = [{
        "case": r.get("case_id"),
        "status": r.get("status"),
        "latency ratio [95% CI]": _ci(r),
        "size": _fmt(r.get("size_ratio")),
        "gzip": _fmt(r.get("size_compressed_ratio")),
        "mem": _fmt(r.get("mem_ratio")),
        "cosine": _fmt(r.get("quality_cosine"), ".3f"),
    } for r in records]
    return pd.DataFrame(rows).to_markdown(index=False, tablefmt="simple") if rows else "(no records)"


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _breakeven_section(df: pd.DataFrame, run_dir: Path | None) -> list[str]:
    """Break-even sparsity per sweep (bench.analysis) as a table, and ratio-vs-sparsity plots in run_dir/plots."""
    from .analysis import break_even, plot_break_even, size_table

    sweeps = break_even(df)
    if not sweeps:
        return []
    sizes = size_table(df)
    if len(sizes):
        sizes = ["On-disk size of each runtime's own artifact (CSR/BSR tensors as torch.save writes them, the ONNX file, "
                 "...) over the dense fp32 safetensors of the model, raw (gzip):", "", sizes.to_markdown(index=False), ""]
    else:
        sizes = []
    lines = ["## Break-even sparsity", "",
             "Where each runtime's latency ratio to its dense baseline crosses 1.0, linearly interpolated between "
             "the two bracketing sparsities of the sweep; \"pays with confidence\" uses the upper bound of the 95% CI "
             "instead of the median. A crossing is reported only where the 95% CIs show the ratio on both sides of "
             "1.0 (a point wholly above, a later one wholly below); otherwise \"no measurable crossing\".", "",
             pd.DataFrame([s.row() for s in sweeps]).to_markdown(index=False), "", *sizes]
    if run_dir is not None:
        plots = plot_break_even(sweeps, Path(run_dir) / "plots")
        lines += [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    return lines


def _alternatives_section(df: pd.DataFrame, run_dir: Path | None) -> list[str]:
    """"Pruning and its alternatives on this machine" (bench.alternatives): rows timed against dense fp32 torch."""
    from .alternatives import section

    return section(df, run_dir)
