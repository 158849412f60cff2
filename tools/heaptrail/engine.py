"""Runs htr-engine and parses its JSON (docs/analyser.md, "Engine output")."""

from __future__ import annotations

import json
import os
import signal

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Sequence

from .errors import InputError, ToolError

FORMATS = ("auto", "host", "valground", "board-text", "mtrace", "board")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _run(cmd: Sequence[str]) -> tuple[int, bytes, bytes]:
    """Runs cmd with stdout and stderr captured: (exit status, out, err).

    What subprocess.run does, without importing subprocess (threading,
    selectors: a few ms of every report's start). Reading stdout to its end
    before stderr cannot block: the engine writes at most a line or two to
    stderr, far below a pipe's buffer."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = -1
    try:
        # os.pipe() descriptors close on exec; the dup2'd copies do not.
        pid = os.posix_spawn(cmd[0], list(cmd), os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
        os.close(out_w)
        out_w = -1
        os.close(err_w)
        err_w = -1
        out = _read_all(out_r)
        err = _read_all(err_r)
        _, wait_status = os.waitpid(pid, 0)
        pid = -1
        return os.waitstatus_to_exitcode(wait_status), out, err
    finally:
        if pid > 0:  # interrupted (^C) or failed while reading: do not leave the engine behind
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass  # already gone
        for fd in (out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)


def run_engine(engine: str, inputs: Sequence[str], fmt: str = "auto") -> dict[str, Any]:
    """Analyses inputs in one engine process; raises InputError for inputs
    the engine refuses or finds corrupt."""
    if not engine or not os.path.exists(engine):
        raise ToolError(f"the analysis engine is missing ({engine or 'not built'})")
    for path in inputs:
        # Fail early with the OS's words, before the engine says the same.
        if not os.path.isfile(path):
            if os.path.isdir(path):
                raise InputError(f"{path}: is a directory")
            if os.path.exists(path):
                raise InputError(f"{path}: not a regular file (a trace or log file is needed)")
            raise InputError(f"{path}: no such file")
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: permission denied")
    cmd = [engine, "--format", fmt, "--", *inputs]
    try:
        status, out, err = _run(cmd)
    except OSError as error:
        raise ToolError(f"cannot run {engine}: {error.strerror}") from None
    message = err.decode("utf-8", "replace").strip()
    if status == 2:
        raise InputError(message.splitlines()[-1] if message else "unreadable input")
    if status != 0:
        raise ToolError(f"htr-engine failed (status {status}): {message}")
    try:
        data: dict[str, Any] = json.loads(out)
    except ValueError as error:
        raise ToolError(f"htr-engine wrote malformed JSON: {error}") from None
    for item in data.get("inputs", []):
        bad = item.get("bad_input")
        if bad:
            extra = f" ({bad['count']} corrupt places)" if bad["count"] > 1 else ""
            raise InputError(f"{item['path']}: corrupt data at offset {bad['offset']}: {bad['reason']}{extra}")
    return data
