"""`heaptrail dump`: a host trace as JSON lines, for debugging."""

from __future__ import annotations

import argparse
import os
import subprocess
from typing import Any

from .errors import ToolError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dump",
        help="print a host trace's events as JSON lines",
        description="Print every event of host traces as JSON lines, in the order they happened.",
    )
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="heaptrail.PID.N.htr files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, paths: Any) -> int:
    if not paths.dump or not os.access(paths.dump, os.X_OK):
        raise ToolError(f"the trace dumper is missing ({paths.dump or 'not built'})")
    # The dumper names the file and the reason for an unreadable trace itself.
    return subprocess.run([paths.dump, *args.traces], check=False).returncode
