"""RunDir: the one owner of a run directory's file layout (architecture v3, DESIGN.md).

A run directory holds ``records.jsonl`` (one Record per line), ``env.json`` (the machine and libraries),
``plan.json`` (the cases), ``command.txt`` (the command as typed), ``run.json`` (run id, shard, selection,
wall time), ``benchmark.json`` (pytest-benchmark's rounds), ``report.md`` and ``plots/``. Only this module
spells those names, so the layout users see cannot drift between the commands that write it (run, merge,
resume, advise, frontier, study) and those that read it (report, compare, gate). Light at import: pathlib
and json only, so every module may use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

__all__ = ["RunDir", "update_json"]


def update_json(path: Path, fields: dict, fresh: Callable[[], dict]) -> dict:
    """Add ``fields`` to the JSON object in ``path``, starting from ``fresh()`` where the file is missing,
    not valid JSON or not an object; written to a temporary file and renamed over ``path`` (atomic, so a
    killed run never leaves a half-written file). Returns what was written."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        doc = None
    doc = {**(doc if isinstance(doc, dict) else dict(fresh())), **fields}
    write_json(path, doc)
    return doc


def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented JSON atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


class RunDir:
    """The files of the run directory ``path``: one property per file, and the read/write helpers several
    commands share. It creates nothing on construction (readers use it on directories that may not exist)."""

    RECORDS = "records.jsonl"
    ENV = "env.json"
    PLAN = "plan.json"
    COMMAND = "command.txt"
    RUN_INFO = "run.json"
    BENCHMARK = "benchmark.json"
    REPORT = "report.md"
    PLOTS = "plots"
    PARTIAL = RECORDS + ".partial"  # a truncated last line of records.jsonl, moved aside (records.RecordWriter)
    BENCHMARK_PREV = BENCHMARK + ".prev"  # benchmark.json kept aside before a resume truncates it
    # the files a finished run (or shard) consists of, in the order a shard's files are shipped back (Ray)
    FILES = (RECORDS, PARTIAL, PLAN, ENV, RUN_INFO, BENCHMARK, REPORT, COMMAND)
    # the files without which a directory is not a finished prunebench run (merge, Ray)
    FINISHED = (PLAN, RECORDS, ENV)

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of the file ``name`` (one of ``FILES``) in this run directory."""
        return self.path / name

    @property
    def records(self) -> Path:
        return self.path / self.RECORDS

    @property
    def partial(self) -> Path:
        return self.path / self.PARTIAL

    @property
    def env(self) -> Path:
        return self.path / self.ENV

    @property
    def plan(self) -> Path:
        return self.path / self.PLAN

    @property
    def command(self) -> Path:
        return self.path / self.COMMAND

    @property
    def run_info(self) -> Path:
        return self.path / self.RUN_INFO

    @property
    def benchmark(self) -> Path:
        return self.path / self.BENCHMARK

    @property
    def benchmark_prev(self) -> Path:
        return self.path / self.BENCHMARK_PREV

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def plots(self) -> Path:
        """The directory of the report's figures (created by whoever writes one)."""
        return self.path / self.PLOTS

    def missing(self, names: tuple[str, ...] = FINISHED) -> list[str]:
        """The names among ``names`` that are not files here (empty: a finished run)."""
        return [n for n in names if not (self.path / n).is_file()]

    # env.json
    def load_env(self) -> Any:
        """env.json as written (None where there is none); invalid JSON raises ValueError, for the readers
        that refuse it or say so."""
        return json.loads(self.env.read_text()) if self.env.is_file() else None

    def read_env(self) -> dict:
        """env.json as a dict; ``{}`` where it is missing, not valid JSON or not an object."""
        try:
            env = self.load_env()
        except ValueError:
            return {}
        return env if isinstance(env, dict) else {}

    def write_env(self, env: dict) -> None:
        write_json(self.env, env)

    def update_env(self, fields: dict, fresh: Callable[[], dict]) -> dict:
        """Add ``fields`` to env.json atomically, starting from ``fresh()`` (e.g. ``bench.env.environment``)
        where there is no usable one."""
        return update_json(self.env, fields, fresh)

    # command.txt
    def read_command(self) -> str | None:
        """The command the run was made with (stripped), or None where command.txt is missing."""
        return self.command.read_text().strip() if self.command.is_file() else None

    def write_command(self, command: str) -> None:
        self.command.write_text(command + "\n")

    # run.json
    def load_run_info(self) -> Any:
        """run.json as written (None where there is none); invalid JSON raises ValueError."""
        return json.loads(self.run_info.read_text()) if self.run_info.is_file() else None

    def write_run_info(self, info: dict) -> None:
        self.run_info.write_text(json.dumps(info, indent=1))

    def start(self, plan, command: str, info: dict) -> None:
        """Write a new run's plan.json, command.txt and run.json (``plan``: a ``bench.plan.Plan``)."""
        plan.save(self.plan)
        self.write_command(command)
        self.write_run_info(info)
