"""Helpers for the recorder's integration tests: run a program under the
preload, read its traces through htr-dump, resolve stack frames."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

SHIM = os.environ.get("HTR_SHIM", "")
DUMP = os.environ.get("HTR_DUMP", "")
PROGRAMS = os.environ.get("HTR_PROGRAMS", "")
PLUGIN = os.environ.get("HTR_PLUGIN", "")
SOURCE = os.environ.get("HTR_SOURCE", os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.environ.get("HTR_LAUNCHER", "")

Event = dict[str, Any]

_made: list[str] = []


def _cleanup() -> None:
    if os.environ.get("HTR_KEEP_TEMP"):
        return
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup)


def mkdtemp(prefix: str = "htr-test-") -> str:
    """A temporary directory removed when the tests end (HTR_KEEP_TEMP=1 keeps it)."""
    path = tempfile.mkdtemp(prefix=prefix)
    _made.append(path)
    return path


def program(name: str) -> str:
    return os.path.join(PROGRAMS, "htr-prog-" + name)


@dataclass
class Trace:
    path: str
    header: Event
    events: list[Event]
    summary: Event
    stacks: dict[int, list[int]] = field(default_factory=dict)
    sites: dict[int, tuple[str, int]] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["type"] == kind]

    def between_marks(self, first: str, second: str) -> list[Event]:
        """Sequenced events strictly between two markers, no TIME records."""
        out: list[Event] = []
        inside = False
        for e in self.events:
            if e["type"] == "marker":
                if e.get("text") == first:
                    inside = True
                    continue
                if inside and e.get("text") == second:
                    return out
            if inside and e["type"] not in ("time", "stack", "site", "module"):
                out.append(e)
        raise AssertionError(f"markers {first!r}..{second!r} not found in {self.path}")


def read_trace(path: str) -> Trace:
    out = subprocess.run([DUMP, path], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    header = lines[0] if lines and lines[0]["type"] == "trace" else {}
    summary = lines[-1] if lines and lines[-1]["type"] == "summary" else {}
    events = [e for e in lines if e["type"] not in ("trace", "summary")]
    t = Trace(path, header, events, summary)
    for e in events:
        if e["type"] == "stack":
            t.stacks[e["id"]] = [int(f, 16) for f in e["frames"]]
        elif e["type"] == "site":
            t.sites[e["id"]] = (e["text"], e["line"])
    return t


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    outdir: str
    traces: list[str]

    def trace(self, index: int = 0) -> Trace:
        return read_trace(self.traces[index])


def run(argv: list[str], env: Optional[dict[str, str]] = None, preload: bool = True,
        outdir: Optional[str] = None, cwd: Optional[str] = None,
        preexec: Optional[Callable[[], None]] = None, timeout: float = 120,
        stdout_path: Optional[str] = None) -> Run:
    outdir = outdir or mkdtemp()
    full_env = dict(os.environ)
    for k in list(full_env):
        if k.startswith("HEAPTRAIL_") or k == "LD_PRELOAD":
            del full_env[k]
    if preload:
        full_env["LD_PRELOAD"] = SHIM
        full_env["HEAPTRAIL_OUTPUT"] = outdir
    full_env.update(env or {})
    if stdout_path is not None:
        # Binary output straight into a file.
        with open(stdout_path, "wb") as out:
            p = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, env=full_env,
                               cwd=cwd, preexec_fn=preexec, timeout=timeout)
        p.stdout = ""
    else:
        p = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd,
                           preexec_fn=preexec, timeout=timeout)
    traces = sorted(
        (os.path.join(outdir, f) for f in os.listdir(outdir) if f.endswith(".htr")),
        key=lambda f: tuple(int(x) for x in os.path.basename(f).split(".")[1:3]))
    return Run(p.returncode, p.stdout, p.stderr, outdir, traces)


class Symbolizer:
    """Resolves return addresses to function names with eu-addr2line, using
    the module map recorded in the trace."""

    def __init__(self, trace: Trace):
        self.modules: list[tuple[int, int, int, str]] = []
        exe = ""
        for e in trace.events:
            if e["type"] == "process":
                exe = e["text"]
        for e in trace.events:
            if e["type"] == "module" and e["kind"] == "load":
                path = e["text"] or exe
                self.modules.append((int(e["start"], 16), int(e["end"], 16),
                                     int(e["base"], 16), path))

    def function(self, addr: int) -> str:
        for start, end, base, path in self.modules:
            if start <= addr < end:
                # A return address points after the call: look one byte back.
                out = subprocess.run(["eu-addr2line", "-f", "-e", path, hex(addr - 1 - base)],
                                     capture_output=True, text=True, check=True)
                return out.stdout.splitlines()[0].strip()
        return "?"
