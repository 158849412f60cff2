"""``heaptrail capture``: record a board's heap log to a file.

The capture file holds the bytes exactly as the board sent them, with no
header: text lines or binary frames (docs/board-wire.md), so it can be read
by the analyser, by valground's tools (text), or captured again from a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sys
import time
from typing import Any, Iterator

from . import capture_sources
from .errors import HeaptrailError, UsageError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "capture",
        help="record a board's heap log (serial, TCP, file, stdin, RTT over a GDB stub)",
        description="Record a board's heap log to a capture file (raw bytes as received).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--serial", metavar="DEVICE", help="a serial device, e.g. /dev/ttyACM0")
    src.add_argument("--tcp", metavar="HOST:PORT",
                     help="a TCP server: OpenOCD's `rtt server`, QEMU's -serial tcp::PORT,server=on")
    src.add_argument("--file", metavar="PATH", help="a file (a recorded stream)")
    src.add_argument("--stdin", action="store_true", help="standard input")
    src.add_argument("--gdb", metavar="HOST:PORT",
                     help="read RTT through a GDB stub (QEMU -gdb tcp::PORT, OpenOCD, J-Link)")
    p.add_argument("-o", "--output", required=True, metavar="CAPTURE", help="capture file to write ('-': stdout)")
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    p.add_argument("--elf", metavar="FIRMWARE", help="firmware ELF: finds _SEGGER_RTT; passed to --report")
    p.add_argument("--scan", metavar="START:LENGTH", help="RAM range to search for the RTT ID when there is no ELF")
    p.add_argument("--channel", type=int, default=0, help="RTT up channel (default 0)")
    p.add_argument("--poll", type=float, default=0.005, help="seconds between RTT reads (default 0.005)")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--idle", type=float, help="stop after this many seconds without data (serial, TCP, stdin)")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to keep trying to connect or to wait for a stub's reply (default 10)")
    p.add_argument("--report", action="store_true",
                   help="run `heaptrail report` on the capture when the stream ends")
    p.add_argument("--report-format", metavar="FORMAT", help="--format passed to `heaptrail report`")
    p.add_argument("--quiet", action="store_true", help="no summary line on stderr")
    p.set_defaults(func=run)


def open_source(args: argparse.Namespace) -> Iterator[bytes]:
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    if args.file is not None:
        return capture_sources.from_file(args.file)
    if args.stdin:
        return capture_sources.from_stdin(deadline, args.idle)
    if args.tcp is not None:
        return capture_sources.from_tcp(args.tcp, deadline, args.idle, args.connect_timeout)
    if args.serial is not None:
        return capture_sources.from_serial(args.serial, args.baud, deadline, args.idle)
    return capture_sources.from_gdb(args.gdb, args.elf, args.scan, args.channel, deadline, args.poll,
                                    args.connect_timeout)


def report_available() -> bool:
    return importlib.util.find_spec(f"{__package__}.report_cmd") is not None


def run(args: argparse.Namespace, paths: Any) -> int:
    if args.channel < 0:
        raise UsageError("--channel must be 0 or more")
    if args.poll <= 0:
        raise UsageError("--poll must be positive")
    if args.report and args.output == "-":
        raise UsageError("--report needs a capture file, not stdout")
    source = open_source(args)
    # The first chunk (or the end) comes before the file is made, so that a
    # source that fails to open (refused, no device, bad ELF) leaves no file.
    first = next(source, b"")
    if args.output == "-" and sys.stdout is None:
        raise HeaptrailError("-o -: standard output is closed")
    out = sys.stdout.buffer if args.output == "-" else None
    total = 0
    try:
        if out is None:
            try:
                out = open(args.output, "wb")
            except OSError as error:
                raise HeaptrailError(f"{args.output}: {error.strerror}") from None
        for chunk in itertools.chain((first,), source):
            out.write(chunk)
            out.flush()
            total += len(chunk)
    finally:
        if out is not None and args.output != "-":
            out.close()
    if not args.quiet:
        print(f"heaptrail capture: {total} bytes to {args.output}", file=sys.stderr)
    if args.report:
        if not report_available():
            print("heaptrail capture: `heaptrail report` is not in this build; capture kept", file=sys.stderr)
            return 0
        from . import cli

        argv = ["report", args.output]
        if args.report_format:
            argv += ["--format", args.report_format]
        if args.elf:
            argv += ["--elf", os.path.abspath(args.elf)]
        return cli.main(argv, paths)
    return 0
