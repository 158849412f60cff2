"""The heaptrail command line: one entry point, one subcommand per job.

Each subcommand lives in its own module, which exposes
``register(subparsers)``: it adds its parser and sets ``func`` to a callable
taking ``(args, paths)`` and returning the exit status.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    import argparse
    from typing import Optional, Sequence

import os

from . import __version__
from .errors import leave, run_guarded

# Order is the order of `heaptrail --help`.
SUBCOMMANDS = ("run", "report", "diff", "capture", "pack", "dump")


class Paths:
    """Where the compiled parts are, filled in by the launcher. (A plain
    class: importing dataclasses costs more start-up than it saves here.)"""

    __slots__ = ("shim", "engine", "dump", "pack")

    def __init__(self, shim: str, engine: str, dump: str, pack: str = "") -> None:
        self.shim = shim  # libheaptrail.so
        self.engine = engine  # htr-engine
        self.dump = dump  # htr-dump
        self.pack = pack  # htr-pack


def _named_command(argv: Sequence[str]) -> Optional[str]:
    """The subcommand argv names, if its first word is one: then only that
    subcommand's module is imported (start-up time is paid on every run);
    anything else (--help, a typo, nothing) gets the parser with them all."""
    if argv and argv[0] in SUBCOMMANDS:
        return argv[0]
    return None


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    import importlib
    import importlib.util

    from .parser import Parser

    parser = Parser(
        prog="heaptrail",
        description="Heap tracing for C and C++ on a Linux host and on boards.",
    )
    parser.add_argument("--version", action="version", version=f"heaptrail {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS if only is None else (only,):
        module_name = f"{__package__}.{name}_cmd"
        if importlib.util.find_spec(module_name) is None:
            continue  # a part this build does not have
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str], paths: Paths) -> int:
    command = _named_command(argv)
    if command != "report":
        parser = build_parser(command)
        args = parser.parse_args(argv)
        return run_guarded(args.command, lambda: args.func(args, paths))
    from . import engine, report_early

    args = report_early.parse(argv[1:])
    if args is not None:
        report_early.start(args, paths.engine, os.environ)
    try:
        if args is None:
            args = build_parser(command).parse_args(argv)
        else:
            report_early.complete(args)
        status = run_guarded("report", lambda: args.func(args, paths))
    finally:
        engine.cancel_early()
    leave(status)
