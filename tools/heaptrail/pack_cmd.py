"""`heaptrail pack`: rewrite finished raw traces in the packed form."""

from __future__ import annotations

import argparse
import os
import subprocess
from typing import Any

from .errors import ToolError, UsageError

# zstd level. The packed coding does most of the work, so the cheapest
# level is enough: on the coded columns 1 is even smaller than 3 and packs
# 4M events 10-20% faster (0.1-0.2 s of CPU); 9 saves at most 1% for about
# twice the time (docs/trace-format.md).
DEFAULT_LEVEL = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="compress finished traces (merged, coded, zstd)",
        description=(
            "Rewrite raw traces of programs that have ended in the packed form: one stream in "
            "event order, compactly coded and zstd-compressed. Every "
            "heaptrail command reads both forms. Do not pack a trace whose program still runs."
        ),
    )
    parser.add_argument("traces", nargs="+", metavar="TRACE")
    parser.add_argument("-l", "--level", type=int, default=DEFAULT_LEVEL,
                        help=f"zstd level, 1-19 (default {DEFAULT_LEVEL}); higher is smaller and slower")
    parser.set_defaults(func=run)


def pack_files(pack_tool: str, traces: list[str], level: int = DEFAULT_LEVEL,
               jobs: int = 0) -> list[str]:
    """Packs traces in place; returns the tool's one line per file, in the
    order of traces. Several traces (a program's fork children) are split
    over up to `jobs` packers at once (0: one per CPU), so a second core
    does not sit idle while the user waits."""
    if not pack_tool or not os.access(pack_tool, os.X_OK):
        raise ToolError(f"the trace packer is missing ({pack_tool or 'not built'})")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(traces)))
    # Contiguous slices: their outputs concatenated keep the input order.
    size = -(-len(traces) // jobs)
    procs = [
        subprocess.Popen([pack_tool, "-l", str(level), *traces[i:i + size]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(0, len(traces), size)
    ]
    lines: list[str] = []
    failure = ""
    for proc in procs:
        out, err = proc.communicate()
        lines.extend(out.splitlines())
        if proc.returncode != 0 and not failure:
            message = err.strip().splitlines()
            failure = message[0].removeprefix("htr-pack: ") if message else "packing failed"
    if failure:
        raise ToolError(failure)
    return lines


def run(args: argparse.Namespace, paths: Any) -> int:
    if not 1 <= args.level <= 19:
        raise UsageError(f"--level {args.level}: the level is a number from 1 to 19")
    for line in pack_files(paths.pack, args.traces, args.level):
        print(line)
    return 0
