"""Runs htr-engine and parses its JSON (docs/analyser.md, "Engine output")."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

from .errors import InputError, ToolError

FORMATS = ("auto", "host", "valground", "board-text", "mtrace", "board")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class _Run:
    """An engine process whose output is still to be read.

    What subprocess.run does, split at the spawn and without importing
    subprocess (threading, selectors: a few ms of every report's start).
    Reading stdout to its end before stderr cannot block: the engine writes
    at most a line or two to stderr, far below a pipe's buffer."""

    __slots__ = ("cmd", "pid", "out_r", "err_r")

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.pid = self.out_r = self.err_r = -1
        out_w = err_w = -1
        try:
            self.out_r, out_w = os.pipe()
            self.err_r, err_w = os.pipe()
            try:
                # A started engine is not held up by a full pipe while
                # the reader is still importing its modules.
                import fcntl

                fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass  # the system's limit is lower: the default pipe works too
            # os.pipe() descriptors close on exec; the dup2'd copies do not.
            self.pid = os.posix_spawn(cmd[0], cmd, os.environ,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, out_w, 1),
                                                    (os.POSIX_SPAWN_DUP2, err_w, 2)])
        except BaseException:
            self.close()
            raise
        finally:
            for fd in (out_w, err_w):
                if fd >= 0:
                    os.close(fd)

    def finish(self) -> tuple[int, bytes, bytes]:
        """(exit status, stdout, stderr), once the engine has ended."""
        try:
            out = _read_all(self.out_r)
            err = _read_all(self.err_r)
            _, wait_status = os.waitpid(self.pid, 0)
            self.pid = -1
            return os.waitstatus_to_exitcode(wait_status), out, err
        finally:
            self.close()  # interrupted (^C) or failed while reading: do not leave the engine behind

    def close(self) -> None:
        if self.pid > 0:
            import signal  # only here: it imports enum, 3 ms before the engine could start

            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass  # already gone
            self.pid = -1
        for fd in (self.out_r, self.err_r):
            if fd >= 0:
                os.close(fd)
        self.out_r = self.err_r = -1


def _command(engine: str, inputs: Sequence[str], fmt: str) -> list[str]:
    return [engine, "--format", fmt, "--", *inputs]


# An engine started before the command line was parsed (start_early).
_early: Optional[_Run] = None


def start_early(engine: str, inputs: Sequence[str], fmt: str) -> None:
    """Starts the engine that run_engine(engine, inputs, fmt) would start,
    for run_engine to take over: the caller still has its modules to import
    and its arguments to parse, and the engine runs meanwhile. The inputs
    must be readable files (run_engine's checks and messages are not
    repeated here). Quietly does nothing when the engine cannot start."""
    global _early
    cancel_early()
    try:
        _early = _Run(_command(engine, inputs, fmt))
    except OSError:
        _early = None  # run_engine tries again and says why


def cancel_early() -> None:
    """Ends an early engine that run_engine did not take (the command line
    asked for something else, or failed before the analysis)."""
    global _early
    run, _early = _early, None
    if run is not None:
        run.close()


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
    global _early
    cmd = _command(engine, inputs, fmt)
    run, _early = _early, None
    if run is not None and run.cmd != cmd:
        run.close()
        run = None
    try:
        if run is None:
            run = _Run(cmd)
        status, out, err = run.finish()
    except OSError as error:
        raise ToolError(f"cannot run {engine}: {error.strerror}") from None
    message = err.decode("utf-8", "replace").strip()
    if status == 2:
        raise InputError(message.splitlines()[-1] if message else "unreadable input")
    if status != 0:
        raise ToolError(f"htr-engine failed (status {status}): {message}")
    import json  # after the spawn: the engine need not wait for it

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
