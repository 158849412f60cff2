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

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional, Sequence

from . import __version__
from .errors import run_guarded

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


def _terminal_width() -> int:
    """shutil.get_terminal_size's answer (COLUMNS, else stdout's terminal,
    else 80), without importing shutil (and with it bz2, lzma)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse makes a formatter for every add_argument (to check the
    metavar); each would import shutil and ask the terminal for its size.
    The width is asked once, when the help is really printed."""

    width: Optional[int] = None

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else _Formatter.width or 80)


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line naming what is wrong, and where to look; the
    full usage text stays behind --help. Subcommand parsers inherit this."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        _Formatter.width = _terminal_width() - 2  # as argparse does: 2 columns of margin
        return super().format_help()

    def format_usage(self) -> str:
        _Formatter.width = _terminal_width() - 2
        return super().format_usage()

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
    return run_guarded(args.command, lambda: args.func(args, paths))
