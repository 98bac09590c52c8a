"""Fault injection for prunebench's own tests: make chosen cases raise, die, or hang.

Inert unless the environment variable ``PRUNEBENCH_FAULT`` is set, e.g.
``PRUNEBENCH_FAULT="raise@*b1s8;hang@*/torch-dense/*"``: ``;``-separated ``KIND@PATTERN`` pairs, the
pattern an fnmatch glob over case ids. It is read where a case starts measuring (in the isolated
child under ``--isolate``), so the tests exercise the same paths a real crash takes. Private: not
listed by the CLI or the README.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import time

log = logging.getLogger("bench.faults")

ENV = "PRUNEBENCH_FAULT"
KINDS = ("raise", "oom", "exit", "segv", "kill", "hang")


class InjectedFault(RuntimeError):
    """Raised by the ``raise`` fault."""


def _faults() -> list[tuple[str, str]]:
    spec = os.environ.get(ENV, "")
    out = []
    for item in filter(None, (x.strip() for x in spec.split(";"))):
        kind, _, pattern = item.partition("@")
        if kind not in KINDS or not pattern:
            raise ValueError(f"{ENV} entry {item!r} is not KIND@PATTERN with KIND in {', '.join(KINDS)}")
        out.append((kind, pattern))
    return out


def inject(case_id: str) -> None:
    """Carry out the first fault whose pattern matches ``case_id``; do nothing when none does."""
    for kind, pattern in _faults():
        if fnmatch.fnmatchcase(case_id, pattern):
            log.warning("injecting fault %r into %s", kind, case_id)
            if kind == "raise":
                raise InjectedFault(f"injected fault in {case_id}")
            if kind == "oom":
                raise MemoryError(f"injected out-of-memory in {case_id}")
            if kind == "exit":
                os.write(2, f"injected hard exit in {case_id}\n".encode())
                os._exit(3)
            if kind in ("segv", "kill"):
                os.write(2, f"injected {kind} in {case_id}\n".encode())
                signal.signal(signal.SIGSEGV, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGSEGV if kind == "segv" else signal.SIGKILL)
                time.sleep(60)  # the signal is delivered before this returns
            if kind == "hang":
                while True:
                    time.sleep(3600)
            return
