"""Stands in for the launcher behind the `heaptrail` front in tests
(heaptrail-probe): runs `heaptrail report` or `heaptrail run` as the
launcher does, and says on stderr, as its last line, in JSON, what the
front handed on and what became of it: what it announced
(HEAPTRAIL_EARLY_ENGINE or _PROGRAM), what the launcher kept, and what
Python started itself. HTR_ENGINE, HTR_SHIM and HTR_PACK name the parts."""

import json
import os
import posix
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from heaptrail import cli, report_early, run_cmd, spawn  # noqa: E402

places = {"shim": os.environ.get("HTR_SHIM", ""), "engine": os.environ["HTR_ENGINE"], "dump": "",
          "pack": os.environ.get("HTR_PACK", "")}
said: dict = {}
started: list = []


def count_engines(plain):  # type: ignore[no-untyped-def]
    def init(self, cmd, env):  # type: ignore[no-untyped-def]
        started.append(cmd)
        plain(self, cmd, env)
    return init


def count_programs(plain):  # type: ignore[no-untyped-def]
    def spawn_program(command, env):  # type: ignore[no-untyped-def]
        started.append(command)
        return plain(command, env)
    return spawn_program


def early(name: str) -> "str | None":
    value = posix.environ.get(name.encode())
    return value.decode("utf-8", "surrogateescape") if value is not None else None


if sys.argv[1] == "report":
    said["announced"] = early("HEAPTRAIL_EARLY_ENGINE")
    spawn.Run.__init__ = count_engines(spawn.Run.__init__)  # type: ignore[method-assign]
    cli.leave = sys.exit  # type: ignore[assignment] # back here, to say what happened
    report_early.start_now(sys.argv[2:], places["engine"])
    kept = spawn._early
    said["kept_pid"] = kept.pid if kept is not None else None  # before the report waits for it
    said["kept_cmd"] = kept.cmd if kept is not None else None
    try:
        status = cli.main(sys.argv[1:], cli.Paths(**places))
    except SystemExit as leaving:
        status = leaving.code
else:
    said["announced"] = early("HEAPTRAIL_EARLY_PROGRAM")
    run_cmd._spawn = count_programs(run_cmd._spawn)  # type: ignore[assignment]
    status = run_cmd.run_fast(sys.argv[2:], places)
said["python_started"] = started
said["status"] = status
said["pid"] = os.getpid()
said["left_in_environ"] = any(name in posix.environ for name in (b"HEAPTRAIL_EARLY_ENGINE", b"HEAPTRAIL_EARLY_PROGRAM")) \
    or any(name in os.environ for name in ("HEAPTRAIL_EARLY_ENGINE", "HEAPTRAIL_EARLY_PROGRAM"))
print(json.dumps(said), file=sys.stderr)
sys.exit(status if isinstance(status, int) else 0)
