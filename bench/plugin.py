"""pytest plugin: parametrizes the suites from a plan and writes a Record for every case.

pytest-benchmark drops errored benchmarks from its JSON, so this plugin writes each case's Record
itself, failed and skipped ones included, the moment the case ends. Loaded through the ``pytest11``
entry point; inert unless a test asks for the ``case`` fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

_RECORD = pytest.StashKey[object]()
_WRITTEN = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("prunebench")
    g.addoption("--prunebench-plan", default=None, help="plan JSON written by `prunebench run` (default: the quick plan)")
    g.addoption("--prunebench-out", default=None, help="run directory for records.jsonl (default: results/<run-id>)")
    g.addoption("--prunebench-run-id", default=None, help="run id stored in every record")
    g.addoption("--prunebench-shard", default=None, metavar="I/N", help="run only shard I of N of the plan (split by a hash of the case id)")
    g.addoption("--prunebench-resume", action="store_true", help="skip cases whose latest record in the run directory is ok")
    g.addoption("--prunebench-isolate", action="store_true", help="run each case in its own subprocess with a wall-clock limit")
    g.addoption("--prunebench-case-timeout", type=float, default=None, metavar="S",
                help="wall-clock seconds per isolated case and per memory measurement")


class _State:
    def __init__(self, config: pytest.Config):
        from bench.plan import Plan, builtin_plan

        opt = config.getoption
        path = opt("--prunebench-plan")
        self.plan = Plan.load_json(path) if path else builtin_plan("quick")
        from bench.records import new_run_id

        self.run_id = opt("--prunebench-run-id") or new_run_id()
        self.out = Path(opt("--prunebench-out") or Path("results") / self.run_id)
        self.out.mkdir(parents=True, exist_ok=True)
        from bench.records import RecordWriter

        self.writer = RecordWriter(self.out / "records.jsonl")  # cuts a truncated last line first
        self.cases = self._selected(config)
        self.done = 0
        self.session = None

    def _selected(self, config: pytest.Config) -> tuple:
        """The plan's cases this run measures: its shard, less what a resumed run already has ok."""
        from bench.launch.shard import ShardError, parse_shard

        try:
            shard = parse_shard(config.getoption("--prunebench-shard")) if config.getoption("--prunebench-shard") else None
        except ShardError as exc:
            raise pytest.UsageError(str(exc)) from None
        cases = self.plan.cases_in_shard(shard)
        if config.getoption("--prunebench-resume") and self.writer.path.is_file():
            from bench.records import read_records

            ok = {r["case_id"] for r in read_records(self.writer.path) if r["status"] == "ok"}
            cases = tuple(c for c in cases if c.case_id not in ok)
        return cases

    def get_session(self):
        if self.session is None:
            from bench.engine import Session

            opt = self.config.getoption
            self.session = Session(self.plan, self.out, self.run_id, isolate=opt("--prunebench-isolate"),
                                   case_timeout_s=opt("--prunebench-case-timeout"))
        return self.session


_state: _State | None = None


def _get_state(config: pytest.Config) -> _State:
    global _state
    if _state is None or getattr(_state, "config", None) is not config:
        _state = _State(config)
        _state.config = config
    return _state


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = _get_state(metafunc.config).cases
        metafunc.parametrize("case", cases, ids=[c.case_id for c in cases])


@pytest.fixture(scope="session")
def bench_session(request: pytest.FixtureRequest):
    """The run's Session (caches models, baselines and reference outputs)."""
    state = _get_state(request.config)
    yield state.get_session()
    state.get_session().close()


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """This case's Record; the plugin writes it when the case ends, whatever the outcome."""
    from bench.records import Record

    rec = Record()
    request.node.stash[_RECORD] = rec
    return rec


def _status(call: pytest.CallInfo) -> tuple[str, str]:
    from bench.launch.isolate import classify_exception

    return classify_exception(call.excinfo.value)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "case" not in params or item.stash.get(_WRITTEN, False):
        return
    if call.when == "setup" and report.passed:
        return
    if call.when == "teardown" and report.passed:
        return
    state = _get_state(item.config)
    case = params["case"]
    rec = item.stash.get(_RECORD, None)
    if rec is None:  # failed before the record fixture ran (e.g. the model did not load)
        from bench.records import Record

        rec = Record(run_id=state.run_id, case_id=case.case_id, model=case.model_label, runtime=case.runtime,
                     device=case.device, recipe=case.recipe.label, method=case.recipe.method,
                     sparsity_target=case.recipe.sparsity, batch=case.batch, seq_len=case.seq_len)
    if report.skipped:
        rec.status = "skipped"
        rec.reason = rec.reason or (report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr))
        rec.reason = rec.reason.removeprefix("Skipped: ")
    elif report.failed:
        rec.status, rec.error = _status(call)
    else:
        rec.status = "ok"
    state.writer.write(rec)
    item.stash[_WRITTEN] = True
    state.done += 1
    n = max(len(state.cases), 1)
    bar = "#" * int(20 * state.done / n)
    detail = ""
    if rec.status == "ok" and rec.latency_ratio is not None:
        detail = f"latency x{rec.latency_ratio:.3f} [{rec.latency_ratio_lo:.3f}, {rec.latency_ratio_hi:.3f}]"
    elif rec.error or rec.reason:
        detail = rec.error or rec.reason
    tr = item.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"[{bar:<20}] {state.done:>3}/{n} {rec.status:<7} {rec.case_id}  {detail}")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from bench.env import environment

    machine_info["prunebench"] = environment()


def pytest_sessionfinish(session: pytest.Session) -> None:
    global _state
    if _state is not None and getattr(_state, "config", None) is session.config:
        (_state.out / "plan.json").exists() or _state.plan.save(_state.out / "plan.json")
        (_state.out / "env.json").exists() or _write_env(_state.out)
        _state = None


def _write_env(out: Path) -> None:
    from bench.env import environment

    (out / "env.json").write_text(json.dumps(environment(), indent=1))
