"""The verdict on the tutorial's claim ("inference speed and size barely decreased"), from a run's records.

Answered per group of what a variant does to the weights (zeros in them, weights removed, or another
compression of the dense model) and, within a group, per runtime: a 0.5x structured variant says nothing
about what zeroing weights did. Pure functions of the records' DataFrame.
"""

from __future__ import annotations

import pandas as pd

from .cells import latency_verdict

__all__ = ["BARELY", "CLAIM", "GROUPS", "claim_lines", "weight_group"]

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


# What a variant does to the weights decides what the tutorial's claim is about (weight_group).
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


def claim_lines(df: pd.DataFrame) -> list[str]:
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
