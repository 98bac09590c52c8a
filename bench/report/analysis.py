"""Break-even sparsity: where a runtime's latency ratio to its dense baseline crosses 1.0.

Pure functions of records: per sweep (``GROUP``: model, method and its importance and recovery,
runtime, device, dtype and batch x seq), the sparsity at which the median latency ratio falls below 1.0
(linear interpolation between the two bracketing sparsities), and the sparsity at which the upper bound
of its 95% CI does ("pays with confidence"). A crossing is reported only where it is measurable: some point's 95% CI lies
wholly above 1.0 and a point at a higher sparsity has its CI wholly below (or the curve is measurably
below 1.0 from its lowest sparsity on). Ratios of 1.00 and 0.98 with CIs around 1.0 are noise, and the
sweep says "no measurable crossing in [lo, hi]".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, NamedTuple

import pandas as pd

__all__ = ["BreakEven", "Crossing", "GROUP", "NOT_MEASURABLE", "break_even", "break_even_section", "crossing", "measurable",
           "size_table"]

# the record fields that make one sweep: sweeps that differ in any of them (say, only in importance or recovery)
# are separate curves; a field missing from older records groups as None (recovery_method as "none")
GROUP = ("model", "method", "scope", "norm", "allocation", "importance", "recovery_method", "recovery_fit", "runtime",
         "device", "dtype", "batch", "seq_len")


class Crossing(NamedTuple):
    """Where a curve first falls below the level: ``sparsity`` (None: never) and how it was found."""

    sparsity: float | None
    how: str  # interpolated | below at the lowest sparsity | never in range

    def describe(self, lo: float, hi: float) -> str:
        span = f"{lo:.2f}" if lo == hi else f"{lo:.2f}–{hi:.2f}"
        if self.how == NOT_MEASURABLE:
            return f"no measurable crossing {'at' if lo == hi else 'in'} {span}"
        if self.sparsity is None:
            return f"not reached {'at' if lo == hi else 'in'} {span}"
        if self.how.startswith("below at the lowest sparsity"):
            text = f"≤ {self.sparsity:.2f} (already below 1.0 at {lo:.2f})"
        else:
            text = f"{self.sparsity:.3f}"
        return text + ("; rises above 1.0 again" if "again" in self.how else "")


NOT_MEASURABLE = "no measurable crossing"


def measurable(lo: Iterable[float], hi: Iterable[float]) -> bool:
    """Whether the CIs, in order of sparsity, show the ratio on both sides of 1.0: a point wholly above
    before a point wholly below, or the lowest point already wholly below."""
    above_seen = False
    for i, (l, h) in enumerate(zip(lo, hi)):
        if _ok(h) and h < 1.0:
            return above_seen or i == 0
        if _ok(l) and l > 1.0:
            above_seen = True
    return False


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def crossing(xs: Iterable[float], ys: Iterable[float], level: float = 1.0) -> Crossing:
    """First x where the piecewise-linear curve through (xs, ys), sorted by x, drops from >= level to
    below it. Already below at the lowest x: that x. Never below: None. Points with a missing y are
    left out. If the curve rises back to >= level at a higher x, ``how`` says so."""
    pts = sorted((float(x), float(y)) for x, y in zip(xs, ys) if _ok(y))
    if not pts:
        return Crossing(None, "never in range")
    if pts[0][1] < level:
        found, at = Crossing(pts[0][0], "below at the lowest sparsity"), 0
    else:
        for i, ((x0, y0), (x1, y1)) in enumerate(zip(pts, pts[1:])):
            if y0 >= level > y1:
                found, at = Crossing(x0 + (y0 - level) * (x1 - x0) / (y0 - y1), "interpolated"), i + 1
                break
        else:
            return Crossing(None, "never in range")
    if any(y >= level for _, y in pts[at:]):
        return Crossing(found.sparsity, found.how + "; above 1.0 again at a higher sparsity")
    return found


@dataclass(frozen=True)
class BreakEven:
    """One sweep (a runtime's ratio-vs-sparsity curve) and where it crosses 1.0."""

    key: dict  # GROUP column -> value
    sparsities: tuple[float, ...]
    ratios: tuple[float, ...]
    ratios_lo: tuple[float, ...]
    ratios_hi: tuple[float, ...]
    median: Crossing  # where the median latency ratio crosses 1.0
    confident: Crossing  # where the CI's upper bound crosses 1.0

    @property
    def variant(self) -> str:
        """The method, tagged with its importance and recovery where it has them (what tells sibling sweeps apart)."""
        k = self.key
        tags = [k.get("importance"), None if k.get("recovery_method") == "none" else k.get("recovery_method"), k.get("recovery_fit")]
        tags = [str(t) for t in tags if t is not None]
        return f"{k.get('method')}[{','.join(tags)}]" if tags else str(k.get("method"))

    @property
    def label(self) -> str:
        return f"{self.key.get('runtime')} · {self.variant}"

    def row(self) -> dict:
        """A flat row for a report table."""
        k, lo, hi = self.key, min(self.sparsities), max(self.sparsities)
        return {
            "model": k.get("model"),
            "method": self.variant,
            "runtime": k.get("runtime"),
            "device": k.get("device") + ("" if k.get("dtype") in (None, "float32") else f" {k.get('dtype')}"),
            "batch x seq": f"{k.get('batch')} x {k.get('seq_len')}",
            "points": len(self.sparsities),
            "ratio at lowest / highest sparsity": f"{self.ratios[0]:.2f} / {self.ratios[-1]:.2f}",
            "break-even sparsity (median ratio = 1)": self.median.describe(lo, hi),
            "pays with confidence (CI upper bound < 1)": self.confident.describe(lo, hi),
        }


def break_even(records: pd.DataFrame | list[dict]) -> list[BreakEven]:
    """Every sweep in the records: successful pruned cases grouped by GROUP, with at least two
    sparsities, or one for a fixed-sparsity N:M method (its single point is its whole curve)."""
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    need = {"status", "method", "latency_ratio", "sparsity_target", "runtime"}
    if df.empty or not need <= set(df.columns):
        return []
    ok = df[(df["status"] == "ok") & (df["method"] != "dense") & df["latency_ratio"].notna()]
    if "recovery_method" in ok.columns:  # a record from before the field had no recovery
        ok = ok.assign(recovery_method=ok["recovery_method"].fillna("none"))
    keys = [c for c in GROUP if c in ok.columns]
    out = []
    for vals, g in ok.groupby(keys, sort=False, dropna=False):
        g = g.sort_values("sparsity_target")
        fixed = "pattern" in g.columns and (g["pattern"] == "n:m").all()
        if g["sparsity_target"].nunique() < 2 and not fixed:
            continue
        xs = tuple(float(x) for x in g["sparsity_target"])
        ys = tuple(float(y) for y in g["latency_ratio"])
        lo = tuple(float(y) for y in g.get("latency_ratio_lo", g["latency_ratio"]))
        hi = tuple(float(y) for y in g.get("latency_ratio_hi", g["latency_ratio"]))
        key = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in zip(keys, vals)}
        median = crossing(xs, ys) if measurable(lo, hi) else Crossing(None, NOT_MEASURABLE)
        out.append(BreakEven(key, xs, ys, lo, hi, median, crossing(xs, hi)))
    return out


def size_table(records: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Each runtime's own artifact (raw, and gzip) over the dense fp32 safetensors, per model and sparsity:
    rows model x method x sparsity, one column per runtime, cells "raw (gzip)". Empty without such records."""
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    need = {"status", "size_bytes", "size_compressed_bytes", "dense_safetensors_bytes", "runtime", "method", "sparsity_target", "model"}
    if df.empty or not need <= set(df.columns):
        return pd.DataFrame()
    ok = df[(df["status"] == "ok") & df["dense_safetensors_bytes"].notna() & df["size_bytes"].notna()]
    ok = ok.drop_duplicates(["model", "method", "sparsity_target", "runtime"])
    if ok.empty:
        return pd.DataFrame()
    def _cell(r) -> str:  # a smoke budget (compress_cases) leaves some cases without a gzip figure
        gz = r["size_compressed_bytes"]
        gz = f"{gz / r['dense_safetensors_bytes']:.2f}" if pd.notna(gz) else "–"
        return f"{r['size_bytes'] / r['dense_safetensors_bytes']:.2f} ({gz})"

    cell = ok.apply(_cell, axis=1)
    table = ok.assign(cell=cell).pivot_table(index=["model", "method", "sparsity_target"], columns="runtime", values="cell",
                                             aggfunc="first", sort=False)
    table = table[[rt for rt in dict.fromkeys(ok["runtime"]) if rt in table.columns]].fillna("–")
    return table.reset_index().rename(columns={"sparsity_target": "sparsity"})


def break_even_section(df: pd.DataFrame, plots: tuple[str, ...] = ()) -> list[str]:
    """Break-even sparsity per sweep as a table, the size table, and links to the ratio-vs-sparsity ``plots``
    (paths relative to the run directory, written by ``section_plots.plot_break_even``)."""
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
    if plots:
        lines += [f"![{PurePosixPath(p).stem}]({p})" for p in plots] + [""]
    return lines
