"""`heaptrail run [options] -- PROGRAM ARGS`: run a program under the host
recorder (libheaptrail.so), list the traces it wrote and report on them.

The program keeps its stdin, stdout and stderr; everything heaptrail says
goes to stderr. Exit status: the program's (128+N when signal N killed it),
or --error-exitcode's value when the report found problems.
"""

from __future__ import annotations

import os
import sys

# The program is started before most of heaptrail is imported (run_fast):
# what only the rest needs is imported where it is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import subprocess
    from typing import Any, Iterator, Optional

from .errors import HeaptrailError, ToolError, UsageError, run_guarded

# struct htr_file_header, the part we show (include/heaptrail/trace_format.h).
_HEADER_FORMAT = "<8sHHHBBIIIII"
_FORK_CHILD = 0x1
_EXEC_IMAGE = 0x2
# A packed trace starts with struct htr_pack_header, which holds the raw
# header at this offset.
_PACKED_MAGIC = b"HTRPACK\0"
_PACKED_TRACE_AT = 24


def register(subparsers: Any) -> None:
    import argparse

    parser = subparsers.add_parser(
        "run",
        help="run a program under the recorder and report on its heap",
        description="Run PROGRAM with libheaptrail.so preloaded. Traces of the process, its "
        "fork children and exec'd images go to the output directory; then they are "
        "listed and, when the report command is available, reported on stderr.",
    )
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="directory for the traces (default: ./heaptrail-<pid>); created if needed")
    parser.add_argument("--depth", type=int, metavar="N", help="backtrace depth, 1..256 (HEAPTRAIL_DEPTH)")
    parser.add_argument("--on-error", choices=("continue", "abort"),
                        help="on a double, invalid or mismatched free: record and continue "
                        "(default) or abort (HEAPTRAIL_ON_ERROR)")
    parser.add_argument("--chunk-kb", type=int, metavar="KB",
                        help="trace chunk size in KiB, a multiple of 4 from 16 to 65536")
    parser.add_argument("--no-report", action="store_true", help="only list the traces")
    parser.add_argument("--no-pack", action="store_true",
                        help="keep the traces as recorded; by default each trace whose process has "
                        "ended is packed (merged, coded, zstd-compressed; `heaptrail pack`)")
    parser.add_argument("--error-exitcode", type=int, metavar="N",
                        help="exit with N when the report finds problems")
    # dest must not be "command": the top-level parser keeps the subcommand there.
    parser.add_argument("program_argv", nargs=argparse.REMAINDER, metavar="-- PROGRAM ARGS",
                        help="the program to run and its arguments")
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> list[str]:
    command = list(args.program_argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no program given (heaptrail run [options] -- PROGRAM ARGS)")
    if args.depth is not None and not 1 <= args.depth <= 256:
        raise UsageError(f"--depth {args.depth}: must be from 1 to 256")
    if args.chunk_kb is not None and (args.chunk_kb % 4 or not 16 <= args.chunk_kb <= 65536):
        raise UsageError(f"--chunk-kb {args.chunk_kb}: must be a multiple of 4 from 16 to 65536")
    if args.error_exitcode is not None and not 0 <= args.error_exitcode <= 255:
        raise UsageError(f"--error-exitcode {args.error_exitcode}: must be from 0 to 255")
    return command


def _environment(shim: str, outdir: str, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    preload = env.get("LD_PRELOAD", "").strip()
    # Appended: a preload the user set (a debug allocator) stays first in line.
    env["LD_PRELOAD"] = f"{preload} {shim}" if preload else shim
    env["HEAPTRAIL_OUTPUT"] = outdir
    if args.depth is not None:
        env["HEAPTRAIL_DEPTH"] = str(args.depth)
    if args.on_error is not None:
        env["HEAPTRAIL_ON_ERROR"] = args.on_error
    if args.chunk_kb is not None:
        env["HEAPTRAIL_CHUNK_KB"] = str(args.chunk_kb)
    return env


def _traces(outdir: str) -> set[str]:
    try:
        names = os.listdir(outdir)
    except OSError:
        return set()
    return {n for n in names if n.startswith("heaptrail.") and n.endswith(".htr")}


def _order(name: str) -> tuple[int, int]:
    parts = name.split(".")
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return (0, 0)


def _header(path: str) -> Optional[tuple[Any, ...]]:
    """The raw trace header's fields, from a raw or a packed trace."""
    import struct

    header = struct.Struct(_HEADER_FORMAT)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_PACKED_TRACE_AT + header.size)
        if raw[:8] == _PACKED_MAGIC:
            raw = raw[_PACKED_TRACE_AT:]
        return header.unpack(raw[: header.size])
    except (OSError, struct.error):
        return None


def _describe(path: str) -> str:
    fields = _header(path)
    if fields is None:
        return "unreadable"
    if fields[0] != b"HTRTRACE":
        return "not a trace"
    flags, pid, parent_pid = fields[7], fields[8], fields[10]
    if flags & _FORK_CHILD:
        return f"pid {pid}, fork child of {parent_pid}"
    if flags & _EXEC_IMAGE:
        return f"pid {pid}, exec'd image"
    return f"pid {pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finished(traces: list[str]) -> list[str]:
    """Traces no process writes any more: packing a live one would lose
    what it writes after the snapshot. A process that outlives the program
    (a daemonised grandchild) keeps its trace raw; an image replaced by exec
    is finished even though its pid lives on in the next image."""
    pids = {}
    for path in traces:
        fields = _header(path)
        if fields is not None and fields[0] == b"HTRTRACE":
            pids[path] = fields[8]
    newest = {pid: path for path, pid in pids.items()}  # traces come in (pid, n) order
    return [path for path, pid in pids.items() if not _alive(pid) or newest[pid] != path]


def _pack(paths: Any, traces: list[str], streamed: list[str]) -> None:
    """Packs the finished traces still raw; `streamed` holds the packer's
    lines for those the follower packed while the program ran."""
    todo = [path for path in _finished(traces) if not _is_packed(path)]
    lines = list(streamed)
    if todo:
        # Imported only when needed: argparse and subprocess with it are
        # 11 ms that a run whose trace the follower packed need not wait for.
        from . import pack_cmd

        try:
            lines += pack_cmd.pack_files(getattr(paths, "pack", ""), todo)
        except HeaptrailError as error:
            print(f"heaptrail run: pack: {error}; traces kept as recorded", file=sys.stderr)
            return
    if not lines:
        return
    count = len(todo) + len(streamed)
    before = after = 0
    for line in lines:  # "PATH: N records, RAW -> PACKED bytes"
        words = line.rsplit(" ", 4)
        if len(words) == 5 and words[2] == "->":
            before += int(words[1])
            after += int(words[3])
    print(f"heaptrail run: packed {count} trace{'s' if count != 1 else ''}: "
          f"{_size(before)} -> {_size(after)}", file=sys.stderr)


def _is_packed(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == _PACKED_MAGIC
    except OSError:
        return False


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _stdout_to_stderr() -> Any:
    """The report prints to stdout; here stdout belongs to the program."""
    import contextlib

    @contextlib.contextmanager
    def redirected() -> Iterator[None]:
        if sys.stdout is None:  # descriptor 1 was closed when Python started
            with contextlib.redirect_stdout(sys.stderr):
                yield
            return
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)

    return redirected()


def _report(paths: Any, traces: list[str]) -> Optional[int]:
    """Runs `heaptrail report` over the traces; None when it is not there."""
    import importlib.util

    package = __package__ or "heaptrail"
    if importlib.util.find_spec(f"{package}.report_cmd") is None:
        return None
    if not getattr(paths, "engine", "") or not os.path.exists(paths.engine):
        print("heaptrail run: no analysis engine in this build; traces not reported", file=sys.stderr)
        return None
    from . import cli

    parser = cli.build_parser()
    report_args = parser.parse_args(["report", *traces])
    try:
        with _stdout_to_stderr():
            return int(report_args.func(report_args, paths))
    except HeaptrailError as error:
        print(f"heaptrail run: report: {error}", file=sys.stderr)
        return None


class _Packer:
    """The follower process (`htr-pack --follow`): its pid and the read end
    of its stdout."""

    def __init__(self, pid: int, out: int) -> None:
        self.pid = pid
        self.out = out


if TYPE_CHECKING:
    # The trace the follower packs, and the follower.
    _Follower = Optional[tuple[str, _Packer]]


def _start_follower(paths: Any, outdir: str, before: set[str], pid: int) -> _Follower:
    """Starts packing the program's trace while it runs (`htr-pack --follow`),
    so that little is left to do when it ends. The recorder names the trace
    with the lowest number free for the pid; the packer waits for it to
    appear. Traces of fork children and exec'd images are packed afterwards.

    Started with posix_spawn right after the program, before anything else
    is imported: subprocess (and pack_cmd, with argparse) took 11 ms of CPU,
    which the launcher got a ninth of while eight threads of the program ran,
    so the packer started 40 ms late with that much trace waiting for it.
    It runs at its own default level, pack_cmd.DEFAULT_LEVEL's value."""
    import _signal

    tool = getattr(paths, "pack", "")
    if not tool or not os.access(tool, os.X_OK):
        return None
    n = 0
    while f"heaptrail.{pid}.{n}.htr" in before:
        n += 1
    path = os.path.join(outdir, f"heaptrail.{pid}.{n}.htr")
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None
    # As subprocess would: stdin and stderr from/to /dev/null (its stderr
    # only says what the listing says anyway), the descriptors above 2
    # closed (the pipe's are close-on-exec), SIGPIPE and SIGXFSZ default.
    # Its own session: the terminal's ^C is for the program, not for it.
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, write_end, 1),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    try:
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds()]
        packer = os.posix_spawn(tool, [tool, "--follow", str(pid), path], os.environ, file_actions=actions,
                                setsid=True, setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
    except (OSError, NotImplementedError):  # the latter: a libc without POSIX_SPAWN_SETSID
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    return path, _Packer(packer, read_end)


def _follower_lines(follower: _Follower) -> list[str]:
    """The follower's line for the trace it packed; none when it failed (the
    trace is then packed as any other)."""
    if follower is None:
        return []
    from .spawn import read_all

    path, packer = follower
    try:
        out = read_all(packer.out)
    finally:
        os.close(packer.out)
    _, status = os.waitpid(packer.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not _is_packed(path):
        return []
    return out.decode(errors="replace").splitlines()[:1]


def _wait(proc: subprocess.Popen[bytes], follower: _Follower) -> tuple[int, list[str]]:
    """The program's wait status, and the follower's line when it packed
    the program's trace."""
    # _signal, not signal: that one imports enum and functools, 5 ms of CPU
    # taken from the program while it runs.
    import _signal as signal

    # The terminal's ^C and ^\ are the program's business: it decides whether
    # to die, and we still list the traces afterwards.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_quit = signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    try:
        if follower is None:
            return proc.wait(), []
        # Left a zombie until the follower is done: its pid cannot be
        # reused meanwhile, so the follower watches the right process.
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        lines = _follower_lines(follower)
        return proc.wait(), lines
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGQUIT, old_quit)


def _prepare(args: Any, paths: Any) -> tuple[list[str], str, set[str], dict[str, str]]:
    """The program, the output directory (made), the traces already in it
    and the program's environment; UsageError or ToolError when the options
    or the build do not allow a run."""
    command = _check_options(args)
    shim = getattr(paths, "shim", "")
    if not shim or not os.path.exists(shim):
        raise ToolError(f"the recorder libheaptrail.so is not built or not found ({shim or 'no path'})")
    outdir = os.path.abspath(args.output or f"heaptrail-{os.getpid()}")
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as error:
        raise UsageError(f"-o {outdir}: {error.strerror}") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise UsageError(f"-o {outdir}: not writable")
    return command, outdir, _traces(outdir), _environment(os.path.abspath(shim), outdir, args)


def run(args: argparse.Namespace, paths: Any) -> int:
    import subprocess

    command, outdir, before, env = _prepare(args, paths)
    try:
        proc = subprocess.Popen(command, env=env)
    except FileNotFoundError:
        raise UsageError(f"{command[0]}: command not found") from None
    except PermissionError:
        raise UsageError(f"{command[0]}: permission denied") from None
    return _after_start(args, paths, proc, outdir, before)


def _after_start(args: Any, paths: Any, proc: Any, outdir: str, before: set[str]) -> int:
    """From the program's start on: follows, waits, lists, packs, reports."""
    follower = None if args.no_pack else _start_follower(paths, outdir, before, proc.pid)
    import struct  # noqa: F401 (for _header: imported while the program runs, not after)

    code, streamed = _wait(proc, follower)
    status = 128 - code if code < 0 else code

    produced = sorted(_traces(outdir) - before, key=_order)
    paths_out = [os.path.join(outdir, name) for name in produced]
    if not paths_out:
        print(f"heaptrail run: no trace written in {outdir}", file=sys.stderr)
        return status
    print(f"heaptrail run: {len(paths_out)} trace file{'s' if len(paths_out) != 1 else ''} "
          f"in {outdir}:", file=sys.stderr)
    for path in paths_out:
        print(f"  {os.path.basename(path)}  ({_describe(path)})", file=sys.stderr)
    if not args.no_pack:
        _pack(paths, paths_out, streamed)
    sys.stderr.flush()

    if args.no_report:
        return status
    found = _report(paths, paths_out)
    if found == 1 and args.error_exitcode is not None:
        return args.error_exitcode
    return status


# ---- the launcher's short way to the program ----

class _Args:
    """What the parser would make of `heaptrail run` options (run_fast)."""

    def __init__(self) -> None:
        self.output: Optional[str] = None
        self.depth: Optional[int] = None
        self.on_error: Optional[str] = None
        self.chunk_kb: Optional[int] = None
        self.no_report = False
        self.no_pack = False
        self.error_exitcode: Optional[int] = None
        self.program_argv: list[str] = []


_VALUED = {"-o": "output", "--output": "output", "--depth": "depth", "--on-error": "on_error",
           "--chunk-kb": "chunk_kb", "--error-exitcode": "error_exitcode"}
_FLAGS = {"--no-report": "no_report", "--no-pack": "no_pack"}


def _parse_plain(argv: list[str]) -> Optional[_Args]:
    """The options of `run OPTIONS -- PROGRAM ARGS` when each is spelt in
    full and valid; None for anything else (help, an abbreviation, an
    error), which the parser then handles."""
    args = _Args()
    i = 0
    while i < len(argv) and argv[i] != "--":
        word = argv[i]
        name, eq, value = word.partition("=")
        if not eq and word in _FLAGS:
            setattr(args, _FLAGS[word], True)
            i += 1
            continue
        if name not in _VALUED or (eq and name == "-o"):
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        if value.startswith("-") or not value:
            return None
        field = _VALUED[name]
        if field in ("depth", "chunk_kb", "error_exitcode"):
            if not value.isdigit() or not value.isascii():
                return None
            setattr(args, field, int(value))
        elif field == "on_error" and value not in ("continue", "abort"):
            return None
        else:
            setattr(args, field, value)
    args.program_argv = argv[i + 1:]
    if not args.program_argv or args.program_argv[0] == "--":
        return None
    return args


def _inherited_fds() -> list[int]:
    """The open descriptors above 2 that a child would inherit."""
    fds = [int(name) for name in os.listdir("/proc/self/fd")]
    return [fd for fd in fds if fd > 2 and _is_open(fd) and os.get_inheritable(fd)]


def _spawn(command: list[str], env: dict[str, str]) -> Optional[int]:
    """Starts the program as subprocess.Popen(command, env=env) would (the
    descriptors above 2 closed, SIGPIPE and SIGXFSZ as the default), without
    importing subprocess first; None when it cannot be started."""
    import _signal

    try:
        actions = [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds()]
    except OSError:
        return None
    try:
        return os.posix_spawnp(command[0], command, env, file_actions=actions,
                               setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
    except OSError:
        return None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class _Process:
    """The part of subprocess.Popen that _after_start uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class _Places:
    """cli.Paths's attributes, without importing cli (and argparse) first."""

    def __init__(self, places: dict[str, str]) -> None:
        self.shim = places.get("shim", "")
        self.engine = places.get("engine", "")
        self.dump = places.get("dump", "")
        self.pack = places.get("pack", "")


# Set by the `heaptrail` command (tools/heaptrail/front.c) when it started
# the program before Python: "PID;OUTPUT DIRECTORY".
EARLY_PROGRAM_ENV = "HEAPTRAIL_EARLY_PROGRAM"


def _early_program() -> Optional[tuple[int, str]]:
    """The program the `heaptrail` command started, and the directory its
    traces go to; None when it started none. The variable leaves the
    environment, so that no child sees it; a value that names no child of
    this process is ignored (set by hand, or inherited from elsewhere)."""
    from .spawn import is_own_child, take_env

    value = take_env(EARLY_PROGRAM_ENV.encode())
    if value is None:
        return None
    pid_text, semicolon, outdir = os.fsdecode(value).partition(";")
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    if not semicolon or pid <= 0 or not is_own_child(pid):
        return None
    return pid, outdir


def _adopt(early: tuple[int, str], args: Optional[_Args], places: dict[str, str]) -> int:
    """The rest of run_fast for the program the `heaptrail` command started.
    It read the command line as _parse_plain does and started the program
    only into a fresh directory; a program cannot be run twice, so if the
    two readings ever differ it is waited for, and the run fails."""
    pid, outdir = early
    process = _Process(pid)
    expected = None
    if args is not None:
        try:
            _check_options(args)
            expected = os.path.abspath(args.output or f"heaptrail-{os.getpid()}")
        except HeaptrailError:
            pass
    if expected != outdir:
        status = process.wait()
        print(f"heaptrail run: internal error: the command line was read two ways; the program ran "
              f"(exit status {status}) with its traces in {outdir}, which were not looked at",
              file=sys.stderr)
        return 70  # EX_SOFTWARE
    return run_guarded("run", lambda: _after_start(args, _Places(places), process, outdir, set()))


def run_fast(argv: list[str], places: dict[str, str]) -> Optional[int]:
    """`heaptrail run` with plain options, from the launcher: the program
    starts before the parser and the rest of heaptrail are imported, which
    happens while it runs (or the `heaptrail` command started it before
    Python). places: cli.Paths's arguments. None when argv is for the
    parser (help, errors, unusual spellings): nothing has been started
    then."""
    early = _early_program()
    args = _parse_plain(argv)
    if early is not None:
        return _adopt(early, args, places)
    if args is None:
        return None
    paths = _Places(places)
    try:
        command, outdir, before, env = _prepare(args, paths)
    except HeaptrailError:
        return None
    pid = _spawn(command, env)
    if pid is None:
        return None
    return run_guarded("run", lambda: _after_start(args, paths, _Process(pid), outdir, before))
