"""RunDir owns the run directory's layout: its helpers keep the files users see, and no other bench/ module
spells a run directory's file names (read with ``ast``: string literals, f-string parts included, docstrings
and comments not, since prose may name a file)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bench.rundir import RunDir, update_json

ROOT = Path(__file__).resolve().parents[1]
# the names as users see them on disk (tests keep literals on purpose: they pin the layout)
LAYOUT = {"records": "records.jsonl", "env": "env.json", "plan": "plan.json", "command": "command.txt",
          "run_info": "run.json", "benchmark": "benchmark.json", "report": "report.md", "plots": "plots",
          "partial": "records.jsonl.partial", "benchmark_prev": "benchmark.json.prev"}


def test_each_file_has_its_path_and_the_layout_is_unchanged(tmp_path):
    run = RunDir(tmp_path)
    assert {attr: getattr(run, attr) for attr in LAYOUT} == {attr: tmp_path / name for attr, name in LAYOUT.items()}
    assert set(RunDir.FINISHED) == {"plan.json", "records.jsonl", "env.json"}
    assert not (tmp_path / "plots").exists()  # constructing it creates nothing


def test_read_env_is_a_dict_or_empty(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_env() == {} and run.load_env() is None
    run.env.write_text("{not json")
    assert run.read_env() == {}
    with pytest.raises(ValueError):
        run.load_env()
    run.env.write_text("[1, 2]")
    assert run.read_env() == {} and run.load_env() == [1, 2]
    run.write_env({"cpu_count": 2})
    assert run.read_env() == {"cpu_count": 2} and json.loads((tmp_path / "env.json").read_text()) == {"cpu_count": 2}


@pytest.mark.parametrize("before", [None, "{truncated", "[]"])
def test_update_env_starts_fresh_where_there_is_no_usable_one(tmp_path, before):
    run = RunDir(tmp_path)
    if before is not None:
        run.env.write_text(before)
    assert run.update_env({"load_avg_end": [1.0]}, lambda: {"cpu_count": 4}) == {"cpu_count": 4, "load_avg_end": [1.0]}
    assert json.loads(run.env.read_text()) == {"cpu_count": 4, "load_avg_end": [1.0]}


def test_update_env_keeps_the_other_keys_and_leaves_no_temporary_file(tmp_path):
    run = RunDir(tmp_path)
    run.write_env({"cpu_count": 2, "git_sha": "abc"})
    run.update_env({"git_sha": "def", "foreign_cpu_share": 0.1}, lambda: pytest.fail("a usable env.json is kept"))
    assert run.read_env() == {"cpu_count": 2, "git_sha": "def", "foreign_cpu_share": 0.1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.json"]
    assert update_json(tmp_path / "x.json", {"a": 1}, dict) == {"a": 1}


def test_command_run_info_and_start(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_command() is None and run.load_run_info() is None
    assert run.missing() == ["plan.json", "records.jsonl", "env.json"]

    class Plan:  # the one method RunDir.start uses
        def save(self, path: Path) -> None:
            path.write_text('{"cases": []}')

    run.start(Plan(), "prunebench run --quick", {"run_id": "r1", "shard": None})
    assert (tmp_path / "command.txt").read_text() == "prunebench run --quick\n"
    assert run.read_command() == "prunebench run --quick"
    assert json.loads((tmp_path / "run.json").read_text()) == {"run_id": "r1", "shard": None}
    assert json.loads((tmp_path / "plan.json").read_text()) == {"cases": []}
    assert run.missing() == ["records.jsonl", "env.json"]


def _is_layout_path(text: str, names: set[str]) -> bool:
    """A literal that names a run directory file as a path: the name itself, ``x/name``, ``plots/...`` or a
    markdown link ``(plots/...``; prose such as "holds no records.jsonl" is not a path."""
    text = text.strip()
    return any(text == n or text.endswith("/" + n) or text.startswith(n + "/") or f"({n}/" in text for n in names)


def layout_literals(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, literal) of each string literal in ``source`` that spells a layout path, docstrings left out."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and _is_layout_path(node.value, names)]


def test_the_scan_finds_planted_literals():
    names = set(LAYOUT.values())
    planted = ('"""Writes report.md."""\nx = out / "records.jsonl"\ny = f"--p={out / \'plan.json\'}"\n'
               'z = f"![a](plots/{p})"\nmsg = "holds no env.json; pass a run"\nw = "a/run.json"\n')
    assert sorted(line for line, _ in layout_literals(planted, names)) == [2, 3, 4, 6]


def test_only_rundir_spells_the_layout():
    names = set(LAYOUT.values())
    found = {}
    for f in sorted((ROOT / "bench").rglob("*.py")):
        if f.name == "rundir.py" and f.parent.name == "bench":
            continue
        hits = layout_literals(f.read_text(encoding="utf-8"), names)
        if hits:
            found[str(f.relative_to(ROOT))] = hits
    assert found == {}, f"use bench.rundir.RunDir instead of these file-name literals: {found}"
