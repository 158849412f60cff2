"""Stands in for the launcher behind the `heaptrail` front in tests
(heaptrail-probe): runs `heaptrail report` as the launcher does, and says on
stderr, as one JSON line, what the front handed on and what became of it:
the engine it announced (HEAPTRAIL_EARLY_ENGINE), the engine the report
kept, and how many engines Python started itself."""

import json
import os
import posix
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from heaptrail import cli, report_early, spawn  # noqa: E402

said = posix.environ.get(spawn.EARLY_ENV)
started = []
plain_init = spawn.Run.__init__


def counted_init(self, cmd, env):  # type: ignore[no-untyped-def]
    started.append(cmd)
    plain_init(self, cmd, env)


spawn.Run.__init__ = counted_init  # type: ignore[method-assign]
cli.leave = sys.exit  # type: ignore[assignment] # back here, to say what happened
engine = os.environ["HTR_ENGINE"]
report_early.start_now(sys.argv[2:], engine)
kept = spawn._early
kept_pid = kept.pid if kept is not None else None  # before the report waits for it
try:
    status = cli.main(sys.argv[1:], cli.Paths(shim="", engine=engine, dump=""))
except SystemExit as leaving:
    status = leaving.code
print(json.dumps({
    "announced": said.decode("utf-8", "surrogateescape") if said is not None else None,
    "kept_pid": kept_pid,
    "kept_cmd": kept.cmd if kept is not None else None,
    "python_started": started,
    "left_in_environ": spawn.EARLY_ENV in posix.environ or os.environ.get("HEAPTRAIL_EARLY_ENGINE") is not None,
}), file=sys.stderr)
sys.exit(status)
