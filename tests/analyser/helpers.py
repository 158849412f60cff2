"""Shared pieces of the analyser tests: where the built tools are, how to
run them, golden-file comparison, and a writer of host traces that follows
include/heaptrail/trace_format.h byte for byte (so engine tests do not
depend on the recorder)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import unittest
from typing import Any, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(HERE, "golden")
REGEN = os.environ.get("HTR_REGEN_GOLDEN") == "1"


def _default(var: str, *candidates: str) -> str:
    """The path meson passes, or when run by hand, a usual build dir's. Set
    but empty means the build has no such part: do not go looking for
    another build's (a sanitizer build would preload a recorder built
    without sanitizers into programs built with them)."""
    value = os.environ.get(var)
    if value is not None:
        return value
    for c in candidates:
        if os.path.exists(c):
            return c
    return ""


HEAPTRAIL = _default("HEAPTRAIL", os.path.join(ROOT, "build-analyser", "heaptrail"), os.path.join(ROOT, "build", "heaptrail"))
ENGINE = _default(
    "HTR_ENGINE",
    os.path.join(ROOT, "build-analyser", "tools", "engine", "htr-engine"),
    os.path.join(ROOT, "build", "tools", "engine", "htr-engine"),
)
SHIM = _default("HTR_SHIM", os.path.join(ROOT, "build-analyser", "lib", "host", "libheaptrail.so"))
LEAKY = _default("HTR_LEAKY", os.path.join(ROOT, "build-analyser", "examples", "leaky"))

sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("HTR_NO_SYMBOL_CACHE", "1")


def run_heaptrail(args: Sequence[str], env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [HEAPTRAIL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, check=False
    )


def report_json(inputs: Sequence[str], *extra: str) -> tuple[int, dict[str, Any], str]:
    proc = run_heaptrail(["report", "--format", "json", "--no-symbols", *extra, *inputs])
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def engine_json(inputs: Sequence[str], fmt: str = "auto") -> dict[str, Any]:
    proc = subprocess.run([ENGINE, "--format", fmt, "--", *inputs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return json.loads(proc.stdout)


def golden(case: unittest.TestCase, name: str, actual: str) -> None:
    """Compares with tests/analyser/golden/NAME; HTR_REGEN_GOLDEN=1
    rewrites the file instead."""
    path = os.path.join(GOLDEN, name)
    if REGEN:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(actual)
        return
    with open(path, encoding="utf-8") as handle:
        expected = handle.read()
    case.maxDiff = None
    case.assertEqual(expected, actual, f"golden file {name} differs (HTR_REGEN_GOLDEN=1 rewrites it)")


def require_tools(case: unittest.TestCase) -> None:
    if not HEAPTRAIL or not ENGINE:
        case.fail("build/heaptrail or htr-engine not found: set HEAPTRAIL and HTR_ENGINE")


# ---- host trace writer ----------------------------------------------------

REC = {
    "ALLOC": 1, "FREE": 2, "REALLOC": 3, "MISUSE": 4, "STACK": 5, "SITE": 6, "MARKER": 7, "MODULE": 8,
    "THREAD": 9, "PROCESS": 10, "FORK": 11, "TIME": 12, "DROPS": 13, "END": 14, "PERSIST": 15,
}
CALL_MALLOC, CALL_FREE, CALL_NEW, CALL_DELETE = 1, 11, 16, 18
MISUSE_DOUBLE, MISUSE_INVALID, MISUSE_MISMATCH = 1, 2, 3
HEADER_SIZE = 4096
CHUNK_MAGIC = 0x43525448


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def _rec(rtype: str, kind: int, body: bytes) -> bytes:
    body = _pad(body)
    size = 4 + len(body)
    size += -size % 8
    data = struct.pack("<BBH", REC[rtype], kind, size) + body
    return data + b"\0" * (size - len(data))


class TraceWriter:
    """Builds one process's trace: records go to thread 0 unless told."""

    def __init__(self, pid: int = 100, ppid: int = 1, chunk_size: int = 4096, fork_child_of: int = 0, fork_seq: int = 0):
        self.pid, self.ppid, self.chunk_size = pid, ppid, chunk_size
        self.fork_child_of, self.fork_seq = fork_child_of, fork_seq
        self.seq = 0
        self.records: dict[int, list[bytes]] = {}
        self.version = (1, 0)
        self.clean = True

    def _add(self, data: bytes, thread: int = 0) -> None:
        self.records.setdefault(thread, []).append(data)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def process(self, exe: str = "/bin/prog", args: Sequence[str] = ("prog",)) -> None:
        data = b"".join(s.encode() + b"\0" for s in [exe, *args])
        self._add(_rec("PROCESS", 0, struct.pack("<IQQQ", len(args), self.next_seq(), self.pid, self.ppid) + data))

    def module(self, path: str, base: int, start: int, end: int, build_id: bytes = b"") -> None:
        bid = build_id.ljust(32, b"\0")
        self._add(_rec("MODULE", 1, struct.pack("<IQQQQ", len(build_id), self.next_seq(), base, start, end) + bid + path.encode() + b"\0"))

    def stack(self, sid: int, frames: Sequence[int], thread: int = 0) -> None:
        self._add(_rec("STACK", 0, struct.pack("<III", sid, len(frames), 0) + b"".join(struct.pack("<Q", f) for f in frames)), thread)

    def site(self, sid: int, file: str, line: int) -> None:
        self._add(_rec("SITE", 0, struct.pack("<III", sid, line, 0) + file.encode() + b"\0"))

    def alloc(self, ptr: int, size: int, stack: int = 0, site: int = 0, call: int = CALL_MALLOC, thread: int = 0) -> None:
        self._add(_rec("ALLOC", call, struct.pack("<IQQQII", stack, self.next_seq(), ptr, size, site, 0)), thread)

    def free(self, ptr: int, stack: int = 0, site: int = 0, call: int = CALL_FREE, thread: int = 0) -> None:
        self._add(_rec("FREE", call, struct.pack("<IQQII", stack, self.next_seq(), ptr, site, 0)), thread)

    def realloc(self, old: int, new: int, size: int, stack: int = 0, site: int = 0) -> None:
        self._add(_rec("REALLOC", 3, struct.pack("<IQQQQII", stack, self.next_seq(), old, new, size, site, 0)))

    def misuse(self, kind: int, ptr: int, size: int = 0, stack: int = 0, site: int = 0, alloc_stack: int = 0,
               free_stack: int = 0, call: int = CALL_FREE, alloc_call: int = 0) -> None:
        self._add(_rec("MISUSE", kind, struct.pack("<IQQQIIIIIBBH", stack, self.next_seq(), ptr, size, site, alloc_stack, 0,
                                                   free_stack, 0, call, alloc_call, 0)))

    def marker(self, name: str) -> None:
        self._add(_rec("MARKER", 0, struct.pack("<IQ", 0, self.next_seq()) + name.encode() + b"\0"))

    def persist(self, ptr: int) -> None:
        self._add(_rec("PERSIST", 0, struct.pack("<IQQ", 0, self.next_seq(), ptr)))

    def drops(self, count: int) -> None:
        self._add(_rec("DROPS", 1, struct.pack("<IQQ", 0, self.next_seq(), count)))

    def fork(self, child: int) -> int:
        s = self.next_seq()
        self._add(_rec("FORK", 0, struct.pack("<IQQ", 0, s, child)))
        return s

    def end(self, status: int = 0) -> None:
        self._add(_rec("END", 1, struct.pack("<IQQ", 0, self.next_seq(), status)))

    def build(self) -> bytes:
        chunks: list[bytes] = []
        room = self.chunk_size - 32 - 8  # keep space for the terminating zero word
        for thread, recs in sorted(self.records.items()):
            cur: list[bytes] = []
            used = 0

            def flush() -> None:
                body = b"".join(cur)
                head = struct.pack("<IIQQQ", CHUNK_MAGIC, thread, len(chunks), 0, 0)
                chunks.append((head + body).ljust(self.chunk_size, b"\0"))

            for r in recs:
                if used + len(r) > room:
                    flush()
                    cur, used = [], 0
                cur.append(r)
                used += len(r)
            flush()
        flags = 1 if self.fork_child_of else 0
        header = struct.pack(
            "<8sHHHBBIIIIIIQQQQQIIQ",
            b"HTRTRACE", self.version[0], self.version[1], HEADER_SIZE, 8, 0, self.chunk_size, flags, self.pid, self.ppid,
            self.fork_child_of, 16, self.fork_seq, 0, 0, len(chunks), 0, 2 if self.clean else 1, 0, self.seq,
        )
        return header.ljust(HEADER_SIZE, b"\0") + b"".join(chunks)

    def write(self, path: str) -> str:
        with open(path, "wb") as handle:
            handle.write(self.build())
        return path
