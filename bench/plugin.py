"""pytest plugin: parametrizes the suites from a plan and writes a Record for every case.

pytest-benchmark drops errored benchmarks from its JSON, so this plugin writes each case's Record
itself, failed and skipped ones included, the moment the case ends. The paired protocol
(``bench.measure.paired``: balanced blocks, the same GC state on both sides, a stopping rule with
coverage) is one function that times both sides itself, in process or in an isolated child, so
pytest-benchmark's fixture times nothing: each ok case's variant rounds are added to its JSON here,
through its documented hooks (``pytest_benchmark_update_json``), shaped like its own entries. Loaded
through the ``pytest11`` entry point; inert unless a test asks for the ``case`` fixture.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from bench.rundir import RunDir

_RECORD = pytest.StashKey[object]()
_WRITTEN = pytest.StashKey[bool]()
_ROUNDS = pytest.StashKey[list]()


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

        self.writer = RecordWriter(RunDir(self.out).records)  # cuts a truncated last line first
        self.cases = self._selected(config)
        self.done = 0
        self.session = None
        self.entries: list[dict] = []  # benchmark.json entries of the cases that ended ok
        self.json_updated = False  # pytest-benchmark called pytest_benchmark_update_json

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


@pytest.fixture(scope="session")
def peaks(request: pytest.FixtureRequest) -> dict[str, float] | None:
    """This CPU's matmul peak per dtype in GFLOP/s (``bench.measure.roofline``), probed once as the run starts with
    its thread count and written to env.json (``peak_gflops``, ``peak_probe``); None when no case runs on the CPU."""
    state = _get_state(request.config)
    threads = sorted({c.threads for c in state.cases if c.device == "cpu"})
    if not threads:
        return None
    from bench.dtypes import DTYPE_FLAGS
    from bench.env import cpu_flags
    from bench.measure.roofline import measure_peaks

    probe = measure_peaks(threads[-1], cpu_flags(), DTYPE_FLAGS)  # a plan has one thread count
    _write_env(state.out, probe)
    return probe["peak_gflops"]


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """This case's Record; the plugin writes it when the case ends, whatever the outcome."""
    from bench.records import Record

    rec = Record()
    request.node.stash[_RECORD] = rec
    return rec


@pytest.fixture
def timed_rounds(request: pytest.FixtureRequest) -> list[float]:
    """A list for the variant's latency rounds (seconds) this case timed, in process or in its isolated
    child; the plugin adds them to benchmark.json if the case ends ok."""
    rounds: list[float] = []
    request.node.stash[_ROUNDS] = rounds
    return rounds


def _benchmark_entry(item: pytest.Item, rounds: list[float], plan, isolated: bool) -> dict:
    """A ``benchmarks`` entry of pytest-benchmark's JSON for rounds timed outside its fixture: the keys
    its own entries have, the stats from our own code, ``extra_info`` naming the protocol and whether
    an isolated child timed them (GC is off within each block, for both sides)."""
    from bench.measure.latency import sample_stats

    spec = item.callspec
    params = {k: v if v is None or isinstance(v, (str, int, float, bool)) else repr(v) for k, v in spec.params.items()}
    return {"group": None, "name": item.name, "fullname": item.nodeid, "params": params, "param": spec.id,
            "extra_info": {"isolated": isolated, "protocol": "paired balanced blocks"},
            "options": {"disable_gc": True, "timer": "perf_counter", "min_rounds": plan.min_rounds,
                        "max_time": plan.time_cap_s, "warmup": plan.warmup},
            "stats": sample_stats(rounds)}


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
    if rec.status == "ok" and item.stash.get(_ROUNDS, None):
        state.entries.append(_benchmark_entry(item, item.stash[_ROUNDS], state.plan, item.config.getoption("--prunebench-isolate")))
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


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """Add the cases' rounds to pytest-benchmark's JSON (``--benchmark-json`` or a save)."""
    if _state is not None and getattr(_state, "config", None) is config:
        output_json["benchmarks"].extend(_state.entries)
        _state.json_updated = True


def _write_json(config: pytest.Config, state: _State) -> None:
    """pytest-benchmark writes no JSON when its fixture timed nothing (as here): write the
    ``--benchmark-json`` file through its public hooks, as it would have, with the cases' entries."""
    fh = config.getoption("benchmark_json", None)
    if not state.entries or state.json_updated or fh is None or config.getoption("benchmark_disable", False):
        return
    hook = config.hook
    machine_info = hook.pytest_benchmark_generate_machine_info(config=config)
    hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine_info)
    commit_info = hook.pytest_benchmark_generate_commit_info(config=config)
    hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    doc = hook.pytest_benchmark_generate_json(config=config, benchmarks=[], include_data=True,
                                              machine_info=machine_info, commit_info=commit_info)
    hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=doc)
    with fh:
        fh.write(json.dumps(doc, indent=4, default=repr).encode())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session):
    global _state
    state = _state if _state is not None and getattr(_state, "config", None) is session.config else None
    with warnings.catch_warnings():
        if state is not None and state.entries:  # not so: the cases' rounds are written just below
            warnings.filterwarnings("ignore", message="Not saving anything, no benchmarks have been run")
        yield  # pytest-benchmark writes its JSON in here
    if state is not None:
        _write_json(session.config, state)
        run = RunDir(state.out)
        run.plan.exists() or state.plan.save(run.plan)
        run.env.exists() or _write_env(state.out)
        _state = None


def _write_env(out: Path, fields: dict | None = None) -> None:
    """Write the run's env.json (``environment()``), or add ``fields`` to the one there (a resumed run's)."""
    from bench.env import environment

    run = RunDir(out)
    if fields:
        run.update_env(fields, environment)
    else:
        run.write_env(dict(environment()))
