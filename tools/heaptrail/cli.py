"""The heaptrail command line: one entry point, one subcommand per job.

Each subcommand lives in its own module, which exposes
``register(subparsers)``: it adds its parser and sets ``func`` to a callable
taking ``(args, paths)`` and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import NoReturn, Optional, Sequence

from . import __version__
from .errors import HeaptrailError

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


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line naming what is wrong, and where to look; the
    full usage text stays behind --help. Subcommand parsers inherit this."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _named_command(argv: Sequence[str]) -> Optional[str]:
    """The subcommand argv names, if its first word is one: then only that
    subcommand's module is imported (start-up time is paid on every run);
    anything else (--help, a typo, nothing) gets the parser with them all."""
    if argv and argv[0] in SUBCOMMANDS:
        return argv[0]
    return None


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, paths))
    except HeaptrailError as error:
        print(f"heaptrail {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"heaptrail {args.command}: {where}{error.strerror}", file=sys.stderr)
        return 2
