"""Runs many short ``prunebench`` commands (the bad-input matrices, the gate tests' runs) without paying torch's import for each.

``run_many`` starts this file as a server process that imports the command line and what its commands import
(torch, transformers, pruning) once, then runs each command in a forked child of its own: the child changes to
its cwd, points its fds 1 and 2 at files of its own and calls ``sys.exit(bench.cli.main(argv))``
at the server's top level, so an uncaught exception prints its traceback and exit code 1 and atexit handlers
run, as in ``python -m bench.cli ARGV``. What a command prints and returns is therefore what a fresh process
gives; what the server prints while it imports (a fresh process would print it before every command) is put
in front of every command's stderr.

    python tests/forked_cli.py JOBS < requests.jsonl   # one {"argv", "cwd", "timeout"} per line; prints the results
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# imported, nothing run: torch, and what the commands import lazily (bench.report pulls in pandas and matplotlib)
PRELOAD = ("bench.cli", "bench.plan", "bench.models", "bench.report", "bench.launch.merge", "pruning", "torch", "transformers",
           "transformers.modeling_utils")


def run_many(commands: list[tuple], env: dict[str, str] | None = None, jobs: int = 4,
             timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Run each ``(argv, cwd)`` as ``prunebench ARGV`` in ``cwd`` (None: this process's), ``jobs`` at a time,
    with this process's environment plus ``env``; returns their results in order. A result's stderr starts
    with what the server printed while importing, as a fresh process's would. An ``(argv, cwd, script)``
    runs ``python SCRIPT ARGV`` instead (the script as ``__main__``, e.g. tests/planted_slowdown.py)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    commands = [(c[0], c[1], c[2] if len(c) > 2 else None) for c in commands]
    requests = "".join(json.dumps({"argv": list(argv), "cwd": str(cwd or os.getcwd()), "timeout": timeout,
                                   "script": script and str(script)}) + "\n"
                       for argv, cwd, script in commands)
    server = subprocess.run([sys.executable, __file__, str(jobs)], input=requests, capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=timeout * len(commands) + 120)
    if server.returncode != 0:
        raise RuntimeError(f"the command server failed (exit {server.returncode}): {server.stderr[-3000:]}")
    return [subprocess.CompletedProcess([str(script) if script else "prunebench", *argv], r["returncode"], r["stdout"],
                                        server.stderr + r["stderr"])
            for (argv, _, script), r in zip(commands, json.loads(server.stdout))]


def _serve(jobs: int) -> None:
    for name in PRELOAD:
        __import__(name)
    from transformers import AutoConfig, AutoModel  # noqa: F401 - transformers imports these lazily, on first use
    gc.freeze()  # the preloaded objects are never collected: a child's exit skips them (about 1 s a command)
    requests = [json.loads(line) for line in sys.stdin if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="prunebench-forked-cli-"))
    results: list[dict | None] = [None] * len(requests)
    running: dict[int, tuple[int, float]] = {}  # pid -> (request index, deadline)
    pending = list(range(len(requests)))
    while pending or running:
        while pending and len(running) < jobs:
            i = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: becomes the command, exits through the interpreter's own exit path
                req = requests[i]
                os.chdir(req["cwd"])
                for fd, name in ((1, "out"), (2, "err")):
                    f = os.open(work / f"{i}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    os.dup2(f, fd)
                    os.close(f)
                if req.get("script"):
                    sys.argv = [req["script"], *req["argv"]]
                    runpy.run_path(req["script"], run_name="__main__")
                    sys.exit(0)  # a script that returns without sys.exit exits 0
                sys.argv = ["prunebench", *req["argv"]]
                from bench.cli import main

                sys.exit(main(req["argv"]))
            running[pid] = (i, time.monotonic() + requests[i]["timeout"])
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            for child, (_, deadline) in running.items():
                if time.monotonic() > deadline:
                    os.kill(child, signal.SIGKILL)
            time.sleep(0.01)
            continue
        i, _ = running.pop(pid)
        results[i] = {"returncode": os.waitstatus_to_exitcode(status),
                      "stdout": (work / f"{i}.out").read_text(errors="replace"),
                      "stderr": (work / f"{i}.err").read_text(errors="replace")}
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _serve(int(sys.argv[1]))
