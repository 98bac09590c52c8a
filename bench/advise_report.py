"""``OUT/advice.md`` of ``prunebench advise``: the Pareto front of speed, size and memory against quality, the
recommendation with its figures and CIs, the peer's best row beside it, and the commands that reproduce it.

The peer is sentence-transformers' own backends, registered as runtimes named ``st-*``; where none is
registered the report says it was not measured."""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from pruning import PruneRecipe

from .advise import Candidate
from .frontier import Floor

__all__ = ["Advice", "closest", "pareto", "peer_runtimes", "reproduce", "where", "write_advice"]

PEER_PREFIX = "st-"
_FORMAT = {"onnxruntime": "onnx", "onnxruntime-int8": "onnx", "openvino": "openvino", "openvino-sparse-int8": "openvino"}


@dataclass(frozen=True)
class Advice:
    """The report's text, where it was written, and the recommended record (None: nothing to recommend)."""

    text: str
    path: Path
    recommendation: dict | None  # the first scenario's recommended record that has one
    dense: bool = False  # True: no scenario has a recommendation, and in one the answer is the dense model


def peer_runtimes() -> list[Candidate]:
    """The dense model on every registered ``st-*`` runtime (sentence-transformers' own backends), if any."""
    from .runtimes import runtime_names

    return [Candidate(PruneRecipe("dense"), rt) for rt in runtime_names() if rt.startswith(PEER_PREFIX)]


def _quality(r: dict) -> float:
    """The quality axis of the front: the first floor term's compared figure (higher is better)."""
    return next(iter(r["advise_figures"].values())) or float("-inf")


def where(task) -> str:
    """What stage 1 scored on, in words: the corpus's selection split or the user's eval file."""
    return "the selection split" if task.kind == "corpus" else "your eval file"


def pareto(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on every axis (latency ratio, size ratio, peak memory: lower; quality: higher)
    while being strictly better on one; a missing figure counts as the worst."""
    inf = float("inf")

    def axes(r: dict) -> tuple[float, ...]:
        return (r.get("latency_ratio") or inf, r.get("size_ratio") or inf, r.get("peak_mem_mb") or inf, -_quality(r))

    pts = [axes(r) for r in rows]
    return [r for r, p in zip(rows, pts)
            if not any(all(x <= y for x, y in zip(q, p)) and q != p for q in pts)]


def closest(selection: dict[str, dict], confirmed: list[dict], floors: tuple[Floor, ...]) -> str | None:
    """The candidate nearest the floor (the largest worst margin over its terms), with its figures."""
    def margin(got: dict) -> float:
        return min((v - f.value) if v is not None else float("-inf") for f, v in zip(floors, got.values()))

    seen = [(k, s["figures"]) for k, s in selection.items()] + [(r["advise_key"] + " (report split)", r["advise_figures"])
                                                                 for r in confirmed]
    if not seen:
        return None
    key, got = max(seen, key=lambda kv: margin(kv[1]))
    return f"{key} with " + ", ".join(f"{t.split('>=')[0]} {v:+.4f}" if v is not None else f"{t.split('>=')[0]} n/a"
                                      for t, v in got.items())


def reproduce(r: dict, a: argparse.Namespace, out: Path) -> list[str]:
    """The commands that reproduce the recommendation: export the variant, and time it as advise did."""
    recipe = r["recipe_config"]
    fmt = _FORMAT.get(r["runtime"], "hf")
    export = ["prunebench", "export", json.dumps(recipe, sort_keys=True), "--to", fmt, "--model", a.model,
              "--out", str(out / "ship")]
    if fmt == "hf" and r.get("dtype") not in (None, "float32"):
        export += ["--dtype", r["dtype"]]
    run = ["prunebench", "run", "--model", a.model, "--methods", recipe["method"], "--sparsity", str(recipe["sparsity"])]
    for key in ("importance", "recover", "fit", "calibration", "recover_seconds"):
        if recipe.get(key) is not None:
            run += [f"--{key.replace('_', '-')}", str(recipe[key])]
    run += ["--runtimes", r["runtime"], "--dtype", r.get("dtype") or "float32", "--baseline", "torch-dense:float32",
            "--batch", str(r.get("batch") or a.batch), "--seq-len", str(a.seq_len)]
    scenario = r.get("advise_scenario") or r.get("scenario") or "fixed"
    run += ["--scenario", scenario] if scenario != "fixed" else []
    run += ["--eval", a.eval] if a.eval else []
    return [" ".join(shlex.quote(x) for x in export), " ".join(shlex.quote(x) for x in run)]


def _ci(r: dict, field: str, fmt: str = "{:.3f}") -> str:
    v, lo, hi = r.get(field), r.get(f"{field}_lo"), r.get(f"{field}_hi")
    if v is None:
        return "n/a"
    return fmt.format(v) + (f" [{fmt.format(lo)}, {fmt.format(hi)}]" if lo is not None and hi is not None else "")


def _fmt(r: dict, field: str, fmt: str) -> str:
    return fmt.format(r[field]) if r.get(field) is not None else "n/a (not measured)"


def _row(r: dict, front: list[dict]) -> str:
    figs = ", ".join(f"{k}: {v:+.4f}" if v is not None else f"{k}: n/a" for k, v in r["advise_figures"].items())
    return (f"| {r['advise_key']} | {_ci(r, 'latency_ratio')} | {_figs(r)} | {_fmt(r, 'size_ratio', '{:.2f}')} | "
            f"{_fmt(r, 'peak_mem_mb', '{:.0f}')} | {figs} | "
            f"{'yes' if r['advise_passes'] else 'no'} | {'*' if r in front else ''} |")


def _figs(r: dict) -> str:
    """A timed record's scenario figures in words (query p50/p90/p99, offline texts/s), or "–" (the fixed batch)."""
    from .report.scenario import scenario_cells

    cells = scenario_cells({**r, "scenario": r.get("advise_scenario")})
    return "; ".join(f"{k.replace(' (variant / base)', '')} {v}" for k, v in cells.items()) or "–"


def _scenario_words(scenario: str, a: argparse.Namespace) -> str:
    from .report.scenario import shape_title

    words = shape_title(scenario, a.batch, a.seq_len)
    return f"fixed: {words.replace(', seq', ' x seq_len')}" if scenario == "fixed" else words


def _recommend(rows: list[dict], a: argparse.Namespace, out: Path, scenario: str) -> tuple[list[str], dict | None, bool]:
    """One scenario's recommendation section: its lines, the recommended record (None: none) and whether the
    answer is the dense model (candidates met the floor but none was faster than dense)."""
    passing = [r for r in rows if r["advise_passes"] and not r["runtime"].startswith(PEER_PREFIX)]
    best = passing[0] if passing else None
    lines = [f"## Recommendation ({_scenario_words(scenario, a)})", ""]
    if best is None:
        return lines + ["none: no timed candidate meets the floor on the report split in this scenario", ""], None, False
    if best["latency_ratio"] >= 1:
        return lines + [f"ship the dense model: the fastest confirmed candidate, {best['advise_key']}, has latency ratio "
                        f"{_ci(best, 'latency_ratio')} (not faster than dense torch fp32)", ""], None, True
    lines += [f"**{best['advise_key']}**: latency ratio {_ci(best, 'latency_ratio')} "
              f"(speed-up {1 / best['latency_ratio']:.2f}x)" + (f"; {_figs(best)}" if scenario != "fixed" else "")
              + f", size ratio {_fmt(best, 'size_ratio', '{:.2f}')}, peak memory "
              f"{_fmt(best, 'peak_mem_mb', '{:.0f} MB')}; floor figures on the report split: "
              + ", ".join(f"{k} {v:+.4f}" for k, v in best["advise_figures"].items() if v is not None), "",
              "Reproduce:", "", "```", *reproduce(best, a, out), "```", ""]
    if "int8" in best["runtime"]:
        lines += [f"The export is the float32 graph; {best['runtime']} quantizes it to int8 when it loads it, as in "
                  "the timed case (bench/runtimes/).", ""]
    return lines, best, False


def write_advice(out: Path, a: argparse.Namespace, floors: tuple[Floor, ...], selection: dict[str, dict],
                 confirmed: list[dict], skipped: dict[str, str], task) -> Advice:
    """Write ``OUT/advice.md`` and return it with the recommendation: per scenario asked (``a.scenario``), the
    fastest confirmed candidate (point latency ratio vs dense torch fp32 in that scenario) meeting the floor on
    the report split, unless none is faster than dense. ``Advice.recommendation`` is the first scenario's that
    has one; ``dense`` says a scenario's answer is the dense model."""
    scenarios = list(getattr(a, "scenario", None) or ["fixed"])
    scored, passed = len(selection), sum(1 for s in selection.values() if s["passes"])
    lines = [f"# Which model should I ship? {a.model} at {', '.join(map(str, floors))}", "",
             "- scenarios on this machine: " + "; ".join(_scenario_words(sc, a) for sc in scenarios)
             + "; latency ratio is vs dense torch-dense float32 in the same scenario (< 1: faster)",
             f"- stage 1: {scored} candidates scored on {where(task)} ({task.split}); {passed} met the floor; "
             "int8/bf16 candidates were scored on what their runtime serves",
             f"- stage 2: {len({r['advise_key'] for r in confirmed})} timed in {out / 'timed'} (standard records, "
             "report.md, benchmark.json)",
             "- stage 3: each timed candidate's quality on the report split (recorded by the timed run) checked "
             "against the floor again" + ("" if task.kind == "corpus" else
                                         "; your eval file has no separate splits: chosen and confirmed on the same items"),
             f"- not run here: {len(skipped)} candidates" + (f" (e.g. {next(iter(skipped))}: {next(iter(skipped.values()))})"
                                                             if skipped else ""), ""]
    first, dense = None, False
    tables: list[str] = []
    for sc in scenarios:
        rows = [r for r in confirmed if r.get("advise_scenario", "fixed") == sc]
        section, best, is_dense = _recommend(rows, a, out, sc)
        first, dense = first or best, dense or is_dense
        peers = [r for r in rows if r["runtime"].startswith(PEER_PREFIX)]
        front = pareto(rows)
        lines += section + ["### Peer", "", (_row(peers[0], front) if peers else
                                             "peer: not measured (no sentence-transformers backend runtime `st-*` is "
                                             "registered in this build, or it cannot serve this scenario)"), ""]
        tables += [f"## Timed candidates, {_scenario_words(sc, a)} (* = Pareto front of speed, size, memory vs quality)", "",
                   "| candidate | latency ratio [95% CI] | scenario figures (variant / base) | size ratio | peak MB | "
                   "floor figures (report split) | meets | front |",
                   "|---|---|---|---|---|---|---|---|", *(_row(r, front) for r in rows), ""]
    text = "\n".join(lines + tables)
    path = out / "advice.md"
    path.write_text(text)
    return Advice(text, path, first, dense and first is None)
