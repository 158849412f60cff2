"""The engine process: started, read to its end, or ended unread.

Imports only the interpreter's built-in posix module, not os (which brings
_collections_abc and posixpath: about 1 ms), so that the launcher can start
the engine of a plain `heaptrail report` before anything else of heaptrail
is imported (report_early.start_now). No `from __future__` either: that
statement imports the __future__ module; annotations here are strings."""

import posix

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Mapping, Optional, Sequence


def read_all(fd: int) -> bytes:
    """What fd gives until its end (a pipe whose writers are all gone)."""
    chunks = []
    while True:
        chunk = posix.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Run:
    """An engine process whose output is still to be read.

    What subprocess.run does, split at the spawn and without importing
    subprocess (threading, selectors: a few ms of every report's start).
    Reading stdout to its end before stderr cannot block: the engine writes
    at most a line or two to stderr, far below a pipe's buffer."""

    __slots__ = ("cmd", "pid", "out_r", "err_r")

    def __init__(self, cmd: "list[str]", env: "Mapping[str, str] | Mapping[bytes, bytes]") -> None:
        self.cmd = cmd
        self.pid = self.out_r = self.err_r = -1
        out_w = err_w = -1
        try:
            self.out_r, out_w = posix.pipe()
            self.err_r, err_w = posix.pipe()
            # posix.pipe() descriptors close on exec; the dup2'd copies do not.
            self.pid = posix.posix_spawn(cmd[0], cmd, env,
                                         file_actions=[(posix.POSIX_SPAWN_DUP2, out_w, 1),
                                                       (posix.POSIX_SPAWN_DUP2, err_w, 2)])
            try:
                # A started engine is not held up by a full pipe while the
                # reader is still importing its modules. Set after the spawn
                # (fcntl's import is not worth delaying the engine for): the
                # engine reads its inputs for far longer before it writes.
                import fcntl

                fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass  # the system's limit is lower: the default pipe works too
        except BaseException:
            self.close()
            raise
        finally:
            for fd in (out_w, err_w):
                if fd >= 0:
                    posix.close(fd)

    @classmethod
    def adopt(cls, cmd: "list[str]", pid: int, out_r: int, err_r: int) -> "Run":
        """An engine that another process started and this one inherited."""
        run = cls.__new__(cls)
        run.cmd, run.pid, run.out_r, run.err_r = cmd, pid, out_r, err_r
        return run

    def finish(self) -> "tuple[int, bytes, bytes]":
        """(exit status, stdout, stderr), once the engine has ended."""
        try:
            out = read_all(self.out_r)
            err = read_all(self.err_r)
            _, wait_status = posix.waitpid(self.pid, 0)
            self.pid = -1
            return posix.waitstatus_to_exitcode(wait_status), out, err
        finally:
            self.close()  # interrupted (^C) or failed while reading: do not leave the engine behind

    def close(self) -> None:
        if self.pid > 0:
            import signal  # only here: it imports enum, 3 ms before the engine could start

            try:
                posix.kill(self.pid, signal.SIGKILL)
                posix.waitpid(self.pid, 0)
            except OSError:
                pass  # already gone
            self.pid = -1
        for fd in (self.out_r, self.err_r):
            if fd >= 0:
                posix.close(fd)
        self.out_r = self.err_r = -1


def command(engine: str, inputs: "Sequence[str]", fmt: str) -> "list[str]":
    return [engine, "--format", fmt, "--", *inputs]


# An engine started before the command line was parsed (start_early).
_early: "Optional[Run]" = None


def start_early(engine: str, inputs: "Sequence[str]", fmt: str,
                env: "Mapping[str, str] | Mapping[bytes, bytes]") -> None:
    """Starts the engine that engine.run_engine(engine, inputs, fmt) would
    start, for it to take over; one already started for the same command is
    kept (the launcher starts it, then cli reads the same command line
    again). The inputs must be readable files (run_engine's checks and
    messages are not repeated here). Quietly does nothing when the engine
    cannot start."""
    global _early
    cmd = command(engine, inputs, fmt)
    if _early is not None and _early.cmd == cmd:
        return
    cancel_early()
    try:
        _early = Run(cmd, env)
    except OSError:
        _early = None  # run_engine tries again and says why


# Set by the `heaptrail` command (tools/heaptrail/front.c) when it started
# the engine before Python: "PID,OUT,ERR;" then the command's arguments, each
# as "LENGTH:BYTES".
EARLY_ENV = b"HEAPTRAIL_EARLY_ENGINE"


def take_env(name: bytes) -> "Optional[bytes]":
    """The variable's value, and the variable out of the environment: out
    of the process's own (for children started without env=), of
    posix.environ and of os.environ if os is imported (os.environ is made
    from posix.environ when os is imported)."""
    said = posix.environ.pop(name, None)
    import sys  # built in, already loaded

    os = sys.modules.get("os")
    if os is not None:
        os.environ.pop(name.decode(), None)  # type: ignore[attr-defined]
    if said is not None:
        posix.unsetenv(name)
    return said


def is_own_child(pid: int) -> bool:
    """Whether pid is a child of this process (running, or ended and not yet
    waited for): what an announcement of a process started before Python
    (front.c) must name to be believed."""
    try:
        posix.waitid(posix.P_PID, pid, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
    except OSError:  # ChildProcessError: not a child of ours
        return False
    return True


def _decode_early(said: bytes) -> "tuple[list[str], int, int, int]":
    """EARLY_ENV's value; ValueError when it is not well formed."""
    head, semicolon, rest = said.partition(b";")
    pid, out_r, err_r = (int(x) for x in head.split(b","))
    if not semicolon or pid <= 0 or out_r < 0 or err_r < 0:
        raise ValueError(said)
    import sys  # built in, already loaded: the file system's encoding for the paths

    encoding = sys.getfilesystemencoding()
    cmd = []
    while rest:
        length, colon, rest = rest.partition(b":")
        n = int(length)
        if not colon or n > len(rest):
            raise ValueError(said)
        cmd.append(rest[:n].decode(encoding, "surrogateescape"))
        rest = rest[n:]
    return cmd, pid, out_r, err_r


def adopt_early() -> None:
    """Takes over the engine the `heaptrail` command started (EARLY_ENV), as
    start_early would have started it; run_engine uses it only if it is the
    command it would run. The variable leaves the environment, so that no
    child sees it; a value that does not name a child of this process with
    its two pipes is ignored (set by hand, or inherited from elsewhere)."""
    global _early
    said = take_env(EARLY_ENV)
    if said is None:
        return
    try:
        cmd, pid, out_r, err_r = _decode_early(said)
        if not is_own_child(pid):
            return
        for fd in (out_r, err_r):
            posix.set_inheritable(fd, False)  # no other child gets the engine's pipes
    except (ValueError, OSError):
        return
    cancel_early()
    _early = Run.adopt(cmd, pid, out_r, err_r)


def take_early() -> "Optional[Run]":
    """The early engine, now the caller's to finish or close."""
    global _early
    run, _early = _early, None
    return run


def cancel_early() -> None:
    """Ends an early engine that run_engine did not take (the command line
    asked for something else, or failed before the analysis)."""
    run = take_early()
    if run is not None:
        run.close()
